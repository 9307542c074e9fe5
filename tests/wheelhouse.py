"""A folder of the engine's pinned wheels (``pip download -r requirements-engine.txt``), made once and reused.

Tests that install the engine into a fresh venv (tests/engine/test_packaging.py, the plugin's end-to-end setup
test) install from this folder with ``--no-index --find-links`` so each run does not fetch ~100 MB again. The
folder is keyed by the requirement file's content, lives in ``$RSITR_TEST_WHEELS`` (default
``~/.cache/rsitr-test-wheels``) and is filled from the package index the first time (CI: once per fresh runner).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = PROJECT_ROOT / "requirements-engine.txt"
BUILD_TOOLS = ("setuptools>=68", "wheel")  # to build the engine from source with --no-index


def wheels_root() -> Path:
    value = os.environ.get("RSITR_TEST_WHEELS")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "rsitr-test-wheels"


def cached_wheels(name: str, key_text: str, pip_args: list[list[str]]) -> Path:
    """``<wheels_root>/<name>-<sha12(key_text)>-py3X``, filled once by one ``pip download`` per entry of
    ``pip_args`` (binary wheels only) under a file lock; later calls return the folder."""
    key = hashlib.sha256(key_text.encode()).hexdigest()[:12]
    root = wheels_root()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{name}-{key}-py{sys.version_info.major}{sys.version_info.minor}"
    with FileLock(str(folder) + ".lock", timeout=900):
        if (folder / ".complete").is_file():
            return folder
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(tmp)]
        for args in pip_args:
            subprocess.run([*cmd, *args], check=True, timeout=900)
        (tmp / ".complete").write_text("ok\n")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.replace(folder)
    return folder


def engine_wheelhouse() -> Path:
    """The wheel folder for the current requirements-engine.txt (downloaded on first use)."""
    return cached_wheels("engine", REQUIREMENTS.read_text(), [["-r", str(REQUIREMENTS)], list(BUILD_TOOLS)])


SCALE_PINS = ("ray[data]==2.60.0", "pylance==14.0.2", "pyarrow==22.0.0", "pandas==2.3.3")  # the scale extra's pins


def scale_wheelhouse() -> Path:
    """Cached wheels of the scale extra's pins (with the engine wheelhouse's numpy)."""
    constraints = ["-c", str(REQUIREMENTS)]
    return cached_wheels("scale", " ".join(SCALE_PINS), [[*constraints, *SCALE_PINS]])
