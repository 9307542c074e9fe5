"""3. Query latency vs collection size (1e5, 1e6; 1e7 when memory and time allow): exact, the FAISS index types
and the CHNR binary hash codes, side by side in one run.

Stores are synthetic but follow the engine's layout: a memory-mapped float16 ``[n, D]`` ``embeddings.npy``
(L2-normalised) and packed ``codes.npy`` made by the engine's own ``Encoder.image_codes`` (the bundle's CHNR hash
head, else sign random projections). Two embedding distributions. Pooled (main rows): a pool of real image
embeddings (rsicd_aid150 images through the bundle); each store row is a pool row plus Gaussian noise of norm
0.75, re-normalised (cosine ~0.8 to its source); queries are text embeddings of our scene prompts
(resources/prompts) through the bundle, so the query/tile geometry is the real cross-modal one. Isotropic:
uniformly random unit vectors with the same queries, the worst case for IVF lists and hash codes.

Timed: the engine's own search call ``engine.search.search_stores`` on one store with a ready query vector (text
encoding is benchmark 5): ``exact=True`` (reference, flat scan), then the store opened with each FAISS index type
(``engine.faiss_index.build_index``: IVF-Flat, IVF-SQ8, IVF-PQ64x4fs at 32 B/row = the engine's type from
``PQ_MIN_TILES``, IVF-PQ16x4fs at 8 B/row) probing the default ``nprobe`` lists with the engine's exact float16
re-rank; the engine's default type for the size is marked. CHNR binary: the old Hamming prefilter path on the
bundle's 64-bit codes through FAISS (``IndexBinaryFlat``, the 2,000 nearest codes re-ranked exactly), at the
same 8 B/row as IVF-PQ16x4fs. recall@10 of every path is against the exact top 10 of the same query. An index
build whose estimate (scaled linearly from the previous size) exceeds ``BUILD_BUDGET_S`` is skipped with its reason.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from bench.common import Ctx, mem_available_bytes, recall_at_k, summarise

NAME = "query"
TITLE = "Query latency vs collection size (exact, FAISS index types, CHNR binary codes)"
SIZES = (100_000, 1_000_000, 10_000_000)
QUICK_SIZES = (10_000, 30_000)
K = 10
NOISE = 0.75
GOALS = {1_000_000: 1.0, 10_000_000: 10.0}  # p50 ms at recall@10 >= GOAL_RECALL (issue 18)
GOAL_RECALL = 0.95
GOAL_BYTES_1E8 = 64.0
CHUNK = 100_000  # rows generated (and hashed by the bundle) at a time: bounded memory next to a training job
BUDGET_S = 15.0  # per (distribution, size): stop timing after this once >= 5 queries (1e7: 3) are done
BUDGET_QUICK_S = 2.0
BUILD_BUDGET_S = float(os.environ.get("RSITR_BENCH_BUILD_BUDGET_S", "240"))  # skip builds estimated longer
FAISS_KINDS = ("ivf_flat", "ivf_sq8", "ivf_pq", "ivf_pq8")
RAM_PER_ROW = {
    "ivf_flat": lambda d: 4 * d + 8,
    "ivf_sq8": lambda d: d + 8,
    "ivf_pq": lambda d: 40,
    "ivf_pq8": lambda d: 16,
}
CHNR_CANDIDATES = 2000
LABELS = {
    "exact": "exact (flat)",
    "ivf_flat": "IVF-Flat",
    "ivf_sq8": "IVF-SQ8",
    "ivf_pq": "IVF-PQ64x4fs (32 B)",
    "ivf_pq8": "IVF-PQ16x4fs (8 B)",
    "chnr": "CHNR binary (8 B) + re-rank",
}


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


def open_bench_store(folder: Path, index=None):
    """The synthetic store as an engine ``Store`` (optionally with a FAISS ``VectorIndex``)."""
    from engine.store import Store

    emb = np.load(folder / "embeddings.npy", mmap_mode="r")
    codes = np.load(folder / "codes.npy", mmap_mode="r")
    manifest = {"store_id": "b" * 16, "raster": {"crs_wkt": "", "path": ""}, "model": {}}
    return Store(
        path=folder, manifest=manifest, embeddings=emb, windows=np.zeros((0, 4), np.int64), codes=codes, index=index
    )


def build_kind(folder: Path, kind: str) -> tuple[object, dict]:
    """Build, save and reopen (memory-mapped, as the engine does) one FAISS index type over the store's rows."""
    from engine.faiss_index import (
        PQ_RERANK_MIN,
        IndexSpec,
        Rows,
        build_index,
        choose_spec,
        index_bytes,
        load_index,
        save_index,
    )

    emb = np.load(folder / "embeddings.npy", mmap_mode="r")
    base = choose_spec(len(emb), force_ivf=True)
    rerank = (PQ_RERANK_MIN, 64) if kind.startswith("ivf_pq") else (64, 4)  # the engine's re-rank depths
    t0 = time.perf_counter()
    vi = build_index(Rows([emb]), IndexSpec(kind, base.n_lists, *rerank), meta={"collection_id": "b" * 16})
    save_index(folder / kind, vi)
    secs = time.perf_counter() - t0
    del vi
    return load_index(folder / kind), {"s": secs, "lists": base.n_lists, "bytes": index_bytes(folder / kind)}


