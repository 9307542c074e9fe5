"""3. Query latency vs store size (1e4 .. 1e6, 1e7 when memory allows): exact scan and the large-store paths.

Stores are synthetic but follow the engine's layout: a memory-mapped float16 ``[n, D]`` ``embeddings.npy``
(L2-normalised) and packed ``codes.npy`` made by the engine's own ``Encoder.image_codes`` (the bundle's hash
head, else sign random projections). Two embedding distributions. Pooled (main rows): a pool of real image
embeddings (rsicd_aid150 images through the bundle); each store row is a pool row plus Gaussian noise of norm
0.75, re-normalised (cosine ~0.8 to its source); queries are text embeddings of our scene prompts
(resources/prompts) through the bundle, so the query/tile geometry is the real cross-modal one. Isotropic:
uniformly random unit vectors with the same queries, the worst case for hash prefiltering and IVF lists.

Timed: ``engine.search.search_stores`` (as implemented at the time of the run) for one store with a ready
query vector (text encoding is benchmark 5), ``prefilter=False`` (exact), ``prefilter=True`` on the store with
its IVF index (``engine.ivf``: the engine's large-store path; built per store with ``engine.ivf.build_ivf`` at
the engine's default list count, probing the default ``nprobe`` lists; build time and on-disk bytes recorded)
and ``prefilter=True`` on the same store without IVF (Hamming prefilter + exact re-rank of the engine's default
candidate count, the fallback for stores without an index). recall@10 of both fast paths is against the exact
top 10 of the same query. An IVF build whose estimate (scaled from the previous size's build) exceeds
``IVF_BUILD_BUDGET_S`` is skipped with its reason.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from bench.common import Ctx, fmt, mem_available_bytes, recall_at_k, summarise

NAME = "query"
TITLE = "Query latency vs store size (exact, IVF and Hamming-prefilter paths)"
SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
QUICK_SIZES = (10_000, 100_000)
K = 10
NOISE = 0.75
GOAL_MS = 10.0
GOAL_RECALL = 0.95
CHUNK = 500_000
BUDGET_S = 20.0  # per (distribution, size): stop timing after this once >= 5 queries (1e7: 3) are done
BUDGET_QUICK_S = 3.0
IVF_BUILD_BUDGET_S = 120.0  # skip an IVF build estimated longer than this (the whole suite has ~20 min)
MODES = ("exact", "prefilter", "ivf")


def queries(enc, n: int) -> tuple[np.ndarray, list[str]]:
    from engine.config import PROMPTS_DIR

    data = json.loads((PROMPTS_DIR / "scene_classes.json").read_text(encoding="utf-8"))
    texts = [t for c in data["classes"] for t in data["prompts"][c]]
    step = max(1, len(texts) // n)
    texts = texts[::step][:n]
    return enc.embed_texts(texts), texts


def image_pool_embeddings(enc, n: int) -> tuple[np.ndarray, str]:
    from bench.mosaic import image_pool
    from engine.preprocess import prepare

    pool, src = image_pool(n, cell=150)
    m = enc.meta
    out = [
        enc.embed_images(prepare(list(pool[i : i + 32]), m.image_size, m.mean, m.std, m.interpolation))
        for i in range(0, len(pool), 32)
    ]
    return np.concatenate(out), src


def build_store(folder: Path, n: int, dim: int, enc, pool: np.ndarray | None, seed: int) -> dict:
    """Write embeddings.npy (float16) and codes.npy under ``folder`` in chunks; returns paths and timings."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    emb = np.lib.format.open_memmap(folder / "embeddings.npy", mode="w+", dtype=np.float16, shape=(n, dim))
    codes = None
    for s in range(0, n, CHUNK):
        m = min(CHUNK, n - s)
        g = rng.standard_normal((m, dim), dtype=np.float32)
        if pool is not None:
            g *= NOISE / np.linalg.norm(g, axis=1, keepdims=True)
            g += pool[(np.arange(s, s + m) * 7919) % len(pool)]
        g /= np.linalg.norm(g, axis=1, keepdims=True)
        emb[s : s + m] = g.astype(np.float16)
        c = enc.image_codes(emb[s : s + m].astype(np.float32))
        if codes is None:
            codes = np.lib.format.open_memmap(folder / "codes.npy", mode="w+", dtype=np.uint8, shape=(n, c.shape[1]))
        codes[s : s + m] = c
    emb.flush()
    codes.flush()
    del emb, codes
    return {
        "build_s": time.perf_counter() - t0,
        "emb_bytes": (folder / "embeddings.npy").stat().st_size,
        "codes_bytes": (folder / "codes.npy").stat().st_size,
    }


