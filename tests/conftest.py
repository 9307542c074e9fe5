"""Shared test fixtures: the shared-data root and offline settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The checkout's shipped bundle is the default model of tests (an installed engine uses its user models folder).
os.environ.setdefault("RSITR_MODELS_DIR", str(Path(__file__).resolve().parent.parent / "resources" / "models"))

from engine.shared_data import shared_root  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data root; skips (with the reason) only when it is absent."""
    root = shared_root()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set RSITR_SHARED)")
    return root


@pytest.fixture(scope="session")
def smoke_bundle(tmp_path_factory, shared) -> Path:
    """Train ``training/configs/smoke.yaml`` (64 pairs, ~20 s) and export its bundle; returns the bundle dir.

    Session-scoped: engine and plugin tests can load a real (tiny) bundle that follows docs/contracts.md.
    """
    pytest.importorskip("torch")
    from training.config import TrainConfig
    from training.train import run

    out = tmp_path_factory.mktemp("smoke_run")
    cfg = TrainConfig.load(PROJECT_ROOT / "training" / "configs" / "smoke.yaml", [f"out_dir={out}", "cache_dir=null"])
    run_dir = run(cfg)
    return run_dir / "bundle"
