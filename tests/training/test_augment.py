"""Image-level augmentation views (training/augment.py): deterministic views of real images, strict config keys,
view caches built through the frozen trunks by a real (tiny) training run and drawn per image and step."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import PROJECT_ROOT
from training.augment import ImageAugParams, augment_view, crop_box, view_rng
from training.config import TrainConfig

SMOKE = PROJECT_ROOT / "training" / "configs" / "smoke.yaml"


@pytest.fixture
def aid_image(shared) -> Image.Image:
    return Image.open(shared / "datasets" / "rsicd_aid150" / "images" / "Farmland" / "farmland_1.jpg").convert("RGB")


def test_views_are_deterministic_per_file_view_and_seed(aid_image):
    p = ImageAugParams()
    a = np.asarray(augment_view(aid_image, view_rng("x.jpg", 1, 0), p))
    assert np.array_equal(a, np.asarray(augment_view(aid_image, view_rng("x.jpg", 1, 0), p)))
    for other in (view_rng("x.jpg", 2, 0), view_rng("y.jpg", 1, 0), view_rng("x.jpg", 1, 1)):
        b = np.asarray(augment_view(aid_image, other, p))
        assert a.shape != b.shape or not np.array_equal(a, b)
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3


def test_crop_and_resolution_ranges(aid_image):
    p = ImageAugParams(crop_scale_min=0.5, crop_ratio_max=4 / 3)
    w, h = aid_image.size
    for i in range(200):
        left, top, right, bottom = crop_box(w, h, view_rng(str(i), 1, 0), p)
        assert 0 <= left < right <= w and 0 <= top < bottom <= h
        assert (right - left) * (bottom - top) >= 0.5 * w * h * 0.95  # area fraction >= min (rounding, clipping)
    coarse = ImageAugParams(
        crop_scale_min=1.0, crop_ratio_max=1.0, gsd_factor_max=4.0, brightness=0, contrast=0, saturation=0
    )
    sides = [augment_view(aid_image, view_rng(str(i), 1, 0), coarse).width for i in range(50)]
    assert all(w / 4 - 1 <= s <= w for s in sides) and min(sides) < w / 2  # pixels up to 4x larger on the ground
    plain = ImageAugParams(
        crop_scale_min=1.0, crop_ratio_max=1.0, gsd_factor_max=1.0, brightness=0, contrast=0, saturation=0
    )
    assert np.array_equal(np.asarray(augment_view(aid_image, view_rng("a", 1, 0), plain)), np.asarray(aid_image))


def test_config_keys_are_strict():
    cfg = TrainConfig.load(SMOKE, ["image_aug_views=2", "image_aug.gsd_factor_max=3", "image_aug.brightness=0.1"])
    p = cfg.image_aug_params()
    assert cfg.image_aug_views == 2 and p.gsd_factor_max == 3.0 and isinstance(p.gsd_factor_max, float)
    for bad, words in (
        ("image_aug.nope=1", "unknown image_aug keys"),
        ("image_aug.crop_scale_min=0", "crop_scale_min"),
        ("image_aug.brightness=big", "brightness"),
        ("image_aug_views=-1", "image_aug_views"),
    ):
        with pytest.raises(ValueError, match=words):
            TrainConfig.load(SMOKE, [bad])


def test_image_views_draws_clean_and_views_per_image():
    from training.train import image_views

    n = 64
    clean = {"img_mid": torch.zeros(n, 2, 3, 3, dtype=torch.float16)}
    views = [{"img_mid": torch.full((n, 2, 3, 3), float(v), dtype=torch.float16)} for v in (1, 2)]
    split = SimpleNamespace(
        cache=clean,
        instr_feat=torch.zeros(n, 4),
        views=views,
        view_instr_feat=[torch.full((n, 4), float(v)) for v in (1, 2)],
    )
    torch.manual_seed(0)
    x, instr = image_views(split, torch.arange(n))
    picked = x[:, 0, 0, 0]
    assert set(picked.tolist()) == {0.0, 1.0, 2.0}  # every view drawn among 64 images
    assert torch.equal(instr[:, 0], picked)  # each image's instruction features come from the same view
    assert clean["img_mid"].abs().sum() == 0 and split.instr_feat.abs().sum() == 0  # caches untouched
    split.views, split.view_instr_feat = [], []
    x, _ = image_views(split, torch.arange(n))
    assert x.abs().sum() == 0


def test_run_with_views_builds_and_reuses_view_caches(tmp_path, shared):
    from training.train import run

    cache = tmp_path / "cache"
    sets = [
        f"out_dir={tmp_path}",
        f"cache_dir={cache}",
        "export=false",
        "name=views",
        "max_train_pairs=40",
        "max_val_images=6",
        "model.image_size=32",
        "model.hash_bits=0",
        "epochs=1",
        "image_aug_views=2",
    ]
    run_dir = run(TrainConfig.load(SMOKE, sets))
    line = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert line["epoch"] == 1 and np.isfinite(line["val_mr"])
    image_caches = [torch.load(p, weights_only=True) for p in sorted(cache.glob("*.pt"))]
    image_caches = [c["img_mid"] for c in image_caches if "img_mid" in c]
    n_train = max(len(c) for c in image_caches)
    train_like = [c for c in image_caches if len(c) == n_train]
    assert len(train_like) == 3  # the clean train cache and two views
    assert all(not torch.equal(a, b) for i, a in enumerate(train_like) for b in train_like[i + 1 :])
    mtimes = {p: p.stat().st_mtime_ns for p in cache.glob("*.pt")}
    run(TrainConfig.load(SMOKE, [*sets, "name=views2"]))
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*.pt")} == mtimes  # same keys: nothing rebuilt
