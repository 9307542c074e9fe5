"""The local paths a catalog source names (a raster, a folder, a list file, a STAC ItemCollection JSON), so that the
local engine child can be allowed to read them. GUI-free; the engine resolves the sources itself (engine/catalog.py).
"""

from __future__ import annotations

import json
import os
import urllib.parse

from .errors import EngineError

LIST_SUFFIXES = (".txt", ".lst", ".list")
STAC_SUFFIXES = (".json", ".geojson")


def _is_remote(href: str) -> bool:
    return urllib.parse.urlsplit(href).scheme.lower() in ("http", "https")


def _local(href: str, base: str) -> str:
    """A list line or STAC href as an absolute local path (relative to ``base``; ``file://`` allowed)."""
    if href.startswith("file://"):
        href = urllib.parse.unquote(urllib.parse.urlsplit(href).path)
    return os.path.abspath(os.path.join(base, os.path.expanduser(href)))


def _stac_hrefs(data) -> list[str]:
    items = data.get("features") if isinstance(data, dict) and data.get("type") == "FeatureCollection" else [data]
    hrefs = []
    for item in items if isinstance(items, list) else []:
        assets = item.get("assets") if isinstance(item, dict) else None
        for asset in assets.values() if isinstance(assets, dict) else []:
            if isinstance(asset, dict) and isinstance(asset.get("href"), str):
                hrefs.append(asset["href"])
    return hrefs


def source_paths(source: str) -> list[str]:
    """``source`` (absolute) and, for a list file or STAC JSON, every local file it names; http(s) hrefs are left
    to the engine. EngineError (one line) when the source does not exist or cannot be read."""
    path = os.path.abspath(os.path.expanduser(source))
    if not os.path.exists(path):
        raise EngineError(f"source not found: {source}")
    suffix = os.path.splitext(path)[1].lower()
    if os.path.isdir(path) or suffix not in LIST_SUFFIXES + STAC_SUFFIXES:
        return [path]
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise EngineError(f"cannot read {source}: {getattr(exc, 'strerror', None) or exc}") from None
    if suffix in LIST_SUFFIXES:
        hrefs = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    else:
        try:
            hrefs = _stac_hrefs(json.loads(text))
        except ValueError as exc:
            raise EngineError(f"cannot read STAC JSON {source}: {exc}") from None
    base = os.path.dirname(path)
    return [path, *(_local(h, base) for h in hrefs if not _is_remote(h))]
