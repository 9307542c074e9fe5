"""Retrieval metrics of method.md §1.8 (RemoteCLIP / PIR-CLIP protocol)."""

from __future__ import annotations

import numpy as np


def retrieval_metrics(
    img_emb: np.ndarray, txt_emb: np.ndarray, txt_to_img: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)
) -> dict[str, float]:
    """R@K both directions and mR (x100, 2 decimals).

    I2T: image hits when any of its captions is in the top K. T2I: caption hits when its image is in the
    top K.
    ``txt_to_img[j]`` is the row of caption j's image in ``img_emb``. Embeddings are L2-normalised.
    """
    txt_to_img = np.asarray(txt_to_img)
    sim = txt_emb.astype(np.float32) @ img_emb.astype(np.float32).T  # [Nt, Ni]
    n_img = img_emb.shape[0]
    # T2I: rank of the true image for each caption (number of images strictly better)
    true = sim[np.arange(len(txt_to_img)), txt_to_img]
    t2i_rank = (sim > true[:, None]).sum(1)
    # I2T: best rank among the image's captions
    simT = sim.T  # [Ni, Nt]
    i2t_rank = np.full(n_img, np.iinfo(np.int64).max)
    for j, i in enumerate(txt_to_img):
        r = int((simT[i] > simT[i, j]).sum())
        if r < i2t_rank[i]:
            i2t_rank[i] = r
    has_caps = i2t_rank < np.iinfo(np.int64).max
    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_r{k}"] = round(100.0 * float((i2t_rank[has_caps] < k).mean()), 2)
    for k in ks:
        out[f"t2i_r{k}"] = round(100.0 * float((t2i_rank < k).mean()), 2)
    out["mr"] = round(float(np.mean([out[f"i2t_r{k}"] for k in ks] + [out[f"t2i_r{k}"] for k in ks])), 2)
    return out
