"""IVF index (engine/ivf.py): recall against exact search, layout, files, tail rows, tiny stores, store wiring."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import engine.ivf as ivf_mod
from engine.errors import CorruptData
from engine.indexer import IndexParams, index_raster
from engine.ivf import build_ivf, default_n_lists, ensure_ivf, load_ivf, save_ivf, search_ivf, train_centroids
from engine.search import search_stores
from engine.store import Store, open_store
from tests.engine.rasters import rgb_pattern, write_raster


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def clustered():
    """20k float16 unit rows from 200 Gaussian clusters (D=48), and 50 queries near cluster centres."""
    rng = np.random.default_rng(0)
    d, n = 48, 20_000
    centres = rng.standard_normal((200, d))
    x = _unit(centres[rng.integers(0, 200, n)] + 0.35 * rng.standard_normal((n, d)))
    q = _unit(centres[:50] + 0.3 * rng.standard_normal((50, d)))
    return x.astype(np.float16), q


def _exact_top(emb: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    s = emb.astype(np.float32) @ q
    return np.argsort(-s, kind="stable")[:k]


def test_recall_at_10_default_nprobe(clustered):
    emb, qs = clustered
    index = build_ivf(emb)
    assert index.n_lists == default_n_lists(len(emb)) == 141
    recalls = []
    for q in qs:
        scores, ids = search_ivf(index, q, 10, emb=emb)
        assert np.all(np.diff(scores) <= 0) and len(ids) == 10
        np.testing.assert_allclose(scores, emb[ids].astype(np.float32) @ q, rtol=1e-5, atol=1e-6)  # exact scores
        recalls.append(len(set(ids.tolist()) & set(_exact_top(emb, q, 10).tolist())) / 10)
    recall = float(np.mean(recalls))
    print(f"IVF recall@10 (nprobe {ivf_mod.DEFAULT_NPROBE} of {index.n_lists} lists) = {recall:.3f}")
    assert recall >= 0.95
    _, approx_ids = search_ivf(index, qs[0], 10)  # without embeddings: int8 scores, still mostly right
    assert len(set(approx_ids.tolist()) & set(_exact_top(emb, qs[0], 10).tolist())) >= 7


def test_layout_every_row_once(clustered):
    emb, _ = clustered
    index = build_ivf(emb[:5000], n_lists=40)
    assert index.n_indexed == 5000 and index.centroids.shape == (40, emb.shape[1])
    np.testing.assert_allclose(np.linalg.norm(index.centroids, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(np.sort(index.ids), np.arange(5000))
    assert index.offsets[0] == 0 and index.offsets[-1] == 5000 and np.all(np.diff(index.offsets) >= 0)
    labels = np.repeat(np.arange(40), np.diff(index.offsets))
    nearest = (emb[:5000].astype(np.float32) @ index.centroids.T).argmax(axis=1)
    assert np.mean(nearest[index.ids] == labels) > 0.999  # every row sits in its nearest list
    approx = index.vectors.astype(np.float32) * index.scale
    np.testing.assert_allclose(approx, emb[index.ids].astype(np.float32), atol=float(index.scale.max()))


def test_save_load_roundtrip_and_corruption(tmp_path, clustered):
    emb, qs = clustered
    index = build_ivf(emb[:3000], n_lists=30, meta={"store_id": "x" * 16})
    save_ivf(tmp_path / "ivf", index)
    save_ivf(tmp_path / "ivf", index)  # replacing an existing index
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ivf"]
    back = load_ivf(tmp_path / "ivf")
    for name in ("centroids", "offsets", "ids", "vectors", "scale"):
        a, b = getattr(index, name), getattr(back, name)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert isinstance(back.vectors, np.memmap) and isinstance(back.ids, np.memmap)
    assert back.n_indexed == 3000 and back.meta["store_id"] == "x" * 16 and back.meta["n_lists"] == 30
    for a, b in zip(search_ivf(index, qs[1], 5, emb=emb), search_ivf(back, qs[1], 5, emb=emb), strict=True):
        np.testing.assert_array_equal(a, b)
    np.save(tmp_path / "ivf" / "ids.npy", np.arange(10))
    with pytest.raises(CorruptData):
        load_ivf(tmp_path / "ivf")
    (tmp_path / "ivf" / "meta.json").unlink()
    with pytest.raises(CorruptData):
        load_ivf(tmp_path / "ivf")


def test_tail_rows_are_scanned(clustered):
    emb, _ = clustered
    index = build_ivf(emb[:18_000])
    for row in (18_000, 19_321, 19_999):
        scores, ids = search_ivf(index, emb[row].astype(np.float32), 3, nprobe=1, emb=emb)
        assert ids[0] == row and scores[0] == pytest.approx(1.0, abs=2e-3)
    _, ids = search_ivf(index, emb[5].astype(np.float32), 1, emb=emb[:18_000])
    assert ids[0] == 5


@pytest.mark.parametrize("n", [0, 1, 5, 40])
def test_tiny_stores(n):
    rng = np.random.default_rng(n)
    emb = _unit(rng.standard_normal((n, 16))).astype(np.float16) if n else np.zeros((0, 16), np.float16)
    index = build_ivf(emb)
    assert index.n_lists == min(n, 16) and index.n_indexed == n
    np.testing.assert_array_equal(np.sort(index.ids), np.arange(n))
    q = emb[n // 2].astype(np.float32) if n else np.ones(16, np.float32) / 4
    scores, ids = search_ivf(index, q, 10, nprobe=100, emb=emb)
    assert len(ids) == min(n, 10)
    if n:
        assert ids[0] == n // 2
    assert len(train_centroids(np.zeros((3, 4), np.float32), 8)) == 3  # degenerate sample, no crash


def test_deterministic_with_seed(clustered):
    emb, _ = clustered
    a, b, c = build_ivf(emb[:4000], seed=3), build_ivf(emb[:4000], seed=3), build_ivf(emb[:4000], seed=4)
    for name in ("centroids", "offsets", "ids", "vectors", "scale"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.centroids, c.centroids)


def test_search_stores_uses_ivf(clustered, tmp_path):
    emb, qs = clustered
    manifest = {"store_id": "c" * 16, "raster": {"crs_wkt": "", "path": ""}, "model": {}}
    st = Store(tmp_path, manifest, emb, np.zeros((len(emb), 4), np.int64), None, ivf=build_ivf(emb))
    for row in range(0, len(emb), 997):
        q = emb[row].astype(np.float32)
        hit = search_stores([st], q, 1, prefilter=True)[0]
        assert hit.tile_id == search_stores([st], q, 1, prefilter=False)[0].tile_id == row
    q = qs[3]
    exact = [h.tile_id for h in search_stores([st], q, 10, prefilter=False)]
    approx = search_stores([st], q, 10, prefilter=True, nprobe=200)  # every list probed: exact
    assert [h.tile_id for h in approx] == exact
    assert len(search_stores([st], q, 10, threshold=2.0, prefilter=True)) == 0
    bare = Store(tmp_path, manifest, emb, np.zeros((len(emb), 4), np.int64), None)  # no IVF, no codes: exact
    assert [h.tile_id for h in search_stores([bare], q, 10, prefilter=True)] == exact


def test_index_builds_and_store_opens_ivf(tmp_path, encoder, cache, monkeypatch):
    p = write_raster(tmp_path / "r.tif", rgb_pattern(150, 200))
    small = index_raster(p, encoder, IndexParams(tile=32), cache)
    assert not small.ivf and open_store(small.store_id, cache).ivf is None
    monkeypatch.setattr(ivf_mod, "LARGE_STORE_MIN_TILES", 20)
    again = index_raster(p, encoder, IndexParams(tile=32), cache)  # reused store: the index is built now
    assert again.reused and again.ivf
    d = cache / small.store_id
    meta = json.loads((d / "ivf" / "meta.json").read_text())
    assert meta["store_id"] == small.store_id and meta["n_indexed"] == small.n_tiles > 20
    st = open_store(small.store_id, cache)
    assert st.ivf is not None and st.ivf.n_indexed == small.n_tiles
    q = st.embeddings[7].astype(np.float32)
    assert search_stores([st], q, 1, prefilter=True, nprobe=1)[0].tile_id == 7
    assert ensure_ivf(d).meta["build_s"] == meta["build_s"]  # up to date: not rebuilt
    meta["store_id"] = "0" * 16  # an index of other embeddings is ignored
    (d / "ivf" / "meta.json").write_text(json.dumps(meta))
    assert open_store(small.store_id, cache).ivf is None
    (d / "ivf" / "vectors.npy").unlink()  # unreadable index: ignored, rebuilt by ensure_ivf
    assert open_store(small.store_id, cache).ivf is None
    assert ensure_ivf(d) is not None and open_store(small.store_id, cache).ivf is not None
    shutil.rmtree(d / "ivf")
    assert ensure_ivf(d, min_tiles=100) is None and ensure_ivf(d, min_tiles=100, force=True) is not None


def test_cli_stores_optimize(capsys, tmp_path, encoder, cache):
    from engine.cli import main

    p = write_raster(tmp_path / "r.tif", rgb_pattern(150, 200))
    sid = index_raster(p, encoder, IndexParams(tile=32), cache).store_id
    capsys.readouterr()
    assert main(["stores", "optimize", "--all"]) == 0
    assert "no IVF index (small store" in capsys.readouterr().out and not (cache / sid / "ivf").exists()
    assert main(["--json", "stores", "optimize", sid, "--force"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stores"][0]["store_id"] == sid and out["stores"][0]["ivf_lists"] == 16
    assert open_store(sid, cache).ivf is not None
    assert main(["stores", "optimize"]) == 2 and main(["stores", "optimize", "0" * 16]) == 2
    assert capsys.readouterr().err.count("error: ") == 2
