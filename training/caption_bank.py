"""Build a caption bank from a training dataset: a thin call into the engine (``engine.caption_bank``).

``python -m training.caption_bank --bundle DIR --data JSON [--split train] --out F.npz`` is the same as
``python -m engine caption-bank build JSON --split train --out F.npz --model DIR`` (``shared:`` paths allowed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.config import resolve_path


def build_caption_bank(
    bundle: str | Path,
    data: str | Path,
    out: str | Path,
    splits: tuple[str, ...] = ("train",),
    max_texts: int | None = None,
) -> Path:
    """Embed the unique captions of ``splits`` (the first ``max_texts``) with the bundle's text encoder."""
    from engine.bundle import load_bundle
    from engine.caption_bank import build_bank, read_texts
    from engine.encoder import Encoder

    texts = read_texts(resolve_path(str(data)), splits)[:max_texts]
    return build_bank(texts, Encoder(load_bundle(bundle), threads=2), out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Embed a dataset's captions with a bundle into a caption bank")
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", action="append", help="split(s) to include (default: train)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    from engine.cli import main as engine_main

    split_args = [a for s in (args.split or ["train"]) for a in ("--split", s)]
    data = str(resolve_path(args.data))
    return engine_main(["caption-bank", "build", data, "--out", args.out, "--model", args.bundle, *split_args])


if __name__ == "__main__":
    raise SystemExit(main())
