"""Locations and defaults: cache dir (``RSITR_CACHE``), config dir, default model, allowed roots, size cap."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from engine.errors import BadInput

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = PROJECT_ROOT / "resources" / "models"
PROMPTS_DIR = PROJECT_ROOT / "resources" / "prompts"
APP_NAME = "rsitr"
DEFAULT_CACHE_MAX_GB = 20.0


def cache_dir() -> Path:
    """``$RSITR_CACHE`` or the user cache directory (``~/.cache/rsitr`` on Linux)."""
    value = os.environ.get("RSITR_CACHE")
    return Path(value).expanduser() if value else Path(platformdirs.user_cache_dir(APP_NAME))


def stores_dir() -> Path:
    """Directory holding one sub-directory per tile store."""
    return cache_dir() / "stores"


def config_dir() -> Path:
    """``$RSITR_CONFIG`` or the user config directory (``~/.config/rsitr`` on Linux)."""
    value = os.environ.get("RSITR_CONFIG")
    return Path(value).expanduser() if value else Path(platformdirs.user_config_dir(APP_NAME))


def default_token_file() -> Path:
    """The bearer-token file the service creates on first start and the plugin reads."""
    return config_dir() / "token"


def cache_max_bytes() -> int:
    """Size cap of all stores together (``RSITR_CACHE_MAX_GB``, default 20 GB)."""
    value = os.environ.get("RSITR_CACHE_MAX_GB", "")
    try:
        gb = float(value) if value else DEFAULT_CACHE_MAX_GB
    except ValueError:
        raise BadInput(f"RSITR_CACHE_MAX_GB must be a number, got {value!r}") from None
    return int(gb * 1e9)


def model_dirs() -> list[Path]:
    """Bundles shipped under ``resources/models`` (directories with a ``model.json``)."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p for p in MODELS_DIR.iterdir() if (p / "model.json").is_file())


def default_model_dir() -> Path | None:
    """``$RSITR_MODEL``, else the only (or the ``default``-named) bundle in ``resources/models``, else None."""
    value = os.environ.get("RSITR_MODEL")
    if value:
        return Path(value).expanduser()
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
        raise BadInput(
            f"no default model bundle in {MODELS_DIR} yet; pass --model DIR (a bundle directory with model.json)"
        )
    return found


def default_allowed_roots() -> list[Path]:
    """Raster roots the HTTP service accepts by default: the user's home and the current directory."""
    return [Path.home().resolve(), Path.cwd().resolve()]
