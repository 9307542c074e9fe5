"""Inverted-file (IVF) index, the large-store search path: spherical k-means lists probed per query.

``<store>/ivf/`` (written once the store is complete, memory-mapped at search): ``centroids.npy`` float32
``[C, D]`` unit norm; ``offsets.npy`` int64 ``[C+1]``; ``ids.npy`` int64 ``[n_indexed]`` store rows grouped by
list; ``vectors.npy`` int8 ``[n_indexed, D]`` the same rows in list order, quantised per dimension
(row ~ ``vectors * scale``; numpy casts int8 to float32 about 4x faster than float16); ``scale.npy`` float32
``[D]``; ``meta.json`` (written last). A query scores the centroids, scans the ``nprobe`` best lists on the int8
vectors, re-ranks the best candidates exactly on the store's float16 embeddings and scans rows appended after
the build (``>= n_indexed``) exactly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import CorruptData

FORMAT_VERSION = 1
IVF_DIR = "ivf"
LARGE_STORE_MIN_TILES = 200_000  # stores from this size take the large-store path (IVF, else Hamming prefilter)
DEFAULT_NPROBE = 24  # pooled benchmark, 1e6 tiles, 1000 lists: recall@10 1.00 (16: 0.994, 8: 0.95), ~25k rows read
SAMPLE_PER_LIST = 64
ASSIGN_ROWS = 16_384
SCAN_ROWS = 65_536
PROBE_BLOCK = 4096  # rows converted int8 -> float32 at a time when scanning probed lists
_ARRAYS = ("centroids", "offsets", "ids", "vectors", "scale")


@dataclass
class IVFIndex:
    """Coarse lists over rows ``0..n_indexed-1`` of a store's embeddings."""

    centroids: np.ndarray  # float32 [C, D], unit norm
    offsets: np.ndarray  # int64 [C+1]: list c is ids[offsets[c]:offsets[c+1]]
    ids: np.ndarray  # int64 [n_indexed], row ids grouped by list
    vectors: np.ndarray  # int8 [n_indexed, D], rows in list order, row ~ vectors * scale
    scale: np.ndarray  # float32 [D]
    n_indexed: int
    meta: dict = field(default_factory=dict)

    @property
    def n_lists(self) -> int:
        return int(self.centroids.shape[0])


def default_n_lists(n: int) -> int:
    """About sqrt(n) lists, clipped to [16, 2048] (and to n)."""
    return max(1, min(n, int(np.clip(round(float(np.sqrt(max(n, 0)))), 16, 2048))))


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0).astype(np.float32)