class ChnrPath:
    """The CHNR binary path: FAISS ``IndexBinaryFlat`` over the packed codes (Hamming), exact float16 re-rank."""

    def __init__(self, folder: Path) -> None:
        import faiss

        codes = np.load(folder / "codes.npy", mmap_mode="r")
        t0 = time.perf_counter()
        self.index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
        for s in range(0, len(codes), CHUNK):
            self.index.add(np.ascontiguousarray(codes[s : s + CHUNK]))
        self.build_s = time.perf_counter() - t0
        self.emb = np.load(folder / "embeddings.npy", mmap_mode="r")
        self.bytes_per_tile = codes.shape[1]

    def search(self, q: np.ndarray, qcode: np.ndarray, k: int) -> list[int]:
        _, cand = self.index.search(qcode[None], min(CHNR_CANDIDATES, self.index.ntotal))
        cand = np.sort(cand[0][cand[0] >= 0])
        s = np.asarray(self.emb[cand], np.float32) @ q
        return cand[np.argsort(-s, kind="stable")[:k]].tolist()


def time_queries(paths: dict, q: np.ndarray, qcodes: np.ndarray, rounds: int, budget_s: float, min_q: int) -> dict:
    """Latency (ms) samples per path, and recall@10 of every path vs ``exact``.

    ``paths``: name -> callable ``(i) -> ranked tile ids`` (``exact`` first). Up to ``rounds`` passes over the
    queries, stopping once ``budget_s`` is spent and at least ``min_q`` were timed."""
    names = list(paths)
    out = {m: [] for m in names}
    recalls = {m: [] for m in names if m != "exact"}
    first = {}
    for m in names:  # first query on a freshly opened store: page cache, lazy in-memory copies
        t0 = time.perf_counter()
        paths[m](0)
        first[m] = (time.perf_counter() - t0) * 1000
    deadline = time.perf_counter() + budget_s
    done = 0
    for r in range(rounds):
        for i in range(len(q)):
            if done >= min_q and time.perf_counter() > deadline:
                break
            res = {}
            for m in names:
                t0 = time.perf_counter()
                res[m] = paths[m](i)
                out[m].append((time.perf_counter() - t0) * 1000)
            if r == 0:
                for m in recalls:
                    recalls[m].append(recall_at_k(res[m], res["exact"], K))
            done += 1
        else:
            continue
        break
    return {"ms": out, "recalls": recalls, "first_ms": first}


