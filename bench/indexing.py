"""2. End-to-end indexing of georeferenced mosaics (2.5k/5k/10k/20k px, 256 px tiles): tiles/s, wall, peak RSS.

Each run is a fresh ``python -m engine index MOSAIC --json --quiet`` subprocess (the shipped CLI, started
through a small wrapper that records the process's VmHWM at exit) with its own empty ``RSITR_CACHE``; peak RSS
is that VmHWM and an RSS timeline is sampled from /proc. e2e tiles/s is the engine's own figure from the CLI's
JSON (tiles embedded / time from the planned grid to the complete store: windowed reads, preprocessing,
inference, chunk files and the final store files); "CLI time" adds the bundle load, "wall" the interpreter
start and imports. Pure model tiles/s = ``Encoder.embed_images`` on ready batches of the same size in this
process, measured in the same run just before; pipeline efficiency = e2e / pure.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from bench.common import ROOT, Ctx, bench_env, fmt, linear_fit, median, model_meta, module_cmd_with_hwm, run_measured

NAME = "indexing"
TITLE = "End-to-end indexing (mosaic GeoTIFF, 256 px tiles)"
SIDES = (2500, 5000, 10000, 20000)
QUICK_SIDES = (768, 1536)
REPEATS = {2500: 3, 5000: 3, 10000: 3, 20000: 1}
TILE = 256
BATCH = 32
GOAL_EFF = 0.8
LINEAR_TOL = 0.20  # seconds per tile at every size within 20 % of their median
FLAT_TOL = 1.20  # peak RSS of the largest raster <= 1.2 x that of the smallest
MOSAIC_DIR = ROOT / "bench" / "tmp" / "mosaics"


def pure_model_tps(model_dir: Path, batches: int, rounds: int) -> tuple[float, list[float], str]:
    from bench.throughput import sample_batch
    from engine.bundle import load_bundle
    from engine.encoder import Encoder

    enc = Encoder(load_bundle(model_dir))
    x, _ = sample_batch(model_meta(model_dir), BATCH)
    enc.embed_images(x)
    vals = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(batches):
            enc.embed_images(x)
        vals.append(batches * BATCH / (time.perf_counter() - t0))
    return median(vals), vals, enc.provider


def _thin(samples: list, n: int = 150) -> list:
    if len(samples) <= n:
        return samples
    idx = np.linspace(0, len(samples) - 1, n).round().astype(int)
    return [samples[i] for i in idx]


def index_once(ctx: Ctx, raster: Path, tag: str) -> dict:
    from engine.store import dir_bytes

    cache = ctx.work / f"cache-{tag}"
    shutil.rmtree(cache, ignore_errors=True)
    env = bench_env(RSITR_CACHE=str(cache), RSITR_CONFIG=str(ctx.work / "config"), RSITR_CACHE_MAX_GB="1000")
    hwm = ctx.work / f"hwm-{tag}"
    cmd = module_cmd_with_hwm(
        "engine",
        [
            "index",
            str(raster),
            "--model",
            str(ctx.model),
            "--tile",
            str(TILE),
            "--batch-size",
            str(BATCH),
            "--json",
            "--quiet",
        ],
        hwm,
    )
    r = run_measured(cmd, env=env, timeout=1800, hwm_file=hwm)
    if r["rc"] != 0:
        raise RuntimeError(f"engine index failed (rc {r['rc']}): {r['stderr'][-500:]}")
    out = json.loads(r["stdout"].strip().splitlines()[-1])
    store = Path(out["path"])
    nbytes = dir_bytes(store) if store.is_dir() else None
    shutil.rmtree(cache, ignore_errors=True)
    n = out["n_tiles"]
    tps = out["tiles_per_s"]  # the engine's own figure: tiles embedded / (grid planned .. store complete)
    return {
        "n_tiles": n,
        "n_windows": out["n_windows"],
        "index_s": n / tps if tps else None,
        "cli_s": out["seconds"],
        "wall_s": r["wall_s"],
        "tiles_per_s": tps,
        "wall_tiles_per_s": n / r["wall_s"],
        "peak_rss_mb": r["peak_rss_mb"],
        "peak_rss_source": r["peak_rss_source"],
        "store_bytes": nbytes,
        "store_bytes_per_tile": nbytes / n if nbytes and n else None,
        "provider": out["provider"],
        "rss_samples": _thin(r["rss_samples"]),
    }


def run(ctx: Ctx, sides: tuple[int, ...] | None = None) -> dict:
    from bench.mosaic import cached_mosaic, image_pool

    meta = model_meta(ctx.model)
    sides = sides or (QUICK_SIDES if ctx.quick else SIDES)
    pixel = float(meta.get("gsd_m") or 0.5)
    pool, pool_src = image_pool(600)
    ctx.log(f"indexing: mosaics {sides} px from {pool_src}, {pixel} m pixels")
    mosaics, build_s = {}, {}
    for s in sides:
        t0 = time.perf_counter()
        mosaics[s] = cached_mosaic(MOSAIC_DIR, s, pool, pool_src, pixel)
        build_s[s] = round(time.perf_counter() - t0, 1)

    pure, pure_samples, provider = pure_model_tps(
        ctx.model, batches=1 if ctx.quick else 4, rounds=2 if ctx.quick else 3
    )
    ctx.log(f"indexing: pure model {pure:.1f} tiles/s")
    rows = []
    for s in sides:
        reps = 2 if ctx.quick else REPEATS.get(s, 3)
        runs = []
        for i in range(reps):
            runs.append(index_once(ctx, mosaics[s], f"{s}-{i}"))
            ctx.log(
                f"indexing: {s} px run {i + 1}/{reps}: {runs[-1]['n_tiles']} tiles, "
                f"{runs[-1]['tiles_per_s']:.1f} tiles/s, peak RSS {runs[-1]['peak_rss_mb']:.0f} MB"
            )
        tps = median([r["tiles_per_s"] for r in runs])
        rows.append(
            {
                "side_px": s,
                "raster_mb": round(mosaics[s].stat().st_size / 1e6, 1),
                "n_tiles": runs[0]["n_tiles"],
                "repeats": reps,
                "tiles_per_s": tps,
                "index_s": median([r["index_s"] for r in runs]),
                "cli_s": median([r["cli_s"] for r in runs]),
                "wall_s": median([r["wall_s"] for r in runs]),
                "wall_tiles_per_s": median([r["wall_tiles_per_s"] for r in runs]),
                "peak_rss_mb": median([r["peak_rss_mb"] for r in runs]),
                "store_bytes_per_tile": median([r["store_bytes_per_tile"] or 0 for r in runs]),
                "efficiency": tps / pure if pure else None,
                "s_per_tile": 1.0 / tps if tps else None,
                "provider": runs[0]["provider"],
                "runs": runs,
                "mosaic_build_s": build_s[s],
            }
        )
    return {
        "rows": rows,
        "pure_model_tiles_per_s": pure,
        "pure_model_samples": pure_samples,
        "pure_provider": provider,
        "tile": TILE,
        "batch": BATCH,
        "pixel_size_m": pixel,
        "pool": pool_src,
        **_verdicts(rows),
    }


def _verdicts(rows: list[dict]) -> dict:
    by = {r["side_px"]: r for r in rows}
    ref = by.get(10000) or rows[-1]
    spt = [r["s_per_tile"] for r in rows]
    med = median(spt)
    dev = max(abs(v / med - 1) for v in spt)
    fit = linear_fit([r["n_tiles"] for r in rows], [r["index_s"] for r in rows])
    rss_ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    goals = [
        {
            "goal": f"pipeline efficiency >= {GOAL_EFF} at {ref['side_px']} px (e2e tiles/s / pure model tiles/s)",
            "value": fmt(ref["efficiency"], 2),
            "met": ref["efficiency"] >= GOAL_EFF,
        },
        {
            "goal": f"time linear in tiles: s/tile at every size within {LINEAR_TOL:.0%} of the median",
            "value": f"max deviation {dev:.0%} (linear fit R² {fit['r2']:.4f})",
            "met": dev <= LINEAR_TOL,
        },
        {
            "goal": f"memory flat: peak RSS {rows[-1]['side_px']} px / {rows[0]['side_px']} px <= {FLAT_TOL}",
            "value": f"{rss_ratio:.2f} ({rows[0]['peak_rss_mb']:.0f} -> {rows[-1]['peak_rss_mb']:.0f} MB)",
            "met": rss_ratio <= FLAT_TOL,
        },
    ]
    return {"linear_fit": fit, "s_per_tile_max_deviation": dev, "rss_ratio": rss_ratio, "goals": goals}


def markdown(res: dict) -> list[str]:
    lines = [
        "| raster side (px) | tiles | runs | e2e tiles/s | index time (s) | CLI time (s) | wall (s) | "
        "peak RSS (MB) | pipeline efficiency | store bytes/tile |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['side_px']:,} | {r['n_tiles']:,} | {r['repeats']} | {r['tiles_per_s']:.1f} | "
            f"{r['index_s']:.1f} | {fmt(r.get('cli_s'), 1)} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{fmt(r['efficiency'], 2)} | "
            f"{fmt(r['store_bytes_per_tile'], 0)} |"
        )
    lines += [
        "",
        f"Pure model: {res['pure_model_tiles_per_s']:.1f} tiles/s ({res['pure_provider']}, batch "
        f"{res['batch']}, same run). Mosaic: {res['pool']}, {res['pixel_size_m']} m pixels, EPSG:32633, "
        "tiled DEFLATE GeoTIFF (built once under bench/tmp/mosaics). Provider of the index runs: "
        f"{res['rows'][0]['provider']}. Linear fit of index time on tiles: "
        f"{res['linear_fit']['slope'] * 1000:.2f} ms/tile + {res['linear_fit']['intercept']:.2f} s, "
        f"R² {res['linear_fit']['r2']:.4f}.",
    ]
    return lines


def plot(res: dict, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    fig, axes = plt.subplots(1, 3, figsize=(9, 2.6), dpi=90)
    n = [r["n_tiles"] for r in rows]
    axes[0].plot(n, [r["index_s"] for r in rows], "o-")
    fit = res["linear_fit"]
    if fit["slope"] is not None:
        axes[0].plot(n, [fit["slope"] * v + fit["intercept"] for v in n], "k:", lw=1)
    axes[0].set_xlabel("tiles")
    axes[0].set_ylabel("index time (s)")
    axes[1].plot(n, [r["peak_rss_mb"] for r in rows], "o-", color="#c44")
    axes[1].set_xlabel("tiles")
    axes[1].set_ylabel("peak RSS (MB)")
    axes[1].set_ylim(bottom=0)
    big = rows[-1]["runs"][0]["rss_samples"]
    if big:
        axes[2].plot([s[0] for s in big], [s[1] for s in big], color="#c44")
    axes[2].set_xlabel(f"seconds ({rows[-1]['side_px']} px run)")
    axes[2].set_ylabel("RSS (MB)")
    axes[2].set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
