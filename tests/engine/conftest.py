"""Engine test fixtures: a tiny synthetic bundle, an isolated cache, generated rasters."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bundles import build_synthetic_bundle


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    return build_synthetic_bundle(tmp_path_factory.mktemp("bundle") / "synthetic", hashes=True)


@pytest.fixture(scope="session")
def encoder(bundle_dir):
    from engine.bundle import load_bundle
    from engine.encoder import Encoder

    return Encoder(load_bundle(bundle_dir), threads=1)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty ``RSITR_CACHE``; returns its stores directory."""
    monkeypatch.setenv("RSITR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RSITR_CONFIG", str(tmp_path / "config"))
    monkeypatch.delenv("RSITR_CACHE_MAX_GB", raising=False)
    monkeypatch.delenv("RSITR_MODEL", raising=False)
    return tmp_path / "cache" / "stores"


@pytest.fixture
def engine(bundle_dir, cache):
    from engine.service import Engine

    return Engine(default_model=bundle_dir, root=cache, threads=1)
