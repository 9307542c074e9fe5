"""1. Image embedding throughput: engine (ONNX Runtime) vs PyTorch eager, same model and batch; precision variants.

Both contenders get the same preprocessed float32 batch (real aerial images, engine preprocessing), so only
model execution is timed. PyTorch eager is the way peers' READMEs run inference: ``model.eval()``,
``torch.no_grad()``, one forward per batch, ``torch.set_num_threads`` = the threads ONNX Runtime uses.
The PyTorch model is rebuilt from ``model_config`` in ``model.json`` (written by ``training.export``); its
weights come from ``--checkpoint`` or ``<bundle>/../best.pt`` when present, else random init (same
architecture and FLOPs; speed does not depend on weight values). Rounds are interleaved (engine, torch,
variants, engine, ...) and each figure is the median over rounds.
Variants: ``<bundle>-fp16`` / ``<bundle>-int8`` sibling bundles (``python -m training.export --precision``) or
``image_encoder.<p>.onnx`` files inside the bundle. Their retrieval cost is mR on rsicd_aid150 test
(``training.evaluate.evaluate_bundle``) against the fp32 bundle, measured in the same run.
"""

from __future__ import annotations

import gc
import os
import shutil
import time
from pathlib import Path

import numpy as np

from bench.common import Ctx, fmt, interleaved, median, model_meta

NAME = "throughput"
MAIN = "engine bundle"  # the benchmarked bundle itself, at the precision it ships in
TITLE = "Embedding throughput (engine vs PyTorch eager, precision variants)"
BATCH = 32
GOAL_RATIO = 1.5
VARIANTS = ("fp16", "int8")


def find_variants(model_dir: Path, work: Path) -> dict[str, Path]:
    """Precision variant bundles of ``model_dir``: siblings ``<dir>-<p>`` or in-dir ``*_encoder.<p>.onnx``."""
    model_dir = Path(model_dir)
    out: dict[str, Path] = {}
    for p in VARIANTS:
        sib = model_dir.with_name(f"{model_dir.name}-{p}")
        if (sib / "model.json").is_file() and (sib / "image_encoder.onnx").is_file():
            out[p] = sib
            continue
        img = model_dir / f"image_encoder.{p}.onnx"
        if img.is_file():
            dst = Path(work) / f"variant-{p}"
            shutil.rmtree(dst, ignore_errors=True)
            dst.mkdir(parents=True)
            for f in model_dir.iterdir():
                if f.is_file() and ".fp16." not in f.name and ".int8." not in f.name:
                    (dst / f.name).symlink_to(f)
            (dst / "image_encoder.onnx").unlink()
            (dst / "image_encoder.onnx").symlink_to(img)
            txt = model_dir / f"text_encoder.{p}.onnx"
            if txt.is_file():
                (dst / "text_encoder.onnx").unlink()
                (dst / "text_encoder.onnx").symlink_to(txt)
            out[p] = dst
    return out


def find_checkpoint(model_dir: Path, explicit: Path | None) -> Path | None:
    if explicit:
        return Path(explicit)
    cand = Path(model_dir).resolve().parent / "best.pt"
    return cand if cand.is_file() else None


def torch_model(meta: dict, ckpt: Path | None):
    """(model, weights description) or (None, reason)."""
    cfg = meta.get("model_config")
    if not cfg:
        return None, "model.json has no model_config (not a training.export bundle): no PyTorch model to compare"
    try:
        import torch

        from training.models import build_model
    except ImportError as exc:
        return None, f"PyTorch/training not importable: {exc}"
    weights = "random init (no checkpoint found; same architecture)"
    model = build_model({**cfg, "pretrained": False})
    if ckpt is not None:
        ck = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["state_dict"])
        weights = f"checkpoint {ckpt}"
    model.eval()
    return model, weights


def sample_batch(meta: dict, n: int = BATCH) -> tuple[np.ndarray, str]:
    from bench.mosaic import image_pool
    from engine.preprocess import prepare

    pool, src = image_pool(n, cell=150)
    tiles = [pool[i % len(pool)] for i in range(n)]
    x = prepare(tiles, meta["image_size"], meta["mean"], meta["std"], meta.get("interpolation", "bicubic"))
    return x, src


