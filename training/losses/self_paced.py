"""RRSITR multi-modal self-paced learning + robust triplet (method.md §2.2).

Per-pair loss l (here ``CE_i2t + CE_t2i``; ``n_terms`` = 2). Groups: clean (l < g1), ambiguous
(g1 <= l < g2), noisy (l >= g2). Clean and ambiguous pairs are weighted by ``v = cos(pi*l/(2g))`` (detached)
plus the closed-form self-paced regulariser ``R(v;g)``; ambiguous ones are scaled by lambda1. Noisy pairs get
the robust soft triplet with adaptive margin ``s0*(1 + relu(hardest_negative - positive))``, scaled by
lambda2.

Scale-invariant thresholds (``threshold_mode``):
- ``chance`` (default): ``g = rel * n_terms * ln(B)``. ``n_terms*ln(B)`` is the loss of a uniform predictor,
  so the thresholds move with the batch size and the number of loss terms; a pair is "noisy" when its loss is
  a fixed fraction of chance level whatever the temperature. RRSITR's g1=5, g2=18 (B=100, 4 CE terms,
  chance 18.4) are rel1=0.27, rel2=0.98.
- ``quantile``: g1, g2 are the q1, q2 quantiles of the per-pair losses of the previous epoch (set by the
  trainer), i.e. a fixed share of pairs per group whatever the loss scale.
- ``absolute``: g1, g2 as given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class SelfPacedParams:
    gamma1: float = 0.27
    gamma2: float = 0.98
    threshold_mode: str = "chance"  # chance | quantile | absolute
    q1: float = 0.5
    q2: float = 0.8
    lambda1: float = 0.8
    lambda2: float = 0.9
    sigma0: float = 0.6


def thresholds(
    p: SelfPacedParams, batch_size: int, n_terms: int = 2, epoch_quantiles: tuple[float, float] | None = None
) -> tuple[float, float]:
    """Absolute (g1, g2) for the current batch according to ``p.threshold_mode``."""
    if p.threshold_mode == "chance":
        chance = n_terms * math.log(max(batch_size, 2))
        return p.gamma1 * chance, p.gamma2 * chance
    if p.threshold_mode == "quantile":
        if epoch_quantiles is None:  # first epoch: fall back to chance-relative thresholds
            return thresholds(SelfPacedParams(**{**p.__dict__, "threshold_mode": "chance"}), batch_size, n_terms)
        return epoch_quantiles
    if p.threshold_mode == "absolute":
        return p.gamma1, p.gamma2
    raise ValueError(f"unknown threshold_mode {p.threshold_mode!r}")


def sp_weight(loss: torch.Tensor, g: float) -> torch.Tensor:
    """Self-paced weight ``cos(pi*l/(2g))`` for l < g, else 0 (no gradient)."""
    ls = loss.detach()
    return torch.where(ls < g, torch.cos(math.pi * ls / (2 * g)), torch.zeros_like(ls))


def sp_regulariser(v: torch.Tensor, g: float) -> torch.Tensor:
    """``R(v;g) = -(2g/pi) (v*arccos v - sqrt(1-v^2))``; its minimiser of ``v*l + R`` is ``cos(pi*l/2g)``."""
    v = v.clamp(0.0, 1.0)
    return -(2 * g / math.pi) * (v * torch.arccos(v) - torch.sqrt(1 - v * v))


def robust_triplet(
    sim: torch.Tensor, pos: torch.Tensor, sigma0: float = 0.6, own: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-pair robust soft triplet on cosine matrix ``sim`` (rows images, cols texts): [B], or [N] per caption
    column when ``own`` [N] gives each caption's image row (a step with several captions per image).

    Hardest negatives exclude all positives; margin ``s0*(1 + relu(n - S_ii))`` per direction.
    """
    neg_inf = torch.finfo(sim.dtype).min
    masked = sim.masked_fill(pos, neg_inf)
    n_t = masked.max(dim=1).values  # hardest caption for each image
    n_v = masked.max(dim=0).values  # hardest image for each caption
    if own is None:
        p = sim.diagonal()
    else:
        p = sim[own, torch.arange(len(own), device=own.device)]
        n_t = n_t[own]
    s_t = sigma0 * (1 + torch.relu(n_t - p).detach())
    s_v = sigma0 * (1 + torch.relu(n_v - p).detach())
    return torch.relu(s_t - p + n_t) + torch.relu(s_v - p + n_v)


def self_paced_loss(
    per_pair: torch.Tensor,
    sim: torch.Tensor,
    pos: torch.Tensor,
    g1: float,
    g2: float,
    p: SelfPacedParams,
    own: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """RRSITR loss (mean over the batch) and per-pair info: ``group`` (0 clean, 1 ambiguous, 2 noisy),
    ``weight``. ``own``: see :func:`robust_triplet`.
    """
    lp = per_pair
    clean = lp.detach() < g1
    noisy = lp.detach() >= g2
    amb = ~clean & ~noisy
    v1 = sp_weight(lp, g1)
    v2 = sp_weight(lp, g2)
    term_clean = v1 * lp + sp_regulariser(v1, g1)
    term_amb = p.lambda1 * (v2 * lp + sp_regulariser(v2, g2))
    term_noisy = p.lambda2 * robust_triplet(sim, pos, p.sigma0, own)
    zero = torch.zeros_like(lp)
    total = (
        torch.where(clean, term_clean, zero) + torch.where(amb, term_amb, zero) + torch.where(noisy, term_noisy, zero)
    )
    group = clean.long() * 0 + amb.long() * 1 + noisy.long() * 2
    weight = torch.where(clean, v1, torch.where(amb, p.lambda1 * v2, torch.zeros_like(v1)))
    return total.mean(), {"group": group, "weight": weight}
