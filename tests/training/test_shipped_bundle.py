"""The shipped default bundle (resources/models/pir-lite) reproduces the test metrics recorded in its model.json
when evaluated on the full rsicd_aid150 test split (1,027 images, 5,135 captions) through the engine's ONNX path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
BUNDLE = PROJECT_ROOT / "resources" / "models" / "pir-lite"

pytestmark = pytest.mark.usefixtures("shared")


@pytest.fixture(scope="module")
def shipped_eval():
    if not (BUNDLE / "model.json").is_file():
        pytest.fail(f"no shipped bundle at {BUNDLE}")
    from training.ship import evaluate_bundle_full

    return evaluate_bundle_full(BUNDLE, split="test")


def test_only_one_bundle_dir_and_size():
    from engine.config import default_model_dir

    dirs = [p for p in (PROJECT_ROOT / "resources" / "models").iterdir() if p.is_dir()]
    assert dirs == [BUNDLE]
    size = sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file())
    assert size <= 40 * 2**20, size
    assert default_model_dir() is not None


def test_model_json_metadata():
    meta = json.loads((BUNDLE / "model.json").read_text())
    t = meta["metrics"]["rsicd_aid150_test"]
    assert set(t) >= {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10", "mr"}
    assert t["mr"] >= 20.0
    assert meta["gsd_m"] and meta["gsd_m"] > 0
    lic = meta["licenses"]
    assert "research use only" in lic["training_data"].lower()
    assert "apache" in lic["weights"].lower() and "bsd" in lic["weights"].lower()


def test_shipped_bundle_reproduces_test_metrics(shipped_eval):
    m = shipped_eval
    meta = json.loads((BUNDLE / "model.json").read_text())
    rec = meta["metrics"]["rsicd_aid150_test"]
    assert m["n_images"] == 1027 and m["n_captions"] == 5135  # the full test split
    assert abs(m["mr"] - rec["mr"]) <= 0.5, (m, rec)
    zs = meta["metrics"].get("rsicd_aid150_test_zero_shot_scene_top1")
    if zs is not None:
        assert abs(m["zero_shot_top1"] - zs) <= 1.0, (m["zero_shot_top1"], zs)
