"""Benchmark 3 (bench/query.py and its helpers) at tiny sizes: stores with their exact top-k, every FAISS type built
in one pass, binary paths, the 1e8 replication of PQ lists, goals and tables from a real tiny run."""

from __future__ import annotations

import numpy as np
import pytest

from bench import query
from bench.common import Ctx
from bench.query_data import StoreParams, merge_top_k, open_bench_store, write_store
from bench.query_hash import BinaryPath, BinarySpec
from bench.query_scale import index_ram_bytes, replicated_index, time_pq_only, unpack_lists
from engine.faiss_index import IndexSpec, Rows, build_index, build_indexes


class _Codes:
    """The encoder surface the store writer needs (``image_codes``): sign random projections, 64 bits."""

    code_kind = "simhash64"

    def image_codes(self, x: np.ndarray) -> np.ndarray:
        from engine.encoder import simhash

        return simhash(x)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_merge_top_k_equals_a_full_sort():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((3, 1000)).astype(np.float32)
    s[:, 10] = s[:, 500]  # a tie: the lower row id first
    best_s, best_i = np.zeros((3, 0), np.float32), np.zeros((3, 0), np.int64)
    for a in range(0, 1000, 170):
        best_s, best_i = merge_top_k(best_s, best_i, s[:, a : a + 170], a, 7)
    want = np.lexsort((np.broadcast_to(np.arange(1000), s.shape), -s), axis=1)[:, :7]
    np.testing.assert_array_equal(best_i, want)


@pytest.mark.parametrize("pooled", [True, False])
def test_store_and_its_exact_top_k(tmp_path, pooled):
    rng = np.random.default_rng(1)
    pool = _unit(rng.standard_normal((20, 32))) if pooled else None
    q = _unit(rng.standard_normal((4, 32)))
    bs = write_store(tmp_path, StoreParams(2500, 32, pool, seed=3), _Codes(), q, 10)
    emb = np.load(tmp_path / "embeddings.npy")
    assert emb.dtype == np.float16 and emb.shape == (2500, 32)
    np.testing.assert_allclose(np.linalg.norm(emb.astype(np.float32), axis=1), 1, atol=2e-3)
    assert bs.files["codes.npy"] > 8 * 2500 and bs.files["signs.npy"] > 4 * 2500  # 8 B and D/8 B per row
    for i in range(4):  # the exact top 10 of the stored float16 rows, best first
        s = emb.astype(np.float32) @ q[i]
        assert set(bs.gt_ids[i]) == set(np.argsort(-s, kind="stable")[:10])
    if pooled:  # every row is a pool row + noise of norm 0.75: cosine ~0.8 to its source
        cos = emb.astype(np.float32) @ pool.T
        assert 0.7 < float(np.median(cos.max(1))) < 0.9


def test_shared_build_equals_separate_builds():
    rng = np.random.default_rng(2)
    x = _unit(rng.standard_normal((3000, 64))).astype(np.float16)  # PQ64x4fs: 64 sub-quantizers
    q = _unit(rng.standard_normal((5, 64)))
    specs = [IndexSpec(k, 40, 64, 4) for k in ("ivf_flat", "ivf_sq8", "ivf_pq", "ivf_pq8")]
    together = build_indexes(Rows([x]), specs)
    for spec, vi in zip(specs, together, strict=True):
        alone = build_index(Rows([x]), spec)
        assert vi.meta["build_s"] == pytest.approx(vi.meta["shared_s"] + vi.meta["own_s"], abs=2e-3)
        import faiss

        p = faiss.SearchParametersIVF()
        p.nprobe = 40
        a, b = vi.index.search(q, 20, params=p), alone.index.search(q, 20, params=p)
        np.testing.assert_array_equal(a[1], b[1])  # same seed, same centroids and codes: same answers


def test_binary_paths_and_pq_replication(tmp_path):
    rng = np.random.default_rng(4)
    centres = _unit(rng.standard_normal((30, 32)))
    q = _unit(centres[:3] + 0.1 * rng.standard_normal((3, 32)))
    write_store(tmp_path, StoreParams(5000, 32, centres, noise=0.3, seed=5), _Codes(), q, 10)
    rows = np.load(tmp_path / "embeddings.npy").astype(np.float32)
    for spec in (BinarySpec("signs.npy", "flat", candidates=5000), BinarySpec("codes.npy", "ivf", 5000, nprobe=100)):
        bp = BinaryPath(tmp_path, spec)
        qc = np.packbits(q > 0, axis=1) if spec.codes == "signs.npy" else _Codes().image_codes(q)
        got = bp.search(q[0], qc[0], 10)  # every row a candidate / every list probed: the exact top 10
        assert got == np.argsort(-(rows @ q[0]), kind="stable")[:10].tolist()
    vi = build_index(Rows([rows.astype(np.float16)]), IndexSpec("ivf_pq8", 50, 256, 16))  # PQ16x4fs: 8 B
    lc = unpack_lists(vi.index)
    assert lc.codes.shape == (5000, 8) and sorted(lc.ids.tolist()) == list(range(5000))
    same, big = replicated_index(vi.index, lc, 1), replicated_index(vi.index, lc, 4)
    import faiss

    p = faiss.SearchParametersIVF()
    p.nprobe = 50
    np.testing.assert_array_equal(same.search(q, 10, params=p)[1], vi.index.search(q, 10, params=p)[1])
    d, i = big.search(q[:1], 40, params=p)
    d0 = vi.index.search(q[:1], 10, params=p)[0][0]
    assert big.ntotal == 20_000 and len(set(i[0].tolist())) == 40
    np.testing.assert_allclose(d[0].reshape(10, 4), np.repeat(d0[:, None], 4, 1), rtol=1e-6)  # every code 4 times
    assert 8 + 8 <= index_ram_bytes(big) / big.ntotal < 8 + 8 + 4  # code + id (+ block padding, centroids)
    assert len(time_pq_only(big, q, 40, 8, 2, 0.0)) == 2


