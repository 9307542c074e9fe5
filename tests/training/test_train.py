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


def test_set_is_type_checked_and_accepts_dataset_aliases():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig.load(SMOKE, ["epochs=ten"])
    with pytest.raises(ValueError, match="export"):
        TrainConfig.load(SMOKE, ["export=maybe"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        TrainConfig.load(SMOKE, ["epochs"])
    cfg = TrainConfig.load(SMOKE, ["data.json=/data/x.json", "data.image_root=/data/img", "lr_head=1", "seed=3"])
    assert cfg.data_json == "/data/x.json" and cfg.image_root == "/data/img"
    assert cfg.lr_head == 1.0 and isinstance(cfg.lr_head, float) and cfg.seed == 3


def test_cli_bad_set_is_one_line_exit_2(capsys):
    from training.train import main

    assert main(["--config", str(SMOKE), "--set", "epochs=ten"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epochs" in err[0]


def test_all_captions_class_aware_holdout_run(tmp_path, shared):
    """Every distinct caption of each batch image in the step, class-aware batches, holdout validation: trains,
    validates on train images that left the train set, and the step really holds several captions per image."""
    from training.train import Split, epoch_row_batches, load_splits, run

    over = [
        f"out_dir={tmp_path}",
        "cache_dir=null",
        "export=false",
        "name=multi",
        "max_train_pairs=150",
        "val_holdout_images=4",
        "model.image_size=32",
        "model.hash_bits=16",
        "pairs_per_epoch=images",
        "captions_per_image=all",
        "class_aware_frac=0.5",
        "class_aware_classes=2",
        "batch_size=8",
        "epochs=2",
        "scene_epochs=1",
        "ema_decay=0.9",
    ]
    cfg = TrainConfig.load(SMOKE, over)
    train, val, _, _ = load_splits(cfg)
    assert len(val.files) == 4 and not set(val.files) & set(train.files)
    assert isinstance(train, Split) and train.source_files == val.source_files
    import numpy as np

    labels = np.array([hash(r.scene_class) % 7 for r in train.rows])[np.unique(train.row_img, return_index=True)[1]]
    batches = epoch_row_batches(train, cfg, labels, np.random.RandomState(0), train.distinct_caption_rows())
    rows = np.concatenate(batches)
    assert len(rows) > len(batches) * cfg.batch_size  # more than one caption per image per step
    assert len(set(zip(train.row_img[rows], train.row_txt[rows], strict=True))) == len(rows)  # distinct texts
    run_dir = run(cfg, resume=True)  # resumable launch, new run dir: crashed at the EMA set-up
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2] and lines[0]["loss_main"] > 0
    assert {"val_mr_ties_favourable", "val_mr_raw", "val_mr_ema"} <= set(lines[1])
    assert all(x["val_mr"] == max(x["val_mr_raw"], x["val_mr_ema"]) for x in lines)
    import torch

    best = torch.load(run_dir / "best.pt", weights_only=False)
    last = torch.load(run_dir / "last.pt", weights_only=False)
    assert best["state"]["best_weights"] in ("raw", "ema") and "ema" in last
