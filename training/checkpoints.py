"""Training checkpoints in one place: the dict ``train.py`` writes, atomic saving, and loading a model back.

``export``, ``evaluate`` and ``sweep`` load checkpoints from here, so ``evaluate`` no longer imports ``export``
(which imports ``evaluate`` for its ``--eval-data`` option).
"""

from __future__ import annotations

from pathlib import Path

import torch

from training.models import build_model


def checkpoint(model, cfg, classes: list[str], state: dict) -> dict:
    """Checkpoint dict (weights, configs, classes, trainer state); ``last.pt`` adds the optimizer."""
    return {
        "state_dict": model.state_dict(),
        "model_config": model.cfg.to_dict(),
        "train_config": cfg.to_dict(),
        "classes": classes,
        "state": state,
    }


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save through a temporary file, so an interrupted save never leaves a truncated checkpoint."""
    tmp = path.with_name("tmp_" + path.name)
    torch.save(obj, tmp)
    tmp.rename(path)


def load_checkpoint_model(ckpt_path: str | Path):
    """(model in eval mode, checkpoint dict) of a ``train.py`` checkpoint; the weights come from the file."""
    # our own train.py checkpoint: trusted, so full unpickling is allowed
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)  # nosec B614
    cfg = dict(ck["model_config"])
    cfg["pretrained"] = False  # weights come from the checkpoint
    model = build_model(cfg)
    model.load_state_dict(ck["state_dict"])
    model.eval()
    return model, ck
