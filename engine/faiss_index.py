"""FAISS vector index of a collection (a store or a catalog): type chosen by size, atomic files, search.

A collection's rows are float16 ``[n, D]`` L2-normalised embeddings (:class:`Rows`, one or several memory-mapped
arrays one after the other). Search is inner product (= cosine) through FAISS at every size:

- below ``FLAT_MAX_TILES`` rows: exact ``IndexFlatIP`` built in memory at the first search (no file);
- from ``FLAT_MAX_TILES``: ``IVF<lists>,SQ8`` (one byte per dimension) with exact float16 re-rank;
- from ``PQ_MIN_TILES``: ``IVF<lists>,PQ64x4fs`` (4-bit fast-scan PQ, 32 bytes per row) with a much deeper exact
  float16 re-rank (``PQ_RERANK_MIN`` rows).

Builds (:func:`build_indexes`) share one coarse k-means (two-level from ``TWO_LEVEL_MIN_LISTS`` lists) and one
assignment of every row to its list between index types; queries probe ``default_nprobe(n_lists)`` lists (0.8 %,
at least 8). The CHNR hash codes of a store are not used by search: at equal bytes per tile IVF-PQ beats FAISS
binary indexes on them (bench/query.py, docs/performance.md section 3).

IVF indexes cover rows ``0 .. n_indexed-1``; rows appended later (``>= n_indexed``) are scanned exactly, so they
are always found. Files (docs/contracts.md section 2): ``<collection>/faiss/index.faiss`` and ``meta.json``
(written last; the folder is replaced atomically). An AOI is an ID selector inside the FAISS search.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from engine.atomic_io import atomic_write, atomic_write_json, fsync_dir
from engine.errors import BadInput, CorruptData

FORMAT_VERSION = 2
INDEX_DIR = "faiss"
# Below this many rows search is exact (IndexFlatIP). Measured on this 2-core machine: the exact scan of 1e5 x 256
# rows takes 6.6 ms p50 idle (docs/performance.md before FAISS) and 26 ms at load 5 (1 FAISS thread), while
# IVF316,SQ8 + re-rank answers in 0.6 ms at recall@10 1.0 on clustered rows but needs a 5 s build and loses
# recall on unclustered rows (the old IVF: 0.24 at 1e5 isotropic). Up to 1e5 rows exact costs <= ~7 ms idle and
# needs no build; above, the scan grows linearly (1e6: ~850 ms) and the IVF types take over.
FLAT_MAX_TILES = 100_000
# From this many rows the lists hold 4-bit fast-scan PQ codes (PQ64x4fs: 32 B + 8 B id per row) instead of SQ8
# (D + 8 B = 264 B per row). Measured on the benchmark's pooled rows (bench/query.py, 1e6 rows, 30 queries, load
# ~6): SQ8 + 64 re-ranked rows reaches recall@10 1.00, PQ64x4fs only 0.52 with 256
# re-ranked rows, 0.82 with 1024, 0.93 with 2048 (4 ms), 0.97 with 4096 (10 ms): PQ costs recall and re-rank reads,
# so the engine keeps SQ8 while its lists fit in RAM (2e7 rows: 5.3 GB) and switches to PQ only beyond, where
# SQ8 cannot (1e8 rows: 26 GB against 4 GB); PQ32x8 was dropped: its training took 150 s for 20k rows.
PQ_MIN_TILES = 20_000_000
PQ_RERANK_MIN = 2048
PQ_CODE = "PQ64x4fs"
# Lists probed per query: the recall/speed knob (CLI --nprobe, API "nprobe"). The SQ8 scan of the probed lists is
# nearly all of a query's time (bench/query.py, 1e6 pooled rows, 1000 lists, 50 queries, load ~5, engine call with
# 64 re-ranked rows: nprobe 4: p50 0.64 ms, recall@10 0.894; 6: 0.95 ms, 0.968; 8: 1.27 ms, 0.988; 12: 1.96 ms,
# 1.000; 24: 2.37 ms, 1.000). 8 is the smallest value with recall@10 >= 0.95 and a margin; the benchmark's nprobe
# sweep re-measures it at every size.
DEFAULT_NPROBE = 8
# Lists hold about sqrt(n) rows each, so a fixed nprobe scans a shrinking share of the rows as n grows: at 1e7 pooled
# rows (3,162 lists, 50 queries, load 2.4, 2026-12-02 benchmark) nprobe 8 gave recall@10 0.858 (2.9 ms), 16 0.974
# (3.7 ms), 32 0.996 (6.9 ms). The default therefore probes the same share of the lists as 8 of 1,000 at 1e6 (0.8 %),
# never fewer than DEFAULT_NPROBE: 1e7 -> 26 lists.
NPROBE_LIST_SHARE = DEFAULT_NPROBE / 1000
SAMPLE_PER_LIST = 64  # k-means training rows per list (FAISS warns below 39)
PQ_TRAIN_ROWS = 32_768  # PQ sub-space centroids train on at least this many rows
ADD_ROWS = 262_144  # rows converted float16 -> float32 at a time when adding or scanning
FLAT_MAX_BYTES = 512 << 20  # float32 copy held for the exact path (larger collections scan in blocks)
# OpenMP threads of one query's search. One: FAISS parallelises a single query only over queries, so a second
# thread only adds a barrier, and on a busy machine that barrier waits for a descheduled thread (measured at load
# 5: IndexFlatIP over 1e5 rows p50 26 ms with 1 thread, 68 ms with 2). Builds use every core (BUILD_THREADS).
SEARCH_THREADS = 1
BUILD_THREADS = max(1, os.cpu_count() or 1)
# Builds of fewer rows run on one thread: their k-means is all OpenMP barriers, which stall on a busy machine
# (measured at load 5: 4 types over 3,000 rows 9 s with 2 threads).
PARALLEL_MIN_ROWS = 50_000
# From this many lists the coarse k-means runs in two levels and rows are assigned to lists through an IVF over
# the centroids (probing ASSIGN_PROBE of sqrt(lists) groups); queries still compare with every centroid. Measured
# (2e5 pooled rows, 3,162 lists, load ~4): one-level assignment 21.1 s, two-level 1.8 s with the same list for
# 99.9985% of rows; the one-level k-means on 123k rows took 41 s for 4 iterations. Below, builds are cheap enough.
TWO_LEVEL_MIN_LISTS = 1000
ASSIGN_PROBE = 4


# ---------------------------------------------------------------- rows
_FP16: dict[int, faiss.ScalarQuantizer] = {}


def as_float32(a: np.ndarray) -> np.ndarray:
    """``[n, D]`` rows as float32. float16 goes through FAISS's fp16 decoder (F16C SIMD; exact): numpy 1.26's
    cast is the slow part of a re-rank (measured at load 5: 2,048 x 256 rows 6.0 ms with ``astype``, 1.5 ms
    decoded; 50,000 rows 162 vs 44 ms)."""
    if a.dtype != np.float16 or a.ndim != 2 or not len(a):
        return np.asarray(a, np.float32)
    d = a.shape[1]
    sq = _FP16.get(d)
    if sq is None:
        sq = _FP16.setdefault(d, faiss.ScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16))
    return sq.decode(np.ascontiguousarray(a).view(np.uint8))


class Rows:
    """The float16 embeddings of a collection: several ``[n_i, D]`` arrays read as one ``[sum n_i, D]``."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        if not parts:
            raise BadInput("a collection needs at least one embeddings array")
        # memory-mapped parts as plain arrays over the same mapping: numpy's memmap subclass costs ~50 us per
        # gather (measured: 103 -> ~50 us per 64-row re-rank at load 5)
        self.parts = [p.view(np.ndarray) if isinstance(p, np.memmap) else p for p in parts]
        self.dim = int(parts[0].shape[1])
        self.offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        self._flat: faiss.IndexFlatIP | None = None
        self._dense: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.offsets[-1])

    def block(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start .. stop-1`` as float32."""
        out = np.empty((max(0, stop - start), self.dim), np.float32)
        for i, p in enumerate(self.parts):
            a, b = max(start, self.offsets[i]), min(stop, self.offsets[i + 1])
            if a < b:
                out[a - start : b - start] = as_float32(p[a - self.offsets[i] : b - self.offsets[i]])
        return out

    def take(self, ids: np.ndarray) -> np.ndarray:
        """Rows ``ids`` (sorted for sequential reads) as float32."""
        ids = np.asarray(ids, np.int64)
        if len(self.parts) == 1:  # a store: one gather, no part lookup
            return as_float32(self.parts[0][ids])
        out = np.empty((len(ids), self.dim), np.float32)
        part = np.searchsorted(self.offsets, ids, side="right") - 1
        for i in np.unique(part):
            sel = part == i
            out[sel] = as_float32(self.parts[i][ids[sel] - self.offsets[i]])
        return out

    def blocks(self, start: int = 0):
        for s in range(start, self.n, ADD_ROWS):
            yield s, self.block(s, min(self.n, s + ADD_ROWS))

    def flat(self) -> faiss.IndexFlatIP | None:
        """Exact in-memory index of all rows (built once) when the float32 copy fits ``FLAT_MAX_BYTES``."""
        if self._flat is None and self.n * self.dim * 4 <= FLAT_MAX_BYTES:
            idx = faiss.IndexFlatIP(self.dim)
            for _, x in self.blocks():
                idx.add(x)
            self._dense = faiss.rev_swig_ptr(idx.get_xb(), self.n * self.dim).reshape(self.n, self.dim)
            self._flat = idx
        return self._flat

    def dense(self) -> np.ndarray | None:
        """All rows as float32 in memory (the flat index's own storage), or None when too large."""
        return self._dense if self.flat() is not None else None


# ---------------------------------------------------------------- index type
@dataclass(frozen=True)
class IndexSpec:
    """Which FAISS index a collection of ``n`` rows gets."""

    kind: str  # "flat", "ivf_sq8" or "ivf_pq" (the engine's choices); "ivf_flat", "ivf_pq8" (benchmark contenders)
    n_lists: int = 0
    rerank_min: int = 0  # exact re-rank of max(rerank_per_k * k, rerank_min) candidates
    rerank_per_k: int = 0

    def factory(self) -> str:
        codes = {"ivf_sq8": "SQ8", "ivf_pq": PQ_CODE, "ivf_flat": "Flat", "ivf_pq8": "PQ16x4fs"}
        return f"IVF{self.n_lists},{codes[self.kind]}"

    def rerank(self, k: int) -> int:
        return max(self.rerank_per_k * k, self.rerank_min)


def default_n_lists(n: int) -> int:
    """About sqrt(n) lists, clipped to [1, 4096] and to n / 39 (FAISS's minimum training rows per list)."""
    return int(max(1, min(4096, round(np.sqrt(max(n, 1))), max(1, n // 39))))


def default_nprobe(n_lists: int) -> int:
    """Lists probed when the caller gives no ``nprobe``: ``NPROBE_LIST_SHARE`` of them, at least ``DEFAULT_NPROBE``."""
    return int(max(DEFAULT_NPROBE, np.ceil(n_lists * NPROBE_LIST_SHARE)))


def choose_spec(n: int, force_ivf: bool = False) -> IndexSpec:
    """The index type for ``n`` rows (``force_ivf``: an IVF index even below ``FLAT_MAX_TILES``)."""
    if n < FLAT_MAX_TILES and not force_ivf:
        return IndexSpec("flat")
    if n >= PQ_MIN_TILES:
        return IndexSpec("ivf_pq", default_n_lists(n), rerank_min=PQ_RERANK_MIN, rerank_per_k=64)
    return IndexSpec("ivf_sq8", default_n_lists(n), rerank_min=64, rerank_per_k=4)


def spec_is_pq(spec: IndexSpec) -> bool:
    return spec.kind.startswith("ivf_pq")


def spec_from_meta(meta: dict) -> IndexSpec:
    return IndexSpec(meta["kind"], meta["n_lists"], meta["rerank_min"], meta["rerank_per_k"])


# ---------------------------------------------------------------- build and files
@dataclass
class VectorIndex:
    """A trained FAISS IVF index over rows ``0 .. n_indexed-1`` of a collection, and its meta."""

    index: faiss.Index
    meta: dict = field(default_factory=dict)

    @property
    def n_indexed(self) -> int:
        return int(self.meta["n_indexed"])

    @property
    def spec(self) -> IndexSpec:
        return spec_from_meta(self.meta)

    @property
    def n_lists(self) -> int:
        return int(self.meta["n_lists"])


def build_index(rows: Rows, spec: IndexSpec | None = None, seed: int = 0, meta: dict | None = None) -> VectorIndex:
    """Train and fill an IVF index of all rows (``spec`` default: :func:`choose_spec` forced to IVF)."""
    return build_indexes(rows, [spec or choose_spec(rows.n, force_ivf=True)], seed, meta)[0]


def build_indexes(
    rows: Rows, specs: list[IndexSpec], seed: int = 0, meta: dict | None = None, progress=None
) -> list[VectorIndex]:
    """Train and fill one IVF index per spec (all with the same ``n_lists``) over all rows, sharing the k-means
    coarse quantizer and the assignment of every row to its list (the dominant cost: n x lists x D); each index
    then only trains and encodes its own codes. ``progress(rows_done, n)`` is called after each block.

    Meta ``build_s`` of each index = the shared part (``shared_s``: k-means, assignment) + its own part
    (``own_s``), i.e. what building that type alone costs."""
    n, d = rows.n, rows.dim
    if not specs or len({s.n_lists for s in specs}) != 1:
        raise BadInput("build_indexes needs specs with one common number of lists")
    if any(s.kind == "flat" for s in specs):
        raise BadInput("a flat (exact) index is built in memory, not saved")
    n_lists = specs[0].n_lists
    if n < n_lists:
        raise BadInput(f"{n} rows cannot train {n_lists} lists")
    threads = BUILD_THREADS if n >= PARALLEL_MIN_ROWS else 1
    faiss.omp_set_num_threads(threads)  # OpenMP's thread count is per calling thread
    t0 = time.perf_counter()
    m = min(n, SAMPLE_PER_LIST * n_lists)
    kmeans_rows = _sample(rows, m, seed)
    m_pq = min(n, max(m, PQ_TRAIN_ROWS))
    pq_rows = _sample(rows, m_pq, seed + 1) if m_pq > m and any(spec_is_pq(s) for s in specs) else kmeans_rows
    indexes = [_trainable(s, d) for s in specs]
    ivfs = [faiss.extract_index_ivf(ix) for ix in indexes]
    if n_lists < TWO_LEVEL_MIN_LISTS:
        ivfs[0].cp.seed = seed  # k-means seed (deterministic for a seed)
        ivfs[0].train_q1(m, faiss.swig_ptr(kmeans_rows), False, faiss.METRIC_INNER_PRODUCT)
        centroids = ivfs[0].quantizer.reconstruct_n(0, n_lists)
    else:
        centroids = two_level_centroids(kmeans_rows, n_lists, seed)
    assigner = _assigner(centroids)
    shared = time.perf_counter() - t0
    own = [0.0] * len(specs)
    for j, (ix, ivf) in enumerate(zip(indexes, ivfs, strict=True)):
        t1 = time.perf_counter()
        if ivf.quantizer.ntotal == 0:
            ivf.quantizer.add(centroids)  # trained quantizer: train() below only trains the codes
        if hasattr(ix, "pq"):
            ix.pq.cp.seed = seed
        # The codecs train on one thread: PQ trains M small k-means whose OpenMP barriers stall on a busy machine
        # (measured at load 5: PQ64x4 on 3,000 rows 21.5 s with 2 threads, 0.5 s with 1).
        faiss.omp_set_num_threads(1)
        ix.train(pq_rows if spec_is_pq(specs[j]) else kmeans_rows)
        faiss.omp_set_num_threads(threads)
        own[j] += time.perf_counter() - t1
    del pq_rows, kmeans_rows
    for s, x in rows.blocks():
        t1 = time.perf_counter()
        _, assign = assigner.search(x, 1)
        assign = assign[:, 0].copy()
        ids = np.arange(s, s + len(x), dtype=np.int64)
        shared += time.perf_counter() - t1
        for j, ivf in enumerate(ivfs):
            t1 = time.perf_counter()
            ivf.add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(ids), faiss.swig_ptr(assign))
            own[j] += time.perf_counter() - t1
        if progress is not None:
            progress(s + len(x), n)
    out = []
    for j, (spec, ix) in enumerate(zip(specs, indexes, strict=True)):
        t1 = time.perf_counter()
        ix = _finish(spec, ix)
        own[j] += time.perf_counter() - t1
        info = {
            "format_version": FORMAT_VERSION,
            "kind": spec.kind,
            "factory": spec.factory(),
            "n_lists": spec.n_lists,
            "rerank_min": spec.rerank_min,
            "rerank_per_k": spec.rerank_per_k,
            "n_indexed": n,
            "embed_dim": d,
            "train_rows": int(m),
            "seed": seed,
            "faiss_version": faiss.__version__,
        }
        info.update(meta or {}, build_s=round(shared + own[j], 3), shared_s=round(shared, 3), own_s=round(own[j], 3))
        out.append(VectorIndex(ix, info))
    return out


def two_level_centroids(x: np.ndarray, n_lists: int, seed: int) -> np.ndarray:
    """``n_lists`` spherical k-means centroids of ``x`` in two levels: ~sqrt(n_lists) groups, then each group's
    share of the centroids (proportional to its rows) trained on its rows only; ~sqrt(n_lists) times fewer
    distance computations than one k-means."""
    d = x.shape[1]
    groups = int(round(np.sqrt(n_lists)))
    top = faiss.Kmeans(d, groups, niter=10, spherical=True, seed=seed, max_points_per_centroid=1 << 20)
    top.train(x)
    _, a = top.index.search(x, 1)
    a = a[:, 0]
    cum = np.cumsum(np.bincount(a, minlength=groups))
    share = cum * n_lists // cum[-1]
    share[1:] -= share[:-1].copy()
    out = []
    for g in range(groups):
        k, sub = int(share[g]), x[a == g]
        if k == 0:
            continue
        if len(sub) <= k:  # degenerate group: its rows are the centroids (repeated to keep n_lists)
            out.append(sub[np.arange(k) % len(sub)])
            continue
        km = faiss.Kmeans(d, k, niter=10, spherical=True, seed=seed + g + 1, max_points_per_centroid=1 << 20)
        km.train(np.ascontiguousarray(sub))
        out.append(km.centroids)
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


def _assigner(centroids: np.ndarray) -> faiss.Index:
    """The index that assigns rows to their list at build time: exact over the centroids below
    ``TWO_LEVEL_MIN_LISTS`` lists, else an IVF over the centroids probing ``ASSIGN_PROBE`` of sqrt(lists) groups."""
    n_lists, d = centroids.shape
    if n_lists < TWO_LEVEL_MIN_LISTS:
        flat = faiss.IndexFlatIP(d)
        flat.add(centroids)
        return flat
    groups = int(round(np.sqrt(n_lists)))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, groups, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.min_points_per_centroid = 1  # few training points per group by design (the centroids)
    ivf.train(centroids)
    ivf.add(centroids)
    ivf.nprobe = ASSIGN_PROBE
    return ivf


def _sample(rows: Rows, m: int, seed: int) -> np.ndarray:
    """``m`` rows drawn without replacement (all rows when ``m`` >= n), float32, in row order."""
    if m >= rows.n:
        return rows.block(0, rows.n)
    return rows.take(np.sort(np.random.default_rng(seed).choice(rows.n, m, replace=False)))


def _trainable(spec: IndexSpec, d: int) -> faiss.Index:
    """An empty index for ``spec`` that accepts preassigned rows: fast-scan PQ is built as plain 4-bit IVF-PQ
    (``add_core`` of FAISS 1.15's fast-scan IVF corrupts the heap, measured) and packed by :func:`_finish`."""
    factory = spec.factory()
    if factory.endswith("fs"):
        index = faiss.index_factory(d, factory[:-2], faiss.METRIC_INNER_PRODUCT)
        index.by_residual = False  # as FAISS's own IVF-PQ fast-scan for inner product
        index.do_polysemous_training = False  # unused by fast-scan; measured: 10 of the 11 s of PQ64x4 training
        return index
    return faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)


def _finish(spec: IndexSpec, index: faiss.Index) -> faiss.Index:
    """The searchable index: 4-bit IVF-PQ packed into fast-scan blocks (same codes, same results as FAISS's own
    fast-scan build); the plain index keeps the shared coarse quantizer alive and drops its lists."""
    if not spec.factory().endswith("fs"):
        return index
    fast = faiss.IndexIVFPQFastScan(index)
    index.reset()
    fast.referenced_objects = [index]
    return fast


def save_index(path: Path, vi: VectorIndex) -> None:
    """Write ``index.faiss`` + ``meta.json`` into a temporary folder, then replace ``path`` with it."""
    path = Path(path)
    tag = f"{os.getpid()}-{threading.get_ident()}"
    tmp, old = path.with_name(f".{path.name}.tmp-{tag}"), path.with_name(f".{path.name}.old-{tag}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        atomic_write(tmp / "index.faiss", lambda t: faiss.write_index(vi.index, str(t)))
        atomic_write_json(tmp / "meta.json", vi.meta)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def load_index(path: Path) -> VectorIndex:
    """Open an index written by :func:`save_index` (read into RAM); CorruptData when inconsistent.

    Not memory-mapped: FAISS 1.15 IVF-SQ8/Flat lists opened with ``IO_FLAG_MMAP`` stall a query for about a
    scheduler tick (measured, 1e5 rows, nprobe 8, 64 candidates, 1 thread, load 2.4: p50 3.90 ms mapped vs 0.15 ms
    in RAM; that was the 3.67 ms at 1e6 of the previous benchmark). The index's RAM is its bytes per tile
    (docs/performance.md section 3); stores and catalogs are opened once and cached by the engine facade."""
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        index = faiss.read_index(str(path / "index.faiss"))
    except (OSError, ValueError, RuntimeError) as exc:
        raise CorruptData(f"vector index {path} unreadable ({' '.join(str(exc).split())[:200]})") from None
    ok = (
        isinstance(meta, dict)
        and meta.get("format_version") == FORMAT_VERSION
        and meta.get("kind") in ("ivf_sq8", "ivf_pq", "ivf_flat", "ivf_pq8")
        and index.ntotal == meta.get("n_indexed")
        and index.d == meta.get("embed_dim")
        and faiss.extract_index_ivf(index).nlist == meta.get("n_lists")
    )
    if not ok:
        raise CorruptData(f"vector index {path} is inconsistent; rebuild it")
    return VectorIndex(index, meta)


def matches(vi: VectorIndex, collection_id: str, n_rows: int, dim: int) -> bool:
    """True when ``vi`` was built for this collection (same id and dimension, no rows beyond ``n_rows``)."""
    return vi.meta.get("collection_id") == collection_id and vi.n_indexed <= n_rows and vi.index.d == dim


def open_matching(path: Path, collection_id: str, n_rows: int, dim: int) -> VectorIndex | None:
    """The index under ``path/faiss`` when present, readable and built for this collection, else None."""
    if not (Path(path) / INDEX_DIR / "meta.json").is_file():
        return None
    try:
        vi = load_index(Path(path) / INDEX_DIR)
    except CorruptData:
        return None
    return vi if matches(vi, collection_id, n_rows, dim) else None


def index_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).glob("*") if f.is_file())


# ---------------------------------------------------------------- search
def _selector(allowed: np.ndarray, n: int):
    """An ID selector over ``allowed`` (sorted row ids < n); the bitmap is returned to keep it alive."""
    mask = np.zeros(n, dtype=bool)
    mask[allowed] = True
    bits = np.packbits(mask, bitorder="little")
    return faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits)), bits, mask


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best (scores, ids), best first (ties: lower id first)."""
    if len(scores) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        scores, ids = scores[part], ids[part]
    order = np.lexsort((ids, -scores))
    return scores[order], ids[order]


def _exact(rows: Rows, q: np.ndarray, k: int, allowed: np.ndarray | None, start: int = 0):
    """Exact top-k over rows ``start..n-1`` (only ``allowed`` when given): the flat index when it fits."""
    flat = rows.flat() if start == 0 else None
    if flat is not None:
        params = None
        if allowed is not None:
            sel, bits, _ = _selector(allowed, rows.n)
            params = faiss.SearchParameters(sel=sel)
        kk = min(k, rows.n if allowed is None else len(allowed))
        if kk <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        d, i = flat.search(q[None], kk, params=params)
        keep = i[0] >= 0
        return d[0][keep].astype(np.float32), i[0][keep].astype(np.int64)
    if allowed is not None:
        ids = allowed[allowed >= start]
        scores = np.concatenate([rows.take(ids[s : s + ADD_ROWS]) @ q for s in range(0, len(ids), ADD_ROWS)] or [[]])
        return top_k(scores.astype(np.float32), ids, k)
    best_s, best_i = np.zeros(0, np.float32), np.zeros(0, np.int64)
    for s, x in rows.blocks(start):
        sc, ix = top_k(x @ q, np.arange(s, s + len(x)), k)
        best_s, best_i = top_k(np.concatenate([best_s, sc]), np.concatenate([best_i, ix]), k)
    return best_s, best_i


def search(
    rows: Rows,
    q: np.ndarray,
    k: int,
    vi: VectorIndex | None = None,
    nprobe: int | None = None,
    allowed: np.ndarray | None = None,
    exact: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (cosine scores, row ids), best first, exact scores.

    ``vi`` (an IVF index of the first ``vi.n_indexed`` rows): probe ``nprobe`` lists (default ``default_nprobe``;
    raised by 1 / the allowed fraction when ``allowed`` is given, so a small AOI still finds k rows), re-rank the
    candidates exactly on the float16 rows, scan rows appended after the build exactly. ``allowed``: sorted row
    ids, the only rows that may be returned (a FAISS ID selector). Without ``vi`` or with ``exact``: exact."""
    q = np.ascontiguousarray(np.asarray(q, dtype=np.float32).ravel())
    faiss.omp_set_num_threads(SEARCH_THREADS)  # this thread's searches (OpenMP's setting is per thread)
    if allowed is not None:
        allowed = np.asarray(allowed, np.int64)
    if rows.n == 0 or (allowed is not None and len(allowed) == 0):
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    if nprobe is not None and nprobe < 1:
        raise BadInput(f"nprobe must be at least 1, got {nprobe}")
    if vi is None or exact:
        return _exact(rows, q, k, allowed)
    n0, spec = vi.n_indexed, vi.spec
    probe = nprobe or default_nprobe(spec.n_lists)
    params = faiss.SearchParametersIVF()
    keep_alive = None
    if allowed is not None:
        in_index = allowed[allowed < n0]
        frac = len(in_index) / max(n0, 1)
        probe = int(min(spec.n_lists, np.ceil(probe / max(frac, 1e-9))))
        sel, bits, _ = _selector(in_index, n0)
        params.sel, keep_alive = sel, (sel, bits)
    params.nprobe = min(probe, spec.n_lists)
    _, cand = vi.index.search(q[None], min(spec.rerank(k), max(n0, 1)), params=params)
    del keep_alive
    cand = np.sort(cand[0][cand[0] >= 0])
    scores, ids = top_k(rows.take(cand) @ q if len(cand) else np.zeros(0, np.float32), cand, k)
    if rows.n > n0:  # rows appended after the build
        ts, ti = _exact(rows, q, k, allowed, start=n0)
        scores, ids = top_k(np.concatenate([scores, ts]), np.concatenate([ids, ti]), k)
    return scores.astype(np.float32), ids
