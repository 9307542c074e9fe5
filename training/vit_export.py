"""PIR-ViT bundles from a trained checkpoint (issue 19): the fp32 bundle (``export.export_bundle``: image and
text ONNX graphs, PyTorch parity < 1e-4, CLIP BPE ``tokenizer.json`` built offline from open_clip's vocabulary)
and an fp16 variant (``<bundle>-fp16``: fp16 graphs with LayerNorm/Softmax/reductions kept fp32, for CUDA),
each with its measured cosine to fp32 and its retrieval cost (val mR through the engine's ONNX path; test mR
too with ``vit.test_eval``). The source checkpoint's layout and activation are recorded in ``model.json``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from training.export import LICENSES, _ort, export_bundle
from training.ship import _FP16_BLOCK

FP16_BLOCK = [*_FP16_BLOCK, "Transpose"]


def _update_meta(bundle: Path, **kv) -> dict:
    p = bundle / "model.json"
    meta = json.loads(p.read_text())
    for k, v in kv.items():
        if k == "metrics":
            meta.setdefault("metrics", {}).update(v)
        else:
            meta[k] = v
    p.write_text(json.dumps(meta, indent=2))
    return meta


def fp16_variant(src: Path, dst: Path, n: int = 8) -> dict:
    """Copy bundle ``src`` to ``dst`` with fp16 ONNX graphs; cosine (min, mean) of its embeddings to fp32 on
    random images and token sequences."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    for f in ("image_encoder.onnx", "text_encoder.onnx"):
        # Transpose stays fp32: ONNX Runtime 1.32 crashes (SIGSEGV) building a session for the CLIP text graph
        # with fp16 Transposes
        m = convert_float_to_float16(onnx.load(str(src / f)), keep_io_types=True, op_block_list=FP16_BLOCK)
        onnx.save(m, str(dst / f))
    meta = json.loads((src / "model.json").read_text())
    S, L, vocab = meta["image_size"], meta["context_length"], meta["model_config"]["vocab_size"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3, S, S)).astype(np.float32)
    ids = rng.integers(1000, 5000, size=(n, L)).astype(np.int64)
    lens = rng.integers(3, L, size=n)
    ids[np.arange(L)[None] >= lens[:, None]] = 0
    ids[np.arange(n), lens - 1] = vocab - 1  # EOT closes each sequence
    cos = {}
    for f, feed, out in (
        ("image_encoder.onnx", {"image": x}, "image_embedding"),
        ("text_encoder.onnx", {"input_ids": ids}, "text_embedding"),
    ):
        a = _ort(src / f).run([out], feed)[0]
        b = _ort(dst / f).run([out], feed)[0]
        c = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        cos[f.split("_")[0]] = {"min": round(float(c.min()), 6), "mean": round(float(c.mean()), 6)}
    return cos


def split_mr(bundle: Path, split) -> float:
    """mR of ``bundle`` on an in-memory :class:`~training.data.splits.Split` through the engine's encoder."""
    from training.bundle_runtime import BundleEncoder
    from training.metrics import retrieval_metrics

    enc = BundleEncoder(bundle, threads=2)
    img = []
    for i in range(0, len(split.files), 64):
        ims = [Image.open(split.image_root / f).convert("RGB") for f in split.files[i : i + 64]]
        img.append(enc.encode_images(ims))
    txt = enc.encode_texts(split.texts)
    return round(float(retrieval_metrics(np.concatenate(img), txt[split.row_txt], split.row_img)["mr"]), 2)


def export_vit_bundles(best_pt: Path, out: Path, cfg, opts, val, log=print) -> dict:
    """Write ``out`` (fp32) and, with ``opts.fp16_variant``, ``out-fp16``; returns {precision: {path, ...}}."""
    import torch

    ck = torch.load(best_pt, map_location="cpu", weights_only=False)  # nosec B614 - our own checkpoint
    init = ck.get("state", {}).get("init", {})
    name = ck["model_config"]["name"]
    export_bundle(best_pt, out, training_config=cfg.name, version=cfg.version, name=name, log=log)
    act = "quick_gelu" if ck["model_config"].get("quick_gelu") else "gelu"
    lic = dict(LICENSES)
    lic["weights"] = (
        f"initialised from a {init.get('kind', 'random')} checkpoint ({init.get('checkpoint') or 'random init'}): "
        "its licence applies to these weights"
    )
    _update_meta(out, source_checkpoint={**init, "activation": act}, licenses=lic)
    res = {"fp32": {"path": str(out)}}
    val_key = f"{cfg.name}_val"
    # the key the engine and the picker read for the default data set; another data set gets its own name
    stem = Path(str(cfg.data_json)).stem.removeprefix("dataset_")
    test_key = f"{stem}_test"
    res["fp32"]["val_mr"] = split_mr(out, val)
    metrics = {val_key: {"mr": res["fp32"]["val_mr"], "n_images": len(val.files)}}
    if opts.test_eval:
        from training.ship import evaluate_bundle_full

        metrics[test_key] = evaluate_bundle_full(out, cfg.data_json, "test")
        res["fp32"]["test_mr"] = metrics[test_key]["mr"]
    _update_meta(out, metrics=metrics)
    log(f"fp32 bundle {out}: val mR {res['fp32']['val_mr']}")
    if opts.fp16_variant:
        v = out.with_name(out.name + "-fp16")
        cos = fp16_variant(out, v)
        vm = split_mr(v, val)
        vmetrics = {
            val_key: {"mr": vm, "n_images": len(val.files)},
            "mr_cost_vs_fp32": round(res["fp32"]["val_mr"] - vm, 2),
        }
        if opts.test_eval:
            from training.ship import evaluate_bundle_full

            vmetrics[test_key] = evaluate_bundle_full(v, cfg.data_json, "test")
        _update_meta(v, name=f"{name}-fp16", precision="fp16", variant_cosine_to_fp32=cos, metrics=vmetrics)
        res["fp16"] = {
            "path": str(v),
            "val_mr": vm,
            "cosine_to_fp32": cos,
            "mr_cost_vs_fp32": vmetrics["mr_cost_vs_fp32"],
        }
        log(f"fp16 bundle {v}: cosine to fp32 {cos}, val mR {vm} (cost {vmetrics['mr_cost_vs_fp32']})")
    return res
