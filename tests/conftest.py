"""Shared test fixtures: the shared-data root and offline settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from engine.shared_data import shared_root  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data root; skips (with the reason) only when it is absent."""
    root = shared_root()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set RSITR_SHARED)")
    return root