def open_bench_store(folder: Path, ivf: bool = False):
    """The synthetic store as an engine ``Store``; ``ivf=True`` with its ``ivf/`` index (memory-mapped)."""
    from engine.ivf import load_ivf
    from engine.store import Store

    emb = np.load(folder / "embeddings.npy", mmap_mode="r")
    codes = np.load(folder / "codes.npy", mmap_mode="r")
    manifest = {"store_id": "b" * 16, "raster": {"crs_wkt": "", "path": ""}, "model": {}}
    index = load_ivf(folder / "ivf") if ivf else None
    return Store(
        path=folder, manifest=manifest, embeddings=emb, windows=np.zeros((0, 4), np.int64), codes=codes, ivf=index
    )


def ivf_cost(n: int, n_lists: int) -> float:
    """Relative IVF build cost: assignment (n x lists) plus k-means training (64 x lists samples, 10 rounds)."""
    from engine.ivf import SAMPLE_PER_LIST

    return float(n) * n_lists + 10.0 * SAMPLE_PER_LIST * n_lists * n_lists


def estimate_ivf_s(prev: tuple[int, int, float] | None, n: int, n_lists: int) -> float | None:
    """Build seconds for ``n`` rows / ``n_lists`` lists scaled from a measured ``(n, lists, seconds)``."""
    if prev is None or prev[2] <= 0:
        return None
    return prev[2] * ivf_cost(n, n_lists) / ivf_cost(prev[0], prev[1])


def build_ivf_files(folder: Path) -> dict:
    """Build and save ``folder/ivf`` with the engine's defaults; seconds, lists and on-disk bytes."""
    from engine.ivf import build_ivf, ivf_bytes, save_ivf

    t0 = time.perf_counter()
    index = build_ivf(np.load(folder / "embeddings.npy", mmap_mode="r"))
    save_ivf(folder / "ivf", index)
    return {"s": time.perf_counter() - t0, "lists": index.n_lists, "bytes": ivf_bytes(folder / "ivf")}


def time_queries(
    stores: dict, q: np.ndarray, qcodes: np.ndarray, rounds: int, budget_s: float, min_queries: int
) -> dict:
    """Latency (ms) samples per mode, and recall@10 of the fast modes vs exact.

    ``stores``: mode -> store (``exact``; ``prefilter``: a store without IVF; ``ivf``: one with, optional). Up to
    ``rounds`` passes over the queries, stopping once ``budget_s`` is spent and at least ``min_queries`` were
    timed (bounded: an exact scan of 1e7 float16 rows takes seconds on 2 cores)."""
    from engine.search import search_stores

    modes = [m for m in MODES if m in stores]

    def search(mode: str, i: int):
        return search_stores([stores[mode]], q[i], K, qcode=qcodes[i], prefilter=mode != "exact")

    out = {m: [] for m in modes}
    recalls = {m: [] for m in modes if m != "exact"}
    exact_ids, first = [], {}
    for mode in modes:  # first query on a freshly opened store: page cache, lazy caches
        t0 = time.perf_counter()
        search(mode, 0)
        first[mode] = (time.perf_counter() - t0) * 1000
    deadline = time.perf_counter() + budget_s
    done = 0
    for r in range(rounds):
        for i in range(len(q)):
            if done >= min_queries and time.perf_counter() > deadline:
                break
            res = {}
            for mode in modes:
                t0 = time.perf_counter()
                hits = search(mode, i)
                out[mode].append((time.perf_counter() - t0) * 1000)
                res[mode] = [h.tile_id for h in hits]
            if r == 0:
                for mode in recalls:
                    recalls[mode].append(recall_at_k(res[mode], res["exact"], K))
                exact_ids.append(res["exact"])
            done += 1
        else:
            continue
        break
    return {"ms": out, "recalls": recalls, "exact_ids": exact_ids, "first_ms": first}


