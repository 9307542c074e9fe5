"""Benchmark 3 (bench/query.py) helpers: IVF build estimate, goal verdict and table rendering, on a tiny store."""

from __future__ import annotations

import numpy as np
import pytest

from bench.query import _goals, build_ivf_files, estimate_ivf_s, markdown, open_bench_store, time_queries


def _summary(p50: float) -> dict:
    return {"n": 5, "p50": p50, "p95": 2 * p50, "p99": 2 * p50, "min": p50, "max": 2 * p50, "mean": p50}


def _row(n: int, ivf: bool) -> dict:
    return {
        "dist": "pooled",
        "n": n,
        "queries": 5,
        "recall_queries": 5,
        "exact": _summary(1200.0),
        "prefilter": _summary(28.0),
        "ivf": _summary(2.0) if ivf else None,
        "recall_at_10_mean": 0.5,
        "recall_at_10_min": 0.1,
        "ivf_recall_at_10_mean": 0.99 if ivf else None,
        "ivf_recall_at_10_min": 0.9 if ivf else None,
        "ivf_lists": 1000,
        "ivf_build_s": 15.0 if ivf else None,
        "ivf_skipped": None if ivf else "IVF build skipped: estimated 223 s (2048 lists) > 120 s budget",
        "engine_default_path": "ivf",
        "bytes_per_tile_embeddings": 512.0,
        "bytes_per_tile_codes": 8.0,
        "bytes_per_tile_ivf": 265.0 if ivf else None,
        "first_exact_ms": 1300.0,
        "first_prefilter_ms": 40.0,
        "first_ivf_ms": 5.0 if ivf else None,
        "simhash_recall_at_10": None,
    }


def test_estimate_ivf_s():
    assert estimate_ivf_s(None, 10**6, 1000) is None
    assert estimate_ivf_s((10**6, 1000, 15.0), 10**6, 1000) == pytest.approx(15.0)
    est = estimate_ivf_s((10**6, 1000, 15.0), 10**7, 2048)
    assert 150 < est < 300  # assignment dominates: ~10 x rows, ~2 x lists


def test_goal_and_table_with_and_without_ivf():
    rows = [_row(10**6, True), _row(10**7, False)]
    g = _goals(rows)[0]
    assert g["met"] is True and g["path"] == "ivf" and "IVF p50 2.0 ms, recall@10 0.990" in g["value"]
    res = {"rows": rows, "skipped": [], "k": 10, "dim": 256, "code_bytes": 8, "code_kind": "bundle", "pool": "p"}
    res.update(noise_norm=0.75, n_queries=50, query_texts="q", prefilter_min_tiles=200_000, ivf_nprobe=24)
    lines = markdown(res)
    assert lines[2].startswith("| pooled | 1,000,000 | 1200.00 / 2400.00 | 2.00 / 4.00 | 0.990 / 0.90 | 15.0 (1000) |")
    assert "512 + 8 + 265" in lines[2] and "estimated 223 s" in lines[3] and "| n/a |" in lines[3]
    assert all(line.count("|") == lines[0].count("|") for line in lines[:4])
    rows[0]["ivf_recall_at_10_mean"] = 0.9  # below the recall goal: prefilter and exact miss too
    assert _goals(rows)[0]["met"] is False


def test_time_queries_on_a_tiny_store(tmp_path):
    from engine.encoder import simhash

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.save(tmp_path / "embeddings.npy", x.astype(np.float16))
    np.save(tmp_path / "codes.npy", simhash(x))
    ivf = build_ivf_files(tmp_path)
    assert ivf["lists"] == 55 and 40 < ivf["bytes"] / 3000 < 50  # int8 vectors (32) + ids (8) + centroids
    stores = {"exact": open_bench_store(tmp_path), "prefilter": open_bench_store(tmp_path)}
    stores["ivf"] = open_bench_store(tmp_path, ivf=True)
    q = x[:4] + 0.1
    t = time_queries(stores, q, simhash(q), rounds=1, budget_s=1.0, min_queries=2)
    assert len(t["ms"]["ivf"]) == len(t["ms"]["exact"]) >= 2 and len(t["recalls"]["ivf"]) >= 2
    assert set(t["first_ms"]) == {"exact", "prefilter", "ivf"}
