"""Band choice, dtype stretch, masks, footprints and bounded memory on generated rasters."""

from __future__ import annotations

import resource

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from engine.errors import BadInput, NotFound
from engine.grid import Grid, GridParams
from engine.raster import (
    bbox_lonlat,
    compute_stretch,
    footprint,
    open_raster,
    raster_info,
    read_tile,
    resample_scale,
    select_bands,
)
from tests.engine.rasters import rgb_pattern, write_raster


def _read_all(path, tile=64, bands=None):
    with open_raster(path) as src:
        b = select_bands(src, bands)
        grid = Grid(src.width, src.height, GridParams(tile))
        stretch = compute_stretch(src, b)
        return b, grid, [read_tile(src, grid, w, b, stretch) for w in grid.windows()]


def test_non_multiple_size_edge_tiles(tmp_path):
    p = write_raster(tmp_path / "a.tif", rgb_pattern(150, 200))
    b, grid, tiles = _read_all(p)
    assert b == [1, 2, 3] and (grid.n_cols, grid.n_rows) == (4, 3)
    assert all(t.shape == (64, 64, 3) and v == 1.0 for t, v in tiles)
    last = grid.window(len(grid) - 1)
    assert (last.x_off, last.y_off) == (136, 86)
    with rasterio.open(p) as src:  # edge-shifted window holds the true pixels
        np.testing.assert_array_equal(tiles[-1][0][..., 0], src.read(1)[86:150, 136:200])


def test_small_raster_padded(tmp_path):
    p = write_raster(tmp_path / "s.tif", rgb_pattern(20, 30))
    _, grid, tiles = _read_all(p)
    ((rgb, valid),) = tiles
    assert len(grid) == 1 and valid == 1.0 and rgb.shape == (64, 64, 3)
    assert rgb[20:].max() == 0 and rgb[:, 30:].max() == 0


def test_epsg4326_footprint_and_bbox(tmp_path):
    p = write_raster(tmp_path / "g.tif", rgb_pattern(90, 110), crs="EPSG:4326", res=0.01, origin=(10.0, 50.0))
    with open_raster(p) as src:
        info = raster_info(src, [1, 2, 3])
        grid = Grid(src.width, src.height, GridParams(64))
        ring = footprint(info.transform, grid.window(0))
    assert info.authid == "EPSG:4326"
    assert ring[0] == pytest.approx((10.0, 50.0)) and ring[2] == pytest.approx((10.64, 49.36))
    bb = bbox_lonlat(info.crs_wkt, (10.0, 49.36, 10.64, 50.0))
    assert bb == pytest.approx([10.0, 49.36, 10.64, 50.0], abs=1e-9)


def test_utm_bbox_lonlat(tmp_path):
    p = write_raster(tmp_path / "u.tif", rgb_pattern(64, 64))
    with open_raster(p) as src:
        bb = bbox_lonlat(raster_info(src, [1, 2, 3]).crs_wkt, tuple(src.bounds))
    assert 14 < bb[0] < bb[2] < 16 and 45 < bb[1] < bb[3] < 46


