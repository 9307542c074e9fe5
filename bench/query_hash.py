"""Binary-code search paths of the query benchmark (issue 18 item 4): FAISS binary indexes over packed hash codes
(Hamming distance), the best ``candidates`` re-ranked exactly on the float16 rows, as the old CHNR prefilter did.

Codes: the bundle's CHNR hash head (``codes.npy``, 64 bits = 8 B per tile) and the sign bits of the embedding
(``signs.npy``, 256 bits = 32 B per tile), against IVF-PQ16x4fs (8 B) and IVF-PQ64x4fs (32 B) at equal bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from engine.faiss_index import Rows, default_n_lists, top_k


@dataclass(frozen=True)
class BinarySpec:
    """One binary path: ``codes`` file, ``kind`` "flat" (exhaustive Hamming) or "ivf" (``IndexBinaryIVF``)."""

    codes: str  # "codes.npy" (CHNR) or "signs.npy" (sign bits)
    kind: str
    candidates: int = 2048  # Hamming candidates re-ranked exactly (= the engine's PQ re-rank depth)
    nprobe: int = 8
    max_rows: int | None = None  # larger stores skip this path (see BINARY in bench/query.py)


class BinaryPath:
    """A built binary index over one store's codes, searched like the engine: Hamming top ``candidates``, exact
    float16 re-rank, top ``k``."""

    def __init__(self, folder: Path, spec: BinarySpec, seed: int = 0) -> None:
        codes = np.load(folder / spec.codes, mmap_mode="r")
        self.spec, self.bits = spec, codes.shape[1] * 8
        # one OpenMP thread: IndexBinaryIVF.add with 2 threads next to another job took 458 s for 1e6 codes
        # (1 thread: 2.2 s; measured at load 3)
        faiss.omp_set_num_threads(1)
        t0, c0 = time.perf_counter(), time.process_time()
        if spec.kind == "flat":
            self.index = faiss.IndexBinaryFlat(self.bits)
            self.lists = None
        else:
            self.lists = default_n_lists(len(codes))
            self.index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(self.bits), self.bits, self.lists)
            self.index.cp.seed = seed
            self.index.cp.niter = 10  # as the float IVF k-means
            rng = np.random.default_rng(seed)
            m = min(len(codes), 64 * self.lists)
            self.index.train(np.ascontiguousarray(codes[np.sort(rng.choice(len(codes), m, replace=False))]))
            self.index.nprobe = spec.nprobe
        for s in range(0, len(codes), 1_000_000):
            self.index.add(np.ascontiguousarray(codes[s : s + 1_000_000]))
        self.build_s, self.build_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        self.rows = Rows([np.load(folder / "embeddings.npy", mmap_mode="r")])
        self.bytes_per_tile = codes.shape[1] + (8 if spec.kind == "ivf" else 0)  # IVF lists also hold 8 B ids

    def search(self, q: np.ndarray, qcode: np.ndarray, k: int) -> list[int]:
        faiss.omp_set_num_threads(1)  # one query: as the engine's search (engine/faiss_index.py SEARCH_THREADS)
        _, cand = self.index.search(qcode[None], min(self.spec.candidates, self.index.ntotal))
        cand = np.sort(cand[0][cand[0] >= 0])
        _, ids = top_k(self.rows.take(cand) @ q, cand, k)
        return ids.tolist()
