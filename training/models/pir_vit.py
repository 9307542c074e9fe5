"""PIR-ViT-B-32: the published PIR-CLIP architecture on open_clip (method.md §1.1-1.3, §1.7).

A subclass of ``open_clip.model.CLIP`` (so the state-dict layout is exactly PIR-CLIP's: ``visual.*``,
``res_visual.*``, ``vision_proj_res.*``, text keys at top level) with the instruction encoder
(ModifiedResNet, layers 3-4-6-3, width 64, attention-pool output ``embed_dim``) + ``Linear(embed_dim ->
vision_width)`` and the soft belief strategy before the ViT transformer. The image embedding is read at the
instruction slot (``pool_type='tok'`` on the 1+L sequence).
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.config import from_dict_strict
from training.models.belief import apply_soft_belief
from training.models.hash_head import HashHead

# activation each public checkpoint family was trained with (a mismatch runs silently but degrades output)
CHECKPOINT_ACTIVATION = {
    "pir-clip": "gelu",
    "remoteclip": "gelu",
    "georsclip": "quick_gelu",
    "openai": "quick_gelu",
}


@dataclass
class PIRViTConfig:
    name: str = "pir-vit-b-32"
    architecture: str = "PIR-ViT-B-32"
    embed_dim: int = 512
    image_size: int = 224
    vision_layers: int = 12
    vision_width: int = 768
    vision_head_width: int = 64
    patch_size: int = 32
    res_layers: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    res_width: int = 64
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 512
    text_heads: int = 8
    text_layers: int = 12
    quick_gelu: bool = False
    belief_mode: str = "rank_weights"
    belief_norm_dim: int = -1
    mean: tuple[float, ...] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, ...] = (0.26862954, 0.26130258, 0.27577711)
    hash_bits: int = 0
    pretrained: bool = False
    open_clip: str | None = None  # the open_clip architecture the towers follow (None: ViT-B-32 as above)
    mlp_ratio: float = 4.0

    @classmethod
    def from_dict(cls, d: dict) -> PIRViTConfig:
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(d[k])
        return from_dict_strict(cls, d, "PIR-ViT config")

    def to_dict(self) -> dict:
        return asdict(self)


def _clip_base():
    from open_clip.model import CLIP

    return CLIP


class PIRViT(_clip_base()):
    """open_clip CLIP + PIR instruction encoder + soft belief. ``encode_image`` / ``encode_text``
    normalise.
    """

    def __init__(self, cfg: PIRViTConfig):
        from open_clip.model import CLIPTextCfg, CLIPVisionCfg
        from open_clip.modified_resnet import ModifiedResNet

        vision = CLIPVisionCfg(
            layers=cfg.vision_layers,
            width=cfg.vision_width,
            head_width=cfg.vision_head_width,
            patch_size=cfg.patch_size,
            image_size=cfg.image_size,
            mlp_ratio=cfg.mlp_ratio,
            pool_type="tok",
        )
        text = CLIPTextCfg(
            context_length=cfg.context_length,
            vocab_size=cfg.vocab_size,
            width=cfg.text_width,
            heads=cfg.text_heads,
            layers=cfg.text_layers,
        )
        super().__init__(cfg.embed_dim, vision, text, quick_gelu=cfg.quick_gelu)
        self.cfg = cfg
        self.res_visual = ModifiedResNet(
            layers=cfg.res_layers,
            output_dim=cfg.embed_dim,
            heads=cfg.res_width * 32 // 64,
            image_size=cfg.image_size,
            width=cfg.res_width,
        )
        self.vision_proj_res = nn.Linear(cfg.embed_dim, cfg.vision_width)
        self.hash_image = HashHead(cfg.embed_dim, cfg.hash_bits) if cfg.hash_bits else None
        self.hash_text = HashHead(cfg.embed_dim, cfg.hash_bits) if cfg.hash_bits else None

    def instruction_token(self, image: torch.Tensor) -> torch.Tensor:
        """[B,1,vision_width] from the same preprocessed image."""
        return self.vision_proj_res(self.res_visual(image)).unsqueeze(1)

    def encode_image(self, image: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self.encode_image_with_instruction(image, self.instruction_token(image), normalize)

    def encode_image_with_instruction(self, image: torch.Tensor, y: torch.Tensor, normalize: bool = True):
        """Image embedding with a given instruction token ``y`` [B,1,vision_width] (cached when the instruction
        encoder is frozen)."""
        v = self.visual
        x = v._embeds(image)  # conv1, CLS, positional embedding, patch dropout, ln_pre: [B,L,W]
        y = y.to(x.dtype)
        x = apply_soft_belief(x, y, self.cfg.belief_mode, self.cfg.belief_norm_dim)
        x = torch.cat([y, x], dim=1)  # instruction token: no positional embedding, no ln_pre
        x = v.transformer(x)
        pooled, _ = v._pool(x)  # ln_post, then the token at slot 0 (the instruction slot)
        if v.proj is not None:
            pooled = pooled @ v.proj
        return F.normalize(pooled, dim=-1) if normalize else pooled

    def encode_text(self, text: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return super().encode_text(text, normalize=normalize)

    def encode_text_export(self, text: torch.Tensor) -> torch.Tensor:
        """``encode_text`` with the EOT index from an int32 argmax (ONNX Runtime's ArgMax lacks int64)."""
        x = self.token_embedding(text) + self.positional_embedding
        x = self.ln_final(self.transformer(x, attn_mask=self.attn_mask))
        x = x[torch.arange(x.shape[0], device=x.device), text.to(torch.int32).argmax(dim=-1)]
        return F.normalize(x @ self.text_projection, dim=-1)


@dataclass
class LoadReport:
    kind: str
    activation: str
    missing: list[str]
    unexpected: list[str]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Raw, ``{'state_dict'}``, ``{'model'}``, ``module.``-prefixed or TorchScript checkpoints -> a
    state dict.
    """
    try:  # third-party files: tensors and plain containers only, never arbitrary pickled objects
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError):
        obj = torch.jit.load(str(path), map_location="cpu")
    if isinstance(obj, torch.jit.ScriptModule) or hasattr(obj, "state_dict") and not isinstance(obj, dict):
        obj = obj.state_dict()
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}


def load_pretrained(model: PIRViT, path: str | Path, kind: str = "auto") -> LoadReport:
    """Load a PIR-CLIP ``.pt`` (strict) or a RemoteCLIP/GeoRSCLIP ViT-B-32 (towers only, instruction encoder
    left as initialised). ``kind``: auto | pir-clip | remoteclip | georsclip | openai. Warns when the model's
    activation differs from the one the checkpoint family was trained with.
    """
    from training.models.clip_init import OPENAI_META_KEYS, detect_layout

    sd = read_state_dict(path)
    if kind == "auto":  # PIR-CLIP / OpenAI / GeoRSCLIP (file name) / RemoteCLIP (training/models/clip_init.py)
        kind = detect_layout(sd, path)
    for k in OPENAI_META_KEYS:
        sd.pop(k, None)
    act = "quick_gelu" if model.cfg.quick_gelu else "gelu"
    want = CHECKPOINT_ACTIVATION.get(kind)
    if want and want != act:
        warnings.warn(f"{kind} checkpoints were trained with {want} but the model uses {act}", stacklevel=2)
    if kind == "pir-clip":
        res = model.load_state_dict(sd, strict=True)
        missing, unexpected = list(res.missing_keys), list(res.unexpected_keys)
    else:
        res = model.load_state_dict(sd, strict=False)
        missing, unexpected = list(res.missing_keys), list(res.unexpected_keys)
        bad = [k for k in missing if not k.startswith(("res_visual.", "vision_proj_res."))]
        if bad:
            raise KeyError(f"checkpoint lacks tower weights: {bad[:5]}")
    return LoadReport(kind=kind, activation=act, missing=missing, unexpected=unexpected)
