"""Engine preprocessing: the fused normalisation equals the contract's textbook expression."""

from __future__ import annotations

import numpy as np
import pytest

from engine.preprocess import normalise, prepare, resize_rgb

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def textbook(tiles: np.ndarray) -> np.ndarray:
    x = tiles.astype(np.float32) / 255.0
    x = (x - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    return x.transpose(0, 3, 1, 2)


def test_normalise_matches_contract_expression_on_every_byte_value():
    rng = np.random.default_rng(3)
    tiles = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    tiles[0, 0, :, :] = np.arange(16 * 3).reshape(16, 3) % 256
    tiles[1].reshape(-1)[:256] = np.arange(256)  # every value on channel mixtures
    out = normalise(tiles, MEAN, STD)
    assert out.dtype == np.float32 and out.shape == (4, 3, 16, 16) and out.flags.c_contiguous
    np.testing.assert_allclose(out, textbook(tiles), atol=1e-6, rtol=0)
    assert out[1, 0, 0, 0] == pytest.approx((0 / 255 - MEAN[0]) / STD[0], abs=1e-6)


def test_prepare_resizes_to_model_size_and_keeps_order():
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(3)]
    tiles[1][:] = 255
    x = prepare(tiles, 224, MEAN, STD)
    assert x.shape == (3, 3, 224, 224)
    np.testing.assert_allclose(x[1, :, 5, 5], (1.0 - np.asarray(MEAN)) / np.asarray(STD), atol=1e-5)
    np.testing.assert_allclose(x[0], textbook(resize_rgb(tiles[0], 224)[None])[0], atol=1e-6)


def test_engine_preprocessing_equals_training_preprocessing():
    """The bundle contract: training (features.preprocess) and the engine produce the same model input."""
    from training import features

    rng = np.random.default_rng(1)
    tile = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    engine_x = prepare([tile], 224, MEAN, STD)[0]
    train_x = features.preprocess(tile, 224, MEAN, STD)
    np.testing.assert_allclose(engine_x, train_x, atol=1e-5, rtol=0)
