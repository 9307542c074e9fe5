"""Windowed raster reading with rasterio: band choice, dtype stretch, masks, gsd resampling, footprints.

Data types: uint8 is used as is. Any other type (uint16, signed, float) is linearly stretched to 0..255
between the 2nd and 98th percentile of the valid pixels of the selected bands, computed once per raster
from the smallest overview with at least 256 px on a side or, without overviews, from a fixed sample of
64 small windows spread over the raster (bounded I/O for any size). Invalid pixels (nodata, alpha = 0,
the GDAL mask, NaN/inf) are set to 0 and count against the tile's valid fraction.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling  # noqa: E402
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError  # noqa: E402
from rasterio.windows import Window as RioWindow  # noqa: E402

from engine import remote
from engine.errors import BadInput, NotFound
from engine.grid import Grid, Window, window_corners

FINGERPRINT_BYTES = 1 << 20


@dataclass(frozen=True)
class Stretch:
    """Linear stretch ``lo..hi -> 0..255`` (identity for uint8)."""

    lo: float = 0.0
    hi: float = 255.0
    identity: bool = True

    def apply(self, data: np.ndarray) -> np.ndarray:
        if self.identity and data.dtype == np.uint8:
            return data
        scaled = (data.astype(np.float32) - self.lo) * (255.0 / max(self.hi - self.lo, 1e-12))
        return np.clip(np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0), 0, 255).astype(np.uint8)


@dataclass
class RasterInfo:
    """What the engine needs to know about a raster."""

    path: str
    width: int
    height: int
    count: int
    dtype: str
    crs_wkt: str
    authid: str
    transform: tuple[float, ...]
    res: tuple[float, float]
    bands: list[int]
    georeferenced: bool
    colorinterp: list[str] = field(default_factory=list)
    has_overviews: bool = False


def check_file(path: str | os.PathLike) -> Path:
    """Existence and basic sanity of a raster path (clear one-line errors)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise NotFound(f"raster not found: {p}")
    if not p.is_file():
        raise BadInput(f"not a file: {p}")
    if not os.access(p, os.R_OK):
        raise BadInput(f"raster not readable (permissions): {p}")
    if p.stat().st_size == 0:
        raise BadInput(f"raster is an empty (zero-byte) file: {p}")
    return p


def open_raster(path: str | os.PathLike):
    """Open a raster (a local file or an http(s) URL read through ``/vsicurl/``) with rasterio, turning GDAL
    errors into one-line ``BadInput`` errors (a missing remote file: ``NotFound``)."""
    if remote.is_url(str(path)):
        remote.fingerprint(str(path))  # HEAD first: 404, 403 and an unreachable host are one clear line each
        p = remote.gdal_path(str(path))
    else:
        p = check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(p)
    except (RasterioIOError, rasterio.errors.RasterioError) as exc:
        raise BadInput(f"not a readable raster: {p} ({' '.join(str(exc).split())[:200]})") from None
    if src.width < 1 or src.height < 1 or src.count < 1:
        src.close()
        raise BadInput(f"raster has no pixels or bands: {p}")
    return src


def select_bands(src, override: list[int] | None = None) -> list[int]:
    """1-based band indexes giving R, G, B.

    Override (1 or 3 indexes) wins; else bands tagged red/green/blue; 1 or 2 bands: the first replicated
    (a 2nd band is usually alpha or unrelated); otherwise the first three (RGBN -> RGB).
    """
    if override:
        bands = [int(b) for b in override]
        if len(bands) not in (1, 3):
            raise BadInput(f"--bands needs 1 or 3 band numbers, got {len(bands)}")
        bad = [b for b in bands if not 1 <= b <= src.count]
        if bad:
            raise BadInput(f"band {bad[0]} does not exist (the raster has {src.count} band(s))")
        return bands * 3 if len(bands) == 1 else bands
    ci = list(src.colorinterp)
    tagged = {}
    for i, c in enumerate(ci, start=1):
        if c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue) and c not in tagged:
            tagged[c] = i
    if len(tagged) == 3:
        return [tagged[ColorInterp.red], tagged[ColorInterp.green], tagged[ColorInterp.blue]]
    non_alpha = [i for i, c in enumerate(ci, start=1) if c != ColorInterp.alpha] or [1]
    if len(non_alpha) < 3:
        return [non_alpha[0]] * 3
    return non_alpha[:3]