def simhash_recall(folder: Path, q: np.ndarray, exact_ids: list[list[int]]) -> float:
    """Reference: recall@10 of the same prefilter path with the engine's sign-random-projection codes."""
    from engine.encoder import simhash
    from engine.search import search_stores

    emb = np.load(folder / "embeddings.npy", mmap_mode="r")
    codes = np.concatenate([simhash(np.asarray(emb[s : s + CHUNK], np.float32)) for s in range(0, len(emb), CHUNK)])
    st = open_bench_store(folder)
    st.codes = codes
    qc = simhash(q[: len(exact_ids)])
    rec = [
        recall_at_k([h.tile_id for h in search_stores([st], q[i], K, qcode=qc[i], prefilter=True)], ex, K)
        for i, ex in enumerate(exact_ids)
    ]
    return float(np.mean(rec))


def run(ctx: Ctx) -> dict:
    from engine.bundle import load_bundle
    from engine.encoder import Encoder
    from engine.ivf import DEFAULT_NPROBE, LARGE_STORE_MIN_TILES, default_n_lists

    enc = Encoder(load_bundle(ctx.model))
    dim = enc.meta.embed_dim
    n_q = 20 if ctx.quick else 50
    q, texts = queries(enc, n_q)
    n_q = len(q)
    qcodes = enc.text_codes(q)
    pool, pool_src = image_pool_embeddings(enc, 64 if ctx.quick else 512)
    if pool_src == "synthetic":
        pool_src = "synthetic textures (shared images absent)"
    sizes = QUICK_SIZES if ctx.quick else SIZES
    rows, skipped = [], []
    for dist in ("pooled", "isotropic"):
        prev_ivf = None  # (n, lists, seconds) of the last IVF build of this distribution
        for n in sizes:
            need = n * (dim * 2 + qcodes.shape[1])
            if n > 1_000_000 and dist == "isotropic":
                continue  # worst-case series stops at 1e6 (time budget)
            free_disk = shutil.disk_usage(ctx.work).free
            if need > 0.4 * mem_available_bytes() or need * 2 > free_disk:
                skipped.append(
                    {
                        "n": n,
                        "dist": dist,
                        "reason": f"needs {need / 1e9:.1f} GB; available memory "
                        f"{mem_available_bytes() / 1e9:.1f} GB, disk {free_disk / 1e9:.0f} GB",
                    }
                )
                continue
            folder = ctx.work / f"store-{dist}-{n}"
            info = build_store(folder, n, dim, enc, pool if dist == "pooled" else None, seed=n % 1000 + 1)
            lists = default_n_lists(n)
            est = estimate_ivf_s(prev_ivf, n, lists)
            ivf_need = n * (dim + 3 * 8)  # int8 vectors + ids, labels and positions while building
            ivf, ivf_skip = None, None
            if est is not None and est > IVF_BUILD_BUDGET_S:
                ivf_skip = (
                    f"IVF build skipped: estimated {est:.0f} s ({lists} lists) > {IVF_BUILD_BUDGET_S:.0f} s budget"
                )
            elif ivf_need + need > 0.6 * mem_available_bytes():
                ivf_skip = f"IVF build skipped: needs {ivf_need / 1e9:.1f} GB more memory"
            else:
                ivf = build_ivf_files(folder)
                prev_ivf = (n, ivf["lists"], ivf["s"])
            stores = {"exact": open_bench_store(folder), "prefilter": open_bench_store(folder)}
            if ivf is not None:
                stores["ivf"] = open_bench_store(folder, ivf=True)
            big = n >= 10_000_000
            rounds = 1 if ctx.quick else 3
            t = time_queries(stores, q, qcodes, rounds, BUDGET_QUICK_S if ctx.quick else BUDGET_S, 3 if big else 5)
            rec_pf, rec_ivf = t["recalls"]["prefilter"], t["recalls"].get("ivf")
            row = {
                "dist": dist,
                "n": n,
                "queries": len(t["ms"]["exact"]),
                "recall_queries": len(rec_pf),
                "exact": summarise(t["ms"]["exact"]),
                "prefilter": summarise(t["ms"]["prefilter"]),
                "ivf": summarise(t["ms"]["ivf"]) if ivf else None,
                "recall_at_10_mean": float(np.mean(rec_pf)),
                "recall_at_10_min": float(np.min(rec_pf)),
                "ivf_recall_at_10_mean": float(np.mean(rec_ivf)) if rec_ivf else None,
                "ivf_recall_at_10_min": float(np.min(rec_ivf)) if rec_ivf else None,
                "ivf_lists": ivf["lists"] if ivf else lists,
                "ivf_nprobe": DEFAULT_NPROBE,
                "ivf_build_s": ivf["s"] if ivf else None,
                "ivf_build_estimate_s": est,
                "ivf_skipped": ivf_skip,
                "engine_default_path": "ivf" if n >= LARGE_STORE_MIN_TILES else "exact",
                "bytes_per_tile_embeddings": info["emb_bytes"] / n,
                "bytes_per_tile_codes": info["codes_bytes"] / n,
                "bytes_per_tile_ivf": ivf["bytes"] / n if ivf else None,
                "build_s": info["build_s"],
                "first_exact_ms": t["first_ms"]["exact"],
                "first_prefilter_ms": t["first_ms"]["prefilter"],
                "first_ivf_ms": t["first_ms"].get("ivf"),
                "simhash_recall_at_10": None,
            }
            if enc.code_kind == "bundle" and n <= 1_000_000:
                row["simhash_recall_at_10"] = simhash_recall(folder, q, t["exact_ids"])
            rows.append(row)
            ivf_txt = (
                f"ivf p50 {row['ivf']['p50']:.2f} ms, recall@10 {row['ivf_recall_at_10_mean']:.3f} "
                f"(build {ivf['s']:.1f} s, {ivf['lists']} lists)"
                if ivf
                else ivf_skip
            )
            ctx.log(
                f"query: {dist} n={n:,}: exact p50 {row['exact']['p50']:.2f} ms; {ivf_txt}; prefilter p50 "
                f"{row['prefilter']['p50']:.2f} ms, recall@10 {row['recall_at_10_mean']:.3f}"
            )
            del stores
            shutil.rmtree(folder, ignore_errors=True)
    return {
        "rows": rows,
        "skipped": skipped,
        "k": K,
        "dim": dim,
        "code_bytes": int(qcodes.shape[1]),
        "code_kind": enc.code_kind,
        "pool": pool_src,
        "noise_norm": NOISE,
        "n_queries": n_q,
        "query_texts": "resources/prompts/scene_classes.json prompts",
        "prefilter_min_tiles": LARGE_STORE_MIN_TILES,
        "ivf_nprobe": DEFAULT_NPROBE,
        "ivf_build_budget_s": IVF_BUILD_BUDGET_S,
        "budget_s": BUDGET_QUICK_S if ctx.quick else BUDGET_S,
        "goals": _goals(rows),
    }


