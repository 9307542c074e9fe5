"""Progressive attention encoders of PIR-ITR: Spatial-PAE (image) and Temporal-PAE / cycle attention
(text).
"""

from __future__ import annotations

import torch
from torch import nn


class _FFN(nn.Sequential):
    def __init__(self, d: int, mult: int = 2, dropout: float = 0.0):
        super().__init__(nn.Linear(d, mult * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(mult * d, d))


class SpatialPAELayer(nn.Module):
    """Self-attention over [instruction; visual tokens], then the instruction token cross-attends to them."""

    def __init__(self, d: int, heads: int = 8, dropout: float = 0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ln_q = nn.LayerNorm(d)
        self.ln_kv = nn.LayerNorm(d)
        self.cross_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.ffn = _FFN(d, 2, dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.ln1(tokens)
        tokens = tokens + self.self_attn(h, h, h, need_weights=False)[0]
        q = self.ln_q(tokens[:, :1])
        kv = self.ln_kv(tokens[:, 1:])
        instr = tokens[:, :1] + self.cross_attn(q, kv, kv, need_weights=False)[0]
        tokens = torch.cat([instr, tokens[:, 1:]], dim=1)
        return tokens + self.ffn(self.ln2(tokens))


class SpatialPAE(nn.Module):
    """``layers`` Spatial-PAE layers; input [B,1+L,D] with the instruction token first; returns the same
    shape.
    """

    def __init__(self, d: int, layers: int = 2, heads: int = 8, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(SpatialPAELayer(d, heads, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(d)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            tokens = layer(tokens)
        return self.ln(tokens)


class TemporalPAE(nn.Module):
    """PIR-ITR language cycle attention: ``cycles`` rounds of E = CroSA(q=Linear(E_prev), kv=MHSA(E_prev)).

    Input token states [B,L,D] and a key-padding mask [B,L] (True = padding); returns the first-token state.
    """

    def __init__(self, d: int, heads: int = 8, cycles: int = 3, dropout: float = 0.0):
        super().__init__()
        self.cycles = cycles
        self.mhsa = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.crosa = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.maps = nn.ModuleList(nn.Linear(d, d) for _ in range(cycles))
        self.ln1 = nn.LayerNorm(d)
        self.ln2 = nn.LayerNorm(d)
        self.ffn = _FFN(d, 2, dropout)
        self.ln3 = nn.LayerNorm(d)

    def forward(self, e: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        for i in range(self.cycles):
            att = self.ln1(e + self.mhsa(e, e, e, key_padding_mask=pad_mask, need_weights=False)[0])
            q = self.maps[i](e)
            e = self.ln2(q + self.crosa(q, att, att, key_padding_mask=pad_mask, need_weights=False)[0])
            e = self.ln3(e + self.ffn(e))
        return e[:, 0]