def pixel_size_m(src) -> float | None:
    """Approximate ground pixel size in metres (None without a CRS)."""
    if src.crs is None:
        return None
    rx, ry = abs(src.res[0]), abs(src.res[1])
    if src.crs.is_geographic:
        b = src.bounds
        lat = math.radians(max(-89.0, min(89.0, (b.top + b.bottom) / 2)))
        return math.sqrt(rx * 111_320.0 * math.cos(lat) * ry * 110_574.0)
    try:
        factor = src.crs.linear_units_factor[1]
    except Exception:  # noqa: BLE001 - CRS without linear units
        factor = 1.0
    return math.sqrt(rx * ry) * factor


def resample_scale(src, gsd: float | None, explicit: bool) -> float:
    """Source pixels per output pixel for a target ground resolution ``gsd`` (metres).

    An explicit ``--gsd`` is honoured (bounded to 1/8..64); the model's default gsd only ever downsamples
    (never invents detail) and by at most 8x.
    """
    if gsd is None:
        return 1.0
    if not (math.isfinite(gsd) and gsd > 0):
        raise BadInput(f"gsd must be a positive number of metres, got {gsd}")
    px = pixel_size_m(src)
    if px is None or px <= 0:
        if explicit:
            raise BadInput("--gsd needs a georeferenced raster (this one has no CRS)")
        return 1.0
    scale = gsd / px
    if explicit:
        return float(min(max(scale, 1 / 8), 64.0))
    return float(min(max(scale, 1.0), 8.0))


