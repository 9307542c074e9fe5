"""Model definitions; configs are data in ``training/models/configs/*.json``."""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def load_model_config(name: str, overrides: dict | None = None) -> dict:
    """Read ``configs/<name>.json`` (or a path) and apply overrides."""
    p = Path(name)
    if not p.suffix:
        p = CONFIG_DIR / f"{name}.json"
    cfg = json.loads(p.read_text())
    cfg.update(overrides or {})
    return cfg


def build_model(cfg: dict):
    """Instantiate the architecture named in ``cfg['architecture']``."""
    arch = cfg.get("architecture", "PIR-Lite")
    if arch == "PIR-Lite":
        from training.models.pir_lite import PIRLite, PIRLiteConfig

        return PIRLite(PIRLiteConfig.from_dict(cfg))
    if arch.startswith("PIR-ViT"):  # PIR-ViT-B-32 or PIR-<open_clip ViT> (training/models/clip_init.py)
        from training.models.pir_vit import PIRViT, PIRViTConfig

        return PIRViT(PIRViTConfig.from_dict(cfg))
    raise ValueError(f"unknown architecture {arch!r}")