def _ort_threads() -> int:
    from bench.common import _cpuinfo

    return _cpuinfo()["physical_cores"] or os.cpu_count() or 1


def run(ctx: Ctx) -> dict:
    from engine.bundle import load_bundle
    from engine.encoder import Encoder

    meta = model_meta(ctx.model)
    x, src = sample_batch(meta)
    threads = _ort_threads()
    batches = 1 if ctx.quick else 4
    repeats = 2 if ctx.quick else 3

    enc = Encoder(load_bundle(ctx.model))
    provider = enc.provider
    fns = {}

    def timer(fn):
        def measure() -> float:
            t0 = time.perf_counter()
            for _ in range(batches):
                fn(x)
            return batches * len(x) / (time.perf_counter() - t0)

        return measure

    enc.embed_images(x)  # warm-up (allocations, kernel selection)
    fns[MAIN] = timer(enc.embed_images)
    ref = enc.embed_images(x)

    ckpt = find_checkpoint(ctx.model, ctx.checkpoint)
    model, weights = torch_model(meta, ckpt)
    parity = None
    if model is not None:
        import torch

        torch.set_num_threads(threads)
        xt = torch.from_numpy(x)

        def torch_fwd(_):
            with torch.no_grad():
                return model.encode_image(xt)

        out = torch_fwd(x)  # warm-up
        if ckpt is not None:
            parity = float(np.min(np.sum(out.numpy() * ref, axis=1)))
        fns["pytorch eager fp32"] = timer(torch_fwd)

    variants = dict(ctx.variants) or find_variants(ctx.model, ctx.work)
    var_enc, var_cos = {}, {}
    for p, vdir in variants.items():
        try:
            ve = Encoder(load_bundle(vdir))
        except Exception as exc:  # noqa: BLE001 - a broken variant is reported, not fatal
            var_cos[p] = f"load failed: {exc}"
            continue
        var_enc[p] = ve
        e = ve.embed_images(x)
        var_cos[p] = float(np.min(np.sum(e * ref, axis=1)))
        fns[f"engine {p}"] = timer(ve.embed_images)

    ctx.log(f"throughput: {len(fns)} contenders x {repeats} rounds x {batches} batches of {BATCH}")
    samples = interleaved(fns, repeats)
    rows = []
    for name, vals in samples.items():
        rows.append(
            {
                "name": name,
                "provider": "torch-cpu" if name.startswith("pytorch") else provider,
                "batch": BATCH,
                "tiles_per_s": median(vals),
                "samples": vals,
            }
        )
    tps = {r["name"]: r["tiles_per_s"] for r in rows}
    torch_tps = tps.get("pytorch eager fp32")
    ratio = tps[MAIN] / torch_tps if torch_tps else None
    ratio_fp32 = tps["engine fp32"] / torch_tps if torch_tps and "engine fp32" in tps else None

    # retrieval cost of the variants: mR on rsicd_aid150 test, fp32 and each variant, same run
    measured = {"bundle": ctx.model, **{p: variants[p] for p in var_enc}}
    enc = var_enc = model = fns = None  # free the sessions' arenas before evaluation loads its own
    gc.collect()
    quality = evaluate_variants(ctx, measured)
    goals = [
        {
            "goal": f"engine >= {GOAL_RATIO}x PyTorch eager on CPU (tiles/s, batch {BATCH})",
            "value": fmt(ratio, 2, "x") if ratio else "not measured",
            "met": (ratio >= GOAL_RATIO) if ratio else None,
        }
    ]
    if ratio_fp32:
        goals.append(
            {
                "goal": f"same, fp32 variant bundle (same precision as PyTorch) >= {GOAL_RATIO}x",
                "value": fmt(ratio_fp32, 2, "x"),
                "met": ratio_fp32 >= GOAL_RATIO,
            }
        )
    return {
        "rows": rows,
        "ratio_engine_over_torch": ratio,
        "ratio_engine_fp32_over_torch": ratio_fp32,
        "bundle_precision": meta.get("precision", "fp32"),
        "threads": threads,
        "batches_per_round": batches,
        "rounds": repeats,
        "input": f"{BATCH} preprocessed tiles ({src}), {meta['image_size']} px",
        "torch_weights": weights,
        "torch_parity_min_cosine": parity,
        "variants": {p: str(v) for p, v in variants.items()},
        "variant_min_cosine_to_fp32": var_cos,
        "quality": quality,
        "goals": goals,
    }