def _goals(rows: list[dict]) -> list[dict]:
    r = next((x for x in rows if x["dist"] == "pooled" and x["n"] == 1_000_000), None)
    if r is None:
        return [
            {
                "goal": f"p50 < {GOAL_MS:g} ms at 1e6 tiles with recall@10 >= {GOAL_RECALL}",
                "value": "1e6 not measured (quick run)",
                "met": None,
            }
        ]
    ok = {
        "exact": r["exact"]["p50"] < GOAL_MS,
        "ivf": r.get("ivf") is not None and r["ivf"]["p50"] < GOAL_MS and r["ivf_recall_at_10_mean"] >= GOAL_RECALL,
        "prefilter": r["prefilter"]["p50"] < GOAL_MS and r["recall_at_10_mean"] >= GOAL_RECALL,
    }
    ivf = (
        f"IVF p50 {r['ivf']['p50']:.1f} ms, recall@10 {r['ivf_recall_at_10_mean']:.3f}; "
        if r.get("ivf")
        else f"IVF not measured ({r.get('ivf_skipped') or 'not built'}); "
    )
    return [
        {
            "goal": f"p50 < {GOAL_MS:g} ms at 1e6 tiles with recall@10 >= {GOAL_RECALL} (pooled embeddings)",
            "value": f"{ivf}exact p50 {r['exact']['p50']:.1f} ms (recall 1.0); prefilter p50 "
            f"{r['prefilter']['p50']:.1f} ms, recall@10 {r['recall_at_10_mean']:.3f}",
            "met": any(ok.values()),
            "path": next((m for m in ("ivf", "exact", "prefilter") if ok[m]), None),
        }
    ]


def _p(s: dict | None) -> str:
    return f"{s['p50']:.2f} / {s['p95']:.2f}" if s else "n/a"


