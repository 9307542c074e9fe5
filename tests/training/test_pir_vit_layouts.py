"""PIR-ViT-B-32 initialisation from each supported checkpoint layout at the exact ViT-B/32 key names and shapes
(synthetic weights from open_clip's own ViT-B-32 with random init): every checkpoint tensor lands in the model,
only the instruction encoder may be missing (tower-only families), the family's activation is applied."""

import gc

import pytest
import torch

from training.models import load_model_config
from training.models.clip_init import INSTRUCTION_PREFIXES, build_initialised


@pytest.fixture(scope="module")
def vit_b32_state():
    """open_clip ViT-B-32 state dict (random init) and the PIR-ViT-B-32 key set."""
    import open_clip

    torch.manual_seed(0)
    clip = open_clip.create_model("ViT-B-32", pretrained=None)
    sd = {k: v.clone() for k, v in clip.state_dict().items()}
    del clip
    gc.collect()
    return sd


def _pir_clip_checkpoint(sd: dict) -> dict:
    """A PIR-CLIP training checkpoint: the towers + an instruction encoder, DDP ``module.`` prefixes."""
    torch.manual_seed(1)
    from training.models import build_model

    pir = build_model(load_model_config("pir_vit_b_32")).state_dict()
    extra = {k: v for k, v in pir.items() if k.startswith(INSTRUCTION_PREFIXES)}
    assert set(pir) == set(sd) | set(extra)  # PIR-CLIP = open_clip ViT-B-32 + instruction encoder, same names
    return {"epoch": 20, "name": "pir", "state_dict": {f"module.{k}": v for k, v in {**sd, **extra}.items()}}


LAYOUTS = [
    # (file name, how the file holds the weights, expected layout, expected activation)
    ("PIR-CLIP_RET-3.pt", "pir", "pir-clip", "gelu"),
    ("RemoteCLIP-ViT-B-32.pt", "raw", "remoteclip", "gelu"),
    ("RS5M_ViT-B-32.pt", "raw", "georsclip", "quick_gelu"),
    ("ViT-B-32.pt", "openai", "openai", "quick_gelu"),
]


@pytest.mark.parametrize("fname,holder,kind,act", LAYOUTS)
def test_each_layout_loads_every_weight_with_the_family_activation(vit_b32_state, tmp_path, fname, holder, kind, act):
    from open_clip.transformer import QuickGELU

    sd = vit_b32_state
    if holder == "pir":
        obj = _pir_clip_checkpoint(sd)
        expect = {k[7:]: v for k, v in obj["state_dict"].items()}
    elif holder == "openai":  # OpenAI's state dict carries three integers next to the tensors
        obj = {
            **sd,
            "input_resolution": torch.tensor(224),
            "context_length": torch.tensor(77),
            "vocab_size": torch.tensor(49408),
        }
        expect = sd
    else:
        obj, expect = sd, sd
    path = tmp_path / fname
    torch.save(obj, path)
    del obj
    model, rep = build_initialised(load_model_config("pir_vit_b_32"), str(path))
    path.unlink()
    assert rep.kind == kind and rep.activation == act
    assert model.cfg.quick_gelu == (act == "quick_gelu")
    gelu = model.visual.transformer.resblocks[0].mlp.gelu
    assert isinstance(gelu, QuickGELU) == (act == "quick_gelu")
    assert isinstance(model.transformer.resblocks[11].mlp.gelu, QuickGELU) == (act == "quick_gelu")
    assert isinstance(model.res_visual.attnpool, torch.nn.Module)
    own = model.state_dict()
    assert rep.loaded == len(expect)  # every checkpoint tensor used ...
    for k, v in expect.items():  # ... and landed where its name says
        assert torch.equal(own[k], v), k
    if kind == "pir-clip":
        assert rep.missing == []
    else:  # only the instruction encoder starts from its own initialisation (trained by the scene prior)
        assert rep.missing and all(k.startswith(INSTRUCTION_PREFIXES) for k in rep.missing)
        assert {k for k in own if not k.startswith(INSTRUCTION_PREFIXES)} == set(sd)
    del model, own
    gc.collect()


def test_layout_errors_are_one_clear_line(vit_b32_state, tmp_path):
    sd = dict(vit_b32_state)
    p = tmp_path / "RemoteCLIP-ViT-B-32.pt"
    torch.save({**sd, "visual.extra_head.weight": torch.zeros(3)}, p)
    with pytest.raises(ValueError, match="does not use"):
        build_initialised(load_model_config("pir_vit_b_32"), str(p))
    del sd["visual.proj"]
    torch.save(sd, p)
    with pytest.raises(ValueError, match="lacks 1 model tensors.*visual.proj"):
        build_initialised(load_model_config("pir_vit_b_32"), str(p))
    torch.save({**vit_b32_state, "input_resolution": torch.tensor(336)}, p)
    with pytest.raises(ValueError, match="input_resolution=336"):
        build_initialised(load_model_config("pir_vit_b_32"), str(p))
    with pytest.raises(ValueError, match="no such file"):
        build_initialised(load_model_config("pir_vit_b_32"), str(tmp_path / "nope.pt"))