def run(ctx: Ctx) -> dict:
    from engine.bundle import load_bundle
    from engine.encoder import Encoder
    from engine.faiss_index import DEFAULT_NPROBE, FLAT_MAX_TILES, PQ_MIN_TILES, choose_spec
    from engine.search import search_stores

    enc = Encoder(load_bundle(ctx.model))
    dim = enc.meta.embed_dim
    n_q = 20 if ctx.quick else 50
    q, _ = queries(enc, n_q)
    n_q = len(q)
    qcodes = enc.text_codes(q)
    pool, pool_src = image_pool_embeddings(enc, 64 if ctx.quick else 512)
    if pool_src == "synthetic":
        pool_src = "synthetic textures (shared images absent)"
    sizes = QUICK_SIZES if ctx.quick else SIZES
    if os.environ.get("RSITR_BENCH_QUERY_SIZES"):  # e.g. "100000,1000000" while the machine is shared
        sizes = tuple(int(v) for v in os.environ["RSITR_BENCH_QUERY_SIZES"].split(","))
    rows, skipped = [], []
    for dist in ("pooled", "isotropic"):
        prev: dict[str, tuple[int, float]] = {}  # kind -> (n, build seconds) of the last build
        for n in sizes:
            need = n * (dim * 2 + qcodes.shape[1])
            free_disk = shutil.disk_usage(ctx.work).free
            if n > 1_000_000 and dist == "isotropic":
                continue  # the worst-case series stops at 1e6 (time budget)
            if need > 0.4 * mem_available_bytes() or need * 2 > free_disk:
                why = f"needs {need / 1e9:.1f} GB; available memory {mem_available_bytes() / 1e9:.1f} GB"
                skipped.append({"n": n, "dist": dist, "reason": f"{why}, disk {free_disk / 1e9:.0f} GB"})
                continue
            folder = ctx.work / f"store-{dist}-{n}"
            info = build_store(folder, n, dim, enc, pool if dist == "pooled" else None, seed=n % 1000 + 1)
            la = os.getloadavg()[0]
            store = open_bench_store(folder)
            paths = {"exact": lambda i, st=store: [h.tile_id for h in search_stores([st], q[i], K, exact=True)]}
            builds, skips = {}, {}
            for kind in FAISS_KINDS:
                est = prev[kind][1] * n / prev[kind][0] if kind in prev else None
                if est is not None and est > BUILD_BUDGET_S:
                    skips[kind] = f"build skipped: estimated {est:.0f} s > {BUILD_BUDGET_S:.0f} s budget"
                    continue
                ram = n * RAM_PER_ROW[kind](dim)
                if ram > 0.4 * mem_available_bytes():
                    skips[kind] = (
                        f"skipped: needs {ram / 1e9:.1f} GB RAM of {mem_available_bytes() / 1e9:.1f} available"
                    )
                    continue
                vi, b = build_kind(folder, kind)
                prev[kind] = (n, b["s"])
                builds[kind] = b
                st = open_bench_store(folder, vi)
                paths[kind] = lambda i, st=st: [h.tile_id for h in search_stores([st], q[i], K)]
            chnr = ChnrPath(folder)
            paths["chnr"] = lambda i, c=chnr: c.search(q[i], qcodes[i], K)
            big = n >= 10_000_000
            t = time_queries(
                paths, q, qcodes, 1 if ctx.quick else 3, BUDGET_QUICK_S if ctx.quick else BUDGET_S, 3 if big else 5
            )
            engine_kind = choose_spec(n).kind
            row = {
                "dist": dist,
                "n": n,
                "queries": len(t["ms"]["exact"]),
                "recall_queries": len(t["recalls"]["chnr"]),
                "engine_kind": "exact" if engine_kind == "flat" else engine_kind,
                "loadavg_1min": la,
                "paths": {},
                "bytes_per_tile_embeddings": info["emb_bytes"] / n,
                "bytes_per_tile_codes": info["codes_bytes"] / n,
                "build_s": info["build_s"],
                "nprobe": DEFAULT_NPROBE,
            }
            for m in t["ms"]:
                b = builds.get(m)
                row["paths"][m] = {
                    "ms": summarise(t["ms"][m]),
                    "recall_mean": float(np.mean(t["recalls"][m])) if m in t["recalls"] else 1.0,
                    "recall_min": float(np.min(t["recalls"][m])) if m in t["recalls"] else 1.0,
                    "first_ms": t["first_ms"][m],
                    "build_s": b["s"] if b else (chnr.build_s if m == "chnr" else None),
                    "lists": b["lists"] if b else None,
                    "bytes_per_tile": b["bytes"] / n if b else (chnr.bytes_per_tile if m == "chnr" else None),
                }
            for kind, why in skips.items():
                row["paths"][kind] = {"skipped": why}
            rows.append(row)
            summary = "; ".join(
                f"{m} p50 {p['ms']['p50']:.2f} ms r@10 {p['recall_mean']:.3f}"
                for m, p in row["paths"].items()
                if "ms" in p
            )
            ctx.log(f"query: {dist} n={n:,} (load {la:.1f}): {summary}")
            del store, paths, chnr
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
        "flat_max_tiles": FLAT_MAX_TILES,
        "pq_min_tiles": PQ_MIN_TILES,
        "nprobe": DEFAULT_NPROBE,
        "build_budget_s": BUILD_BUDGET_S,
        "budget_s": BUDGET_QUICK_S if ctx.quick else BUDGET_S,
        "goals": _goals(rows),
    }


