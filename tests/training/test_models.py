"""Belief variants, PIR-ViT-B-32 checkpoint layout/loading, MiniLM parity, PIR-Lite shapes."""

import math

import pytest
import torch
import torch.nn.functional as F

from training.models.belief import apply_soft_belief, belief_scores

X = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
Y = torch.tensor([[[2.0, 0.5]]])  # scores 2, 0.5, 2.5 -> order [2,0,1]; own ranks [1,2,0]


def _expected(weights, double=False, dim=-1):
    b = torch.softmax(torch.tensor([2.0, 0.5, 2.5]), 0)
    w = b if double else torch.tensor(weights)
    return F.normalize(X * b[None, :, None] + X * w[None, :, None], dim=dim)


@pytest.mark.parametrize(
    "mode,weights,double",
    [
        ("rank_weights", [1 / math.sqrt(2), 1 / math.sqrt(3), 1.0], False),
        ("code_v2_index_weights", [1 / math.sqrt(3), 1.0, 1 / math.sqrt(2)], False),
        ("code_v1_double_belief", None, True),
    ],
)
@pytest.mark.parametrize("dim", [-1, 1])
def test_belief_variants(mode, weights, double, dim):
    got = apply_soft_belief(X, Y, mode, dim)
    assert torch.allclose(got, _expected(weights, double, dim), atol=1e-6)


def test_belief_batch_one_squeeze():
    x, y = torch.randn(1, 50, 16), torch.randn(1, 1, 16)
    assert belief_scores(x, y).shape == (1, 50)
    xb = torch.cat([x, torch.randn(2, 50, 16)])
    yb = torch.cat([y, torch.randn(2, 1, 16)])
    assert torch.allclose(apply_soft_belief(x, y), apply_soft_belief(xb, yb)[:1], atol=1e-6)


TINY = {
    "embed_dim": 32,
    "image_size": 64,
    "vision_layers": 2,
    "vision_width": 64,
    "vision_head_width": 32,
    "patch_size": 32,
    "res_layers": [1, 1, 1, 1],
    "res_width": 8,
    "context_length": 12,
    "vocab_size": 100,
    "text_width": 32,
    "text_heads": 2,
    "text_layers": 1,
}


def test_pir_vit_key_layout_and_checkpoint_roundtrip(tmp_path):
    from training.models.pir_vit import PIRViT, PIRViTConfig, load_pretrained

    torch.manual_seed(0)
    a = PIRViT(PIRViTConfig.from_dict(TINY)).eval()
    sd = a.state_dict()
    for k in (
        "visual.conv1.weight",
        "visual.proj",
        "res_visual.attnpool.q_proj.weight",
        "res_visual.layer4.0.conv1.weight",
        "vision_proj_res.weight",
        "token_embedding.weight",
        "positional_embedding",
        "transformer.resblocks.0.attn.in_proj_weight",
        "ln_final.weight",
        "text_projection",
        "logit_scale",
    ):
        assert k in sd, k
    assert sd["vision_proj_res.weight"].shape == (64, 32)
    # a PIR-CLIP open_clip training checkpoint: {'epoch', 'state_dict'} with DDP 'module.' prefixes
    p = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "name": "x", "state_dict": {f"module.{k}": v for k, v in sd.items()}}, p)
    torch.manual_seed(1)
    b = PIRViT(PIRViTConfig.from_dict(TINY)).eval()
    rep = load_pretrained(b, p)
    assert rep.kind == "pir-clip" and rep.activation == "gelu" and not rep.missing
    img = torch.randn(3, 3, 64, 64)
    txt = torch.randint(1, 99, (2, 12))
    with torch.no_grad():
        assert torch.allclose(a.encode_image(img), b.encode_image(img), atol=1e-6)
        assert torch.allclose(a.encode_text(txt), b.encode_text(txt), atol=1e-6)
        one = b.encode_image(img[:1])  # batch-1 (squeeze bug fixed)
        assert one.shape == (1, 32) and torch.allclose(one, b.encode_image(img)[:1], atol=1e-5)


