"""Every environment setting the engine reads (``RSITR_*``, GDAL, Hugging Face), in one place.

Values are read when asked (:func:`current`), so a changed environment (a test, a host that sets a variable
before starting the engine) is seen; process-wide defaults that other libraries read from the environment once
(GDAL's block cache, Hugging Face offline mode) are applied at start-up by :func:`apply_startup_defaults`
(``python -m engine`` and every :class:`engine.service.Engine`), never at import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.errors import BadInput

# name -> what it sets (docs/engine.md "Environment")
VARIABLES = {
    "RSITR_CACHE": "stores and catalogs folder (default: the user cache dir)",
    "RSITR_CACHE_MAX_GB": "size cap of all stores, least recently used evicted (default 20)",
    "RSITR_CONFIG": "config folder holding the API token file (default: the user config dir)",
    "RSITR_MODELS_DIR": "models folder (default: the user data dir + models)",
    "RSITR_MODEL": "the default model bundle folder",
    "RSITR_TOKEN": "API bearer token (overrides the token file)",
    "RSITR_PROVIDER": "'cpu' forces ONNX Runtime's CPU provider",
    "RSITR_ORT_SPIN": "'1' lets ONNX Runtime threads busy-wait between batches",
    "RSITR_SHARED": "the project's shared data (tests, demos, benchmarks)",
    "GDAL_CACHEMAX": "GDAL block cache in MB (engine default 128)",
    "HF_HUB_OFFLINE": "Hugging Face hub offline mode (engine default 1: the engine never downloads from the hub)",
}
# GDAL reads its block-cache size once, at the first raster opened; its default (5 % of RAM) lets indexing
# memory grow with raster size. 128 MB keeps it flat with the same speed (bench: 10k px, 881 -> 209 MB RSS).
DEFAULT_GDAL_CACHEMAX_MB = "128"
DEFAULT_CACHE_MAX_GB = 20.0
# Remote COGs (STAC asset hrefs, read through /vsicurl/): no directory listing per open (one request instead of
# a listing of the server's folder), only raster extensions fetched, bounded waits, retries of transient errors,
# adjacent ranges merged into one request and GDAL's in-memory cache of fetched blocks.
GDAL_NETWORK_DEFAULTS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2,.vrt",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "GDAL_HTTP_TIMEOUT": "60",
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "VSI_CACHE": "TRUE",
}
VARIABLES.update(
    {name: f"GDAL option for remote COG reads (engine default {v})" for name, v in GDAL_NETWORK_DEFAULTS.items()}
)


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


@dataclass(frozen=True)
class Settings:
    """The engine's environment settings (None: not set, the caller's default applies)."""

    cache: Path | None = None
    cache_max_gb: float = DEFAULT_CACHE_MAX_GB
    config: Path | None = None
    models_dir: Path | None = None
    model: Path | None = None
    token: str | None = None
    force_cpu: bool = False
    ort_spin: bool = False
    shared: Path | None = None

    @classmethod
    def from_env(cls, env=None) -> Settings:
        env = os.environ if env is None else env
        raw = env.get("RSITR_CACHE_MAX_GB", "")
        try:
            cap = float(raw) if raw else DEFAULT_CACHE_MAX_GB
        except ValueError:
            raise BadInput(f"RSITR_CACHE_MAX_GB must be a number, got {raw!r}") from None
        return cls(
            cache=_path(env.get("RSITR_CACHE")),
            cache_max_gb=cap,
            config=_path(env.get("RSITR_CONFIG")),
            models_dir=_path(env.get("RSITR_MODELS_DIR")),
            model=_path(env.get("RSITR_MODEL")),
            token=env.get("RSITR_TOKEN") or None,
            force_cpu=env.get("RSITR_PROVIDER", "").lower() == "cpu",
            ort_spin=env.get("RSITR_ORT_SPIN", "0") == "1",
            shared=_path(env.get("RSITR_SHARED")),
        )


def current() -> Settings:
    """The settings of the environment now."""
    return Settings.from_env()


def apply_startup_defaults() -> None:
    """Defaults that GDAL and Hugging Face read from the environment themselves (a value already set wins)."""
    os.environ.setdefault("GDAL_CACHEMAX", DEFAULT_GDAL_CACHEMAX_MB)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    for name, value in GDAL_NETWORK_DEFAULTS.items():
        os.environ.setdefault(name, value)
