"""Smoke end to end (train -> export -> evaluate the bundle through ONNX Runtime), bundle contract,
variants.
"""

import json

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("shared")


def test_bundle_contract(smoke_bundle):
    for f in (
        "model.json",
        "image_encoder.onnx",
        "text_encoder.onnx",
        "tokenizer.json",
        "scene_classes.json",
        "scene_class_embeddings.npy",
        "hash_image.onnx",
        "hash_text.onnx",
    ):
        assert (smoke_bundle / f).is_file(), f
    meta = json.loads((smoke_bundle / "model.json").read_text())
    for k in (
        "format_version",
        "name",
        "version",
        "architecture",
        "embed_dim",
        "image_size",
        "mean",
        "std",
        "interpolation",
        "context_length",
        "pad_token_id",
        "text_inputs",
        "input_bands",
        "gsd_m",
        "hash_bits",
        "precision",
        "metrics",
        "licenses",
        "created",
        "training_config",
    ):
        assert k in meta, k
    assert meta["parity_max_abs_diff"] < 1e-4
    sc = json.loads((smoke_bundle / "scene_classes.json").read_text())
    emb = np.load(smoke_bundle / "scene_class_embeddings.npy")
    assert emb.shape == (len(sc["classes"]), meta["embed_dim"]) == (30, meta["embed_dim"])
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_onnx_runtime_encoder(smoke_bundle):
    from training.bundle_runtime import BundleEncoder

    enc = BundleEncoder(smoke_bundle)
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (150, 150, 3), dtype=np.uint8) for _ in range(7)]
    e = enc.encode_images(imgs)
    assert e.shape == (7, enc.meta["embed_dim"]) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert np.allclose(enc.encode_images(imgs[:1]), e[:1], atol=1e-5)  # batch 1
    t = enc.encode_texts(["a runway with planes", "many green trees"])
    assert np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    own = BundleEncoder(smoke_bundle, use_engine=False)  # own ONNX sessions + tokenizer, not the engine's Encoder
    if enc.engine is not None:
        assert np.allclose(own.encode_images(imgs), e, atol=1e-5)
        assert np.allclose(own.encode_texts(["a runway with planes", "many green trees"]), t, atol=1e-5)
    codes = enc.hash_codes(e, "image")
    assert codes.shape == (7, enc.meta["hash_bits"]) and np.all(np.abs(codes) < 1)


