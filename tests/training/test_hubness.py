"""Hubness probe (training/hubness.py): CSLS scores on hand values."""

from __future__ import annotations

import numpy as np
import pytest

from training.hubness import csls_embeddings, neighbourhood
from training.metrics import retrieval_metrics


def test_neighbourhood_is_the_mean_of_the_k_nearest():
    x = np.array([[1.0, 0.0]], np.float32)
    bank = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
    assert neighbourhood(x, bank, 1) == pytest.approx([1.0])
    assert neighbourhood(x, bank, 2) == pytest.approx([0.8])
    assert neighbourhood(x, bank, 10) == pytest.approx([1.6 / 3])  # k larger than the bank: all of it


def test_csls_inner_products_and_a_hub_pushed_down():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(3, 4)).astype(np.float32)
    txt = rng.normal(size=(5, 4)).astype(np.float32)
    r_img, r_txt = rng.random(3).astype(np.float32), rng.random(5).astype(np.float32)
    i2, t2 = csls_embeddings(img, txt, r_img, r_txt, 0.5)
    assert np.allclose(t2 @ i2.T, txt @ img.T - 0.5 * r_txt[:, None] - 0.5 * r_img[None, :], atol=1e-6)
    # image 0 is a hub (nearest image of caption 1 although caption 1 belongs to image 1): the correction fixes it
    img = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    txt = np.array([[1.0, 0.0], [0.95, 0.3122]], np.float32)  # caption 1: cosine 0.95 to image 0, 0.82 to image 1
    t2i = np.array([0, 1])
    assert retrieval_metrics(img, txt, t2i, ks=(1,))["t2i_r1"] == 50.0
    i2, t2 = csls_embeddings(img, txt, np.array([0.9, 0.2], np.float32), np.zeros(2, np.float32), 0.5)
    assert retrieval_metrics(i2, t2, t2i, ks=(1,))["t2i_r1"] == 100.0
