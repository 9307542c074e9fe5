"""The cache size cap: evict least recently used stores (last search or index touches ``manifest.json``)."""

from __future__ import annotations

from pathlib import Path

from engine.config import stores_dir
from engine.store import dir_bytes, list_stores, remove_store, store_lock


def enforce_cap(max_bytes: int, keep: str | None = None, root: Path | None = None) -> list[str]:
    """Evict least recently used stores until the total size is under ``max_bytes``; never ``keep``."""
    root = root or stores_dir()
    infos = [s for s in list_stores(root) if s["store_id"] != keep]
    total = sum(s["bytes"] for s in infos) + (dir_bytes(root / keep) if keep and (root / keep).is_dir() else 0)

    def last_used(s: dict) -> float:
        try:
            return (root / s["store_id"] / "manifest.json").stat().st_mtime
        except OSError:
            return 0.0

    removed = []
    for s in sorted(infos, key=last_used):
        if total <= max_bytes:
            break
        with store_lock(root, s["store_id"]):
            remove_store(root / s["store_id"])
        total -= s["bytes"]
        removed.append(s["store_id"])
    return removed
