"""Recall metrics against a brute-force implementation of method.md §1.8."""

import numpy as np
import pytest

from training.metrics import retrieval_metrics


def brute(img, txt, t2i, ks=(1, 5, 10)):
    sim = txt @ img.T
    out = {}
    for k in ks:
        hits = []
        for i in range(len(img)):
            top = np.argsort(-sim[:, i], kind="stable")[:k]
            hits.append(any(t2i[j] == i for j in top))
        out[f"i2t_r{k}"] = 100 * np.mean(hits)
    for k in ks:
        out[f"t2i_r{k}"] = 100 * np.mean([t2i[j] in np.argsort(-sim[j], kind="stable")[:k] for j in range(len(txt))])
    out["mr"] = np.mean([out[f"i2t_r{k}"] for k in ks] + [out[f"t2i_r{k}"] for k in ks])
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_img, d = 40, 8
    img = rng.normal(size=(n_img, d)).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    t2i = np.repeat(np.arange(n_img), rng.integers(1, 6, n_img))
    txt = img[t2i] + rng.normal(scale=1.0, size=(len(t2i), d)).astype(np.float32)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    got = retrieval_metrics(img, txt, t2i)
    want = brute(img, txt, t2i)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=0.011), k


def test_perfect_and_chance():
    img = np.eye(12, dtype=np.float32)
    t2i = np.repeat(np.arange(12), 5)
    m = retrieval_metrics(img, img[t2i], t2i)
    assert m["mr"] == 100.0 and m["i2t_r1"] == 100.0


def test_ties_standard_versus_favourable():
    """An identical caption of another image ties with the true one: the standard protocol breaks the tie by
    index order (never in our favour by construction), the old protocol counts only strictly better items."""
    img = np.eye(3, dtype=np.float32)
    # captions 0 and 1 are the same text for images 0 and 1 -> embedded halfway between both images
    both = np.array([1, 1, 0], dtype=np.float32) / np.sqrt(2)
    txt = np.stack([both, both, img[2]])
    t2i = np.array([1, 0, 2])  # caption 0 belongs to image 1, caption 1 to image 0
    fav = retrieval_metrics(img, txt, t2i, ks=(1,), protocol="ties_favourable")
    std = retrieval_metrics(img, txt, t2i, ks=(1,), protocol="standard")
    assert fav["t2i_r1"] == 100.0  # both tied images count as rank 0
    # stable order: caption 0 (image 1) ranks image 0 first -> miss; caption 1 (image 0) -> hit; caption 2 hit
    assert std["t2i_r1"] == pytest.approx(200 / 3, abs=0.01)
    # I2T: image 0's best caption is caption 1 (index 1) but caption 0 ties and comes first -> miss
    assert fav["i2t_r1"] == 100.0 and std["i2t_r1"] == pytest.approx(200 / 3, abs=0.01)
    assert std["mr_ties_favourable"] == fav["mr"] and fav["mr_standard"] == std["mr"]
    want = brute(img, txt, t2i, ks=(1,))
    assert std["t2i_r1"] == pytest.approx(want["t2i_r1"], abs=0.01)
    assert std["i2t_r1"] == pytest.approx(want["i2t_r1"], abs=0.01)
