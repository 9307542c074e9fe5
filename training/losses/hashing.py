"""CHNR hashing losses: pair-weighted contrastive on hash codes + quantisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.losses.contrastive import per_pair_nce


def quantization_loss(h: torch.Tensor) -> torch.Tensor:
    """``mean_i ||sign(h_i) - h_i||^2`` (codes in (-1,1))."""
    return (torch.sign(h).detach() - h).pow(2).sum(-1).mean()


def hash_contrastive(
    h_img: torch.Tensor,
    h_txt: torch.Tensor,
    pos: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    temperature: float = 0.3,
) -> torch.Tensor:
    """NT-Xent between L2-normalised codes with per-pair weights (the main model's clean weights)."""
    l_i2t, l_t2i, _ = per_pair_nce(F.normalize(h_img, dim=-1), F.normalize(h_txt, dim=-1), 1.0 / temperature, pos)
    per = 0.5 * (l_i2t + l_t2i)
    if weights is None:
        return per.mean()
    return (per * weights).sum() / weights.sum().clamp_min(1e-8)