def valid_mask(src, data: np.ndarray, window: RioWindow, out_shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of valid pixels (dataset mask: nodata/alpha/internal mask, plus finite values)."""
    mask = src.dataset_mask(window=window, out_shape=out_shape, resampling=Resampling.nearest) > 0
    if data.dtype.kind == "f":
        mask &= np.isfinite(data).all(axis=0)
    return mask


def compute_stretch(src, bands: list[int]) -> Stretch:
    """Per-raster 2-98 percentile stretch (see the module docstring); identity for uint8."""
    if all(src.dtypes[b - 1] == "uint8" for b in set(bands)):
        return Stretch()
    try:
        return _compute_stretch(src, bands)
    except rasterio.errors.RasterioError as exc:
        raise BadInput(
            f"cannot read pixels of {src.name} (truncated or corrupted file?): {' '.join(str(exc).split())[:200]}"
        ) from None


def _compute_stretch(src, bands: list[int]) -> Stretch:
    uniq = sorted(set(bands))
    samples = []
    if src.overviews(uniq[0]):
        side = 512
        f = max(src.width, src.height) / side
        shape = (max(1, round(src.height / f)), max(1, round(src.width / f)))
        full = RioWindow(0, 0, src.width, src.height)
        data = src.read(uniq, out_shape=(len(uniq), *shape), resampling=Resampling.nearest)
        samples.append(data[:, valid_mask(src, data, full, shape)])
    else:
        n, w = 8, 128
        for gy in range(n):
            for gx in range(n):
                ww, wh = min(w, src.width), min(w, src.height)
                x = int((src.width - ww) * (gx + 0.5) / n)
                y = int((src.height - wh) * (gy + 0.5) / n)
                win = RioWindow(x, y, ww, wh)
                data = src.read(uniq, window=win)
                samples.append(data[:, valid_mask(src, data, win, (wh, ww))])
    values = np.concatenate([s.reshape(-1) for s in samples]).astype(np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Stretch(0.0, 1.0, identity=False)
    lo, hi = np.percentile(values, [2, 98])
    if hi <= lo:
        hi = lo + 1.0
    return Stretch(float(lo), float(hi), identity=False)


def raster_info(src, bands: list[int]) -> RasterInfo:
    """Summarise an open dataset."""
    crs = src.crs
    authid = ""
    wkt = ""
    if crs is not None:
        wkt = crs.to_wkt()
        try:
            epsg = crs.to_epsg()
        except Exception:  # noqa: BLE001 - odd CRS definitions
            epsg = None
        authid = f"EPSG:{epsg}" if epsg else ""
    return RasterInfo(
        path=remote.href_of(src.name) or str(Path(src.name).resolve()),
        width=src.width,
        height=src.height,
        count=src.count,
        dtype=src.dtypes[0],
        crs_wkt=wkt,
        authid=authid,
        transform=tuple(src.transform)[:6],
        res=(float(src.res[0]), float(src.res[1])),
        bands=bands,
        georeferenced=crs is not None,
        colorinterp=[c.name for c in src.colorinterp],
        has_overviews=bool(src.overviews(1)),
    )


def read_tile(src, grid: Grid, window: Window, bands: list[int], stretch: Stretch) -> tuple[np.ndarray, float]:
    """Read one window as an RGB uint8 ``[tile, tile, 3]`` array (zero-padded) and its valid fraction.

    The valid fraction counts only the raster part of the tile (padding of small rasters is not invalid).
    """
    win = RioWindow(window.x_off, window.y_off, window.width, window.height)
    oh, ow = grid.output_shape(window)
    uniq = sorted(set(bands))
    resampling = Resampling.nearest if grid.params.scale == 1.0 else Resampling.bilinear
    try:
        data = src.read(uniq, window=win, out_shape=(len(uniq), oh, ow), resampling=resampling)
        mask = valid_mask(src, data, win, (oh, ow))
    except rasterio.errors.RasterioError as exc:
        raise BadInput(
            f"cannot read pixels of {src.name} at window {window.x_off},{window.y_off} "
            f"(truncated or corrupted file?): {' '.join(str(exc).split())[:200]}"
        ) from None
    lut = {b: i for i, b in enumerate(uniq)}
    rgb = stretch.apply(np.stack([data[lut[b]] for b in bands], axis=-1))
    rgb[~mask] = 0
    tile = grid.params.tile
    if (oh, ow) != (tile, tile):
        padded = np.zeros((tile, tile, 3), dtype=np.uint8)
        padded[:oh, :ow] = rgb
        rgb = padded
    return rgb, float(mask.mean())


def footprint(transform: tuple[float, ...], window: Window) -> list[tuple[float, float]]:
    """Closed ring of a window's footprint in the raster CRS."""
    ring = window_corners(transform, window.x_off, window.y_off, window.width, window.height)
    return [*ring, ring[0]]


def bbox_lonlat(crs_wkt: str, bounds: tuple[float, float, float, float]) -> list[float] | None:
    """Lon/lat bbox [w, s, e, n] of CRS bounds (None for rasters without a CRS)."""
    return bbox_lonlat_many(crs_wkt, [bounds])[0]


@functools.lru_cache(maxsize=64)
def _crs(wkt: str):
    from rasterio.crs import CRS

    return CRS.from_wkt(wkt)


def bbox_lonlat_many(crs_wkt: str, bounds: list[tuple[float, float, float, float]], densify: int = 5):
    """Lon/lat bboxes of many CRS bounds in one projection call (edges densified with ``densify`` points)."""
    if not crs_wkt or not bounds:
        return [None] * len(bounds)
    from rasterio.warp import transform

    t = np.linspace(0.0, 1.0, densify)
    b = np.asarray(bounds, dtype=np.float64)
    x0, y0, x1, y1 = (b[:, i : i + 1] for i in range(4))
    xs = np.concatenate(
        [x0 + (x1 - x0) * t, x0 + (x1 - x0) * t, np.repeat(x0, densify, 1), np.repeat(x1, densify, 1)], axis=1
    )
    ys = np.concatenate(
        [np.repeat(y0, densify, 1), np.repeat(y1, densify, 1), y0 + (y1 - y0) * t, y0 + (y1 - y0) * t], axis=1
    )
    try:
        lon, lat = transform(_crs(crs_wkt), "EPSG:4326", xs.ravel().tolist(), ys.ravel().tolist())
    except Exception:  # noqa: BLE001 - projection failure (e.g. out of domain)
        return [None] * len(bounds)
    lon = np.asarray(lon).reshape(xs.shape)
    lat = np.asarray(lat).reshape(xs.shape)
    out = []
    for i in range(len(bounds)):
        lo, la = lon[i][np.isfinite(lon[i])], lat[i][np.isfinite(lat[i])]
        out.append(
            [float(lo.min()), float(la.min()), float(lo.max()), float(la.max())] if lo.size and la.size else None
        )
    return out


def fingerprint(path: str | os.PathLike) -> dict:
    """Cheap identity of a raster file: size, mtime_ns and sha1 of the first and last MiB (a URL: what its server
    says, engine/remote.py)."""
    if remote.is_url(str(path)):
        return remote.fingerprint(str(path))
    p = Path(path)
    st = p.stat()
    h = hashlib.sha1(usedforsecurity=False)
    with open(p, "rb") as fh:
        h.update(fh.read(FINGERPRINT_BYTES))
        if st.st_size > FINGERPRINT_BYTES:
            fh.seek(max(FINGERPRINT_BYTES, st.st_size - FINGERPRINT_BYTES))
            h.update(fh.read(FINGERPRINT_BYTES))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha1": h.hexdigest()}
