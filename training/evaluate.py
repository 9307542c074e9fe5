"""Evaluate retrieval: ``python -m training.evaluate --bundle DIR|--checkpoint FILE --data JSON --split test
--json OUT``. A bundle is evaluated through ONNX Runtime (the shipped artefact); a checkpoint through PyTorch.
Model selection uses val; test is only ever reported.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training.config import resolve_path
from training.data.readers import read_dataset
from training.metrics import retrieval_metrics


def load_eval_set(data: str | Path, split: str, image_root: str | Path | None = None, max_images: int | None = None):
    """(image paths, captions, caption -> image index) for one split."""
    path = resolve_path(str(data))
    rows = read_dataset(path, (split,))
    root = Path(image_root) if image_root else path.parent / "images"
    files = list(dict.fromkeys(r.filename for r in rows))
    if max_images:
        files = files[:max_images]
        keep = set(files)
        rows = [r for r in rows if r.filename in keep]
    pos = {f: i for i, f in enumerate(files)}
    return [root / f for f in files], [r.caption for r in rows], np.array([pos[r.filename] for r in rows])


def evaluate_bundle(
    bundle: str | Path, data: str | Path, split: str = "test", image_root=None, max_images: int | None = None
) -> dict[str, float]:
    from training.bundle_runtime import BundleEncoder

    enc = BundleEncoder(bundle)
    paths, caps, t2i = load_eval_set(data, split, image_root, max_images)
    img = np.concatenate(
        [enc.encode_images([Image.open(p).convert("RGB") for p in paths[i : i + 64]]) for i in range(0, len(paths), 64)]
    )
    txt = enc.encode_texts(caps)
    return retrieval_metrics(img, txt, t2i)


@torch.no_grad()
def evaluate_checkpoint(
    ckpt: str | Path, data: str | Path, split: str = "test", image_root=None, max_images: int | None = None
) -> dict[str, float]:
    from training.checkpoints import load_checkpoint_model

    torch.set_num_threads(2)
    model, _ = load_checkpoint_model(ckpt)
    return evaluate_model(model, *load_eval_set(data, split, image_root, max_images))


@torch.no_grad()
def evaluate_model(model, paths: list, caps: list[str], t2i) -> dict[str, float]:
    """Retrieval metrics of a PyTorch model (eval mode) on images ``paths`` and captions ``caps`` (fp32 path)."""
    from training.features import load_images, load_tokenizer, tokenize
    from training.models.minilm import minilm_dir

    cfg = model.cfg
    img = torch.cat(
        [
            model.encode_image(
                load_images(Path("/"), [str(p) for p in paths[i : i + 64]], cfg.image_size, cfg.mean, cfg.std)
            )
            for i in range(0, len(paths), 64)
        ]
    )
    tok = load_tokenizer(minilm_dir() / "tokenizer.json", cfg.context_length)
    txt = []
    for i in range(0, len(caps), 256):
        ids, mask = tokenize(tok, caps[i : i + 256])
        txt.append(model.encode_text(ids, mask))
    return retrieval_metrics(img.numpy(), torch.cat(txt).numpy(), t2i)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="R@1/5/10 both directions and mR (x100)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--bundle")
    src.add_argument("--checkpoint")
    ap.add_argument("--data", default="shared:datasets/rsicd_aid150/dataset_rsicd_aid150.json")
    ap.add_argument("--split", default="test")
    ap.add_argument("--image-root")
    ap.add_argument("--max-images", type=int)
    ap.add_argument("--json", help="write the metrics here")
    args = ap.parse_args(argv)
    if args.bundle:
        m = evaluate_bundle(args.bundle, args.data, args.split, args.image_root, args.max_images)
    else:
        m = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.image_root, args.max_images)
    res = {"split": args.split, "data": str(args.data), "source": args.bundle or args.checkpoint, **m}
    print(json.dumps(res))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
