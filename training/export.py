"""Export a checkpoint as a model bundle (docs/contracts.md §1): ``python -m training.export CKPT OUT``.

Writes image/text ONNX graphs (fp32, opset 17, dynamic batch), tokenizer.json, model.json, scene class prompt
embeddings (our prompts from ``resources/prompts/scene_classes.json``), optional hash heads; checks parity
against PyTorch (max abs diff < 1e-4) at batch 1 and 7. ``--precision fp16|int8`` additionally writes a
variant bundle and reports its cosine to fp32. Dataset captions never enter a bundle.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.checkpoints import load_checkpoint_model
from training.models import build_model
from training.models.minilm import minilm_dir

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROMPTS = PROJECT_ROOT / "resources" / "prompts" / "scene_classes.json"
PARITY_TOL = 1e-4
LICENSES = {
    "weights": "EfficientNet-Lite0 ImageNet weights (Apache-2.0), MobileNetV2 ImageNet weights (torchvision, "
    "BSD-3-Clause), all-MiniLM-L6-v2 (Apache-2.0); fine-tuned weights released under the project licence",
    "training_data": "RSICD captions and AID images (rsicd_aid150): research use only; not redistributed, "
    "no captions or images are contained in this bundle",
}


class _Image(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, image):
        return self.m.encode_image(image)


class _Text(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        return self.m.encode_text(input_ids, attention_mask)


class _ClipText(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids):
        return self.m.encode_text_export(input_ids)


def _is_clip(model) -> bool:
    return getattr(model.cfg, "architecture", "").startswith("PIR-ViT")  # any PIR-ViT (issue 19)


def write_tokenizer_json(src: Path, dst: Path, context_length: int, pad_id: int = 0) -> None:
    """Copy a HF tokenizer.json with the bundle's own truncation and padding (``context_length``), so a consumer
    that reads only tokenizer.json gets the engine's ids."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(src))
    tok.enable_truncation(context_length)
    tok.enable_padding(pad_id=pad_id, pad_token=tok.id_to_token(pad_id) or "[PAD]", length=context_length)
    tok.save(str(dst))


def _export(module: nn.Module, args: tuple, path: Path, in_names: list[str], out_name: str) -> None:
    torch.backends.mha.set_fastpath_enabled(False)
    module.eval()  # the exporter restores the wrapper's mode afterwards, recursively: keep it eval
    axes = {n: {0: "batch"} for n in in_names}
    axes[out_name] = {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=in_names,
            output_names=[out_name],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
            do_constant_folding=True,
        )