def test_uint16_stretch(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(1000, 3000, size=(3, 100, 100)).astype(np.uint16)
    p = write_raster(tmp_path / "u16.tif", data)
    with open_raster(p) as src:
        s = compute_stretch(src, [1, 2, 3])
    assert not s.identity and 1000 <= s.lo < 1100 and 2900 < s.hi <= 3000
    _, _, tiles = _read_all(p)
    rgb = tiles[0][0]
    assert rgb.dtype == np.uint8 and rgb.min() == 0 and rgb.max() == 255 and 100 < rgb.mean() < 155


def test_float_nan_and_signed(tmp_path):
    data = np.linspace(-5, 5, 3 * 64 * 64, dtype=np.float32).reshape(3, 64, 64)
    data[:, :40, :] = np.nan
    p = write_raster(tmp_path / "f.tif", data)
    _, _, ((rgb, valid),) = _read_all(p)
    assert valid == pytest.approx(24 / 64)
    assert rgb[:40].max() == 0 and rgb[40:].max() > 0


def test_nodata_mask(tmp_path):
    data = rgb_pattern(64, 64)
    data[:, :, :16] = 0
    p = write_raster(tmp_path / "nd.tif", data, nodata=0)
    _, _, ((_, valid),) = _read_all(p)
    assert valid == pytest.approx(0.75, abs=0.01)


def test_alpha_mask_and_band_choice(tmp_path):
    data = np.concatenate([rgb_pattern(64, 64), np.full((1, 64, 64), 255, np.uint8)])
    data[3, :32] = 0
    ci = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    p = write_raster(tmp_path / "rgba.tif", data, colorinterp=ci, photometric="RGB", alpha="YES")
    b, _, ((rgb, valid),) = _read_all(p)
    assert b == [1, 2, 3] and valid == pytest.approx(0.5) and rgb[:32].max() == 0


def test_colorinterp_order_bgr(tmp_path):
    p = write_raster(
        tmp_path / "bgr.tif", rgb_pattern(32, 32), colorinterp=[ColorInterp.blue, ColorInterp.green, ColorInterp.red]
    )
    with open_raster(p) as src:
        assert select_bands(src) == [3, 2, 1]


def test_one_and_two_band_replicated(tmp_path):
    one = write_raster(tmp_path / "one.tif", rgb_pattern(64, 64)[:1])
    two = write_raster(tmp_path / "two.tif", rgb_pattern(64, 64)[:2])
    for p in (one, two):
        b, _, ((rgb, _),) = _read_all(p)
        assert b == [1, 1, 1]
        np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_rgbn_and_override(tmp_path):
    data = np.concatenate([rgb_pattern(32, 32), np.full((1, 32, 32), 7, np.uint8)])
    p = write_raster(tmp_path / "rgbn.tif", data)
    with open_raster(p) as src:
        assert select_bands(src) == [1, 2, 3]
        assert select_bands(src, [4, 3, 2]) == [4, 3, 2]
        assert select_bands(src, [4]) == [4, 4, 4]
        with pytest.raises(BadInput, match="band 5 does not exist"):
            select_bands(src, [5, 1, 2])
        with pytest.raises(BadInput):
            select_bands(src, [1, 2])


def test_gsd_scale(tmp_path):
    p = write_raster(tmp_path / "r.tif", rgb_pattern(64, 64), res=0.25)
    with open_raster(p) as src:
        assert resample_scale(src, 0.5, explicit=True) == pytest.approx(2.0)
        assert resample_scale(src, 0.1, explicit=False) == 1.0  # model default never upsamples
        assert resample_scale(src, 100.0, explicit=False) == 8.0
    _, grid, _ = (None, Grid(64, 64, GridParams(16, scale=2.0)), None)
    with open_raster(p) as src:
        rgb, v = read_tile(src, grid, grid.window(0), [1, 2, 3], compute_stretch(src, [1, 2, 3]))
    assert rgb.shape == (16, 16, 3) and v == 1.0


def test_bad_files(tmp_path):
    (tmp_path / "zero.tif").write_bytes(b"")
    (tmp_path / "text.tif").write_text("hello, not a raster\n")
    with pytest.raises(BadInput, match="zero-byte"):
        open_raster(tmp_path / "zero.tif")
    with pytest.raises(BadInput, match="not a readable raster"):
        open_raster(tmp_path / "text.tif")
    with pytest.raises(NotFound):
        open_raster(tmp_path / "missing.tif")


def test_huge_sparse_raster_bounded_memory(tmp_path):
    """A 50,000 x 50,000 sparse GeoTIFF: grid, stretch and a few windows without reading it whole."""
    p = tmp_path / "huge.tif"
    prof = {
        "driver": "GTiff",
        "width": 50_000,
        "height": 50_000,
        "count": 3,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": rasterio.transform.from_origin(0, 5e6, 0.5, 0.5),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "sparse_ok": True,
        "nodata": 0,
        "compress": "deflate",
    }
    with rasterio.open(p, "w", **prof) as dst:
        dst.write(np.full((3, 512, 512), 1234, np.uint16), window=rasterio.windows.Window(24_576, 24_576, 512, 512))
    assert p.stat().st_size < 20_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open_raster(p) as src:
        b = select_bands(src)
        grid = Grid(src.width, src.height, GridParams(256))
        assert len(grid) == 196 * 196
        stretch = compute_stretch(src, b)
        hit = next(w for w in grid.windows(96 * 196, 97 * 196) if w.x_off == 24_576)
        rgb, valid = read_tile(src, grid, hit, b, stretch)
        assert valid == 1.0
        _, empty = read_tile(src, grid, grid.window(0), b, stretch)
        assert empty == 0.0
        last = grid.window(len(grid) - 1)
        assert last.x_off + last.width == 50_000
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 300, f"memory grew by {grown_mb:.0f} MB"
