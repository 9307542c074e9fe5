"""Describe: classes, composed descriptions, caption bank, point lookup, the shipped vocabulary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.config import PROMPTS_DIR
from engine.describe import CaptionBank, Vocabulary
from engine.errors import BadInput, CorruptData, NotFound
from engine.indexer import IndexParams
from engine.service import Engine
from tests.engine.rasters import colour_quadrants, write_raster

AID = (
    "Airport BareLand BaseballField Beach Bridge Center Church Commercial DenseResidential Desert Farmland "
    "Forest Industrial Meadow MediumResidential Mountain Park Parking Playground Pond Port RailwayStation "
    "Resort River School SparseResidential Square Stadium StorageTanks Viaduct"
).split()


def test_vocabulary_covers_aid():
    sc = json.loads((PROMPTS_DIR / "scene_classes.json").read_text())
    norm = [c.replace(" ", "").lower() for c in sc["classes"]]
    assert norm == [c.lower() for c in AID] and all(len(sc["prompts"][c]) >= 3 for c in sc["classes"])
    v = Vocabulary.load()
    assert set(v.scenes) == set(AID) and len(v.scene_phrases) >= 90 and len(v.elements) >= 15
    assert all("{scene}" in t and "{element}" in t for t in v.templates)


def test_describe_point_and_tile(tmp_path, engine):
    p = write_raster(tmp_path / "q.tif", colour_quadrants(64), crs="EPSG:4326", res=0.001, origin=(10, 50))
    res = engine.index(p, IndexParams(tile=64))
    out = engine.describe(raster=p, x=10.1, y=49.99, crs="EPSG:4326", top=3)
    assert out["tile_id"] == 1 and out["store_id"] == res.store_id and out["authid"] == "EPSG:4326"
    assert len(out["classes"]) == 3 and out["classes"][0]["probability"] >= out["classes"][1]["probability"]
    assert sum(c["probability"] for c in out["classes"]) <= 1.0 + 1e-6
    assert all(c["name"] in engine.encoder().bundle.classes for c in out["classes"])
    assert len(out["descriptions"]) == 3 and out["descriptions"][0]["score"] >= out["descriptions"][2]["score"]
    assert out["captions"] == []
    by_id = engine.describe(store_id=res.store_id, tile_id=1, top=3)
    assert by_id["classes"] == out["classes"]
    with pytest.raises(NotFound):
        engine.describe(store_id=res.store_id, tile_id=99)
    with pytest.raises(NotFound, match="outside"):
        engine.describe(raster=p, x=0, y=0, crs="EPSG:4326")


def test_describe_unindexed_raster_on_the_fly(tmp_path, engine):
    p = write_raster(tmp_path / "q.tif", colour_quadrants(64))
    out = engine.describe(raster=p, x=500_010, y=4_999_990)
    assert out["tile_id"] is None and out["geometry"]["type"] == "Polygon" and len(out["classes"]) == 5


def test_caption_bank(tmp_path, bundle_dir, encoder, cache):
    texts = ["many red roofs", "a green park", "blue water of a lake"]
    bank = tmp_path / "bank.npz"
    np.savez(
        bank,
        texts=np.array(texts),
        embeddings=encoder.embed_texts(texts).astype(np.float16),
        model_name=np.array("synthetic"),
        model_version=np.array("0.0.1"),
        embed_dim=np.array(32),
    )
    eng = Engine(default_model=bundle_dir, root=cache, caption_bank=bank)
    p = write_raster(tmp_path / "q.tif", colour_quadrants(64))
    eng.index(p, IndexParams(tile=64))
    out = eng.describe(raster=p, x=500_010, y=4_999_990, top=2)  # the red tile
    assert out["captions"][0]["text"] == "many red roofs" and len(out["captions"]) == 2
    np.savez(bank, texts=np.array(texts), embeddings=np.zeros((3, 7), np.float32))
    with pytest.raises(CorruptData):
        CaptionBank.load(bank, 32)
    np.savez(bank, texts=np.array(texts), embeddings=np.zeros((3, 32), np.float32), model_name=np.array("other"))
    with pytest.raises(BadInput, match="built with model other"):
        CaptionBank.load(bank, 32, "synthetic")