def _engine_path(r: dict) -> dict | None:
    return r["paths"].get(r["engine_kind"])


def _goals(rows: list[dict]) -> list[dict]:
    out = []
    for n, ms in GOALS.items():
        goal = f"p50 <= {ms:g} ms at {n:.0e} tiles with recall@10 >= {GOAL_RECALL} (engine's own search call)"
        r = next((x for x in rows if x["dist"] == "pooled" and x["n"] == n), None)
        p = _engine_path(r) if r else None
        if p is None or "ms" not in p:
            out.append({"goal": goal, "value": f"{n:.0e} not measured", "met": None})
            continue
        met = p["ms"]["p50"] <= ms and p["recall_mean"] >= GOAL_RECALL
        out.append(
            {
                "goal": goal,
                "value": f"{LABELS[r['engine_kind']]} p50 {p['ms']['p50']:.2f} ms, recall@10 {p['recall_mean']:.3f} "
                f"(load {r['loadavg_1min']:.1f})",
                "met": met,
            }
        )
    pq = [x["paths"]["ivf_pq"] for x in rows if "bytes_per_tile" in x["paths"].get("ivf_pq", {})]
    if pq:
        b = pq[-1]["bytes_per_tile"]
        out.append(
            {
                "goal": f"<= {GOAL_BYTES_1E8:g} bytes of RAM per tile at 1e8 (IVF-PQ lists; float16 rows on disk)",
                "value": f"{b:.1f} B/tile measured (index file / rows at the largest size built)",
                "met": b <= GOAL_BYTES_1E8,
            }
        )
    return out


def _p(p: dict | None) -> str:
    if not p:
        return "n/a"
    if "skipped" in p:
        return p["skipped"]
    return f"{p['ms']['p50']:.2f} / {p['ms']['p95']:.2f} ms, r@10 {p['recall_mean']:.3f}"


