"""PIR-ViT end to end on CPU with a reduced configuration (2-layer towers, width 64, 64 px): synthetic
checkpoints in each supported key layout, the robust recipe, resume, fp32 + fp16 bundles, the engine serving
the bundle; exact gradient accumulation; layer-wise lr decay; open_clip architectures by name."""

import json

import numpy as np
import pytest
import torch

from tests.conftest import PROJECT_ROOT
from training.config import TrainConfig

CONFIG = PROJECT_ROOT / "training" / "configs" / "pir_vit_b32.yaml"
TINY = {
    "embed_dim": 32,
    "image_size": 64,
    "vision_layers": 2,
    "vision_width": 64,
    "vision_head_width": 32,
    "patch_size": 32,
    "res_layers": [1, 1, 1, 1],
    "res_width": 8,
    "text_width": 32,
    "text_heads": 2,
    "text_layers": 2,
}
INSTR = ("res_visual.", "vision_proj_res.")


def _tiny_model(quick_gelu: bool = False):
    from training.models import build_model, load_model_config

    return build_model(load_model_config("pir_vit_b_32", {**TINY, "quick_gelu": quick_gelu}))


def _write_checkpoint(tmp_path, layout: str):
    """A synthetic checkpoint of the reduced model in ``layout``; returns (path, its tensors)."""
    torch.manual_seed(7)
    sd = _tiny_model().state_dict()
    towers = {k: v for k, v in sd.items() if not k.startswith(INSTR)}
    if layout == "pir-clip":
        path, obj = tmp_path / "epoch_5.pt", {"epoch": 5, "state_dict": {f"module.{k}": v for k, v in sd.items()}}
        return path, sd, obj
    if layout == "openai":
        meta = {
            "input_resolution": torch.tensor(64),
            "context_length": torch.tensor(77),
            "vocab_size": torch.tensor(49408),
        }
        return tmp_path / "ViT-tiny.pt", towers, {**towers, **meta}
    name = "RS5M_ViT-tiny.pt" if layout == "georsclip" else "RemoteCLIP-ViT-tiny.pt"
    return tmp_path / name, towers, towers


def _overrides(tmp_path, name: str, ckpt, extra=()) -> list[str]:
    return [
        f"out_dir={tmp_path}",
        f"name={name}",
        "max_train_pairs=48",
        "max_val_images=8",
        "batch_size=8",
        "scene_epochs=1",
        "scene_batch=8",
        "num_threads=1",
        f"model.checkpoint={ckpt}",
        "vit.workers=0",
        "vit.log_every=0",
        "vit.test_eval=false",
        *[f"model.{k}={json.dumps(v)}" for k, v in TINY.items()],
        *extra,
    ]


ROBUST = [
    "loss=robust",
    "sp_warmup_epochs=1",
    "caption_sampling=division",
    "noise_rate=0.2",
    "curriculum_weight=0.5",
    "uniformity_weight=0.1",
    "model.hash_bits=8",
    "vit.accum_steps=2",
    "vit.precision=bf16",
    "vit.layer_decay=0.8",
]


