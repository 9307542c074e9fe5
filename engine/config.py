"""Locations and defaults: cache dir (``RSITR_CACHE``), config dir, model folder, allowed roots, size cap.

Nothing here depends on a source checkout: an installed engine (``pip install rsitr``) finds its models in the
per-user data folder (platform conventions via platformdirs) or wherever ``RSITR_MODELS_DIR`` / ``RSITR_MODEL`` /
``--model`` point. The prompt vocabularies travel inside the package (``engine/prompts`` in the wheel).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from engine.errors import BadInput
from engine.settings import current

APP_NAME = "rsitr"
PACKAGE_DIR = Path(__file__).resolve().parent
# Wheel: package data ``engine/prompts``; source checkout: ``resources/prompts`` (mapped there by pyproject.toml).
PROMPTS_DIR = next(
    (p for p in (PACKAGE_DIR / "prompts", PACKAGE_DIR.parent / "resources" / "prompts") if p.is_dir()),
    PACKAGE_DIR / "prompts",
)


def cache_dir() -> Path:
    """``$RSITR_CACHE`` or the user cache directory (``~/.cache/rsitr`` on Linux)."""
    return current().cache or Path(platformdirs.user_cache_dir(APP_NAME))


def stores_dir() -> Path:
    """Directory holding one sub-directory per tile store."""
    return cache_dir() / "stores"


def config_dir() -> Path:
    """``$RSITR_CONFIG`` or the user config directory (``~/.config/rsitr`` on Linux)."""
    return current().config or Path(platformdirs.user_config_dir(APP_NAME))


def default_token_file() -> Path:
    """The bearer-token file the service creates on first start and the plugin reads."""
    return config_dir() / "token"


def cache_max_bytes() -> int:
    """Size cap of all stores together (``RSITR_CACHE_MAX_GB``, default 20 GB)."""
    return int(current().cache_max_gb * 1e9)


def models_dir() -> Path:
    """The folder of installed bundles: ``$RSITR_MODELS_DIR`` or the user data dir (``~/.local/share/rsitr/models``)."""
    return current().models_dir or Path(platformdirs.user_data_dir(APP_NAME)) / "models"


def model_dirs() -> list[Path]:
    """Installed bundles: the sub-directories of :func:`models_dir` that hold a ``model.json``."""
    root = models_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "model.json").is_file())


def default_model_dir() -> Path | None:
    """``$RSITR_MODEL``, else the only (or the ``default``-named) bundle in :func:`models_dir`, else None."""
    if current().model:
        return current().model
    dirs = model_dirs()
    if len(dirs) == 1:
        return dirs[0]
    named = [d for d in dirs if d.name == "default"]
    return named[0] if named else None


def require_model_dir(explicit: str | os.PathLike | None) -> Path:
    """The bundle directory to use: the explicit one, else the default; a clear error when neither exists."""
    if explicit:
        return Path(explicit).expanduser()
    found = default_model_dir()
    if found is None:
        dirs = model_dirs()
        why = f"{len(dirs)} bundles there and none named 'default'" if dirs else "no model installed there"
        raise BadInput(
            f"no default model in {models_dir()} ({why}); run `python -m engine models install` "
            "or pass --model DIR (a bundle directory with model.json)"
        )
    return found


def default_allowed_roots() -> list[Path]:
    """Raster roots the HTTP service accepts by default: the user's home and the current directory."""
    return [Path.home().resolve(), Path.cwd().resolve()]
