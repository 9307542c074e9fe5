"""Describe: calibrated classes with "other" and "uncertain", diverse descriptions, caption bank, point lookup."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from engine.config import PROMPTS_DIR
from engine.describe import (
    CaptionBank,
    DescribeParams,
    Vocabulary,
    class_summary,
    describe_embedding,
    describe_text,
    select_diverse,
)
from engine.errors import BadInput, CorruptData, NotFound
from engine.indexer import IndexParams
from engine.service import Engine
from engine.shared_data import rsicd_aid150_images, rsicd_aid150_json
from tests.engine.rasters import colour_quadrants, write_raster

AID = (
    "Airport BareLand BaseballField Beach Bridge Center Church Commercial DenseResidential Desert Farmland "
    "Forest Industrial Meadow MediumResidential Mountain Park Parking Playground Pond Port RailwayStation "
    "Resort River School SparseResidential Square Stadium StorageTanks Viaduct"
).split()
PIR_LITE = PROMPTS_DIR.parent / "models" / "pir-lite"


def test_vocabulary_covers_aid():
    sc = json.loads((PROMPTS_DIR / "scene_classes.json").read_text())
    norm = [c.replace(" ", "").lower() for c in sc["classes"]]
    assert norm == [c.lower() for c in AID] and all(len(sc["prompts"][c]) >= 3 for c in sc["classes"])
    v = Vocabulary.load()
    assert set(v.scenes) == set(AID) and len(v.scene_phrases) >= 90 and len(v.attributes) >= 15
    assert all("{scene}" in t and "{attribute}" in t for t in v.templates)
    assert all(a.mentions for a in v.attributes)
    # an attribute the phrase already names is not added again
    assert not [t for t, a in v.filled("a bridge crossing a river") if a.text == "a river"]


def test_class_summary_sums_to_one_and_flags_uncertain():
    classes = ["a", "b", "c", "d", "e"]
    sure = class_summary(np.array([0.7, 0.1, 0.1, 0.06, 0.04]), classes, 3, 0.4)
    assert [c["name"] for c in sure["classes"]] == ["a", "b", "c"] and sure["scene"] == "a" and not sure["uncertain"]
    assert sum(c["probability"] for c in sure["classes"]) + sure["other"] == pytest.approx(1.0, abs=1e-9)
    assert sure["other"] == pytest.approx(0.1)
    unsure = class_summary(np.array([0.3, 0.25, 0.2, 0.15, 0.1]), classes, 3, 0.4)
    assert unsure["uncertain"] and unsure["scene"] is None and unsure["classes"][0]["name"] == "a"
    assert sum(c["probability"] for c in unsure["classes"]) + unsure["other"] == pytest.approx(1.0, abs=1e-9)


def test_select_diverse_skips_near_duplicates():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((4, 16))
    emb = np.concatenate([base, base + 0.01 * rng.standard_normal((4, 16))])  # rows 4..7 duplicate 0..3
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    rel = np.array([0.9, 0.5, 0.4, 0.3, 0.89, 0.49, 0.39, 0.29])
    chosen = select_diverse(rel, emb, 8, lam=0.7, max_cos=0.95)
    assert chosen[0] == 0 and sorted(chosen) == [0, 1, 2, 3]  # never a duplicate, so fewer than asked
    assert select_diverse(rel, emb, 8, lam=1.0, max_cos=1.01)[:2] == [0, 4]  # without the rule: pure relevance


def test_describe_params_from_model_json():
    assert DescribeParams.from_bundle_meta({}) == DescribeParams()
    cal = {"scene_temperature": 6.0, "uncertain_below": 0.4, "attribute_margin": 0.18}
    p = DescribeParams.from_bundle_meta({"calibration": cal})
    assert (p.temperature, p.uncertain_below, p.attribute_margin, p.min_class_probability) == (6.0, 0.4, 0.18, 0.1)
    with pytest.raises(CorruptData, match="calibration"):
        DescribeParams.from_bundle_meta({"calibration": {"scene_temperature": -1}})
    with pytest.raises(CorruptData, match="calibration"):
        DescribeParams.from_bundle_meta({"calibration": {"uncertain_below": 0.4}})


def test_describe_point_and_tile(tmp_path, engine):
    p = write_raster(tmp_path / "q.tif", colour_quadrants(64), crs="EPSG:4326", res=0.001, origin=(10, 50))
    res = engine.index(p, IndexParams(tile=64))
    out = engine.describe(raster=p, x=10.1, y=49.99, crs="EPSG:4326", top=3)
    assert out["tile_id"] == 1 and out["store_id"] == res.store_id and out["authid"] == "EPSG:4326"
    assert len(out["classes"]) == 3 and out["classes"][0]["probability"] >= out["classes"][1]["probability"]
    assert sum(c["probability"] for c in out["classes"]) + out["other"] == pytest.approx(1.0, abs=1e-9)
    assert all(c["name"] in engine.encoder().bundle.classes for c in out["classes"])
    assert isinstance(out["uncertain"], bool) and out["scene"] in (None, out["classes"][0]["name"])
    assert 1 <= len(out["descriptions"]) <= 3
    assert [d["score"] for d in out["descriptions"]] == sorted((d["score"] for d in out["descriptions"]), reverse=True)
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
    assert out["tile_id"] is None and out["geometry"]["type"] == "Polygon" and len(out["classes"]) == 3
    text = describe_text(out)
    assert "not indexed" in text and "other" in text and "%" in text


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


@pytest.fixture(scope="module")
def pir_lite_encoder():
    from engine.bundle import load_bundle
    from engine.encoder import Encoder

    return Encoder(load_bundle(PIR_LITE), threads=1)


def _aid_images(split: str, n: int) -> list[tuple[str, np.ndarray]]:
    """``n`` images of ``split`` (classes spread out) as (class, RGB array)."""
    rows = [r for r in json.loads(rsicd_aid150_json().read_text())["images"] if r["split"] == split]
    picked = rows[:: max(1, len(rows) // n)][:n]
    return [(r["class"], np.asarray(Image.open(rsicd_aid150_images() / r["filename"]).convert("RGB"))) for r in picked]


def test_shipped_bundle_describes_real_images_calibrated_and_diverse(pir_lite_encoder):
    """The shipped bundle on real test images: calibrated (not saturated) probabilities that sum to 1 with other,
    top-5 descriptions without near-duplicates, mostly of the true class."""
    from engine.preprocess import prepare

    enc = pir_lite_encoder
    params = DescribeParams.from_bundle_meta(enc.meta.raw)
    assert "calibration" in enc.meta.raw and params.temperature > 1  # calibration shipped in model.json
    m = enc.meta
    images = _aid_images("test", 12)
    embs = enc.embed_images(prepare([im for _, im in images], m.image_size, m.mean, m.std, m.interpolation))
    vocab, tops, right = Vocabulary.load(), [], 0
    for (cls, _), emb in zip(images, embs, strict=True):
        out = describe_embedding(emb, enc, vocab, None, top=5)
        assert sum(c["probability"] for c in out["classes"]) + out["other"] == pytest.approx(1.0, abs=1e-9)
        texts = [d["text"] for d in out["descriptions"]]
        assert 1 <= len(texts) <= 5
        t = enc.embed_texts(texts)
        cos = t @ t.T
        assert (cos[np.triu_indices(len(texts), 1)] <= 0.95).all(), texts
        tops.append(out["classes"][0]["probability"])
        phrase = max((p for p in vocab.phrase_class if texts[0].startswith(p)), key=len)
        right += vocab.phrase_class[phrase] == cls
    uncal = describe_embedding(embs[0], enc, vocab, None, 5, DescribeParams())
    assert uncal["classes"][0]["probability"] >= tops[0]  # calibration softens the softmax
    assert min(tops) < 0.99  # no longer saturated on every image
    assert right >= 9  # the top description names the true class (about 90 % on the test split)


def test_uncertain_state_on_an_ambiguous_image(pir_lite_encoder):
    """An image half forest, half sea is described as uncertain, with the shown numbers still summing to 1."""
    from engine.preprocess import prepare

    imgs = dict(_aid_images("test", 300))
    mixed = np.concatenate([imgs["Forest"][:, :75], imgs["Beach"][:, 75:]], axis=1)
    noise = np.random.default_rng(1).integers(0, 255, (150, 150, 3), dtype=np.uint8)
    m = pir_lite_encoder.meta
    vocab = Vocabulary.load()
    outs = [
        describe_embedding(e, pir_lite_encoder, vocab, None, 5)
        for e in pir_lite_encoder.embed_images(prepare([mixed, noise], m.image_size, m.mean, m.std, m.interpolation))
    ]
    assert any(o["uncertain"] and o["scene"] is None for o in outs), [o["classes"] for o in outs]
    for o in outs:
        assert sum(c["probability"] for c in o["classes"]) + o["other"] == pytest.approx(1.0, abs=1e-9)
        assert ("uncertain" in describe_text(o)) == o["uncertain"]


def test_calibration_is_read_from_the_bundle(tmp_path, bundle_dir):
    """A calibration block in model.json changes the engine's probabilities (temperature applied)."""
    from engine.bundle import load_bundle
    from engine.encoder import Encoder

    hot = tmp_path / "hot"
    shutil.copytree(bundle_dir, hot)
    meta = json.loads((hot / "model.json").read_text())
    meta["calibration"] = {"scene_temperature": 50.0, "uncertain_below": 0.4, "attribute_margin": None}
    (hot / "model.json").write_text(json.dumps(meta))
    cold, warm = Encoder(load_bundle(bundle_dir), threads=1), Encoder(load_bundle(hot), threads=1)
    emb = cold.embed_texts(["a green forest"])[0]
    a = describe_embedding(emb, cold, Vocabulary.load(), None, 3)
    b = describe_embedding(emb, warm, Vocabulary.load(), None, 3)
    assert a["classes"][0]["name"] == b["classes"][0]["name"]
    assert b["classes"][0]["probability"] < a["classes"][0]["probability"] and b["uncertain"]
