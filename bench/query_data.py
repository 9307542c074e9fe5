"""Synthetic tile stores for the query benchmark: float16 rows in the engine's layout, their hash codes, and the
exact top-k of every query, all written in one pass of bounded memory.

Two distributions: "pooled" (a pool of real image embeddings of the bundle + Gaussian noise, re-normalised) and
"isotropic" (uniform random unit vectors, the worst case for IVF lists and hash codes).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHUNK = 100_000  # rows generated (and hashed by the bundle) at a time: bounded memory next to other jobs
WORKERS = max(1, min(2, os.cpu_count() or 1))  # chunks generated at once


@dataclass(frozen=True)
class StoreParams:
    """What to generate: ``n`` rows of dimension ``dim``; ``pool`` rows + noise of norm ``noise`` (pooled) or
    isotropic rows (``pool`` None)."""

    n: int
    dim: int
    pool: np.ndarray | None
    noise: float = 0.75
    seed: int = 1


@dataclass
class BenchStore:
    """Paths and figures of one generated store."""

    folder: Path
    n: int
    gt_ids: np.ndarray  # [n_queries, k] exact top-k row ids of the float16 rows, best first
    gen_s: float
    gen_cpu_s: float
    files: dict[str, int]  # file name -> bytes


def query_texts(n: int) -> list[str]:
    """``n`` prompts spread over the scene classes of resources/prompts/scene_classes.json."""
    from engine.config import PROMPTS_DIR

    data = json.loads((PROMPTS_DIR / "scene_classes.json").read_text(encoding="utf-8"))
    texts = [t for c in data["classes"] for t in data["prompts"][c]]
    step = max(1, len(texts) // n)
    return texts[::step][:n]


def image_pool_embeddings(enc, n: int) -> tuple[np.ndarray, str]:
    """Embeddings of ``n`` real aerial images (rsicd_aid150 cells) through the bundle, and their source."""
    from bench.mosaic import image_pool
    from engine.preprocess import prepare

    pool, src = image_pool(n, cell=150)
    m = enc.meta
    out = [
        enc.embed_images(prepare(list(pool[i : i + 32]), m.image_size, m.mean, m.std, m.interpolation))
        for i in range(0, len(pool), 32)
    ]
    return np.concatenate(out), src


def sign_codes(x: np.ndarray) -> np.ndarray:
    """One bit per dimension (the sign), packed: ``[n, D/8]`` uint8 (256 bits = 32 B for D = 256)."""
    return np.packbits(x > 0, axis=1)


def chunk_top_k(s: np.ndarray, offset: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` per query of scores ``s`` ``[q, m]`` of rows ``offset..offset+m-1``: (scores, row ids), unordered."""
    ids = np.broadcast_to(np.arange(offset, offset + s.shape[1], dtype=np.int64), s.shape)
    if s.shape[1] > k:
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        return np.take_along_axis(s, part, 1), np.take_along_axis(ids, part, 1)
    return s, np.ascontiguousarray(ids)


def merge_ranked(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], k: int):
    """The best ``k`` of two (scores, ids) ``[q, *]`` candidate sets, best first (ties: lower row id first)."""
    s, ids = np.concatenate([a[0], b[0]], 1), np.concatenate([a[1], b[1]], 1)
    order = np.lexsort((ids, -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, 1), np.take_along_axis(ids, order, 1)


def merge_top_k(best_s: np.ndarray, best_i: np.ndarray, s: np.ndarray, offset: int, k: int):
    """Running top-``k`` per query: merge scores ``s`` ``[q, m]`` of rows ``offset..`` into ``(best_s, best_i)``."""
    return merge_ranked((best_s, best_i), chunk_top_k(s, offset, k), k)


def unit_rows(p: StoreParams, start: int, m: int) -> np.ndarray:
    """Rows ``start .. start+m-1`` of the store ``p`` as float32 unit vectors (deterministic per chunk)."""
    rng = np.random.default_rng([p.seed, start])
    g = rng.standard_normal((m, p.dim), dtype=np.float32)
    if p.pool is not None:
        g *= (p.noise / np.sqrt(np.einsum("ij,ij->i", g, g)))[:, None]
        g += p.pool[(np.arange(start, start + m) * 7919) % len(p.pool)]
    g /= np.sqrt(np.einsum("ij,ij->i", g, g))[:, None]
    return g


def write_store(folder: Path, p: StoreParams, enc, q: np.ndarray, k: int, workers: int = WORKERS) -> BenchStore:
    """Write ``embeddings.npy`` (float16), ``codes.npy`` (the bundle's hash codes: ``enc.image_codes``) and
    ``signs.npy`` (sign bits) under ``folder``, chunk by chunk on ``workers`` threads (numpy, FAISS and ONNX
    Runtime release the GIL); the exact top-``k`` of each query ``q`` over the stored float16 rows is computed on
    the way (one pass instead of one scan per query)."""
    from engine.faiss_index import as_float32

    folder.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    emb = np.lib.format.open_memmap(folder / "embeddings.npy", mode="w+", dtype=np.float16, shape=(p.n, p.dim))
    signs = np.lib.format.open_memmap(folder / "signs.npy", mode="w+", dtype=np.uint8, shape=(p.n, p.dim // 8))
    width = enc.image_codes(np.ones((1, p.dim), np.float32) / np.sqrt(p.dim)).shape[1]
    codes = np.lib.format.open_memmap(folder / "codes.npy", mode="w+", dtype=np.uint8, shape=(p.n, width))
    empty = np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)

    def chunk(start: int) -> tuple[np.ndarray, np.ndarray]:
        m = min(CHUNK, p.n - start)
        h = unit_rows(p, start, m).astype(np.float16)
        x = as_float32(h)  # what the engine reads back
        emb[start : start + m] = h
        signs[start : start + m] = sign_codes(x)
        codes[start : start + m] = enc.image_codes(x)
        return chunk_top_k(q @ x.T, start, k)

    best = empty
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for part in pool.map(chunk, range(0, p.n, CHUNK)):
            best = merge_ranked(best, part, k)
    for a in (emb, signs, codes):
        a.flush()
    files = {f: (folder / f).stat().st_size for f in ("embeddings.npy", "codes.npy", "signs.npy")}
    return BenchStore(folder, p.n, best[1], time.perf_counter() - t0, time.process_time() - c0, files)


def open_bench_store(folder: Path, index=None):
    """The synthetic store as an engine ``Store`` (optionally with a FAISS ``VectorIndex``)."""
    from engine.store import Store

    emb = np.load(folder / "embeddings.npy", mmap_mode="r")
    codes = np.load(folder / "codes.npy", mmap_mode="r")
    manifest = {"store_id": "b" * 16, "raster": {"crs_wkt": "", "path": ""}, "model": {}}
    return Store(
        path=folder, manifest=manifest, embeddings=emb, windows=np.zeros((0, 4), np.int64), codes=codes, index=index
    )