def markdown(res: dict) -> list[str]:
    lines = [
        "| embeddings | tiles | exact p50 / p95 (ms) | IVF p50 / p95 (ms) | IVF recall@10 (mean / min) | "
        "IVF build s (lists) | prefilter p50 / p95 (ms) | prefilter recall@10 (mean / min) | simhash recall@10 | "
        "first query exact / IVF / prefilter (ms) | engine default path | bytes/tile (emb + codes + IVF) | "
        "timed queries (recall over) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["rows"]:
        ivf = r.get("ivf")
        ivf_rec = f"{r['ivf_recall_at_10_mean']:.3f} / {r['ivf_recall_at_10_min']:.2f}" if ivf else "n/a"
        ivf_build = f"{r['ivf_build_s']:.1f} ({r['ivf_lists']})" if ivf else (r.get("ivf_skipped") or "n/a")
        ivf_bytes = f" + {r['bytes_per_tile_ivf']:.0f}" if r.get("bytes_per_tile_ivf") else ""
        lines.append(
            f"| {r['dist']} | {r['n']:,} | {_p(r['exact'])} | {_p(ivf)} | {ivf_rec} | {ivf_build} | "
            f"{_p(r['prefilter'])} | {r['recall_at_10_mean']:.3f} / {r['recall_at_10_min']:.2f} | "
            f"{fmt(r.get('simhash_recall_at_10'), 3)} | {fmt(r.get('first_exact_ms'), 0)} / "
            f"{fmt(r.get('first_ivf_ms'), 0)} / {fmt(r.get('first_prefilter_ms'), 0)} | {r['engine_default_path']} | "
            f"{r['bytes_per_tile_embeddings']:.0f} + {r['bytes_per_tile_codes']:.0f}{ivf_bytes} | "
            f"{r['queries']} ({r['recall_queries']} distinct) |"
        )
    for s in res.get("skipped", []):
        lines.append(f"| {s['dist']} | {s['n']:,} | skipped: {s['reason']} | | | | | | | | | | |")
    lines += [
        "",
        f"D = {res['dim']}, codes: {res['code_kind']} ({res['code_bytes']} bytes/tile), k = {res['k']}; "
        f"the engine takes the large-store path from {res['prefilter_min_tiles']:,} tiles: its IVF index "
        f"(built when such a store is indexed; about sqrt(n) lists, probing {res.get('ivf_nprobe', '?')} of them, "
        "int8 list vectors, exact re-rank), or the Hamming prefilter for a store without one. Pooled rows: pool of "
        f"{res['pool']} embeddings + noise of norm {res['noise_norm']}; queries: {res['n_queries']} "
        f"{res['query_texts']} through the bundle's text encoder. A 1e7 store is measured only when its "
        "files fit in 40 % of the available memory; an IVF build estimated over "
        f"{res.get('ivf_build_budget_s', '?')} s is skipped. Timing per row stops after "
        f"{res.get('budget_s', '?')} s once 5 queries (1e7: 3) are done; each timed query runs every path. "
        'On-disk bytes/tile of real stores (with tiles.gpkg): see the indexing table. "simhash recall" is a '
        "reference only: the same prefilter path with the engine's sign-random-projection codes (its fallback "
        'when a bundle has no hash heads), measured up to 1e6 when the bundle has its own heads. "First '
        'query" is the first search on a freshly opened store (page cache, lazy in-memory copies).',
    ]
    return lines


def plot(res: dict, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3), dpi=90)
    for dist, style in (("pooled", "-"), ("isotropic", ":")):
        rows = [r for r in res["rows"] if r["dist"] == dist]
        if not rows:
            continue
        n = [r["n"] for r in rows]
        ax.plot(n, [r["exact"]["p50"] for r in rows], "o" + style, color="#555", label=f"exact p50 ({dist})")
        ax.plot(n, [r["prefilter"]["p50"] for r in rows], "s" + style, color="#3b7dd8", label=f"prefilter p50 ({dist})")
        iv = [r for r in rows if r.get("ivf")]
        if iv:
            ax.plot(
                [r["n"] for r in iv],
                [r["ivf"]["p50"] for r in iv],
                "^" + style,
                color="#2a9d5b",
                label=f"IVF p50 ({dist})",
            )
    ax.axhline(GOAL_MS, color="#c44", lw=0.8, ls="--", label=f"goal {GOAL_MS:g} ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tiles in store")
    ax.set_ylabel("latency (ms)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
