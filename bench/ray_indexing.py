"""Distributed indexing on Ray (``index-many --ray``): in-process vs 1 and 2 Ray encoder workers, same rasters.

The same georeferenced mosaics (bench/mosaic.py, 256 px tiles) are indexed into a catalog three times in one run,
each into an empty cache: in-process (``Engine.index_many`` without Ray: the prefetch thread plus ONNX Runtime's
default threads), then on a local single-node Ray (started before the timed runs, its start-up reported
separately, warmed up by an untimed 2-worker run on a small mosaic) with 1 and with 2 encoder actors
(``RayParams``: 1 ONNX Runtime thread and 0.5 logical CPU per actor, window reads as 0.25-CPU tasks, one Lance
commit for the whole job). tiles/s = tiles embedded / wall seconds from the call to the written catalog (plans,
reads, inference, the Lance table, the member stores and the catalog index; for Ray also the actor pool's start).
Parallel efficiency = tiles/s(2 workers) / (2 x tiles/s(1 worker)). Reader CPU per tile = process CPU seconds of
``read_chunk`` alone (window read, mask, stretch, resize, normalise) over every window of the same rasters,
divided by the windows read. The three runs' stores are compared byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import numpy as np

from bench.common import ROOT, Ctx, fmt, model_meta

NAME = "ray_indexing"
TITLE = "Distributed indexing on Ray (in-process vs 1 and 2 Ray workers)"
SIDES = (5000, 10000)
QUICK_SIDES = (768,)
TILE = 256
BATCH = 32
CHUNK = 128  # windows per chunk (the unit of work of a Ray task/actor call): 17 chunks over 2 workers
MOSAIC_DIR = ROOT / "bench" / "tmp" / "mosaics"


def _mosaics(ctx: Ctx, sides: tuple[int, ...] | None = None) -> list[Path]:
    from bench.mosaic import cached_mosaic, image_pool

    meta = model_meta(ctx.model)
    pixel = float(meta.get("gsd_m") or 0.5)
    pool, pool_src = image_pool(600)
    sides = sides or (QUICK_SIDES if ctx.quick else SIDES)
    return [cached_mosaic(MOSAIC_DIR, s, pool, pool_src, pixel) for s in sides]


def reader_cpu_per_tile(rasters: list[Path], encoder, params) -> dict:
    """CPU seconds of ``read_chunk`` (read + preprocess) per window, over every window of ``rasters``."""
    from engine.indexer import n_chunks, plan_index, read_chunk
    from engine.raster import open_raster

    windows, cpu, wall = 0, 0.0, 0.0
    for r in rasters:
        plan = plan_index(r, encoder, params)
        with open_raster(r) as src:
            c0, w0 = time.process_time(), time.perf_counter()
            for c in range(n_chunks(plan, params)):
                for _ in read_chunk(src, plan, encoder.meta, params, c):
                    pass
            cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
        windows += len(plan.grid)
    return {"windows": windows, "cpu_s": cpu, "wall_s": wall, "cpu_s_per_tile": cpu / max(windows, 1)}


def _index(ctx: Ctx, tag: str, rasters: list[Path], params, ray_params=None) -> dict:
    from engine.service import Engine

    cache = ctx.work / NAME / tag
    shutil.rmtree(cache, ignore_errors=True)
    eng = Engine(default_model=ctx.model, root=cache / "stores")
    eng.encoder()  # the bundle load is not part of the figure (the actors' loads are)
    t0 = time.perf_counter()
    m = eng.index_many([str(r) for r in rasters], "bench", params, ray=ray_params)
    secs = time.perf_counter() - t0
    emb = b"".join(np.asarray(eng.store(x["store_id"]).embeddings).tobytes() for x in m["members"])
    row = {
        "mode": tag,
        "n_tiles": m["n_tiles"],
        "seconds": secs,
        "tiles_per_s": m["n_tiles"] / secs,
        "workers": ray_params.workers if ray_params else None,
        "embeddings_sha1": hashlib.sha1(emb, usedforsecurity=False).hexdigest(),
    }
    ctx.log(f"{NAME}: {tag}: {m['n_tiles']} tiles in {secs:.1f} s, {row['tiles_per_s']:.1f} tiles/s")
    return row


def run(ctx: Ctx) -> dict:
    import ray

    from engine.bundle import load_bundle
    from engine.encoder import Encoder
    from engine.indexer import IndexParams
    from engine.ray_index import RayParams

    rasters = _mosaics(ctx)
    params = IndexParams(tile=TILE, batch_size=BATCH, chunk_tiles=CHUNK)
    enc = Encoder(load_bundle(ctx.model))
    reader = reader_cpu_per_tile(rasters, enc, params)
    ctx.log(f"{NAME}: reader {reader['cpu_s_per_tile'] * 1000:.2f} ms CPU per tile ({reader['windows']} windows)")
    rows = [_index(ctx, "in-process", rasters, params)]
    cores = len(os.sched_getaffinity(0))
    t0 = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray_start = time.perf_counter() - t0
    try:
        warm = _mosaics(ctx, QUICK_SIDES)  # untimed: worker processes, imports and page cache warm for both runs
        _index(ctx, "warm-up", warm, params, RayParams(workers=2, chunks_per_commit=10**6))
        for w in (1, 2):
            rp = RayParams(workers=w, chunks_per_commit=10**6)  # one Lance commit for the whole job
            rows.append(_index(ctx, f"ray-{w}-worker{'s' if w > 1 else ''}", rasters, params, rp))
    finally:
        ray.shutdown()
    one, two = rows[1]["tiles_per_s"], rows[2]["tiles_per_s"]
    eff = two / (2 * one)
    identical = len({r["embeddings_sha1"] for r in rows}) == 1
    return {
        "rows": rows,
        "rasters": [f"{r.name} ({r.stat().st_size / 1e6:.0f} MB)" for r in rasters],
        "tile": TILE,
        "batch": BATCH,
        "chunk_tiles": CHUNK,
        "cores": cores,
        "ray_start_s": ray_start,
        "ray_version": ray.__version__,
        "parallel_efficiency": eff,
        "speedup_2_vs_1": two / one,
        "reader": reader,
        "reader_tiles_per_core_s": 1 / reader["cpu_s_per_tile"] if reader["cpu_s_per_tile"] else None,
        "rows_identical": identical,
        "goals": [
            {
                "goal": "Ray rows bit-identical to in-process rows",
                "value": "identical" if identical else "differ",
                "met": identical,
            }
        ],
    }


def markdown(res: dict) -> list[str]:
    lines = [
        "| mode | encoder workers | tiles | wall (s) | tiles/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['mode']} | {r['workers'] or '-'} | {r['n_tiles']:,} | {r['seconds']:.1f} | {r['tiles_per_s']:.1f} |"
        )
    rd = res["reader"]
    lines += [
        "",
        f"Rasters: {', '.join(res['rasters'])}; {res['tile']} px tiles, batch {res['batch']}, "
        f"{res.get('chunk_tiles', 256)} windows per chunk, {res['cores']} cores, "
        f"Ray {res['ray_version']} (local start-up {res['ray_start_s']:.1f} s, not in the figures). "
        f"2 workers vs 1: speed-up {res['speedup_2_vs_1']:.2f}, parallel efficiency "
        f"{res['parallel_efficiency']:.2f}. Rows of all three runs byte-identical: {res['rows_identical']}.",
        "",
        f"Reader CPU per tile (window read + preprocess alone): {rd['cpu_s_per_tile'] * 1000:.2f} ms "
        f"({rd['windows']:,} windows, {rd['cpu_s']:.1f} CPU s), i.e. {fmt(res['reader_tiles_per_core_s'], 0)} "
        "tiles/s per reader core. What a GPU node would change (not measured here): the encoder's share "
        "of the CPU goes to the GPU (one actor with `num_gpus=1`, `--batch-size` 256+), and what stays on the "
        "CPU is this reader cost, so a node indexes at most (reader cores) / (reader CPU per tile) tiles/s; "
        "more nodes add readers, while the member stores and the catalog index are still built on the driver.",
    ]
    return lines


def plot(res: dict, path: Path) -> bool:
    return False
