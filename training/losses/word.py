"""Auxiliary word loss (issue 17, step 5): each image against the target words (training/word_targets.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def word_loss(img: torch.Tensor, words: torch.Tensor, targets: torch.Tensor, scale: torch.Tensor | float):
    """Multi-positive InfoNCE from images to words, in the form of ``multi_positive_nce``'s ``l_i2t``.

    ``img`` [B,D] and ``words`` [V,D] L2-normalised, ``targets`` bool [B,V]. Each word of an image's captions
    against the words the image does not use: ``softplus(logsumexp_neg(i) s_in - s_iw)``, mean over the positive
    (image, word) pairs. Images without target words, or using every word, add nothing.
    """
    logits = scale * (img @ words.t())
    neg = torch.logsumexp(logits.masked_fill(targets, torch.finfo(logits.dtype).min), dim=1)  # [B]
    usable = targets.any(1) & ~targets.all(1)
    if not usable.any():
        return logits.sum() * 0.0
    per = F.softplus(neg[:, None] - logits)  # [B,V]
    mask = targets & usable[:, None]
    return per[mask].mean()
