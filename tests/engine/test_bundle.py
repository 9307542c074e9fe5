"""Bundle validation: valid synthetic bundle, and clear errors for corrupted ones."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engine.bundle import load_bundle
from engine.encoder import Encoder
from engine.errors import BadInput, CorruptData, NotFound
from tests.bundles import build_synthetic_bundle


def test_valid_bundle(encoder):
    assert encoder.provider == "CPUExecutionProvider"
    assert len(encoder.bundle.classes) == 30
    e = encoder.embed_texts(["red", "a river crossing farmland"])
    assert e.shape == (2, 32) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    codes = encoder.image_codes(e)
    assert codes.shape == (2, 8) and codes.dtype == np.uint8


def test_query_cache_and_limits(encoder):
    a = encoder.embed_query("blue water")
    assert "blue water" in encoder._cache
    np.testing.assert_array_equal(a, encoder.embed_query("  blue   water "))
    for bad in ("", "   ", "x" * 1001):
        with pytest.raises(BadInput):
            encoder.embed_query(bad)
    assert encoder.embed_query("湖 🌊 lac").shape == (32,)


def _copy(bundle_dir, tmp_path):
    d = tmp_path / "b"
    shutil.copytree(bundle_dir, d)
    return d


def test_missing_file(bundle_dir, tmp_path):
    d = _copy(bundle_dir, tmp_path)
    (d / "tokenizer.json").unlink()
    with pytest.raises(CorruptData, match="missing tokenizer.json"):
        load_bundle(d)


def test_not_a_dir(tmp_path):
    with pytest.raises(NotFound):
        load_bundle(tmp_path / "nope")


def test_bad_model_json(bundle_dir, tmp_path):
    d = _copy(bundle_dir, tmp_path)
    meta = json.loads((d / "model.json").read_text())
    meta["embed_dim"] = "big"
    (d / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptData, match="embed_dim"):
        load_bundle(d)
    (d / "model.json").write_text("{not json")
    with pytest.raises(CorruptData, match="model.json unreadable"):
        load_bundle(d)


def test_wrong_image_input_shape(tmp_path):
    d = build_synthetic_bundle(tmp_path / "b", onnx_image_size=48)
    with pytest.raises(CorruptData, match="image input shape"):
        Encoder(load_bundle(d))


def test_embed_dim_mismatch_between_towers(tmp_path):
    d = build_synthetic_bundle(tmp_path / "b", text_dim=16)
    with pytest.raises(CorruptData, match="text embedding dim"):
        Encoder(load_bundle(d))


def test_corrupt_onnx(bundle_dir, tmp_path):
    d = _copy(bundle_dir, tmp_path)
    (d / "image_encoder.onnx").write_bytes(b"garbage" * 10)
    with pytest.raises(CorruptData, match="cannot load"):
        Encoder(load_bundle(d))


def test_class_embeddings_shape(bundle_dir, tmp_path):
    d = _copy(bundle_dir, tmp_path)
    np.save(d / "scene_class_embeddings.npy", np.zeros((3, 32), np.float32))
    with pytest.raises(CorruptData, match="scene_class_embeddings"):
        load_bundle(d)
