"""Hubness correction probe (issue 17): does CSLS (Conneau et al. 2018) lift retrieval mR of a checkpoint?

``score(c, y) = cos(c, y) - a * r_txt(c) - a * r_img(y)`` with ``r_img(y)`` the mean cosine of image ``y`` to its
``k`` nearest train captions and ``r_txt(c)`` that of caption ``c`` to its ``k`` nearest train images: images
(captions) that are close to everything are pushed down. Measured on the holdout validation split (to choose k
and a) and on test, from the frozen-trunk caches. Not used by the engine (docs/results.md §0 says why).

Usage: python -m training.hubness --checkpoint runs/pir_lite_v5/best.pt [--out docs/results/csls_v5.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

KS = (5, 10, 20, 50)
ALPHAS = (0.25, 0.5, 1.0)


def neighbourhood(x: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    """Mean cosine of each row of ``x`` to its ``k`` nearest rows of ``bank`` (all L2-normalised)."""
    k = min(k, len(bank))
    return np.sort(x @ bank.T, axis=1)[:, -k:].mean(1)


def csls_embeddings(img: np.ndarray, txt: np.ndarray, r_img: np.ndarray, r_txt: np.ndarray, a: float):
    """Embeddings whose inner products are the CSLS scores: ``[img, 1, -a r_img] . [txt, -a r_txt, 1]``."""
    one_i, one_t = np.ones((len(img), 1), np.float32), np.ones((len(txt), 1), np.float32)
    img2 = np.hstack([img, one_i, -a * r_img[:, None]]).astype(np.float32)
    txt2 = np.hstack([txt, -a * r_txt[:, None], one_t]).astype(np.float32)
    return img2, txt2


def split_embeddings(ckpt: Path) -> dict:
    """{split: (image emb, caption-row emb, row->image, unique caption emb)} for train / holdout val / test."""
    import torch

    from training.checkpoints import load_checkpoint_model
    from training.config import TrainConfig, resolve_path
    from training.data.readers import read_dataset
    from training.data.splits import Split, load_splits
    from training.features import load_tokenizer
    from training.models.minilm import minilm_dir
    from training.sweep import embed_split

    torch.set_num_threads(2)
    model, _ = load_checkpoint_model(ckpt)
    model.cfg.pretrained = True  # the training caches' key (the trunks are the frozen ImageNet ones)
    cfg = TrainConfig.load(ckpt.parent / "config.json")
    train, val, _, _ = load_splits(cfg)
    path = resolve_path(cfg.data_json)
    test = Split(read_dataset(path, ("test",)), path.parent / "images")
    tok = load_tokenizer(minilm_dir() / "tokenizer.json", model.cfg.context_length)
    cache = Path(cfg.cache_dir) if cfg.cache_dir else None
    out = {}
    for name, s in (("train", train), ("val", val), ("test", test)):
        img, txt = embed_split(model, s, tok, cache, name)
        out[name] = (img, txt[s.row_txt], s.row_img, txt)
    return out


def main(argv: list[str] | None = None) -> int:
    from training.metrics import retrieval_metrics

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, type=Path)
    ap.add_argument("--out", type=Path, help="JSON with mR per split and (k, a)")
    args = ap.parse_args(argv)
    emb = split_embeddings(args.checkpoint)
    bank_img, bank_txt = emb["train"][0], emb["train"][3]
    result: dict = {}
    for name in ("val", "test"):
        img, txt, t2i, _ = emb[name]
        result[name] = {"base": retrieval_metrics(img, txt, t2i)["mr"]}
        for k in KS:
            r_img, r_txt = neighbourhood(img, bank_txt, k), neighbourhood(txt, bank_img, k)
            for a in ALPHAS:
                result[name][f"k{k}_a{a}"] = retrieval_metrics(*csls_embeddings(img, txt, r_img, r_txt, a), t2i)["mr"]
    best = max((key for key in result["val"] if key != "base"), key=lambda key: result["val"][key])
    result["selected_on_val"] = {"setting": best, "val": result["val"][best], "test": result["test"][best]}
    print(json.dumps(result["selected_on_val"]), f"(base: val {result['val']['base']}, test {result['test']['base']})")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