def _ort(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def text_embeddings_torch(model, texts: list[str], tokenizer_json: Path) -> np.ndarray:
    from training.features import load_tokenizer, tokenize

    tok = load_tokenizer(tokenizer_json, model.cfg.context_length)
    ids, mask = tokenize(tok, texts)
    with torch.no_grad():
        return (model.encode_text(ids) if _is_clip(model) else model.encode_text(ids, mask)).numpy()


def export_bundle(
    ckpt_path: str | Path,
    out_dir: str | Path,
    training_config: str = "",
    version: str = "0.1.0",
    name: str | None = None,
    metrics: dict | None = None,
    gsd_m: float | None = 0.5,
    log=print,
) -> Path:
    """Write the bundle for ``ckpt_path`` into ``out_dir``; raises if ONNX/PyTorch parity fails."""
    model, ck = load_checkpoint_model(ckpt_path)
    cfg = model.cfg
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    S, L = cfg.image_size, cfg.context_length
    g = torch.Generator().manual_seed(0)
    img_ex = torch.randn(2, 3, S, S, generator=g)
    ids_ex = torch.randint(1000, 2000, (2, L), generator=g)
    mask_ex = torch.ones(2, L, dtype=torch.long)
    mask_ex[1, L // 2 :] = 0
    _export(_Image(model), (img_ex,), out / "image_encoder.onnx", ["image"], "image_embedding")
    clip = _is_clip(model)
    text_inputs = ["input_ids"] if clip else ["input_ids", "attention_mask"]
    if clip:  # CLIP: fixed 77-token causal mask, EOT pooling; no attention_mask input
        ids_ex[:, -1] = model.cfg.vocab_size - 1
        _export(_ClipText(model), (ids_ex,), out / "text_encoder.onnx", text_inputs, "text_embedding")
    else:
        _export(_Text(model), (ids_ex, mask_ex), out / "text_encoder.onnx", text_inputs, "text_embedding")
    hash_bits = 0
    if model.hash_image is not None:
        hash_bits = cfg.hash_bits
        e = torch.nn.functional.normalize(torch.randn(2, cfg.embed_dim, generator=g), dim=-1)
        _export(model.hash_image, (e,), out / "hash_image.onnx", ["embedding"], "code")
        _export(model.hash_text, (e,), out / "hash_text.onnx", ["embedding"], "code")
    if clip:
        from training.models.clip_tokenizer import write_clip_tokenizer_json

        write_clip_tokenizer_json(out / "tokenizer.json")
    else:
        write_tokenizer_json(minilm_dir() / "tokenizer.json", out / "tokenizer.json", L, pad_id=0)

    # parity at batch 1 and 7 (never traced at these sizes)
    parity = {}
    si, st = _ort(out / "image_encoder.onnx"), _ort(out / "text_encoder.onnx")
    for b in (1, 7):
        x = torch.randn(b, 3, S, S, generator=g)
        ids = torch.randint(1000, 5000, (b, L), generator=g)
        mask = (torch.arange(L)[None] < torch.randint(3, L, (b, 1), generator=g)).long()
        if clip:  # EOT at the end of each sequence, padding (0) after it
            ids = ids * mask
            ids[torch.arange(b), mask.sum(1) - 1] = model.cfg.vocab_size - 1
        with torch.no_grad():
            ti = model.encode_image(x).numpy()
            tt = (model.encode_text(ids) if clip else model.encode_text(ids, mask)).numpy()
        oi = si.run(None, {"image": x.numpy()})[0]
        feed = {"input_ids": ids.numpy()} if clip else {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        ot = st.run(None, feed)[0]
        parity[f"image_b{b}"] = float(np.abs(ti - oi).max())
        parity[f"text_b{b}"] = float(np.abs(tt - ot).max())
    worst = max(parity.values())
    log(f"ONNX parity max abs diff {worst:.2e} ({parity})")
    if worst >= PARITY_TOL:
        raise RuntimeError(f"ONNX parity failed: {parity}")

    prompts = json.loads(PROMPTS.read_text())
    classes = list(prompts["classes"])
    embs = []
    for c in classes:
        e = text_embeddings_torch(model, prompts["prompts"][c], out / "tokenizer.json").mean(0)
        embs.append(e / np.linalg.norm(e))
    np.save(out / "scene_class_embeddings.npy", np.stack(embs).astype(np.float32))
    (out / "scene_classes.json").write_text(json.dumps({"classes": classes, "prompts": prompts["prompts"]}, indent=1))

    meta = {
        "format_version": 1,
        "name": name or cfg.name,
        "version": version,
        "architecture": cfg.architecture,
        "embed_dim": cfg.embed_dim,
        "image_size": S,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "interpolation": "bicubic",
        "context_length": L,
        "pad_token_id": 0,
        "text_inputs": text_inputs,
        "lowercase": False,
        "input_bands": ["red", "green", "blue"],
        "gsd_m": gsd_m,
        "hash_bits": hash_bits or None,
        "precision": "fp32",
        "metrics": metrics or {},
        "licenses": LICENSES
        if not clip
        else {
            "weights": "from the user-supplied PIR-CLIP/RemoteCLIP/GeoRSCLIP checkpoint: see its licence",
            "training_data": "see the checkpoint's documentation",
        },
        "created": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        "training_config": training_config,
        "parity_max_abs_diff": worst,
        "model_config": cfg.to_dict(),
    }
    st_ = ck.get("state", {})
    if st_.get("best_mr") is not None:
        n_hold = ck.get("train_config", {}).get("val_holdout_images", 0)
        key = f"rsicd_aid150_train_holdout{n_hold}" if n_hold else "rsicd_aid150_val"
        meta["metrics"].setdefault(key, {"mr": st_["best_mr"], "epoch": st_.get("best_epoch")})
    (out / "model.json").write_text(json.dumps(meta, indent=2))
    log(f"bundle written to {out}")
    return out


def make_variant(bundle: str | Path, out_dir: str | Path, precision: str, n: int = 16) -> dict:
    """Copy ``bundle`` to ``out_dir`` with fp16 or int8 (dynamic) ONNX graphs; returns cosines to fp32."""
    import onnx

    src, out = Path(bundle), Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out)
    for f in ("image_encoder.onnx", "text_encoder.onnx"):
        if precision == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(src / f), str(out / f), weight_type=QuantType.QInt8)
        elif precision == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            m = convert_float_to_float16(
                onnx.load(str(src / f)),
                keep_io_types=True,
                op_block_list=[
                    "LayerNormalization",
                    "Softmax",
                    "ReduceMean",
                    "Pow",
                    "Sqrt",
                    "Div",
                    "ReduceL2",
                    "Erf",
                ],
            )
            onnx.save(m, str(out / f))
        else:
            raise ValueError(f"precision must be fp16 or int8, got {precision!r}")
    meta = json.loads((src / "model.json").read_text())
    S, L = meta["image_size"], meta["context_length"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3, S, S)).astype(np.float32)
    ids = rng.integers(1000, 5000, size=(n, L)).astype(np.int64)
    mask = (np.arange(L)[None] < rng.integers(3, L, size=(n, 1))).astype(np.int64)
    cos = {}
    for f, feed, o in (
        ("image_encoder.onnx", {"image": x}, "image_embedding"),
        ("text_encoder.onnx", {"input_ids": ids, "attention_mask": mask}, "text_embedding"),
    ):
        a = _ort(src / f).run([o], feed)[0]
        b = _ort(out / f).run([o], feed)[0]
        c = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        cos[f.split("_")[0]] = {"min": float(c.min()), "mean": float(c.mean())}
    meta["precision"] = precision
    meta["variant_cosine_to_fp32"] = cos
    (out / "model.json").write_text(json.dumps(meta, indent=2))
    return cos


