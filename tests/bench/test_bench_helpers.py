"""Fast checks of the benchmark suite's pure helpers (bench/): statistics, recall, mosaic georeferencing."""

from __future__ import annotations

import numpy as np
import pytest

from bench.common import linear_fit, median, percentile, recall_at_k, summarise
from bench.http_load import query_texts, window_stats
from bench.mosaic import CRS, ORIGIN, build_mosaic, cell_index, synthetic_pool
from bench.throughput import find_variants


@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy_linear(q):
    vals = np.random.default_rng(q).exponential(size=37)
    assert percentile(vals, q) == pytest.approx(np.percentile(vals, q))


def test_percentile_edges():
    assert percentile([3.0], 95) == 3.0
    assert median([1, 2, 3, 4]) == 2.5
    assert percentile([5, 1, 3], 0) == 1 and percentile([5, 1, 3], 100) == 5
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarise():
    s = summarise(range(1, 101))
    assert s["n"] == 100 and s["p50"] == pytest.approx(50.5) and s["p99"] == pytest.approx(99.01)
    assert s["min"] == 1 and s["max"] == 100 and s["mean"] == pytest.approx(50.5)
    assert summarise([]) == {"n": 0}


def test_recall_at_k():
    exact = list(range(10))
    assert recall_at_k(exact, exact, 10) == 1.0
    assert recall_at_k(list(range(10, 20)), exact, 10) == 0.0
    assert recall_at_k([0, 1, 2, 99, 98, 97, 96, 95, 94, 93], exact, 10) == pytest.approx(0.3)
    assert recall_at_k([9, 8, 7, 6, 5, 4, 3, 2, 1, 0], exact, 10) == 1.0  # order within top k is irrelevant
    assert recall_at_k([0, 1, 2, 3], exact, 2) == 1.0
    assert recall_at_k([1, 5], [1, 2], 10) == 0.5  # fewer exact ids than k
    with pytest.raises(ValueError):
        recall_at_k([1], [1], 0)


def test_linear_fit():
    f = linear_fit([100, 400, 1600], [1.2, 4.2, 16.2])
    assert f["slope"] == pytest.approx(0.01) and f["intercept"] == pytest.approx(0.2) and f["r2"] == pytest.approx(1)


def test_mosaic_georeferencing(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    pool = synthetic_pool(5, cell=50)
    path = build_mosaic(tmp_path / "m.tif", 420, pool, pixel_size=0.5, strip_cells=3)
    with rasterio.open(path) as src:
        assert (src.width, src.height, src.count, src.dtypes[0]) == (420, 420, 3, "uint8")
        assert src.crs.to_string() == CRS
        t = src.transform
        assert (t.a, t.e, t.c, t.f, t.b, t.d) == (0.5, -0.5, ORIGIN[0], ORIGIN[1], 0.0, 0.0)
        assert src.bounds.right == pytest.approx(ORIGIN[0] + 210)
        assert src.bounds.bottom == pytest.approx(ORIGIN[1] - 210)
        assert src.block_shapes[0] == (256, 256)
        data = src.read().transpose(1, 2, 0)
    for r, c in [(0, 0), (0, 1), (3, 5), (7, 2)]:
        np.testing.assert_array_equal(data[r * 50 : (r + 1) * 50, c * 50 : (c + 1) * 50], pool[cell_index(r, c, 5)])
    np.testing.assert_array_equal(data[400:, 400:], pool[cell_index(8, 8, 5)][:20, :20])  # cropped edge cell

    from engine.raster import bbox_lonlat, open_raster, raster_info, select_bands

    with open_raster(path) as src:
        info = raster_info(src, select_bands(src))
    assert info.authid == "EPSG:32633" and info.georeferenced
    w, s, e, n = bbox_lonlat(info.crs_wkt, (ORIGIN[0], ORIGIN[1] - 210, ORIGIN[0] + 210, ORIGIN[1]))
    assert 13.5 < w < e < 14.0 and 45.8 < s < n < 46.2  # UTM 33N easting 400 km, northing 5100 km


def test_cell_index_neighbours_differ():
    n = 600
    assert len({cell_index(r, c, n) for r in range(10) for c in range(10)}) == 100


def test_find_variants(tmp_path):
    b = tmp_path / "bundle"
    b.mkdir()
    for f in ("model.json", "image_encoder.onnx", "text_encoder.onnx", "tokenizer.json", "image_encoder.fp16.onnx"):
        (b / f).write_text("x")
    sib = tmp_path / "bundle-int8"
    sib.mkdir()
    for f in ("model.json", "image_encoder.onnx"):
        (sib / f).write_text("x")
    v = find_variants(b, tmp_path / "work")
    assert v["int8"] == sib
    fp16 = v["fp16"]
    assert (fp16 / "image_encoder.onnx").resolve() == (b / "image_encoder.fp16.onnx").resolve()
    assert (fp16 / "text_encoder.onnx").resolve() == (b / "text_encoder.onnx").resolve()
    assert not (fp16 / "image_encoder.fp16.onnx").exists()


def test_http_helpers():
    it = query_texts()
    qs = [next(it) for _ in range(5000)]
    assert len(set(qs)) == 5000
    recs = [(0.5, 0.010, True, "200"), (1.5, 0.020, True, "200"), (2.5, 0.030, False, "500"), (2.7, 0.04, True, "200")]
    w = window_stats(recs, 3.0, 3)
    assert [x["requests"] for x in w] == [1, 1, 2]
    assert w[2]["errors"] == 1 and w[2]["p50"] == pytest.approx(40.0) and w[0]["rps"] == pytest.approx(1.0)
