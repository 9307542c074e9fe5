"""Noisy-correspondence injection (RRSITR / NCR protocol) with the corrupted pairs recorded."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from training.data.readers import CaptionRecord


@dataclass(frozen=True)
class NoiseReport:
    """What was done: nominal rate, the permuted rows, and which rows are truly mismatched afterwards.

    ``corrupted[i]`` is True when row i's caption now comes from a different image (a permuted caption that
    lands on its own row or on another caption of the same image is not corrupted).
    """

    rate: float
    seed: int
    selected: np.ndarray
    corrupted: np.ndarray

    @property
    def effective_rate(self) -> float:
        return float(self.corrupted.mean()) if self.corrupted.size else 0.0


def inject_noise(rows: list[CaptionRecord], rate: float, seed: int = 42) -> tuple[list[CaptionRecord], NoiseReport]:
    """Pick ``int(rate*N)`` rows without replacement and permute their captions among themselves.

    Only apply this to the train split; val/test must stay clean. Deterministic for a given seed.
    """
    n = len(rows)
    rng = np.random.RandomState(seed)
    k = int(rate * n)
    selected = np.sort(rng.choice(n, size=k, replace=False)) if k else np.zeros(0, dtype=np.int64)
    perm = selected[rng.permutation(k)] if k else selected
    new_rows = list(rows)
    for dst, src in zip(selected, perm, strict=True):
        new_rows[dst] = replace(rows[dst], caption=rows[src].caption)
    corrupted = np.zeros(n, dtype=bool)
    # a row is corrupted when its caption no longer belongs to any caption of its own image
    by_image: dict[int, set[str]] = {}
    for r in rows:
        by_image.setdefault(r.image_id, set()).add(r.caption)
    for dst in selected:
        corrupted[dst] = new_rows[dst].caption not in by_image[rows[dst].image_id]
    return new_rows, NoiseReport(rate=rate, seed=seed, selected=selected, corrupted=corrupted)
