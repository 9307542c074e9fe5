"""Pixels and tokens for end-to-end PIR-ViT training: images decoded and preprocessed per the bundle contract
(``engine.preprocess``) in DataLoader workers, CLIP BPE ids from the same ``tokenizer.json`` the bundle ships."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training.features import preprocess, tokenize


class ImageFiles(torch.utils.data.Dataset):
    """``root/files[i]`` as a contract-preprocessed float32 [3,S,S] tensor."""

    def __init__(self, root: Path, files: Sequence[str], size: int, mean, std):
        self.root, self.files, self.size, self.mean, self.std = Path(root), list(files), size, mean, std

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.root / self.files[i]) as im:
            return torch.from_numpy(preprocess(im, self.size, self.mean, self.std))


def image_batches(
    ds: ImageFiles, batches: Sequence[np.ndarray], workers: int, pin: bool
) -> torch.utils.data.DataLoader:
    """Loader yielding one [len(b),3,S,S] tensor per index array of ``batches``, in order."""
    return torch.utils.data.DataLoader(
        ds,
        batch_sampler=[list(map(int, b)) for b in batches],
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=False,
    )


def clip_token_ids(texts: Sequence[str], tokenizer_json: Path, context_length: int, batch: int = 4096):
    """[N, context_length] int64 CLIP BPE ids (SOT ... EOT, zero padded) of ``texts``."""
    from training.features import load_tokenizer

    tok = load_tokenizer(tokenizer_json, context_length)
    ids = [tokenize(tok, texts[i : i + batch])[0] for i in range(0, len(texts), batch)]
    return torch.cat(ids) if ids else torch.zeros(0, context_length, dtype=torch.long)
