"""Trainer: --set overrides, noise bookkeeping, resume from last.pt."""

import json

import pytest

from tests.conftest import PROJECT_ROOT
from training.config import TrainConfig

SMOKE = PROJECT_ROOT / "training" / "configs" / "smoke.yaml"


def _tiny_noisy(tmp_path, name: str, sampling: str, batch_size: int) -> list[str]:
    """Overrides of a seconds-long run at noise 0.4: 60 rows (12 images), 32 px, one caption per image."""
    return [
        f"out_dir={tmp_path}",
        "cache_dir=null",
        "export=false",
        "noise_rate=0.4",
        f"name={name}",
        "max_train_pairs=60",
        "max_val_images=6",
        "model.image_size=32",
        "model.hash_bits=0",
        "pairs_per_epoch=images",
        f"caption_sampling={sampling}",
        f"batch_size={batch_size}",
    ]


def test_overrides():
    cfg = TrainConfig.load(SMOKE, ["epochs=3", "model.embed_dim=128", "loss=infonce", "noise_rate=0.4"])
    assert cfg.epochs == 3 and cfg.model["embed_dim"] == 128 and cfg.model["image_size"] == 64
    assert cfg.loss == "infonce" and cfg.noise_rate == 0.4
    with pytest.raises(ValueError):
        TrainConfig.load(SMOKE, ["no_such_key=1"])


def test_noisy_run_and_resume(tmp_path, shared):
    from training.train import run

    base = [
        f"out_dir={tmp_path}",
        "cache_dir=null",
        "export=false",
        "noise_rate=0.4",
        "name=resume",
        "max_train_pairs=40",
        "max_val_images=6",
        "model.image_size=32",
        "model.hash_bits=0",
    ]
    run(TrainConfig.load(SMOKE, base + ["epochs=1"]))
    run_dir = run(TrainConfig.load(SMOKE, base + ["epochs=2"]), resume=True)
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    assert {"noisy_precision", "noisy_recall"} <= set(lines[1])
    assert sum(lines[1]["division"].values()) > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0 < summary["noise_effective_rate"] <= 0.4
    assert (run_dir / "plots" / "noisy_division.png").is_file()


def test_division_sampling_and_epoch0_checkpoint(tmp_path, shared):
    import torch

    from training.train import run

    base = _tiny_noisy(tmp_path, "divsample", "division", 8)
    run_dir = run(TrainConfig.load(SMOKE, base + ["epochs=0"]))
    ck = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    assert ck["state"]["epoch"] == 0 and ck["state"]["scene"]["scene_train_acc"] >= 0
    run(TrainConfig.load(SMOKE, base + ["epochs=2"]), resume=True)
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert "full_division" not in lines[0]  # warm-up epoch: uniform sampling
    fd = lines[1]["full_division"]
    n_rows = fd["clean"] + fd["ambiguous"] + fd["noisy"]
    assert n_rows == 60 and 0 <= fd["noisy_precision"] <= 1 and 0 <= fd["sampled_corrupted_frac"] <= 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["scene"] == ck["state"]["scene"]  # the classifier was not retrained on resume
    with pytest.raises(ValueError, match="caption_sampling"):
        run(TrainConfig.load(SMOKE, [*base, "epochs=1", "caption_sampling=best"]))


def test_oracle_sampling_draws_only_intact_captions(tmp_path, shared):
    from training.train import run

    sets = [*_tiny_noisy(tmp_path, "oracle", "oracle", 8), "epochs=1", "scene_epochs=1"]
    run_dir = run(TrainConfig.load(SMOKE, sets))
    rec = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert rec["seen_corrupted_frac"] <= 0.1  # only images whose 5 captions were all permuted keep one
    with pytest.raises(ValueError, match="pairs_per_epoch=images"):
        run(TrainConfig.load(SMOKE, [*sets, "pairs_per_epoch=all"]))


def test_warmup_division_redraws_the_rest_of_the_warmup_epoch(tmp_path, shared):
    from training.train import run, warmup_redraw_batch

    sets = [*_tiny_noisy(tmp_path, "warmdiv", "division", 4), "loss=robust", "warmup_division_at=0.5"]
    sets += ["epochs=1", "scene_epochs=1"]
    cfg = TrainConfig.load(SMOKE, sets)
    assert warmup_redraw_batch(cfg, 0, 3) == 2 and warmup_redraw_batch(cfg, 1, 3) is None
    assert warmup_redraw_batch(TrainConfig.load(SMOKE, [*sets, "caption_sampling=uniform"]), 0, 3) is None
    run_dir = run(cfg)
    rec = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    fd = rec["full_division"]
    assert fd["at_batch"] == 2 and fd["clean"] + fd["ambiguous"] + fd["noisy"] == 60
    with pytest.raises(ValueError, match="warmup_division_at"):
        run(TrainConfig.load(SMOKE, [*sets, "warmup_division_at=1.5"]))
