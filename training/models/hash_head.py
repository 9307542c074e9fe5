"""CHNR hash head: Linear-BN-ReLU-Linear-tanh -> K bits (code in (-1,1); bit = code > 0)."""

from __future__ import annotations

import torch
from torch import nn


class HashHead(nn.Module):
    def __init__(self, d: int, bits: int, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, bits), nn.Tanh()
        )

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.net(emb)
