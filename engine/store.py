"""Tile stores (docs/contracts.md section 2): identity, locking, resumable writes, validated memory-mapped reads,
the store's FAISS index (engine/faiss_index.py), listing and removal. Atomic writes: engine/atomic_io.py; the
size cap's eviction: engine/eviction.py."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely

from engine import gpkg
from engine.atomic_io import atomic_save_npy, atomic_save_npz, atomic_write, atomic_write_json
from engine.config import stores_dir
from engine.errors import Conflict, CorruptData, NotFound
from engine.faiss_index import (
    FLAT_MAX_TILES,
    INDEX_DIR,
    Rows,
    VectorIndex,
    build_index,
    choose_spec,
    open_matching,
    save_index,
)
from engine.raster import fingerprint
from engine.remote import RemoteUnreachable, is_url
from engine.remote import current_fingerprint as remote_fingerprint

FORMAT_VERSION = 1
TILE_COLUMNS = (
    ("tile_id", int),
    ("col", int),
    ("row", int),
    ("x_off", int),
    ("y_off", int),
    ("width", int),
    ("height", int),
    ("valid_fraction", float),
)


# ---------------------------------------------------------------- identity
def make_store_id(fp: dict, model: dict, grid: dict) -> str:
    """sha1 of (raster fingerprint, model name+version, grid parameters), 16 hex chars."""
    key = json.dumps({"raster": fp, "model": [model["name"], model["version"]], "grid": grid}, sort_keys=True)
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:16]


@contextlib.contextmanager
def store_lock(root: Path, store_id: str):
    """Exclusive inter-process lock for writing one store (two jobs for one raster never interleave)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{store_id}.lock", "a+") as fh:
        try:
            import fcntl
        except ImportError:  # Windows
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    time.sleep(0.1)
            try:
                yield
            finally:
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ---------------------------------------------------------------- writer
class StoreWriter:
    """Writes a store chunk by chunk under ``partial/``; ``finalize`` assembles the final files atomically.

    Chunk ``c`` covers grid windows ``[c*chunk_tiles, (c+1)*chunk_tiles)``; a chunk file exists only when
    complete, so a killed run resumes from the chunks present.
    """

    def __init__(self, path: Path, manifest: dict, chunk_tiles: int) -> None:
        self.path = path
        self.partial = path / "partial"
        self.chunk_tiles = chunk_tiles
        self.manifest = manifest
        self.partial.mkdir(parents=True, exist_ok=True)
        old = self._read_manifest()
        if old and old.get("grid") == manifest["grid"] and old.get("chunk_tiles") == chunk_tiles:
            self.manifest["created"] = old.get("created", manifest["created"])
        else:  # incompatible leftovers: start over
            for f in self.partial.glob("chunk_*.npz"):
                f.unlink()
        self.manifest.update(state="partial", chunk_tiles=chunk_tiles)
        atomic_write_json(path / "manifest.json", self.manifest)
        for old_index in (INDEX_DIR, "ivf"):  # an index of earlier embeddings never survives a rewrite
            shutil.rmtree(path / old_index, ignore_errors=True)

    def _read_manifest(self) -> dict | None:
        try:
            return json.loads((self.path / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _chunk_path(self, c: int) -> Path:
        return self.partial / f"chunk_{c:07d}.npz"

    def done_chunks(self) -> set[int]:
        done = set()
        for f in self.partial.glob("chunk_*.npz"):
            try:
                with np.load(f, allow_pickle=False) as z:
                    if {"index", "valid", "emb", "skipped"} <= set(z.files):
                        done.add(int(f.stem.split("_")[1]))
            except (OSError, ValueError, EOFError):
                f.unlink()  # cannot happen with atomic renames, but never trust a bad chunk
        return done

    def write_chunk(self, c: int, index, valid, emb, skipped, codes=None) -> None:
        emb = np.asarray(emb, dtype=np.float16)
        arrays = {
            "index": np.asarray(index, dtype=np.int64),
            "valid": np.asarray(valid, dtype=np.float32),
            "emb": emb.reshape(len(index), emb.shape[-1]),
            "skipped": np.asarray(skipped, dtype=np.int64),
        }
        if codes is not None:
            codes = np.asarray(codes, dtype=np.uint8)
            arrays["codes"] = codes.reshape(len(index), codes.shape[-1])
        atomic_save_npz(self._chunk_path(c), **arrays)

    def finalize(self, n_chunks: int, grid, transform, crs_wkt: str, authid: str, embed_dim: int) -> dict:
        """Concatenate chunks into embeddings.npy/codes.npy/tiles.gpkg, then write the complete manifest."""
        idx, valid, embs, codes, skipped = [], [], [], [], []
        for c in range(n_chunks):
            with np.load(self._chunk_path(c), allow_pickle=False) as z:
                idx.append(z["index"])
                valid.append(z["valid"])
                embs.append(z["emb"])
                skipped.append(z["skipped"])
                if "codes" in z.files:
                    codes.append(z["codes"])
        index = np.concatenate(idx) if idx else np.zeros(0, np.int64)
        emb = np.concatenate(embs) if embs else np.zeros((0, embed_dim), np.float16)
        emb = emb.reshape(len(index), embed_dim)
        atomic_save_npy(self.path / "embeddings.npy", emb)
        if codes and len(codes) == len(embs):
            atomic_save_npy(self.path / "codes.npy", np.concatenate(codes))
        windows = [grid.window(int(i)) for i in index]
        polys = tile_polygons(transform, np.array([[w.x_off, w.y_off, w.width, w.height] for w in windows]))
        rows = [
            (t, w.col, w.row, w.x_off, w.y_off, w.width, w.height, float(v))
            for t, (w, v) in enumerate(zip(windows, np.concatenate(valid) if valid else [], strict=True))
        ]
        atomic_write(
            self.path / "tiles.gpkg", lambda t: gpkg.write_layer(t, "tiles", TILE_COLUMNS, rows, polys, crs_wkt, authid)
        )
        n_skipped = int(sum(len(s) for s in skipped))
        self.manifest.update(
            state="complete",
            n_tiles=int(len(index)),
            n_skipped=n_skipped,
            codes=(self.path / "codes.npy").is_file(),
            completed=time.time(),
        )
        atomic_write_json(self.path / "manifest.json", self.manifest)
        shutil.rmtree(self.partial, ignore_errors=True)
        return self.manifest


def tile_polygons(transform, windows: np.ndarray):
    """Shapely polygons (raster CRS) for an ``[N, 4]`` array of (x_off, y_off, w, h) windows."""
    a, b, c, d, e, f = transform[:6]
    if len(windows) == 0:
        return np.array([], dtype=object)
    x0, y0 = windows[:, 0].astype(float), windows[:, 1].astype(float)
    x1, y1 = x0 + windows[:, 2], y0 + windows[:, 3]
    px = np.stack([x0, x1, x1, x0, x0], axis=1)
    py = np.stack([y0, y0, y1, y1, y0], axis=1)
    coords = np.stack([a * px + b * py + c, d * px + e * py + f], axis=-1)
    return shapely.polygons(coords)


# ---------------------------------------------------------------- reader
@dataclass
class Store:
    """A complete, validated store opened for search."""

    path: Path
    manifest: dict
    embeddings: np.ndarray  # float16 memmap [n, D]
    windows: np.ndarray  # int64 [n, 4] x_off, y_off, w, h
    codes: np.ndarray | None
    index: VectorIndex | None = None  # FAISS IVF index of a large store (engine/faiss_index.py), when built
    _polys: np.ndarray | None = None
    _rows: Rows | None = None

    def rows(self) -> Rows:
        """The embeddings as a search collection (holds the exact in-memory FAISS index once built)."""
        if self._rows is None:
            self._rows = Rows([self.embeddings])
        return self._rows

    def dense(self) -> np.ndarray:
        """Embeddings as float32 in memory when they fit (the flat index's storage), else the memmap."""
        d = self.rows().dense()
        return self.embeddings if d is None else d

    @property
    def store_id(self) -> str:
        return self.manifest["store_id"]

    @property
    def raster_path(self) -> str:
        return self.manifest["raster"]["path"]

    @property
    def transform(self) -> tuple[float, ...]:
        return tuple(self.manifest["raster"]["transform"])

    def polygons(self) -> np.ndarray:
        if self._polys is None:
            self._polys = tile_polygons(self.transform, self.windows)
        return self._polys

    def is_stale(self) -> bool:
        """True when the raster file changed (or vanished) since indexing; a remote raster whose server does not
        answer is not stale (its indexed embeddings stay searchable offline)."""
        try:
            return current_fingerprint(self.raster_path) != self.manifest["raster"]["fingerprint"]
        except RemoteUnreachable:
            return False


_FP_CACHE: dict[tuple, dict] = {}


def current_fingerprint(path: str) -> dict | None:
    """Fingerprint of a raster now (cached per size+mtime; a URL: engine/remote.py); None if it is gone."""
    if is_url(path):
        return remote_fingerprint(path)
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _FP_CACHE:
        if len(_FP_CACHE) > 4096:
            _FP_CACHE.clear()
        _FP_CACHE[key] = fingerprint(path)
    return _FP_CACHE[key]


def read_manifest(path: Path) -> dict:
    try:
        return json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(f"unknown store: {path.name}") from None
    except (OSError, ValueError) as exc:
        raise CorruptData(f"corrupted store {path.name}: manifest.json unreadable ({exc})") from None


def check_store_id(store_id: str) -> str:
    """``store_id`` when it is 16 lowercase hex characters (never a path), else NotFound."""
    if not store_id or not all(ch in "0123456789abcdef" for ch in store_id) or len(store_id) != 16:
        raise NotFound(f"unknown store: {store_id!r} (store ids are 16 hex characters)")
    return store_id


def open_store(store_id: str, root: Path | None = None, check_stale: bool = True) -> Store:
    """Open a complete store by id, validating files against the manifest."""
    root = root or stores_dir()
    check_store_id(store_id)
    path = root / store_id
    if not path.is_dir():
        raise NotFound(f"unknown store: {store_id}")
    m = read_manifest(path)
    if m.get("state") != "complete":
        raise Conflict(f"store {store_id} is incomplete (an index run was interrupted); re-run index to resume")
    n, d = int(m.get("n_tiles", -1)), int(m.get("model", {}).get("embed_dim", -1))
    try:
        emb = np.load(path / "embeddings.npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CorruptData(
            f"corrupted store {store_id}: embeddings.npy unreadable ({exc}); clear and re-index"
        ) from None
    if emb.shape != (n, d) or emb.dtype != np.float16:
        raise CorruptData(
            f"corrupted store {store_id}: embeddings {emb.shape} {emb.dtype} do not match "
            f"the manifest ({n}, {d}) float16; clear and re-index"
        )
    try:
        rows = gpkg.read_columns(
            path / "tiles.gpkg", "tiles", ["tile_id", "x_off", "y_off", "width", "height"], "tile_id"
        )
    except Exception as exc:  # noqa: BLE001 - sqlite errors of any kind mean corruption
        raise CorruptData(f"corrupted store {store_id}: tiles.gpkg unreadable ({exc})") from None
    win = np.array([r[1:] for r in rows], dtype=np.int64).reshape(-1, 4)
    if len(rows) != n or (n and [r[0] for r in rows] != list(range(n))):
        raise CorruptData(f"corrupted store {store_id}: tiles.gpkg has {len(rows)} tiles, manifest says {n}")
    codes = None
    if (path / "codes.npy").is_file():
        try:
            codes = np.load(path / "codes.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            codes = None
        if codes is not None and codes.shape[0] != n:
            codes = None
    index = open_matching(path, store_id, n, d)
    store = Store(path=path, manifest=m, embeddings=emb, windows=win, codes=codes, index=index)
    if check_stale and store.is_stale():
        raise Conflict(
            f"store {store_id} is stale: {store.raster_path} changed or vanished since it was indexed; re-run index"
        )
    with contextlib.suppress(OSError):
        os.utime(path / "manifest.json")  # last use, for the size cap's LRU eviction
    return store


def ensure_index(path: Path, force: bool = False, seed: int = 0) -> VectorIndex | None:
    """Build ``<path>/faiss/`` for a complete store from ``FLAT_MAX_TILES`` tiles (``force``: an IVF index
    whatever the size, rebuilt) unless a matching index over every row is there; the index, or None (exact
    search). The caller holds the store lock."""
    path = Path(path)
    m = read_manifest(path)
    n, d = int(m.get("n_tiles", 0)), int(m.get("model", {}).get("embed_dim", -1))
    if m.get("state") != "complete" or n == 0 or (n < FLAT_MAX_TILES and not force):
        return None
    if not force:
        old = open_matching(path, m["store_id"], n, d)
        if old is not None and old.n_indexed == n:
            return old
    emb = np.load(path / "embeddings.npy", mmap_mode="r", allow_pickle=False)
    model = {k: m.get("model", {}).get(k) for k in ("name", "version")}
    meta = {"collection_id": m["store_id"], "model": model}
    vi = build_index(Rows([emb]), choose_spec(n, force_ivf=True), seed, meta)
    save_index(path / INDEX_DIR, vi)
    return open_matching(path, m["store_id"], n, d)


def list_stores(root: Path | None = None, sizes: bool = True) -> list[dict]:
    """Summaries of all stores (complete, partial, stale or corrupted); ``sizes=False`` skips disk usage."""
    root = root or stores_dir()
    out = []
    if not root.is_dir():
        return out
    for p in sorted(root.iterdir()):
        if not p.is_dir() or p.name.startswith("."):
            continue
        try:
            m = read_manifest(p)
            state = m.get("state", "unknown")
            raster = m.get("raster", {}).get("path", "")
            with contextlib.suppress(RemoteUnreachable):
                if state == "complete" and current_fingerprint(raster) != m.get("raster", {}).get("fingerprint"):
                    state = "stale"
            out.append(
                {
                    "store_id": p.name,
                    "raster": raster,
                    "model": f"{m.get('model', {}).get('name')}@{m.get('model', {}).get('version')}",
                    "n_tiles": int(m.get("n_tiles", 0)),
                    "state": state,
                    "bytes": dir_bytes(p) if sizes else 0,
                    "grid": m.get("grid", {}),
                }
            )
        except (NotFound, CorruptData):
            out.append(
                {
                    "store_id": p.name,
                    "raster": "",
                    "model": "",
                    "n_tiles": 0,
                    "state": "corrupted",
                    "bytes": dir_bytes(p),
                    "grid": {},
                }
            )
    return out


def remove_store(path: Path) -> None:
    """Delete a store directory safely (rename first so a half-deleted store is never seen as valid)."""
    trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=path.parent))
    os.replace(path, trash / path.name)
    shutil.rmtree(trash, ignore_errors=True)


def clear_stores(
    ids: list[str] | None = None, root: Path | None = None, states: tuple[str, ...] | None = None
) -> list[str]:
    """Remove the given stores (all when ``ids`` is None, or those in ``states``); returns the removed ids."""
    root = root or stores_dir()
    listed = list_stores(root, sizes=False)
    known = {s["store_id"] for s in listed}
    if states is not None:
        ids = [s["store_id"] for s in listed if s["state"] in states]
    targets = sorted(known) if ids is None else ids
    for sid in targets:
        if sid not in known:
            raise NotFound(f"unknown store: {sid}")
    for sid in targets:
        with store_lock(root, sid):
            remove_store(root / sid)
    return list(targets)
