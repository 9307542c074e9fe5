"""Where the project's shared data lives (``RSITR_SHARED``, default ``../shared`` beside the checkout)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_VAR = "RSITR_SHARED"


def shared_root() -> Path:
    """Return the shared-data root: ``$RSITR_SHARED`` if set, else ``<project>/../shared``."""
    from engine.settings import current

    value = current().shared
    return value.resolve() if value else (PROJECT_ROOT.parent / "shared").resolve()


def shared_path(*parts: str) -> Path:
    """Return a path inside the shared-data root (it may not exist)."""
    return shared_root().joinpath(*parts)


def rsicd_aid150_json() -> Path:
    """The Karpathy-style JSON of the rsicd_aid150 image-caption set."""
    return shared_path("datasets", "rsicd_aid150", "dataset_rsicd_aid150.json")


def rsicd_aid150_images() -> Path:
    """The image root of the rsicd_aid150 set (``<Class>/<name>.jpg`` below it)."""
    return shared_path("datasets", "rsicd_aid150", "images")


def rasters_dir() -> Path:
    """The folder of real GeoTIFFs used by demos and tests."""
    return shared_path("rasters")
