"""Calibration of describe: ECE, temperature fit, uncertain threshold, attribute margin, model.json update, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from engine.describe import DescribeParams, scene_logits, softmax
from tests.bundles import build_synthetic_bundle
from training.calibrate import (
    choose_uncertain_threshold,
    expected_calibration_error,
    fit_attribute_margin,
    fit_temperature,
    main,
    write_calibration,
)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return build_synthetic_bundle(tmp_path_factory.mktemp("bundle") / "synthetic")


def _sample(n: int, classes: int, scale: float, temperature: float, seed: int = 0):
    """Cosines and labels drawn from softmax(scale * cos / temperature): that temperature is the calibrated one."""
    rng = np.random.default_rng(seed)
    sims = rng.normal(0.2, 0.05, (n, classes))
    sims[np.arange(n), rng.integers(0, classes, n)] += 0.15
    p = softmax(scene_logits(sims, scale, temperature))
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return sims, labels


def test_ece_is_small_for_calibrated_and_large_for_overconfident_probabilities():
    sims, labels = _sample(4000, 10, 100.0, 5.0)
    calibrated = softmax(scene_logits(sims, 100.0, 5.0))
    overconfident = softmax(scene_logits(sims, 100.0, 1.0))
    assert expected_calibration_error(calibrated, labels) < 0.03
    assert expected_calibration_error(overconfident, labels) > 0.1
    perfect = np.eye(3)[[0, 1, 2, 0]]
    assert expected_calibration_error(perfect, np.array([0, 1, 2, 0])) == 0.0


def test_fit_temperature_recovers_the_generating_temperature():
    sims, labels = _sample(4000, 10, 100.0, 5.0, seed=1)
    t = fit_temperature(sims, labels, 100.0)
    assert t == pytest.approx(5.0, rel=0.1)
    p = softmax(scene_logits(sims, 100.0, t))
    assert (p.argmax(1) == sims.argmax(1)).all()  # a temperature never changes the top-1 class


def test_uncertain_threshold_hides_predictions_that_are_mostly_wrong():
    rng = np.random.default_rng(2)
    conf = rng.uniform(0, 1, 5000)
    correct = rng.uniform(0, 1, 5000) < conf  # calibrated: right with probability conf
    assert choose_uncertain_threshold(conf, correct) == pytest.approx(0.5, abs=0.1)
    assert choose_uncertain_threshold(conf, np.ones(5000, bool)) == 0.0  # always right: never uncertain
    # a maximum that one image decides is noise: 0.5 (Chow's threshold) wins; a clear one still wins
    few = np.array([0.32, 0.33, 0.42, 0.9, 0.9, 0.9])  # utility 4 at 0.30, 3 at 0.50
    assert choose_uncertain_threshold(few, np.array([True, True, False, True, True, True])) == 0.5
    many = np.r_[np.full(40, 0.32), np.full(10, 0.9)]
    assert choose_uncertain_threshold(many, np.ones(50, bool)) == 0.3


def test_attribute_margin_is_where_attributes_start_to_be_confirmed():
    rng = np.random.default_rng(3)
    gains = rng.uniform(0, 0.3, 4000)
    confirmed = rng.uniform(0, 1, 4000) < np.clip(gains * 3, 0, 1)  # confirmed with probability 3 x gain
    m = fit_attribute_margin(gains, confirmed)
    assert m is not None and 0 < m < 0.1
    assert confirmed[gains >= m].mean() >= 0.5 > confirmed[gains >= m - 0.0025].mean()  # the smallest such margin
    assert fit_attribute_margin(gains, np.zeros(4000, bool)) is None  # never confirmed: never add one


def test_write_calibration_changes_only_that_key_and_is_idempotent(tmp_path, bundle_dir):
    b = tmp_path / "b"
    shutil.copytree(bundle_dir, b)
    before = json.loads((b / "model.json").read_text())
    block = {"scene_temperature": 4.0, "uncertain_below": 0.4, "attribute_margin": None, "fit_on": "test data"}
    write_calibration(b, block)
    once = (b / "model.json").read_text()
    write_calibration(b, block)
    assert (b / "model.json").read_text() == once
    after = json.loads(once)
    assert after.pop("calibration") == block and after == before and list(after) == list(before)
    assert DescribeParams.from_bundle_meta(json.loads(once)).temperature == 4.0
    with pytest.raises(Exception, match="calibration"):
        write_calibration(b, {"scene_temperature": 0})
    assert (b / "model.json").read_text() == once  # a bad block is never written


def test_cli_fits_on_val_only_and_writes_model_json(tmp_path, bundle_dir, capsys):
    """The CLI end to end on generated data: red images are 'red'-class, blue images 'blue' (synthetic bundle)."""
    b = tmp_path / "b"
    shutil.copytree(bundle_dir, b)
    classes = json.loads((b / "scene_classes.json").read_text())["classes"]
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(4)
    rows = []
    for i in range(40):
        split = ("val", "test")[i % 2]
        colour = (i // 2) % 2
        arr = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
        arr[..., 0 if colour == 0 else 2] += 180
        Image.fromarray(arr).save(tmp_path / "images" / f"{i}.png")
        cls = classes[10] if colour == 0 else classes[19]  # farmland / pond: any two classes
        words = ["red", "roofs", "trees"] if colour == 0 else ["blue", "water"]
        rows.append(
            {
                "filename": f"{i}.png",
                "split": split,
                "class": cls,
                "sentences": [{"raw": " ".join(words), "tokens": words}],
            }
        )
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"images": rows}))
    cache = tmp_path / "cache"
    args = ["--bundle", str(b), "--data", str(data), "--cache-dir", str(cache), "--write"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fit_on"].endswith("python -m training.calibrate") and "val (20 images)" in out["fit_on"]
    assert out["scene_temperature"] > 0 and 0 <= out["uncertain_below"] <= 1
    assert json.loads((b / "model.json").read_text())["calibration"] == out
    assert [p.name for p in next(cache.iterdir()).glob("*_images.npy")] == ["val_images.npy"]  # never test
    assert main(args) == 0 and json.loads(capsys.readouterr().out) == out  # re-run: same answer, from the cache