def markdown(res: dict) -> list[str]:
    kinds = ["exact", *FAISS_KINDS, "chnr"]
    lines = [
        "| embeddings | tiles (load) | engine type | " + " | ".join(LABELS[k] for k in kinds) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in kinds) + " |",
    ]
    for r in res["rows"]:
        cells = [_p(r["paths"].get(k)) for k in kinds]
        lines.append(
            f"| {r['dist']} | {r['n']:,} ({r['loadavg_1min']:.1f}) | {LABELS[r['engine_kind']]} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "Build seconds (lists) and bytes per tile of each index (RAM when loaded; float16 rows: 512 B on disk):",
        "",
    ]
    lines += ["| embeddings | tiles | " + " | ".join(LABELS[k] for k in kinds[1:]) + " |"]
    lines += ["| --- | --- | " + " | ".join("---" for _ in kinds[1:]) + " |"]
    for r in res["rows"]:
        cells = []
        for k in kinds[1:]:
            p = r["paths"].get(k, {})
            cells.append(
                f"{p['build_s']:.1f} s"
                + (f" ({p['lists']})" if p.get("lists") else "")
                + f", {p['bytes_per_tile']:.1f} B"
                if p.get("build_s") is not None
                else p.get("skipped", "n/a")
            )
        lines.append(f"| {r['dist']} | {r['n']:,} | " + " | ".join(cells) + " |")
    for s in res.get("skipped", []):
        lines.append(f"| {s['dist']} | {s['n']:,} | skipped: {s['reason']} |" + " |" * (len(kinds) - 2))
    lines += ["", *hash_verdict(res["rows"]), "", *projection_1e8(res["rows"])]
    lines += [
        "",
        f"D = {res['dim']}, k = {res['k']}, {res['n_queries']} queries ({res['query_texts']}); cells: p50 / p95 "
        f"latency and mean recall@10 against exact. The engine searches exactly below {res['flat_max_tiles']:,} "
        f"tiles, with IVF-SQ8 from there and IVF-PQ64x4fs from {res['pq_min_tiles']:,} (probing {res['nprobe']} "
        "lists, exact float16 re-rank: 4k / at least 64 candidates for SQ8 and Flat, 64k / at least 2048 for PQ). "
        "CHNR binary: "
        f"{res['code_kind']} codes, {res['code_bytes']} B/tile, Hamming top {CHNR_CANDIDATES} re-ranked exactly. "
        "Pooled "
        f"rows: pool of {res['pool']} embeddings + noise of norm {res['noise_norm']}. Load = 1-minute load average "
        "when the row started (2 cores; a training job shared the machine while these rows ran). Timing per row "
        f"stops after {res.get('budget_s', '?')} s once 5 queries (1e7: 3) are done; each timed query runs every path.",
    ]
    return lines


def hash_verdict(rows: list[dict]) -> list[str]:
    """CHNR binary codes vs IVF-PQ at the same 8 bytes per tile, per measured row: which one earns its place."""
    out = []
    for r in rows:
        c, p = r["paths"].get("chnr", {}), r["paths"].get("ivf_pq8", {})
        if "ms" not in c or "ms" not in p:
            continue
        win = "IVF-PQ16x4fs" if (p["recall_mean"], -p["ms"]["p50"]) >= (c["recall_mean"], -c["ms"]["p50"]) else "CHNR"
        out.append(
            f"- {r['dist']} {r['n']:,}: CHNR binary recall@10 {c['recall_mean']:.3f} at p50 {c['ms']['p50']:.2f} ms; "
            f"IVF-PQ16x4fs recall@10 {p['recall_mean']:.3f} at p50 {p['ms']['p50']:.2f} ms -> **{win}**"
        )
    if not out:
        return []
    return [
        "**Hash codes at equal bytes (8 B/tile)**:",
        "",
        *out,
        "",
        "Decision: the engine's search uses neither 8-byte path (it uses the float indexes above, which reach recall "
        "1.0 on pooled rows); `codes.npy` stays in the store layout as an optional artefact and is not read by "
        "search.",
    ]


def projection_1e8(rows: list[dict]) -> list[str]:
    """RAM of each index type at 1e8 tiles, from the bytes per tile measured at the largest size built."""
    best: dict[str, float] = {}
    for r in sorted(rows, key=lambda x: x["n"]):
        for k, p in r["paths"].items():
            if p.get("bytes_per_tile"):
                best[k] = p["bytes_per_tile"]
    if not best:
        return []
    cells = [f"{LABELS[k]} {b:.1f} B/tile = {b * 1e8 / 1e9:.1f} GB" for k, b in best.items()]
    return [
        "**At 1e8 tiles** (RAM of the index from its measured bytes per tile; the float16 rows, 51 GB, stay on "
        "disk and only the re-ranked rows are read): " + "; ".join(cells) + "."
    ]


def plot(res: dict, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3), dpi=90)
    rows = [r for r in res["rows"] if r["dist"] == "pooled"]
    if not rows:
        return False
    for k, colour in zip(
        ["exact", *FAISS_KINDS, "chnr"], ["#555", "#2a9d5b", "#3b7dd8", "#c77c02", "#9b59b6", "#c44"], strict=True
    ):
        pts = [(r["n"], r["paths"][k]["ms"]["p50"]) for r in rows if "ms" in r["paths"].get(k, {})]
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", color=colour, label=LABELS[k])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tiles (pooled embeddings)")
    ax.set_ylabel("p50 latency (ms)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