def test_robust_run_resumes_exports_and_the_engine_serves_it(tmp_path, shared, monkeypatch):
    from engine.bundle import bundle_bytes
    from engine.indexer import IndexParams
    from engine.service import Engine
    from training.train import run

    path, _, obj = _write_checkpoint(tmp_path, "remoteclip")
    torch.save(obj, path)
    models_dir = tmp_path / "models"
    monkeypatch.setenv("RSITR_MODELS_DIR", str(models_dir))
    base = _overrides(tmp_path, "e2e", path, [*ROBUST, f"export_dir={models_dir / 'pir-vit-tiny'}"])
    run(TrainConfig.load(CONFIG, [*base, "epochs=1", "export=false"]))
    first = torch.load(tmp_path / "e2e" / "last.pt", map_location="cpu", weights_only=False)
    run_dir = run(TrainConfig.load(CONFIG, [*base, "epochs=2"]), resume=True)
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    assert all(x["samples_per_s"] > 0 and x["precision"] == "bfloat16" and x["accum_steps"] == 2 for x in lines)
    assert (
        "full_division" not in lines[0]
        and sum(lines[1]["full_division"][k] for k in ("clean", "ambiguous", "noisy")) == 45
    )
    assert {"loss_main", "loss_aff", "loss_unif", "loss_curr", "loss_hash"} <= set(lines[1])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["scene"] == first["state"]["scene"]  # the scene prior ran once, before retrieval training
    assert summary["init"]["kind"] == "remoteclip" and summary["activation"] == "gelu"
    fp32, fp16 = models_dir / "pir-vit-tiny", models_dir / "pir-vit-tiny-fp16"
    meta = json.loads((fp32 / "model.json").read_text())
    assert meta["architecture"] == "PIR-ViT-B-32" and meta["text_inputs"] == ["input_ids"]
    assert meta["source_checkpoint"]["kind"] == "remoteclip" and meta["source_checkpoint"]["activation"] == "gelu"
    assert meta["parity_max_abs_diff"] < 1e-4 and meta["hash_bits"] == 8
    meta16 = json.loads((fp16 / "model.json").read_text())
    assert meta16["precision"] == "fp16" and meta16["name"] == meta["name"] + "-fp16"
    assert meta16["variant_cosine_to_fp32"]["text"]["min"] > 0.99
    assert meta16["variant_cosine_to_fp32"]["image"]["min"] > 0.99
    assert "mr_cost_vs_fp32" in meta16["metrics"]
    # the tokenizer the bundle ships gives open_clip's ids
    import open_clip
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(fp32 / "tokenizer.json"))
    ids = tok.encode("Many planes are parked near a terminal.").ids
    assert ids == [i for i in open_clip.tokenize(["Many planes are parked near a terminal."])[0].tolist() if i]
    eng = Engine(root=tmp_path / "stores", threads=1)  # every bundle of the models folder
    listed = {m["name"]: m for m in eng.models()}
    assert set(listed) == {meta["name"], meta16["name"]}
    assert listed[meta["name"]]["bytes"] == bundle_bytes(fp32) > listed[meta16["name"]]["bytes"]
    assert listed[meta["name"]]["test_mr"] is None  # not measured here (vit.test_eval=false)
    shipped = PROJECT_ROOT / "resources" / "models" / "pir-lite"  # a bundle with a measured test mR
    row = Engine(models=[shipped], root=tmp_path / "stores", threads=1).models()
    want = json.loads((shipped / "model.json").read_text())["metrics"]["rsicd_aid150_test"]["mr"]
    assert {r["name"]: r["test_mr"] for r in row}["pir-lite"] == want
    raster = shared / "rasters" / "drone_ortho_100px.tif"
    res = eng.index(raster, IndexParams(tile=64))
    assert res.n_tiles > 0
    out = eng.search("a baseball field next to trees", rasters=[raster], k=3)
    assert 0 < len(out["results"]) <= 3
    eng.index(raster, IndexParams(tile=64), model=meta16["name"])  # the fp16 bundle serves too
    out16 = eng.search("a baseball field next to trees", rasters=[raster], k=3, model=meta16["name"])
    s32 = {r["tile_id"]: r["score"] for r in out["results"]}
    s16 = {r["tile_id"]: r["score"] for r in out16["results"]}
    assert set(s16) & set(s32) and all(abs(s16[t] - s32[t]) < 0.02 for t in set(s16) & set(s32))


