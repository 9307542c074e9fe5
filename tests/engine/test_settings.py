"""engine/settings.py: the one place that reads the environment; start-up defaults applied, never overriding."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import BadInput
from engine.settings import VARIABLES, Settings, apply_startup_defaults

ROOT = Path(__file__).resolve().parents[2]


def test_from_env(tmp_path):
    s = Settings.from_env(
        {"RSITR_CACHE": str(tmp_path), "RSITR_CACHE_MAX_GB": "0.5", "RSITR_PROVIDER": "CPU", "RSITR_TOKEN": "t"}
    )
    assert s.cache == tmp_path and s.cache_max_gb == 0.5 and s.force_cpu and s.token == "t" and s.model is None
    assert Settings.from_env({}) == Settings()
    with pytest.raises(BadInput, match="RSITR_CACHE_MAX_GB"):
        Settings.from_env({"RSITR_CACHE_MAX_GB": "lots"})


def test_only_settings_reads_the_environment():
    """No other engine module reads os.environ (the CLI's `models list` sets one variable for its own call)."""
    readers = []
    for f in sorted((ROOT / "engine").glob("*.py")):
        text = f.read_text(encoding="utf-8")
        for name in VARIABLES:
            if f.name != "settings.py" and (f'environ.get("{name}"' in text or f'getenv("{name}"' in text):
                readers.append(f"{f.name}: {name}")
    assert readers == []


def test_startup_defaults_not_at_import(monkeypatch):
    code = "import os, engine.raster, engine.search; print(os.environ.get('GDAL_CACHEMAX'))"
    env = {k: v for k, v in os.environ.items() if k not in ("GDAL_CACHEMAX",)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"  # importing the engine changes nothing
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    apply_startup_defaults()
    assert os.environ["GDAL_CACHEMAX"] == "128" and os.environ["HF_HUB_OFFLINE"] == "0"  # a set value wins
