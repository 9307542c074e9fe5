"""Command line of a real ``python -m engine serve`` subprocess used by the engine tests."""

from __future__ import annotations

import sys
from pathlib import Path


def serve_argv(bundle_dir: Path, allowed_root: Path, *extra: str) -> list[str]:
    """argv for ``engine serve`` on a free loopback port with one bundle and one allowed root."""
    return [
        sys.executable,
        "-m",
        "engine",
        "serve",
        "--port",
        "0",
        "--model",
        str(bundle_dir),
        "--allowed-root",
        str(allowed_root),
        *extra,
    ]
