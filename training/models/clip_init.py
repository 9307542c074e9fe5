"""Initialising a PIR-ViT from a user's CLIP checkpoint, or from any open_clip ViT architecture by name (issue 19).

Checkpoint layouts recognised (method.md §1.7):

* ``pir-clip``: open_clip training output of the PIR fork (``{'state_dict': {'module.visual...'}}`` or raw), with
  the instruction encoder (``res_visual.*``, ``vision_proj_res.*``); GELU.
* ``openai``: OpenAI CLIP (TorchScript archive or its state dict): open_clip key names plus the integer entries
  ``input_resolution``, ``context_length``, ``vocab_size``; QuickGELU.
* ``georsclip``: GeoRSCLIP ``RS5M_ViT-B-32*.pt``, a raw open_clip state dict fine-tuned from OpenAI weights;
  QuickGELU. Told apart from RemoteCLIP (same keys) by its file name (``RS5M`` / ``GeoRSCLIP``) or
  ``model.checkpoint_kind=georsclip``.
* ``remoteclip``: RemoteCLIP ``RemoteCLIP-ViT-B-32.pt``, a raw open_clip state dict; GELU. The default for an
  open_clip layout without instruction encoder.

The activation of the family is applied to the model before loading (``quick_gelu``) unless the user set
``model.quick_gelu`` explicitly, and recorded. Every checkpoint tensor must land in the model (no unexpected
keys) and every model tensor must come from the checkpoint except the instruction encoder of the tower-only
families, which starts from its own initialisation and is trained by the scene prior.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from training.models.pir_vit import CHECKPOINT_ACTIVATION, read_state_dict

LAYOUTS = ("pir-clip", "openai", "georsclip", "remoteclip")
OPENAI_META_KEYS = ("input_resolution", "context_length", "vocab_size")
INSTRUCTION_PREFIXES = ("res_visual.", "vision_proj_res.")
TRAINER_ONLY_PREFIXES = ("hash_image.", "hash_text.")  # our heads: never in a CLIP checkpoint
# open_clip config keys a PIR-ViT can follow; anything else (timm/HF towers, attentional pooling...) is refused
_VISION_KEYS = {"image_size", "layers", "width", "patch_size", "head_width", "mlp_ratio"}
_TEXT_KEYS = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"}


@dataclass
class InitReport:
    """What initialisation did: layout, activation applied, tensors loaded, missing model tensors (all of them
    instruction-encoder / hash-head tensors by construction)."""

    checkpoint: str | None
    kind: str
    activation: str
    loaded: int
    missing: list[str]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["missing"] = len(self.missing)
        return d


def detect_layout(sd: dict, path: str | Path = "", kind: str = "auto") -> str:
    """The checkpoint family of state dict ``sd`` (``kind`` other than auto is checked against the keys)."""
    has_instr = any(k.startswith("res_visual.") for k in sd)
    if kind != "auto":
        if kind not in LAYOUTS:
            raise ValueError(f"model.checkpoint_kind must be auto or one of {', '.join(LAYOUTS)}, got {kind!r}")
        if kind == "pir-clip" and not has_instr:
            raise ValueError("checkpoint_kind=pir-clip but the checkpoint has no res_visual.* (instruction encoder)")
        return kind
    if has_instr:
        return "pir-clip"
    if any(k in sd for k in OPENAI_META_KEYS):
        return "openai"
    if re.search(r"rs5m|georsclip", Path(path).name, re.IGNORECASE):
        return "georsclip"
    return "remoteclip"


def activation_of(kind: str) -> str:
    return CHECKPOINT_ACTIVATION[kind]


def open_clip_model_config(arch: str) -> dict:
    """PIR-ViT config fields of open_clip architecture ``arch`` (``ViT-B-16``, ``ViT-L-14-quickgelu`` ...)."""
    import open_clip

    oc = open_clip.get_model_config(arch)
    if oc is None:
        raise ValueError(f"unknown open_clip architecture {arch!r} (see open_clip.list_models())")
    v, t = oc.get("vision_cfg", {}), oc.get("text_cfg", {})
    extra_v = set(v) - _VISION_KEYS
    extra_t = set(t) - _TEXT_KEYS
    if "patch_size" not in v or not isinstance(v.get("layers"), int) or extra_v or extra_t:
        raise ValueError(
            f"open_clip architecture {arch!r} is not a plain ViT + CLIP text transformer "
            f"(unsupported keys: {sorted(extra_v | extra_t) or 'vision tower is not a ViT'})"
        )
    if t.get("mlp_ratio", 4.0) != 4.0:
        raise ValueError(f"open_clip architecture {arch!r}: text mlp_ratio {t['mlp_ratio']} is not supported")
    size = v["image_size"]
    return {
        "name": f"pir-{arch.lower()}",
        "architecture": f"PIR-{arch}",
        "open_clip": arch,
        "embed_dim": oc["embed_dim"],
        "image_size": size if isinstance(size, int) else size[0],
        "vision_layers": v["layers"],
        "vision_width": v["width"],
        "vision_head_width": v.get("head_width", 64),
        "patch_size": v["patch_size"],
        "mlp_ratio": v.get("mlp_ratio", 4.0),
        "context_length": t.get("context_length", 77),
        "vocab_size": t.get("vocab_size", 49408),
        "text_width": t["width"],
        "text_heads": t["heads"],
        "text_layers": t["layers"],
        "quick_gelu": bool(oc.get("quick_gelu", False)),
    }


def read_checkpoint(path: str | Path, kind: str = "auto") -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, layout) of a user checkpoint; one clear error for a missing or unreadable file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"model.checkpoint: no such file {p}")
    try:
        sd = read_state_dict(p)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line for the user
        raise ValueError(f"model.checkpoint: cannot read {p}: {str(exc).splitlines()[0][:200]}") from None
    return sd, detect_layout(sd, p, kind)


def load_checkpoint_into(model, sd: dict[str, torch.Tensor], kind: str, path: str | None = None) -> InitReport:
    """Load ``sd`` (layout ``kind``) into PIR-ViT ``model``: strict about unexpected keys and shapes; the only
    model tensors allowed to be missing are the instruction encoder's (tower-only families) and our hash heads.
    OpenAI's integer entries are checked against the model config and consumed."""
    sd = dict(sd)
    cfg = model.cfg
    meta = {k: sd.pop(k) for k in OPENAI_META_KEYS if k in sd}
    want = {"input_resolution": cfg.image_size, "context_length": cfg.context_length, "vocab_size": cfg.vocab_size}
    for k, v in meta.items():
        if int(v) != want[k]:
            raise ValueError(f"checkpoint {k}={int(v)} but the model has {want[k]}")
    own = model.state_dict()
    unexpected = sorted(set(sd) - set(own))
    if unexpected:
        raise ValueError(f"checkpoint has {len(unexpected)} tensors the model does not use: {unexpected[:5]}")
    bad = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in sd.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f"checkpoint tensor shapes differ from the model ({len(bad)}): {bad[:3]}")
    allowed = TRAINER_ONLY_PREFIXES + (() if kind == "pir-clip" else INSTRUCTION_PREFIXES)
    missing = sorted(set(own) - set(sd))
    lacking = [k for k in missing if not k.startswith(allowed)]
    if lacking:
        raise ValueError(f"{kind} checkpoint lacks {len(lacking)} model tensors: {lacking[:5]}")
    res = model.load_state_dict(sd, strict=False)
    if res.unexpected_keys:  # checked above; kept as a guard
        raise ValueError(f"unexpected checkpoint tensors: {res.unexpected_keys[:5]}")
    act = "quick_gelu" if cfg.quick_gelu else "gelu"
    if act != activation_of(kind):
        warnings.warn(
            f"{kind} checkpoints were trained with {activation_of(kind)} but the model uses {act}", stacklevel=2
        )
    return InitReport(str(path) if path else None, kind, act, len(sd), missing)


def build_initialised(mcfg: dict, checkpoint: str | None = None, kind: str = "auto", quick_gelu: bool | None = None):
    """(PIR-ViT, InitReport): weights from ``checkpoint`` (the family's activation applied unless the user set
    ``quick_gelu`` explicitly, which then wins with a warning on mismatch) or random init."""
    from training.models import build_model

    mcfg = dict(mcfg)
    if quick_gelu is not None:
        mcfg["quick_gelu"] = bool(quick_gelu)
    if not checkpoint:
        model = build_model(mcfg)
        act = "quick_gelu" if model.cfg.quick_gelu else "gelu"
        return model, InitReport(None, "random", act, 0, sorted(model.state_dict()))
    sd, kind = read_checkpoint(checkpoint, kind)
    if quick_gelu is None:
        mcfg["quick_gelu"] = activation_of(kind) == "quick_gelu"
    model = build_model(mcfg)
    return model, load_checkpoint_into(model, sd, kind, checkpoint)
