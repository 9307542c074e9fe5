"""Soft belief strategy of PIR-CLIP (method.md §1.3), with flags for the released code's variants.

``belief_mode``:
- ``rank_weights`` (default, paper intent): token j gets ``1/sqrt(rank_j + 1)`` where rank_j is its own rank.
- ``code_v2_index_weights`` (released code since 2024-10-16): position j gets ``1/sqrt(idx_at_rank_j + 1)``.
- ``code_v1_double_belief`` (code the released checkpoints were most likely trained with): ``x*b + x*b``.

``belief_norm_dim``: -1 normalises each token over features (intent); 1 normalises over the token axis
(released code, ``F.normalize`` default).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BELIEF_MODES = ("rank_weights", "code_v2_index_weights", "code_v1_double_belief")


def belief_scores(x: torch.Tensor, y: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Softmax over tokens of ``x @ y^T``; x [B,L,D], y [B,1,D] -> [B,L]. Uses ``squeeze(-1)`` (batch-1
    safe).
    """
    s = torch.matmul(x, y.transpose(1, 2)).squeeze(-1) * scale
    return torch.softmax(s, dim=-1)


def rank_weights(b: torch.Tensor, mode: str = "rank_weights") -> torch.Tensor:
    """Rank-decay weights [B,L] for belief ``b`` [B,L]."""
    order = torch.argsort(b, dim=-1, descending=True)
    if mode == "rank_weights":
        rank = torch.argsort(order, dim=-1)
        return 1.0 / torch.sqrt(rank.to(b.dtype) + 1.0)
    if mode == "code_v2_index_weights":
        return 1.0 / torch.sqrt(order.to(b.dtype) + 1.0)
    raise ValueError(f"no rank weights for belief_mode={mode!r}")


def apply_soft_belief(
    x: torch.Tensor, y: torch.Tensor, mode: str = "rank_weights", norm_dim: int = -1, scale: float = 1.0
) -> torch.Tensor:
    """Re-weight tokens x [B,L,D] by their belief w.r.t. the instruction token y [B,1,D]; returns [B,L,D]."""
    if mode not in BELIEF_MODES:
        raise ValueError(f"belief_mode must be one of {BELIEF_MODES}, got {mode!r}")
    b = belief_scores(x, y, scale)
    if mode == "code_v1_double_belief":
        out = x * b[..., None] + x * b[..., None]
    else:
        out = x * b[..., None] + x * rank_weights(b, mode)[..., None]
    return F.normalize(out, dim=norm_dim)
