"""A scratch venv with PyQt6 from the package index, made once and reused (for the Qt6 name check).

``$RSITR_PYQT6_PYTHON`` points at an existing Python with PyQt6; otherwise the venv lives in
``~/.cache/rsitr-test-pyqt6`` (about 90 MB, filled from PyPI on first use, e.g. once per fresh CI runner).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

PYQT6_PINS = ("PyQt6==6.11.0", "PyQt6-Qt6==6.11.2", "PyQt6_sip==13.13.0")
ENV_VAR = "RSITR_PYQT6_PYTHON"


def pyqt6_python() -> str:
    """Path of a Python interpreter that can ``import PyQt6``."""
    given = os.environ.get(ENV_VAR)
    if given:
        return given
    folder = Path.home() / ".cache" / "rsitr-test-pyqt6"
    python = folder / "bin" / "python"
    with FileLock(str(folder) + ".lock", timeout=900):
        if (folder / ".complete").is_file():
            return str(python)
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PYQT6_PINS], check=True, timeout=900)
        (folder / ".complete").write_text("ok\n")
    return str(python)
