"""Affiliation loss (PIR): cross-entropy of each embedding against the class centres of the other modality."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_centres(x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique labels [C] (sorted) and the mean embedding of each class in the batch [C,D] (not
    re-normalised).
    """
    uniq, inv = torch.unique(labels, return_inverse=True)
    onehot = F.one_hot(inv, len(uniq)).to(x.dtype)  # [B,C]
    centres = (onehot.t() @ x) / onehot.sum(0)[:, None]
    return uniq, centres


def affiliation_loss(
    img: torch.Tensor,
    txt: torch.Tensor,
    labels: torch.Tensor,
    scale: torch.Tensor | float,
    weights: torch.Tensor | None = None,
    mode: str = "unique",
) -> torch.Tensor:
    """``½[CE(s·I·C_Tᵀ) + CE(s·T·C_Iᵀ)]``; centres are batch class means of the other modality.

    ``mode="unique"``: one centre per class present, target = own class (unambiguous).
    ``mode="pir_rows"``: PIR-CLIP's B centre rows (one per sample, duplicates for same-class rows), target =
    own row. ``weights`` [B] optionally weight the per-sample terms (e.g. self-paced clean weights); the
    centres are computed from all rows. Multiply by the center scale (``aff_weight``) outside.
    """
    if mode == "unique":
        _, inv = torch.unique(labels, return_inverse=True)
        _, c_t = class_centres(txt, labels)
        _, c_i = class_centres(img, labels)
        target = inv
    elif mode == "pir_rows":
        same = (labels[:, None] == labels[None, :]).to(img.dtype)
        same = same / same.sum(-1, keepdim=True)
        c_t, c_i = same @ txt, same @ img
        target = torch.arange(len(labels), device=img.device)
    else:
        raise ValueError(f"unknown affiliation mode {mode!r}")
    l_i = F.cross_entropy(scale * img @ c_t.t(), target, reduction="none")
    l_t = F.cross_entropy(scale * txt @ c_i.t(), target, reduction="none")
    per = 0.5 * (l_i + l_t)
    if weights is not None:
        return (per * weights).sum() / weights.sum().clamp_min(1e-8)
    return per.mean()