def test_tiny_run_goals_and_tables(tmp_path, monkeypatch):
    """The whole benchmark on two tiny sizes through the real bundle; then goals and every table from its JSON."""
    monkeypatch.setenv("RSITR_BENCH_QUERY_SIZES", "2000,4000")
    monkeypatch.setenv("RSITR_BENCH_QUERIES", "4")
    monkeypatch.setattr(query, "ROUNDS", 1)
    from engine import faiss_index
    from engine.config import default_model_dir

    monkeypatch.setattr(faiss_index, "FLAT_MAX_TILES", 3000)  # 4000 rows: the engine's IVF-SQ8 and its sweep
    monkeypatch.setitem(query.BINARY, "chnr_ivf", BinarySpec("codes.npy", "ivf", max_rows=3000))

    ctx = Ctx(model=default_model_dir(), quick=True, results_dir=tmp_path / "r", work=tmp_path)
    res = query.run(ctx)
    assert [(r["dist"], r["n"]) for r in res["rows"]] == [
        ("pooled", 2000),
        ("pooled", 4000),
        ("isotropic", 2000),
        ("isotropic", 4000),
    ]
    for r in res["rows"]:
        assert set(r["paths"]) == set(query.PATHS) and r["engine_kind"] == ("exact" if r["n"] < 3000 else "ivf_sq8")
        assert r["paths"]["exact"]["recall_mean"] >= 0.975  # the engine's exact scan = the reference (fp ties aside)
        for k in query.FAISS_KINDS:
            p = r["paths"][k]
            assert p["ms"]["n"] == 4 and p["faiss_ms"]["n"] == 4 and p["bytes_per_tile"] > 0
        assert ("skipped" in r["paths"]["chnr_ivf"]) is (r["n"] > 3000)
        sweep = [s["nprobe"] for s in r.get("nprobe_sweep", [])]
        assert sweep == ([] if r["n"] < 3000 else list(query.NPROBE_SWEEP))
    pooled = [r for r in res["rows"] if r["dist"] == "pooled"]
    assert all(r["paths"]["ivf_flat"]["recall_mean"] >= 0.7 for r in pooled)
    sc = pooled[-1]["scale"]
    assert sc["n"] == 4000 * query.SCALE_REPEAT and 40 <= sc["ram_bytes_per_tile"] < 64
    g = res["goals"]
    assert [x["met"] for x in g[:2]] == [None, None] and "not measured" in g[0]["value"]  # no 1e6 / 1e7 row
    assert g[2]["met"] is True and f"{sc['ram_bytes_per_tile']:.1f} B/tile" in g[2]["value"]
    lines = query.markdown(res)
    table = [line for line in lines if line.startswith("| pooled | 2,000 (")]
    assert len(table) == 1 and table[0].count("|") == len(query.PATHS) + 3
    assert any(line.startswith("**Hash codes vs IVF-PQ at equal bytes") for line in lines)
    assert any(line.startswith("Decision: ") for line in lines)
    assert any(line.startswith("**At 4e+04 tiles**") for line in lines)
    assert query.markdown({"rows": []}) == ["Results in an older layout: rerun `bench/run.py --only query`."]
    assert query.plot(res, tmp_path / "q.png") and (tmp_path / "q.png").stat().st_size > 0


def test_open_bench_store_is_an_engine_store(tmp_path):
    from engine.search import search_stores

    x = _unit(np.random.default_rng(6).standard_normal((300, 16)))
    write_store(tmp_path, StoreParams(300, 16, None), _Codes(), x[:2], 5)
    st = open_bench_store(tmp_path)
    emb = np.load(tmp_path / "embeddings.npy").astype(np.float32)
    hits = search_stores([st], emb[7], 3)
    assert hits[0].tile_id == 7 and st.codes.shape == (300, _Codes().image_codes(x[:1]).shape[1])


def test_size_distribution_and_query_settings(monkeypatch, tmp_path):
    ctx = Ctx(model=tmp_path, quick=False, results_dir=tmp_path, work=tmp_path)
    assert query.sizes_for(ctx) == (100_000, 1_000_000, 10_000_000) and query.n_queries_for(ctx) == 50
    assert query.dists_for() == ("pooled", "isotropic")
    monkeypatch.setenv("RSITR_BENCH_QUERY_SIZES", "100000,1000000")
    monkeypatch.setenv("RSITR_BENCH_QUERY_DISTS", "pooled")
    monkeypatch.setenv("RSITR_BENCH_QUERIES", "7")
    assert query.sizes_for(ctx) == (100_000, 1_000_000) and query.dists_for() == ("pooled",)
    assert query.n_queries_for(ctx) == 7
    monkeypatch.setenv("RSITR_BENCH_QUERY_DISTS", "gaussian")
    with pytest.raises(ValueError, match="pooled, isotropic"):
        query.dists_for()
