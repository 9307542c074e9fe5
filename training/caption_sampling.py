"""Division-guided caption sampling (robust recipe v2, issue 6).

The in-batch RRSITR division only sees the one caption per image that the epoch happened to draw, so at noise
0.4 about 40 % of every epoch's pairs are spent on captions the model already recognises as wrong. Before each
robust epoch this module scores *every* (image, caption) row with the current model (a no-grad pass over the
cached features, NCR-style), splits the rows with the same chance-relative thresholds as the in-batch division,
and draws each image's caption for the epoch uniformly among its rows that are not in the noisy group (the
lowest-loss row when all of them are). The in-batch self-paced loss and robust triplet then run unchanged.

Per-row losses are computed in batches that hold each image once, exactly like the training batches, so the
loss scale matches the thresholds.
"""

from __future__ import annotations

import numpy as np
import torch

from training.losses import per_pair_nce, positive_mask

CLEAN, AMBIGUOUS, NOISY = 0, 1, 2


def rows_by_image(row_img: np.ndarray) -> list[list[int]]:
    """Row indices of each image, images in order of first appearance."""
    by_img: dict[int, list[int]] = {}
    for r, im in enumerate(row_img):
        by_img.setdefault(int(im), []).append(r)
    return list(by_img.values())


def slot_batches(row_img: np.ndarray, batch_size: int, rng: np.random.RandomState) -> list[np.ndarray]:
    """Row indices covering every row once, in batches where no image appears twice.

    Each image's rows are put in random order; slot k holds the k-th row of every image that has one; each
    slot is shuffled and cut into batches of ``batch_size`` (the last one of a slot may be smaller).
    """
    slots: list[list[int]] = []
    for rows in rows_by_image(row_img):
        for k, r in enumerate(rng.permutation(rows)):
            if k == len(slots):
                slots.append([])
            slots[k].append(int(r))
    out = []
    for slot in slots:
        s = np.asarray(slot)[rng.permutation(len(slot))]
        out.extend(s[i : i + batch_size] for i in range(0, len(s), batch_size))
    return out


@torch.no_grad()
def row_losses(
    img_emb: torch.Tensor,
    txt_emb: torch.Tensor,
    row_img: np.ndarray,
    row_txt: np.ndarray,
    scale: float,
    batches: list[np.ndarray],
) -> np.ndarray:
    """Per-row ``CE_i2t + CE_t2i`` (the in-batch division's loss) for every row, batch by batch."""
    out = np.full(len(row_img), np.nan, dtype=np.float32)
    for b in batches:
        ii = torch.from_numpy(row_img[b])
        tt = torch.from_numpy(row_txt[b])
        li, lt, _ = per_pair_nce(img_emb[ii], txt_emb[tt], scale, positive_mask(ii, tt))
        out[b] = (li + lt).numpy()
    return out


def divide(losses: np.ndarray, g1: float, g2: float) -> np.ndarray:
    """Group per row: 0 clean (l < g1), 1 ambiguous, 2 noisy (l >= g2)."""
    return np.where(losses < g1, CLEAN, np.where(losses >= g2, NOISY, AMBIGUOUS)).astype(np.int8)


def sample_rows(
    row_img: np.ndarray,
    group: np.ndarray,
    losses: np.ndarray,
    rng: np.random.RandomState,
    all_noisy: str = "lowest",
) -> np.ndarray:
    """One row per image, uniform among its non-noisy rows; shuffled.

    An image whose rows are all noisy contributes its lowest-loss row (``all_noisy="lowest"``) or is replaced
    by a second non-noisy row of a random other image (``"replace"``), which keeps the epoch's size.
    """
    if all_noisy not in ("lowest", "replace"):
        raise ValueError(f"all_noisy must be 'lowest' or 'replace', got {all_noisy!r}")
    picked, n_missing = [], 0
    for rows in rows_by_image(row_img):
        ok = [r for r in rows if group[r] != NOISY]
        if ok:
            picked.append(int(rng.choice(ok)))
        elif all_noisy == "lowest":
            picked.append(min(rows, key=lambda r: losses[r]))
        else:
            n_missing += 1
    if n_missing:
        pool = np.setdiff1d(np.flatnonzero(group != NOISY), picked)
        if len(pool) == 0:
            pool = np.flatnonzero(group != NOISY)
        picked.extend(int(r) for r in rng.choice(pool, size=n_missing, replace=len(pool) < n_missing))
    picked_a = np.asarray(picked)
    return picked_a[rng.permutation(len(picked_a))]


def redraw_tail(rows: np.ndarray, start: int, drawn: np.ndarray, row_img: np.ndarray) -> np.ndarray:
    """``rows`` with every row from ``start`` on swapped for the row ``drawn`` picked for the same image.

    Used inside the warm-up epoch: after a division pass part-way through, the images not yet trained on this
    epoch switch to the division's caption; each image still appears once and in the same slot.
    """
    by_img = np.full(int(row_img.max()) + 1, -1, dtype=np.int64)
    by_img[row_img[drawn]] = drawn
    out = rows.copy()
    tail = by_img[row_img[rows[start:]]]
    if (tail < 0).any():
        raise ValueError("drawn has no row for some image of the tail")
    out[start:] = tail
    return out