def export_openclip_checkpoint(
    path: str | Path, out_dir: str | Path, arch: str = "pir_vit_b_32", overrides: dict | None = None, **kw
) -> Path:
    """Export a PIR-CLIP / RemoteCLIP / GeoRSCLIP open_clip checkpoint as a PIR-ViT-B-32 bundle."""
    import tempfile

    from training.models import load_model_config
    from training.models.pir_vit import load_pretrained

    cfg = load_model_config(arch, overrides)
    model = build_model(cfg)
    rep = load_pretrained(model, path)
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "ckpt.pt"
        torch.save({"model_config": model.cfg.to_dict(), "state_dict": model.state_dict(), "state": {}}, ck)
        out = export_bundle(ck, out_dir, **kw)
    p = Path(out) / "model.json"
    meta = json.loads(p.read_text())
    meta["source_checkpoint"] = {"kind": rep.kind, "activation": rep.activation, "missing": len(rep.missing)}
    p.write_text(json.dumps(meta, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Export a training checkpoint as a model bundle")
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--name")
    ap.add_argument("--version", default="0.1.0")
    ap.add_argument("--training-config", default="")
    ap.add_argument("--gsd", type=float, default=0.5, help="recommended ground resolution (m/px)")
    ap.add_argument(
        "--precision",
        action="append",
        default=[],
        choices=["fp16", "int8"],
        help="also write <out>-<precision> variant bundles",
    )
    ap.add_argument(
        "--from-openclip",
        metavar="ARCH",
        help="CHECKPOINT is an open_clip PIR-CLIP/RemoteCLIP/GeoRSCLIP file; build model config ARCH "
        "(e.g. pir_vit_b_32) and export it",
    )
    ap.add_argument("--model-set", action="append", default=[], metavar="KEY=VALUE", help="model config override")
    ap.add_argument("--eval-data", help="dataset JSON: measure mR of fp32 and each variant (their mR cost)")
    ap.add_argument("--eval-split", default="val")
    args = ap.parse_args(argv)
    kw = {"training_config": args.training_config, "version": args.version, "name": args.name, "gsd_m": args.gsd}
    if args.from_openclip:
        import yaml

        over = {k: yaml.safe_load(v) for k, _, v in (x.partition("=") for x in args.model_set)}
        out = export_openclip_checkpoint(args.checkpoint, args.out, args.from_openclip, over, **kw)
    else:
        out = export_bundle(args.checkpoint, args.out, **kw)
    base = None
    if args.eval_data:
        from training.evaluate import evaluate_bundle

        base = evaluate_bundle(out, args.eval_data, args.eval_split)
        _add_metrics(out, {f"{args.eval_split}_fp32": base})
        print(json.dumps({"variant": "fp32", **base}))
    for p in args.precision:
        vdir = Path(f"{out}-{p}")
        cos = make_variant(out, vdir, p)
        rec = {"variant": p, "cosine_to_fp32": cos}
        if base is not None:
            m = evaluate_bundle(vdir, args.eval_data, args.eval_split)
            rec.update(mr=m["mr"], mr_cost=round(base["mr"] - m["mr"], 2))
            _add_metrics(vdir, {f"{args.eval_split}_{p}": m, "mr_cost_vs_fp32": rec["mr_cost"]})
        print(json.dumps(rec))
    return 0


def _add_metrics(bundle: Path, extra: dict) -> None:
    p = Path(bundle) / "model.json"
    meta = json.loads(p.read_text())
    meta.setdefault("metrics", {}).update(extra)
    p.write_text(json.dumps(meta, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
