"""Retrieval metrics of method.md §1.8 (RemoteCLIP / PIR-CLIP protocol).

Two ways to rank a tie (e.g. a verbatim-identical caption of another image has exactly the same score):
- ``standard`` (reported, used for selection): the position in a stable descending sort of the scores, i.e.
  ties are broken by index order, as ``np.argsort(-scores, kind="stable")`` evaluation code does; a tie is never
  resolved in our favour by construction.
- ``ties_favourable`` (the 0.1/0.2 reports): only strictly better items count, so every tie goes our way.
"""

from __future__ import annotations

import numpy as np

PROTOCOLS = ("standard", "ties_favourable")


def _ranks(scores: np.ndarray, true_idx: np.ndarray, protocol: str) -> np.ndarray:
    """Rank (0 = first) of column ``true_idx[r]`` in each row ``r`` of ``scores``."""
    rows = np.arange(len(true_idx))
    true = scores[rows, true_idx][:, None]
    better = (scores > true).sum(1)
    if protocol == "ties_favourable":
        return better
    if protocol != "standard":
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    earlier_tie = ((scores == true) & (np.arange(scores.shape[1])[None, :] < true_idx[:, None])).sum(1)
    return better + earlier_tie


def retrieval_metrics(
    img_emb: np.ndarray,
    txt_emb: np.ndarray,
    txt_to_img: np.ndarray,
    ks: tuple[int, ...] = (1, 5, 10),
    protocol: str = "standard",
    with_other: bool = True,
) -> dict[str, float]:
    """R@K both directions and mR (x100, 2 decimals) by ``protocol``; with ``with_other`` also the other
    protocol's mR as ``mr_<other>``.

    I2T: image hits when any of its captions is in the top K. T2I: caption hits when its image is in the
    top K. ``txt_to_img[j]`` is the row of caption j's image in ``img_emb``. Embeddings are L2-normalised.
    """
    txt_to_img = np.asarray(txt_to_img)
    sim = txt_emb.astype(np.float32) @ img_emb.astype(np.float32).T  # [Nt, Ni]
    n_img = img_emb.shape[0]
    t2i_rank = _ranks(sim, txt_to_img, protocol)
    # I2T: each caption's rank in its image's row; the image's rank is the best of them
    simT = np.ascontiguousarray(sim.T)  # [Ni, Nt]
    cap_rank = _ranks(simT[txt_to_img], np.arange(len(txt_to_img)), protocol)
    i2t_rank = np.full(n_img, np.iinfo(np.int64).max)
    np.minimum.at(i2t_rank, txt_to_img, cap_rank)
    has_caps = i2t_rank < np.iinfo(np.int64).max
    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_r{k}"] = round(100.0 * float((i2t_rank[has_caps] < k).mean()), 2)
    for k in ks:
        out[f"t2i_r{k}"] = round(100.0 * float((t2i_rank < k).mean()), 2)
    out["mr"] = round(float(np.mean([out[f"i2t_r{k}"] for k in ks] + [out[f"t2i_r{k}"] for k in ks])), 2)
    if with_other:
        other = next(p for p in PROTOCOLS if p != protocol)
        out[f"mr_{other}"] = retrieval_metrics(img_emb, txt_emb, txt_to_img, ks, other, with_other=False)["mr"]
    return out
