"""Row naming and overrides of the noisy-correspondence sweep (training/sweep.py)."""

from __future__ import annotations

import pytest

from tests.conftest import PROJECT_ROOT
from training.config import TrainConfig
from training.sweep import row_overrides


def test_rows_map_to_the_documented_overrides():
    name, sets = row_overrides("a_0.4", 2, [])
    assert name == "sweep_a_n0.4"
    assert {"epochs=2", "noise_rate=0.4", "loss=infonce", "aff_weight=0", "export=false"} <= set(sets)
    name, sets = row_overrides("nopir_0.0", 2, ["seed=1"])
    assert name == "sweep_nopir_n0.0"
    assert {"model.use_belief=false", "model.use_spatial_pae=false", "seed=1"} <= set(sets)
    _, b_sets = row_overrides("b_0.6", 2, [])
    assert not any(s.startswith(("loss=", "aff_weight=", "model.")) for s in b_sets)  # b = the config's recipe


def test_tag_separates_schedules_so_runs_never_resume_each_other():
    short, _ = row_overrides("b_0.6", 2, [])
    long, sets = row_overrides("b_0.6", 4, [], "_e4")
    assert long == "sweep_b_n0.6_e4" != short
    assert f"name={long}" in sets and "epochs=4" in sets


def test_unknown_row_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown row"):
        row_overrides("c_0.4", 2, [])


def test_overrides_load_into_the_default_config():
    _, sets = row_overrides("nopir_0.4", 3, [], "_e3")
    cfg = TrainConfig.load(PROJECT_ROOT / "training/configs/pir_lite.yaml", sets)
    assert cfg.epochs == 3 and cfg.noise_rate == pytest.approx(0.4) and cfg.name == "sweep_nopir_n0.4_e3"
    assert cfg.model["use_belief"] is False and cfg.model["use_spatial_pae"] is False


def test_r_row_is_the_robust_recipe_with_division_sampling():
    _, sets = row_overrides("r_0.4", 4, [], "_v2")
    cfg = TrainConfig.load(PROJECT_ROOT / "training/configs/pir_lite.yaml", sets)
    assert cfg.caption_sampling == "division" and cfg.loss == "robust" and cfg.aff_weight == 1.0
    assert cfg.name == "sweep_r_n0.4_v2"


def test_rw_row_divides_half_way_through_the_warmup():
    _, sets = row_overrides("rw_0.6", 4, [], "_v2")
    cfg = TrainConfig.load(PROJECT_ROOT / "training/configs/pir_lite.yaml", sets)
    assert cfg.caption_sampling == "division" and cfg.warmup_division_at == pytest.approx(0.5)
    assert cfg.loss == "robust" and cfg.sp_warmup_epochs == 1
