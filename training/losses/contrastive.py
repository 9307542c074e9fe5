"""Symmetric InfoNCE with a learned temperature; captions of the same image are positives (multi-positive)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def positive_mask(image_ids: torch.Tensor, text_ids: torch.Tensor | None = None) -> torch.Tensor:
    """[B,B] bool: pair (i,j) is positive when row j's image equals row i's image (or the caption text
    is equal).

    Rows of a batch are (image, caption) pairs. Same-image captions and verbatim-identical captions
    (frequent in
    RSICD) must not be pushed apart as negatives.
    """
    m = image_ids[:, None] == image_ids[None, :]
    if text_ids is not None:
        m = m | (text_ids[:, None] == text_ids[None, :])
    return m


def _soft_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Row-wise cross-entropy against a target distribution (rows of ``targets`` sum to 1)."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(-1)


def per_pair_nce(
    img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor | float, pos: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair i2t and t2i cross-entropies [B] and the cosine matrix S = I T^T [B,B].

    Targets are uniform over the positives of each row (the diagonal when ``pos`` is None).
    """
    sim = img @ txt.t()
    if pos is None:
        pos = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    t = pos.to(sim.dtype)
    t = t / t.sum(-1, keepdim=True)
    logits = scale * sim
    l_i2t = _soft_ce(logits, t)
    tt = pos.t().to(sim.dtype)
    tt = tt / tt.sum(-1, keepdim=True)
    l_t2i = _soft_ce(logits.t(), tt)
    return l_i2t, l_t2i, sim


def multi_positive_nce(
    img: torch.Tensor, txt: torch.Tensor, own: torch.Tensor, pos: torch.Tensor, scale: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multi-positive InfoNCE when a step holds every distinct caption of each of its images.

    ``img`` [B,D] (each image once), ``txt`` [N,D] (N caption rows), ``own`` [N] the row of each caption's image
    in ``img``, ``pos`` [B,N] positives (own captions and verbatim-identical captions of other images). Per
    caption row j of image i: ``l_i2t = -log e^{s_ij} / (e^{s_ij} + sum_neg(i) e^{s_in})`` (each positive
    against the image's negatives only, so the other captions of the image neither compete nor count as
    negatives) and ``l_t2i`` likewise over images. Returns (l_i2t [N], l_t2i [N], cosine [B,N]); the mean of
    ``l_i2t`` over an image's rows is the multi-positive loss of that image.
    """
    sim = img @ txt.t()
    logits = scale * sim
    neg_inf = torch.finfo(logits.dtype).min
    rows = torch.arange(len(own), device=own.device)
    s_pos = logits[own, rows]  # [N]
    neg_i = torch.logsumexp(logits.masked_fill(pos, neg_inf), dim=1)  # [B] over each image's negative captions
    neg_t = torch.logsumexp(logits.masked_fill(pos, neg_inf), dim=0)  # [N] over each caption's negative images
    l_i2t = F.softplus(neg_i[own] - s_pos)
    l_t2i = F.softplus(neg_t - s_pos)
    return l_i2t, l_t2i, sim


def info_nce(
    img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor | float, pos: torch.Tensor | None = None
) -> torch.Tensor:
    """CLIP loss ``(mean CE_i2t + mean CE_t2i) / 2`` with multi-positive targets."""
    l_i2t, l_t2i, _ = per_pair_nce(img, txt, scale, pos)
    return 0.5 * (l_i2t.mean() + l_t2i.mean())