def _nearest(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the most similar centroid of every row, and that similarity."""
    lab = np.empty(len(x), dtype=np.int64)
    sim = np.empty(len(x), dtype=np.float32)
    for s in range(0, len(x), ASSIGN_ROWS):
        d = x[s : s + ASSIGN_ROWS] @ centroids.T
        lab[s : s + ASSIGN_ROWS] = d.argmax(axis=1)
        sim[s : s + ASSIGN_ROWS] = d[np.arange(len(d)), lab[s : s + ASSIGN_ROWS]]
    return lab, sim


def train_centroids(sample: np.ndarray, n_lists: int, iters: int = 10, seed: int = 0) -> np.ndarray:
    """Spherical (cosine) k-means: ``min(n_lists, len(sample))`` unit centroids, deterministic for a seed.

    Empty clusters are re-seeded with the sample rows farthest from their centroid."""
    x = _unit(sample)
    n, d = x.shape
    c = min(int(n_lists), n)
    if c < 1:
        return np.zeros((0, d), np.float32)
    rng = np.random.default_rng(seed)
    cent = x[np.sort(rng.choice(n, c, replace=False))]
    for _ in range(iters):
        lab, sim = _nearest(x, cent)
        counts = np.bincount(lab, minlength=c)
        sums = np.zeros((c, d), np.float32)
        full = np.flatnonzero(counts)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[full]
        sums[full] = np.add.reduceat(x[np.argsort(lab, kind="stable")], starts, axis=0)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            sums[empty] = x[np.argsort(sim, kind="stable")[: len(empty)]]
        cent = _unit(sums)
    return cent


def _quantise(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x / scale), -127, 127).astype(np.int8)


def build_ivf(
    emb: np.ndarray,
    n_lists: int | None = None,
    seed: int = 0,
    chunk: int = SCAN_ROWS,
    iters: int = 10,
    sample_per_list: int = SAMPLE_PER_LIST,
    meta: dict | None = None,
) -> IVFIndex:
    """IVF index of all rows of ``emb`` (a float16 ``[n, D]`` memmap is read in chunks of ``chunk`` rows).

    Trains on at most ``sample_per_list * n_lists`` rows, assigns every row to its nearest centroid, then writes
    the rows in list order as int8 (per-dimension scale: the largest magnitude of that dimension / 127)."""
    t0 = time.perf_counter()
    n, d = emb.shape
    c = min(n, int(n_lists) if n_lists else default_n_lists(n))
    rng = np.random.default_rng(seed)
    m = min(n, sample_per_list * max(c, 1))
    rows = np.sort(rng.choice(n, m, replace=False)) if m < n else np.arange(n)
    sample = np.asarray(emb[rows], dtype=np.float32)
    cent = train_centroids(sample, c, iters, seed)
    c = len(cent)
    labels = np.zeros(n, dtype=np.int64)
    peak = np.full(d, 1e-6, np.float32)
    for s in range(0, n, chunk):
        x = np.asarray(emb[s : s + chunk], dtype=np.float32)
        peak = np.maximum(peak, np.abs(x).max(axis=0))
        if c > 1:
            labels[s : s + chunk] = _nearest(x, cent)[0]
    scale = (peak / 127.0).astype(np.float32)
    counts = np.bincount(labels, minlength=c) if n else np.zeros(c, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    ids = np.argsort(labels, kind="stable").astype(np.int64)
    pos = np.empty(n, dtype=np.int64)
    pos[ids] = np.arange(n)
    vectors = np.empty((n, d), dtype=np.int8)
    for s in range(0, n, chunk):
        vectors[pos[s : s + chunk]] = _quantise(np.asarray(emb[s : s + chunk], dtype=np.float32), scale)
    info = {"n_lists": c, "seed": seed, "iters": iters, "sample_rows": int(m)}
    info.update(meta or {}, build_s=round(time.perf_counter() - t0, 3))
    return IVFIndex(cent.astype(np.float32), offsets, ids, vectors, scale, n, info)


def _f32(emb: np.ndarray, start: int) -> np.ndarray:
    return np.asarray(emb[start : start + SCAN_ROWS], dtype=np.float32)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest scores, best first."""
    if len(scores) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        return part[np.argsort(-scores[part], kind="stable")]
    return np.argsort(-scores, kind="stable")


def probe_lists(index: IVFIndex, q: np.ndarray, nprobe: int) -> np.ndarray:
    """The ``nprobe`` lists whose centroids are most similar to ``q``."""
    cs = np.asarray(index.centroids) @ q
    return _top(cs, max(1, nprobe))


def search_ivf(
    index: IVFIndex,
    q: np.ndarray,
    k: int,
    nprobe: int | None = None,
    emb: np.ndarray | None = None,
    rerank: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, row ids), best first, over the ``nprobe`` lists closest to ``q``.

    With the store's embeddings ``emb``: the best ``rerank`` (default max(4k, 64)) int8 candidates are
    re-scored exactly and rows ``>= n_indexed`` are scanned exactly; without: int8 approximate scores."""
    q = np.asarray(q, dtype=np.float32).ravel()
    cand = np.zeros(0, np.int64)
    approx = np.zeros(0, np.float32)
    if index.n_lists and index.n_indexed:
        lists = probe_lists(index, q, nprobe or DEFAULT_NPROBE)
        starts, ends = index.offsets[lists], index.offsets[lists + 1]
        total = int((ends - starts).sum())
        qs = q * index.scale
        buf = np.empty((min(total, PROBE_BLOCK), q.shape[0]), dtype=np.float32)  # cache-sized: ~3x faster
        cand = np.empty(total, dtype=np.int64)
        approx = np.empty(total, dtype=np.float32)
        o = 0
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            cand[o : o + e - s] = index.ids[s:e]
            for b in range(s, e, PROBE_BLOCK):
                m = min(e, b + PROBE_BLOCK) - b
                np.copyto(buf[:m], index.vectors[b : b + m], casting="unsafe")
                np.dot(buf[:m], qs, out=approx[o : o + m])
                o += m
    if emb is None:
        top = _top(approx, k)
        return approx[top], cand[top]
    keep = _top(approx, max(k, rerank or max(4 * k, 64)))
    cand = np.sort(cand[keep])
    scores = np.asarray(emb[cand], dtype=np.float32) @ q if len(cand) else np.zeros(0, np.float32)
    if emb.shape[0] > index.n_indexed:  # rows appended after the build
        n0, n = index.n_indexed, emb.shape[0]
        tail = np.arange(n0, n)
        tail_scores = np.concatenate([_f32(emb, s) @ q for s in range(n0, n, SCAN_ROWS)])
        cand, scores = np.concatenate([cand, tail]), np.concatenate([scores, tail_scores])
    top = _top(scores, k)
    return scores[top], cand[top]


# ---------------------------------------------------------------- files
def save_ivf(path: Path, index: IVFIndex) -> None:
    """Write ``index`` as a directory of ``.npy`` files + ``meta.json``, replacing ``path`` atomically."""
    from engine.store import _fsync_dir, atomic_save_npy, atomic_write_json

    path = Path(path)
    tag = f"{os.getpid()}-{threading.get_ident()}"
    tmp, old = path.with_name(f".{path.name}.tmp-{tag}"), path.with_name(f".{path.name}.old-{tag}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name in _ARRAYS:
            atomic_save_npy(tmp / f"{name}.npy", np.ascontiguousarray(getattr(index, name)))
        meta = {**index.meta, "format_version": FORMAT_VERSION, "n_indexed": int(index.n_indexed)}
        meta.update(n_lists=index.n_lists, embed_dim=int(index.centroids.shape[1]), vectors="int8 per-dimension")
        atomic_write_json(tmp / "meta.json", meta)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def load_ivf(path: Path) -> IVFIndex:
    """Open an index written by :func:`save_ivf` (arrays memory-mapped); CorruptData when inconsistent."""
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        arr = {a: np.load(path / f"{a}.npy", mmap_mode="r", allow_pickle=False) for a in _ARRAYS}
    except (OSError, ValueError) as exc:
        raise CorruptData(f"IVF index {path} unreadable ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("n_indexed"), int):
        raise CorruptData(f"IVF index {path}: bad meta.json")
    n = meta["n_indexed"]
    c, d = arr["centroids"].shape if arr["centroids"].ndim == 2 else (-1, -1)
    off = np.array(arr["offsets"])
    ok = (
        meta.get("format_version") == FORMAT_VERSION
        and c >= 0
        and arr["centroids"].dtype == np.float32
        and off.shape == (c + 1,)
        and off[0] == 0
        and off[-1] == n
        and bool(np.all(np.diff(off) >= 0))
        and arr["ids"].shape == (n,)
        and arr["vectors"].shape == (n, d)
        and arr["vectors"].dtype == np.int8
        and arr["scale"].shape == (d,)
    )
    if not ok:
        raise CorruptData(f"IVF index {path} is inconsistent; rebuild it")
    return IVFIndex(arr["centroids"], off, arr["ids"], arr["vectors"], arr["scale"], n, meta)


def matches(index: IVFIndex, manifest: dict) -> bool:
    """True when ``index`` was built for this store's embeddings (same store id and dimension, no extra rows)."""
    return (
        index.meta.get("store_id") == manifest.get("store_id")
        and index.n_indexed <= int(manifest.get("n_tiles", -1))
        and index.centroids.shape[1] == int(manifest.get("model", {}).get("embed_dim", -1))
    )


def ensure_ivf(path: Path, min_tiles: int | None = None, force: bool = False, seed: int = 0) -> IVFIndex | None:
    """Build ``<path>/ivf/`` for a complete store of at least ``min_tiles`` (default ``LARGE_STORE_MIN_TILES``)
    tiles unless a matching index over every row is there (``force``: rebuild, any size); the index, or None.
    The caller holds the store lock."""
    from engine.store import read_manifest

    path = Path(path)
    m = read_manifest(path)
    n = int(m.get("n_tiles", 0))
    small = n < (LARGE_STORE_MIN_TILES if min_tiles is None else min_tiles)
    if m.get("state") != "complete" or n == 0 or (small and not force):
        return None
    if not force and (path / IVF_DIR / "meta.json").is_file():
        with contextlib.suppress(CorruptData):
            old = load_ivf(path / IVF_DIR)
            if matches(old, m) and old.n_indexed == n:
                return old
    emb = np.load(path / "embeddings.npy", mmap_mode="r", allow_pickle=False)
    model = {k: m.get("model", {}).get(k) for k in ("name", "version")}
    save_ivf(path / IVF_DIR, build_ivf(emb, seed=seed, meta={"store_id": m.get("store_id"), "model": model}))
    return load_ivf(path / IVF_DIR)


def ivf_bytes(path: Path) -> int:
    """On-disk size of an index directory."""
    return sum(f.stat().st_size for f in Path(path).glob("*") if f.is_file())
