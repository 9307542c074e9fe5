"""Build a user caption bank: ``python -m training.caption_bank --bundle DIR --data JSON --split train
--out F.npz``.

The bank (docs/contracts.md §1, "caption bank") is built on the user's machine from a dataset they have; it is
never shipped in a bundle. ``.npz`` keys: ``texts`` (unicode [N], unique, file order), ``embeddings`` float16
[N,D] L2-normalised with the bundle's text encoder, ``model_name``, ``model_version``, ``embed_dim``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from training.config import resolve_path
from training.data.readers import read_dataset


def build_caption_bank(
    bundle: str | Path,
    data: str | Path,
    out: str | Path,
    splits: tuple[str, ...] = ("train",),
    max_texts: int | None = None,
) -> Path:
    from training.bundle_runtime import BundleEncoder

    enc = BundleEncoder(bundle)
    rows = read_dataset(resolve_path(str(data)), splits)
    texts = list(dict.fromkeys(r.caption for r in rows if r.caption))
    if max_texts:
        texts = texts[:max_texts]
    emb = enc.encode_texts(texts)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = enc.meta
    with open(out, "wb") as fh:
        np.savez(
            fh,
            texts=np.array(texts, dtype=str),
            embeddings=emb.astype(np.float16),
            model_name=np.array(meta["name"]),
            model_version=np.array(meta["version"]),
            embed_dim=np.array(int(meta["embed_dim"])),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Embed a dataset's captions with a bundle into a caption bank")
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", action="append", help="split(s) to include (default: train)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max", type=int, dest="max_texts")
    args = ap.parse_args(argv)
    p = build_caption_bank(args.bundle, args.data, args.out, tuple(args.split or ["train"]), args.max_texts)
    z = np.load(p)
    print(json.dumps({"out": str(p), "n": int(len(z["texts"])), "embed_dim": int(z["embed_dim"])}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