def test_remoteclip_layout_loads_towers_only(tmp_path):
    from training.models.pir_vit import PIRViT, PIRViTConfig, load_pretrained

    a = PIRViT(PIRViTConfig.from_dict(TINY))
    sd = {k: v for k, v in a.state_dict().items() if not k.startswith(("res_visual.", "vision_proj_res."))}
    p = tmp_path / "RemoteCLIP-ViT-B-32.pt"
    torch.save(sd, p)
    b = PIRViT(PIRViTConfig.from_dict({**TINY, "quick_gelu": True}))
    with pytest.warns(UserWarning, match="gelu"):
        rep = load_pretrained(b, p)
    assert rep.kind == "remoteclip" and rep.activation == "quick_gelu"
    assert rep.missing and all(k.startswith(("res_visual.", "vision_proj_res.")) for k in rep.missing)
    assert torch.equal(b.visual.conv1.weight, a.visual.conv1.weight)
    del sd["visual.conv1.weight"]
    torch.save(sd, p)
    with pytest.raises(KeyError):
        load_pretrained(b, p, kind="georsclip")


def test_minilm_matches_transformers():
    transformers = pytest.importorskip("transformers")
    from training.models.minilm import MiniLM, minilm_dir

    ours = MiniLM.pretrained().eval()
    ref = transformers.BertModel.from_pretrained(str(minilm_dir())).eval()
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102, 0, 0], [101, 7592, 102, 0, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        a = ours(ids, mask)
        b = ref(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.bool()
    assert torch.allclose(a[m], b[m], atol=1e-4)


@pytest.mark.parametrize(
    "flags",
    [
        {},
        {"use_belief": False},
        {"use_spatial_pae": False},
        {"use_instruction": False},
        {"use_temporal_pae": True},
    ],
)
def test_pir_lite_variants_shapes(flags):
    from training.models.pir_lite import PIRLite, PIRLiteConfig

    cfg = PIRLiteConfig(
        pretrained=False,
        image_size=64,
        text_layers=2,
        text_freeze_layers=1,
        embed_dim=32,
        hash_bits=8,
        **flags,
    )
    m = PIRLite(cfg).eval()
    with torch.no_grad():
        img = m.encode_image(torch.randn(2, 3, 64, 64))
        ids = torch.randint(1000, 2000, (3, 32))
        txt = m.encode_text(ids, torch.ones_like(ids))
        one = m.encode_image(torch.randn(1, 3, 64, 64))
    assert img.shape == (2, 32) and txt.shape == (3, 32) and one.shape == (1, 32)
    assert torch.allclose(img.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert m.hash_image(img).shape == (2, 8)


def test_pir_vit_bundle_export_parity(tmp_path):
    """A PIR-CLIP-layout checkpoint exports to a contract bundle (CLIP tokenizer, EOT pooling, parity)."""
    import json

    from training.bundle_runtime import BundleEncoder
    from training.export import export_openclip_checkpoint
    from training.models.pir_vit import PIRViT, PIRViTConfig

    cfg = {**TINY, "vocab_size": 49408, "context_length": 77}
    m = PIRViT(PIRViTConfig.from_dict(cfg))
    p = tmp_path / "PIR-CLIP_tiny.pt"
    torch.save({"state_dict": m.state_dict()}, p)
    out = export_openclip_checkpoint(p, tmp_path / "bundle", "pir_vit_b_32", cfg, log=lambda *_: None)
    meta = json.loads((out / "model.json").read_text())
    assert meta["parity_max_abs_diff"] < 1e-4 and meta["text_inputs"] == ["input_ids"]
    assert meta["source_checkpoint"]["kind"] == "pir-clip"
    enc = BundleEncoder(out)
    t = enc.encode_texts(["a runway with planes"])
    import open_clip

    with torch.no_grad():
        ref = m.eval().encode_text(open_clip.tokenize(["a runway with planes"])).numpy()
    assert abs(t - ref).max() < 1e-4