def test_evaluate_bundle_and_checkpoint_agree(smoke_bundle):
    from training.evaluate import evaluate_bundle, evaluate_checkpoint

    mb = evaluate_bundle(smoke_bundle, "shared:datasets/rsicd_aid150/dataset_rsicd_aid150.json", "val", max_images=12)
    mc = evaluate_checkpoint(
        smoke_bundle.parent / "best.pt",
        "shared:datasets/rsicd_aid150/dataset_rsicd_aid150.json",
        "val",
        max_images=12,
    )
    assert set(mb) >= {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mr"}
    assert mb["mr"] == pytest.approx(mc["mr"], abs=0.5)


def test_run_outputs(smoke_bundle):
    run = smoke_bundle.parent
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    assert all("val_mr" in x for x in lines)
    for f in ("best.pt", "last.pt", "plots/losses.png", "plots/recall.png", "plots/pair_weights.png"):
        assert (run / f).is_file(), f


def test_no_dataset_captions_in_bundle(smoke_bundle, shared):
    from training.data.readers import read_karpathy_json

    caps = {r.caption for r in read_karpathy_json(shared / "datasets/rsicd_aid150/dataset_rsicd_aid150.json")}
    long_caps = [c for c in caps if len(c) > 25]
    for f in ("model.json", "scene_classes.json"):
        text = (smoke_bundle / f).read_text()
        assert not any(c in text for c in long_caps), f


@pytest.mark.parametrize("precision,min_cos", [("int8", 0.9), ("fp16", 0.999)])
def test_variant_cosine(smoke_bundle, tmp_path, precision, min_cos):
    from training.export import make_variant

    cos = make_variant(smoke_bundle, tmp_path / precision, precision)
    assert cos["image"]["mean"] > min_cos and cos["text"]["mean"] > min_cos
    assert json.loads((tmp_path / precision / "model.json").read_text())["precision"] == precision


def test_caption_bank(smoke_bundle, tmp_path):
    from training.caption_bank import build_caption_bank

    p = build_caption_bank(
        smoke_bundle,
        "shared:datasets/rsicd_aid150/dataset_rsicd_aid150.json",
        tmp_path / "bank.npz",
        ("val",),
        max_texts=50,
    )
    z = np.load(p)
    assert len(z["texts"]) == 50 and z["embeddings"].shape == (50, int(z["embed_dim"]))
    assert z["embeddings"].dtype == np.float16


def test_tokenizer_json_carries_context_length(smoke_bundle):
    """A consumer that reads only tokenizer.json gets the engine's ids: truncation and padding to context_length."""
    from tokenizers import Tokenizer

    meta = json.loads((smoke_bundle / "model.json").read_text())
    tok = Tokenizer.from_file(str(smoke_bundle / "tokenizer.json"))
    L = meta["context_length"]
    short, long = tok.encode("a runway"), tok.encode("many green trees " * 40)
    assert len(short.ids) == len(long.ids) == L
    assert short.ids[-1] == meta["pad_token_id"] and short.attention_mask[-1] == 0


def _alone_vs_batch(bundle, rng) -> tuple[float, float]:
    """Max abs difference of one tile / one text embedded alone and inside a batch of 64 (the engine's encoder
    for tiles; the bundle's own ONNX session for texts, since the engine caches text embeddings)."""
    from training.bundle_runtime import BundleEncoder

    tiles = [rng.integers(0, 255, (150, 150, 3), dtype=np.uint8) for _ in range(64)]
    texts = [f"{n} storage tanks next to a road and {64 - n} green trees" for n in range(64)]
    enc, own = BundleEncoder(bundle), BundleEncoder(bundle, use_engine=False)
    img_d = np.abs(enc.encode_images(tiles[:1]) - enc.encode_images(tiles, batch=64)[:1]).max()
    txt_d = np.abs(own.encode_texts(texts[:1]) - own.encode_texts(texts, batch=64)[:1]).max()
    return float(img_d), float(txt_d)


@pytest.mark.parametrize("image_prec,text_prec", [("fp16w", "int8w"), ("fp16w-int8wlin", "int8w")])
def test_compact_variants_are_batch_invariant(smoke_bundle, tmp_path, image_prec, text_prec):
    """The shipped compact formats store weights small but compute in fp32: one tile and one text embedded alone
    and inside a batch of 64 agree to 1e-4 (dynamic int8, the 0.2 format, does not), and stay close to fp32."""
    from training.bundle_runtime import BundleEncoder
    from training.ship import make_mixed_variant

    d = make_mixed_variant(smoke_bundle, tmp_path / "v", image_prec, text_prec, "fp16w")
    enc = BundleEncoder(d)
    img_d, txt_d = _alone_vs_batch(d, np.random.default_rng(0))
    assert img_d < 1e-4 and txt_d < 1e-4, (img_d, txt_d)
    ref = BundleEncoder(smoke_bundle)
    rng = np.random.default_rng(1)
    tiles = [rng.integers(0, 255, (150, 150, 3), dtype=np.uint8) for _ in range(8)]
    texts = ["a runway with planes", "many green trees around a pond", "dense residential buildings"]
    cos_i = (enc.encode_images(tiles) * ref.encode_images(tiles)).sum(1)
    cos_t = (enc.encode_texts(texts) * ref.encode_texts(texts)).sum(1)
    assert cos_i.min() > 0.995 and cos_t.min() > 0.99, (cos_i.min(), cos_t.min())
    dyn = make_mixed_variant(smoke_bundle, tmp_path / "dyn", "fp16w-int8lin", "int8pc", "fp32")
    dyn_img, dyn_txt = _alone_vs_batch(dyn, np.random.default_rng(0))
    assert dyn_img > 1e-4 and dyn_txt > 1e-4, (dyn_img, dyn_txt)  # the defect these formats replace


def test_reformat_dynamic_int8_bundle_is_batch_invariant(smoke_bundle, tmp_path):
    """training.ship.dynamic_to_weight_only turns a 0.2-format bundle (dynamic int8) into a batch-invariant one
    over the same int8 weights."""
    import shutil

    import onnx

    from training.bundle_runtime import BundleEncoder
    from training.ship import dynamic_to_weight_only, make_mixed_variant

    dyn = make_mixed_variant(smoke_bundle, tmp_path / "dyn", "fp16w-int8lin", "int8pc", "fp32")
    fixed = tmp_path / "fixed"
    shutil.copytree(dyn, fixed)
    for f in ("image_encoder.onnx", "text_encoder.onnx"):
        m = dynamic_to_weight_only(onnx.load(str(dyn / f)))
        assert not any(n.op_type in ("DynamicQuantizeLinear", "MatMulInteger") for n in m.graph.node)
        onnx.checker.check_model(m)
        onnx.save(m, str(fixed / f))
    img_d, txt_d = _alone_vs_batch(fixed, np.random.default_rng(0))
    assert img_d < 1e-4 and txt_d < 1e-4, (img_d, txt_d)
    texts = ["a runway with planes", "many green trees around a pond"]
    a, b = BundleEncoder(dyn, use_engine=False), BundleEncoder(fixed, use_engine=False)
    assert (a.encode_texts(texts) * b.encode_texts(texts)).sum(1).min() > 0.98