@pytest.mark.parametrize(
    "layout,act,options",
    [
        ("pir-clip", "gelu", []),
        ("openai", "quick_gelu", ["vit.instr_cache=true"]),  # the frozen-instruction cache
        ("georsclip", "quick_gelu", ["vit.freeze_text=true"]),
    ],
)
def test_each_layout_initialises_and_trains(tmp_path, shared, layout, act, options):
    from training.train import run

    path, tensors, obj = _write_checkpoint(tmp_path, layout)
    torch.save(obj, path)
    over = _overrides(tmp_path, layout, path, ["epochs=0", "export=false", "loss=robust", *options])
    run(TrainConfig.load(CONFIG, over))  # the scene prior only: epoch-0 checkpoint
    scene = torch.load(tmp_path / layout / "last.pt", map_location="cpu", weights_only=False)["state_dict"]
    run_dir = run(TrainConfig.load(CONFIG, [*over, "epochs=1"]), resume=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["init"]["kind"] == layout and summary["activation"] == act
    assert summary["init"]["loaded"] == len(tensors)
    ck = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    sd = ck["state_dict"]
    assert ck["model_config"]["quick_gelu"] == (act == "quick_gelu")
    # trained: the image tower moved away from the checkpoint; the instruction encoder, frozen after the scene
    # prior, did not move in retrieval training
    assert not torch.equal(sd["visual.proj"], tensors["visual.proj"])
    assert all(torch.equal(sd[k], scene[k]) for k in sd if k.startswith("res_visual."))
    if layout == "pir-clip":  # the scene prior trained the checkpoint's instruction encoder
        assert not torch.equal(scene["res_visual.conv1.weight"], tensors["res_visual.conv1.weight"])
    text_moved = not torch.equal(sd["text_projection"], tensors["text_projection"])
    assert text_moved == ("vit.freeze_text=true" not in options)


def test_gradient_accumulation_equals_the_full_batch_gradient():
    from training.vit_step import Towers, backward_step, retrieval_loss

    model, cfg, sp, x, toks, img_idx, txt_idx, labels = _grad_case()
    scaler = torch.amp.GradScaler("cpu", enabled=False)

    def grads(accum):
        model.zero_grad(set_to_none=True)
        backward_step(
            Towers(model),
            lambda i, t: retrieval_loss(model, cfg, sp, i, t, img_idx, txt_idx, labels, 1, None),
            x,
            toks,
            None,
            accum,
            torch.float32,
            scaler,
        )
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    full, acc = grads(1), grads(4)
    assert set(full) == set(acc) and "logit_scale" in full and "visual.conv1.weight" in full
    for n in full:
        assert torch.allclose(full[n], acc[n], atol=1e-6, rtol=1e-4), n


def test_layerwise_lr_decay_and_weight_decay_groups():
    from training.vit_optim import param_groups

    model = _tiny_model()
    groups = param_groups(model, 1e-4, 1e-3, 0.5, 0.5)
    lr = {n: g["lr"] for g in groups for n in g["names"]}
    wd = {n: g["weight_decay"] for g in groups for n in g["names"]}
    assert lr["visual.proj"] == lr["text_projection"] == 1e-4  # top of each tower
    assert lr["visual.transformer.resblocks.1.attn.in_proj_weight"] == pytest.approx(0.5e-4)
    assert lr["visual.transformer.resblocks.0.attn.in_proj_weight"] == pytest.approx(0.25e-4)
    assert lr["visual.conv1.weight"] == lr["token_embedding.weight"] == pytest.approx(0.125e-4)
    assert lr["vision_proj_res.weight"] == lr["logit_scale"] == 1e-3
    assert wd["visual.conv1.weight"] == 0.5 and wd["visual.ln_pre.weight"] == 0.0 and wd["logit_scale"] == 0.0
    assert wd["transformer.resblocks.0.mlp.c_fc.bias"] == 0.0


def test_open_clip_architecture_by_name_random_init():
    from training.models.clip_init import build_initialised, open_clip_model_config

    cfg = open_clip_model_config("ViT-B-16-quickgelu")
    assert cfg["architecture"] == "PIR-ViT-B-16-quickgelu" and cfg["patch_size"] == 16 and cfg["quick_gelu"]
    model, rep = build_initialised(cfg)
    assert rep.kind == "random" and rep.activation == "quick_gelu"
    with torch.no_grad():
        e = model.encode_image(torch.randn(1, 3, 224, 224))
    assert e.shape == (1, 512) and abs(float(e.norm()) - 1) < 1e-4
    assert open_clip_model_config("ViT-L-14")["vision_layers"] == 24
    from training.vit_train import is_vit_config, model_config_for

    run_cfg = TrainConfig.load(CONFIG, ["model.open_clip=ViT-B-16", "model.belief_mode=code_v1_double_belief"])
    mcfg, init = model_config_for(run_cfg, 30)
    assert is_vit_config(run_cfg) and init == {"open_clip": "ViT-B-16"}
    assert mcfg["architecture"] == "PIR-ViT-B-16" and mcfg["patch_size"] == 16 and not mcfg["quick_gelu"]
    assert mcfg["belief_mode"] == "code_v1_double_belief"
    lite = TrainConfig.load(PROJECT_ROOT / "training" / "configs" / "smoke.yaml")
    assert not is_vit_config(lite)  # PIR-Lite configs keep their own trainer
    for bad in ("RN50", "convnext_base", "no-such-arch"):
        with pytest.raises(ValueError):
            open_clip_model_config(bad)


def test_cli_bad_checkpoint_and_device_are_one_line(tmp_path, capsys, shared):
    from training.train import main

    base = ["--config", str(CONFIG), "--set", f"out_dir={tmp_path}", "max_train_pairs=16", "max_val_images=4"]
    assert main([*base, "model.checkpoint=/no/such/file.pt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "train.py: model.checkpoint: no such file /no/such/file.pt"
    if not torch.cuda.is_available():
        assert main([*base, "--device", "cuda"]) == 2
        err = capsys.readouterr().err.strip()
        assert "CUDA is not available" in err and "\n" not in err
    assert main([*base, "vit.precision=fp8"]) == 2
    assert "vit.precision" in capsys.readouterr().err


def test_instruction_cache_matches_live_instruction():
    from training.vit_data import ImageFiles  # noqa: F401 - the cache path uses the same preprocessing

    model = _tiny_model().eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        y = model.instruction_token(x)
        a = model.encode_image(x)
        b = model.encode_image_with_instruction(x, y)
    assert torch.allclose(a, b, atol=1e-6)
    assert np.isfinite(a.numpy()).all()


def _grad_case():
    """(model, cfg, sp, images, tokens, img_idx, txt_idx, labels) of the gradient tests, deterministic."""
    from training.losses import SelfPacedParams

    cfg = TrainConfig.load(CONFIG, ["loss=robust", "sp_warmup_epochs=0", "curriculum_weight=0.5"])
    sp = SelfPacedParams(
        cfg.gamma1, cfg.gamma2, cfg.threshold_mode, cfg.q1, cfg.q2, cfg.lambda1, cfg.lambda2, cfg.sigma0
    )
    torch.manual_seed(0)
    model = _tiny_model()
    model.res_visual.eval()
    for p in model.res_visual.parameters():
        p.requires_grad_(False)
    x = torch.randn(8, 3, 64, 64)
    toks = torch.randint(1, 49000, (8, 77))
    toks[:, 20:] = 0
    toks[:, 19] = 49407
    return (
        model,
        cfg,
        sp,
        x,
        toks,
        torch.arange(8),
        torch.tensor([0, 1, 2, 3, 4, 5, 6, 6]),
        torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]),
    )


def _ddp_worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from training.vit_step import Towers, backward_step, retrieval_loss

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    model, cfg, sp, x, toks, ii, ti, lab = _grad_case()
    towers = Towers(model)
    DDP._set_params_and_buffers_to_ignore_for_model(
        towers,
        [
            f"m.{n}"
            for n, _ in [*model.named_parameters(), *model.named_buffers()]
            if n.startswith(("logit_scale", "hash_"))
        ],
    )
    towers = DDP(towers)
    own = slice(rank * 4, rank * 4 + 4)
    backward_step(
        towers,
        lambda i, t: retrieval_loss(model, cfg, sp, i, t, ii, ti, lab, 1, None),
        x[own],
        toks[own],
        None,
        2,
        torch.float32,
        torch.amp.GradScaler("cpu", enabled=False),
        rank,
        2,
    )
    if rank == 0:
        torch.save({n: p.grad for n, p in model.named_parameters() if p.grad is not None}, out)
    dist.destroy_process_group()


def test_ddp_gradient_equals_the_single_process_full_batch_gradient(tmp_path):
    import socket

    import torch.multiprocessing as mp

    from training.vit_step import Towers, backward_step, retrieval_loss

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp_grads.pt"
    mp.spawn(_ddp_worker, args=(port, str(out)), nprocs=2, join=True)
    model, cfg, sp, x, toks, ii, ti, lab = _grad_case()
    backward_step(
        Towers(model),
        lambda i, t: retrieval_loss(model, cfg, sp, i, t, ii, ti, lab, 1, None),
        x,
        toks,
        None,
        1,
        torch.float32,
        torch.amp.GradScaler("cpu", enabled=False),
    )
    ddp = torch.load(out, weights_only=True)
    full = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(ddp) == set(full) and "visual.conv1.weight" in full
    for n in full:
        assert torch.allclose(full[n], ddp[n], atol=1e-6, rtol=1e-4), n


def test_torchrun_two_processes_trains_and_checkpoints(tmp_path, shared):
    import os
    import socket
    import subprocess
    import sys

    path, _, obj = _write_checkpoint(tmp_path, "remoteclip")
    torch.save(obj, path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sets = _overrides(tmp_path, "ddp", path, ["epochs=1", "export=false", "loss=robust", "vit.accum_steps=2"])
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={port}",
        "training/train.py",
        "--config",
        str(CONFIG),
        "--device",
        "cpu",
        "--set",
        *sets,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = json.loads((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()[0])
    assert rec["world_size"] == 2 and rec["accum_steps"] == 2 and rec["samples_per_s"] > 0 and rec["val_mr"] >= 0
    ck = torch.load(tmp_path / "ddp" / "last.pt", map_location="cpu", weights_only=False)
    assert ck["state"]["epoch"] == 1 and "scaler" in ck["optimizer"]