def evaluate_variants(ctx: Ctx, bundles: dict[str, Path]) -> dict:
    """mR (x100) on rsicd_aid150 test for each bundle; ``{}`` with a reason when the data is absent."""
    from engine.shared_data import rsicd_aid150_json

    data = rsicd_aid150_json()
    if not data.is_file():
        return {"skipped": f"rsicd_aid150 not found at {data}"}
    try:
        from training.evaluate import evaluate_bundle
    except ImportError as exc:
        return {"skipped": f"training.evaluate not importable: {exc}"}
    max_images = ctx.mr_images or (32 if ctx.quick else None)
    out = {"split": "test", "max_images": max_images or "all (1,027)"}
    for p, b in bundles.items():
        t0 = time.perf_counter()
        try:
            m = evaluate_bundle(b, data, "test", max_images=max_images)
        except Exception as exc:  # noqa: BLE001
            out[p] = {"error": str(exc)[:300]}
            continue
        out[p] = {"mr": m["mr"], "seconds": round(time.perf_counter() - t0, 1)}
        ctx.log(f"throughput: mR {p} = {m['mr']}")
    ref = "fp32" if "fp32" in bundles else "bundle"
    base = out.get(ref, {}).get("mr")
    out["reference"] = ref
    for p in bundles:
        if p != ref and base is not None and "mr" in out.get(p, {}):
            out[p]["mr_delta_vs_fp32"] = round(out[p]["mr"] - base, 2)
    return out


def markdown(res: dict) -> list[str]:
    lines = [
        "| contender | provider | batch | tiles/s (median) | vs PyTorch eager | min cosine to the bundle "
        "| mR test | ΔmR vs fp32 (or the bundle) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    tps = {r["name"]: r["tiles_per_s"] for r in res["rows"]}
    base = tps.get("pytorch eager fp32")
    q = res.get("quality", {})
    cos = res.get("variant_min_cosine_to_fp32", {})
    ref = q.get("reference", "fp32")
    for r in res["rows"]:
        p = r["name"].split()[-1] if r["name"].startswith("engine") else None
        c = (
            "1 (reference)"
            if r["name"] == MAIN
            else (fmt(cos.get(p), 4) if p else fmt(res.get("torch_parity_min_cosine"), 4))
        )
        qq = q.get(p, {}) if p else {}
        name = f"{r['name']} ({res.get('bundle_precision', 'fp32')})" if r["name"] == MAIN else r["name"]
        lines.append(
            f"| {name} | {r['provider']} | {r['batch']} | {r['tiles_per_s']:.1f} | "
            f"{fmt(r['tiles_per_s'] / base, 2, 'x') if base else 'n/a'} | {c} | "
            f"{fmt(qq.get('mr'), 2)} | {fmt(qq.get('mr_delta_vs_fp32'), 2) if p != ref else '-'} |"
        )
    lines += [
        "",
        f"Input: {res['input']}; {res['rounds']} interleaved rounds of {res['batches_per_round']} batches; "
        f"threads: {res['threads']} (ONNX Runtime intra-op default and `torch.set_num_threads`). "
        f"PyTorch weights: {res['torch_weights']}.",
    ]
    if "skipped" in q:
        lines.append(f"mR not measured: {q['skipped']}.")
    elif q:
        lines.append(f"mR: rsicd_aid150 {q.get('split')} split, images: {q.get('max_images')}.")
    if not res.get("variants"):
        lines.append("No fp16/int8 variant bundles next to this bundle (`python -m training.export --precision`).")
    return lines


def plot(res: dict, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    fig, ax = plt.subplots(figsize=(5.5, 2.6), dpi=90)
    names = [r["name"] for r in rows]
    vals = [r["tiles_per_s"] for r in rows]
    ax.barh(names, vals, color=["#3b7dd8" if n.startswith("engine") else "#999999" for n in names])
    for i, r in enumerate(rows):
        ax.plot(r["samples"], [i] * len(r["samples"]), "k.", ms=3)
    ax.set_xlabel("tiles/s (median of rounds; dots: rounds)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
