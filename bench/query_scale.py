"""IVF-PQ fast-scan at a size whose float rows do not fit (1e8 x 256 floats = 102 GB; float16 51 GB): the lists of
a built index are written ``repeat`` times into a copy of it (same coarse centroids, same PQ codebooks), so the copy
holds ``repeat`` x n real codes with list sizes ``repeat`` x the real ones, without any float row. Its search cost
depends only on the list sizes and the code count, so its latency (PQ scan only: there are no rows to re-rank) and
its memory are those of an index of that size; its recall is not measured (the rows do not exist).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import faiss
import numpy as np


@dataclass
class ListCodes:
    """The unpacked content of an IVF index: list of each row, its id, its code ``[n, code_size]``."""

    assign: np.ndarray
    ids: np.ndarray
    codes: np.ndarray


def unpack_lists(index: faiss.Index) -> ListCodes:
    """Every list of an IVF-PQ fast-scan index as flat codes (``CodePacker.unpack_all``, one block at a time)."""
    ivf = faiss.extract_index_ivf(index)
    inv = faiss.downcast_InvertedLists(ivf.invlists)
    packer = ivf.get_CodePacker()
    cs, nvec, bs = packer.code_size, packer.nvec, packer.block_size
    assign, ids, codes = [], [], []
    flat = np.empty(nvec * cs, np.uint8)
    for lst in range(ivf.nlist):
        n = inv.list_size(lst)
        if not n:
            continue
        nb = (n + nvec - 1) // nvec
        packed = faiss.rev_swig_ptr(inv.get_codes(lst), nb * bs).copy()
        out = np.empty((nb * nvec, cs), np.uint8)
        for b in range(nb):
            packer.unpack_all(faiss.swig_ptr(packed[b * bs : (b + 1) * bs]), faiss.swig_ptr(flat))
            out[b * nvec : (b + 1) * nvec] = flat.reshape(nvec, cs)
        assign.append(np.full(n, lst, np.int64))
        ids.append(faiss.rev_swig_ptr(inv.get_ids(lst), n).copy())
        codes.append(out[:n])
    del packer
    return ListCodes(np.concatenate(assign), np.concatenate(ids), np.concatenate(codes))


def replicated_index(index: faiss.Index, lc: ListCodes, repeat: int) -> faiss.Index:
    """A fast-scan copy of ``index`` whose every list holds its codes ``repeat`` times (ids shifted by ``n`` per
    copy): built as plain 4-bit IVF-PQ (raw lists) with the same centroids and codebooks, then packed."""
    src = faiss.extract_index_ivf(index)
    fs = faiss.downcast_index(index)
    m = fs.pq.M
    plain = faiss.index_factory(src.d, f"IVF{src.nlist},PQ{m}x4", faiss.METRIC_INNER_PRODUCT)
    plain.by_residual = fs.by_residual
    plain.quantizer.add(src.quantizer.reconstruct_n(0, src.nlist))
    plain.pq.centroids = fs.pq.centroids  # the trained codebooks (a copy)
    plain.is_trained = True
    n = len(lc.ids)
    order = np.argsort(lc.assign, kind="stable")
    a, ids, codes = lc.assign[order], lc.ids[order], lc.codes[order]
    cuts = np.flatnonzero(np.diff(a)) + 1
    for s, e in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(a)]]), strict=True):
        lid = np.ascontiguousarray((ids[s:e][None, :] + n * np.arange(repeat, dtype=np.int64)[:, None]).ravel())
        c = np.ascontiguousarray(np.tile(codes[s:e], (repeat, 1)))
        plain.invlists.add_entries(int(a[s]), len(lid), faiss.swig_ptr(lid), faiss.swig_ptr(c))
    plain.ntotal = n * repeat
    fast = faiss.IndexIVFPQFastScan(plain)
    plain.reset()
    fast.referenced_objects = [plain]  # keeps the coarse quantizer alive
    return fast


def index_ram_bytes(index: faiss.Index) -> int:
    """Bytes the index holds in RAM: list codes (fast-scan blocks, padding included), 8 B ids, coarse centroids."""
    ivf = faiss.extract_index_ivf(index)
    inv = faiss.downcast_InvertedLists(ivf.invlists)
    total = ivf.nlist * ivf.d * 4
    for lst in range(ivf.nlist):
        n = inv.list_size(lst)
        total += n * 8
        if isinstance(inv, faiss.BlockInvertedLists):
            total += (n + inv.n_per_block - 1) // inv.n_per_block * inv.block_size
        else:
            total += n * inv.code_size
    return int(total)


def time_pq_only(index: faiss.Index, q: np.ndarray, k: int, nprobe: int, min_q: int, budget_s: float) -> list[float]:
    """Latency (ms) of the PQ scan alone (top ``k`` candidates, ``nprobe`` lists, one thread), one per query,
    stopping after ``budget_s`` once ``min_q`` queries are done."""
    faiss.omp_set_num_threads(1)
    params = faiss.SearchParametersIVF()
    params.nprobe = nprobe
    index.search(q[:1], k, params=params)  # first touch
    out, deadline = [], time.perf_counter() + budget_s
    for i in range(len(q)):
        if len(out) >= min_q and time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        index.search(q[i : i + 1], k, params=params)
        out.append((time.perf_counter() - t0) * 1000)
    return out
