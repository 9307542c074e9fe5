"""HVSA: uniformity on the hypersphere and the easy-to-hard curriculum triplet (method.md §3.2)."""

from __future__ import annotations

import torch


def uniformity_loss(x: torch.Tensor, t: float = 2.0, use_log: bool = False) -> torch.Tensor:
    """``mean_{i<j} exp(-t*||x_i - x_j||^2)`` over L2-normalised rows (HVSA: no log; Wang&Isola: log)."""
    n = x.shape[0]
    if n < 2:
        return x.sum() * 0.0
    d2 = torch.cdist(x, x).pow(2)
    iu = torch.triu_indices(n, n, offset=1, device=x.device)
    val = torch.exp(-t * d2[iu[0], iu[1]]).mean()
    return torch.log(val) if use_log else val


def curriculum_weight(cost: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    """``exp(-beta*cost)`` (detached): large-cost (hard) triplets are down-weighted early on."""
    return torch.exp(-beta * cost.detach())


def curriculum_triplet(sim: torch.Tensor, pos: torch.Tensor, margin: float = 0.2, beta: float = 0.5) -> torch.Tensor:
    """HVSA difficulty-weighted triplet: ``sum(c*exp(-beta*c)) / B^2`` over all negatives, both directions."""
    d = sim.diagonal()
    c_s = torch.relu(margin + sim - d[:, None]).masked_fill(pos, 0.0)  # image i vs caption j
    c_im = torch.relu(margin + sim - d[None, :]).masked_fill(pos, 0.0)  # caption j vs image i
    b = sim.shape[0]
    return ((c_s * curriculum_weight(c_s, beta)).sum() + (c_im * curriculum_weight(c_im, beta)).sum()) / (b * b)
