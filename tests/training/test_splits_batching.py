"""Holdout validation split (test-like) and class-aware batches."""

import numpy as np
import pytest

from training.batching import class_aware_batches, uniform_batches
from training.data.readers import CaptionRecord
from training.data.splits import holdout_split, normalise_caption, split_stats


def _rows(caps_by_file: dict[str, list[str]]) -> list[CaptionRecord]:
    items = enumerate(caps_by_file.items())
    return [CaptionRecord(i, f, c, "train", f.split("_")[0]) for i, (f, caps) in items for c in caps]


def test_holdout_split_rules():
    caps = {
        "a_1": ["one plane.", "One  plane", "a plane", "two planes", "short runway"],  # 4 distinct, 1 shared
        "a_2": ["x", "x", "x", "x", "x"],  # 1 distinct: never held out
        "b_1": ["a pond", "a pond", "green pond", "pond and trees", "grey runway"],  # 4 distinct, 1 shared
        "b_2": ["two planes", "grey runway", "river", "bridge", "road"],  # 5 distinct, 2 shared
        "c_1": ["farm", "field", "crops", "tractor", "barn"],
    }
    rows = _rows(caps)
    assert normalise_caption(" One  plane. ") == "one plane"
    rest, held = holdout_split(rows, 3, min_distinct=3, max_shared_rows=1)
    held_files = {r.filename for r in held}
    assert held_files == {"a_1", "b_1", "c_1"} and not held_files & {r.filename for r in rest}
    assert len(rest) + len(held) == len(rows)
    assert holdout_split(rows, 3, 3, 1) == (rest, held)  # deterministic
    with pytest.raises(ValueError):
        holdout_split(rows, 5, 3, 1)
    st = split_stats(held, rest)
    assert st["images"] == 3 and st["single_caption_images_pct"] == 0.0


def test_class_aware_batches_cover_each_image_once():
    labels = np.repeat(np.arange(10), 40)
    rng = np.random.RandomState(0)
    batches = class_aware_batches(labels, 32, 0.5, 2, rng)
    flat = np.concatenate(batches)
    assert len(batches) == 400 // 32 and all(len(b) == 32 for b in batches)
    assert len(set(flat.tolist())) == len(flat)
    # half of each batch from 2 classes: the top-2 classes hold >= 16 of 32 images
    top2 = [np.sort(np.bincount(labels[b], minlength=10))[-2:].sum() for b in batches]
    assert np.mean(top2) >= 16
    uni = uniform_batches(400, 32, np.random.RandomState(0))
    assert np.mean([np.sort(np.bincount(labels[b], minlength=10))[-2:].sum() for b in uni]) < np.mean(top2)
