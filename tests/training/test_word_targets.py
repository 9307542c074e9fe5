"""Auxiliary word task (training/word_targets.py, training/losses/word.py): words mined from captions on hand data,
the loss on hand values, strict config keys, and a real (tiny) training run that uses it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import PROJECT_ROOT
from training.config import TrainConfig
from training.losses import word_loss
from training.word_targets import WordParams, build_vocab, caption_words, captions_per_image, image_word_targets

SMOKE = PROJECT_ROOT / "training" / "configs" / "smoke.yaml"


def test_caption_words_keep_content_words_only():
    assert caption_words("There are many Red roofs next to a pond, and 3 cars.") == {
        "many",
        "red",
        "roofs",
        "pond",
        "cars",
    }
    assert caption_words("It is in the image.") == set()
    assert caption_words("a big car", min_len=4) == set()


def test_vocab_counts_images_not_captions_and_filters_by_frequency():
    caps = [
        ["a red roof", "red roof and a pond"],  # 'red' twice in one image counts once
        ["a red car"],
        ["a pond", "the pond again"],
        ["trees", "trees"],
        ["trees near a pond"],
    ]
    # image counts: red 2, roof 1, pond 3, car 1, trees 2, near is a stop word
    assert build_vocab(caps, WordParams(min_images=2, max_frac=1.0)) == ["pond", "red", "trees"]
    assert build_vocab(caps, WordParams(min_images=2, max_frac=0.5)) == ["red", "trees"]  # pond on 3/5 > 0.5
    assert build_vocab(caps, WordParams(size=1, min_images=1, max_frac=1.0)) == ["pond"]
    t = image_word_targets(caps, ["pond", "red", "trees"])
    assert t.tolist() == [
        [True, True, False],
        [False, True, False],
        [True, False, False],
        [False, False, True],
        [True, False, True],
    ]
    assert captions_per_image(np.array([1, 0, 1]), ["a", "b", "c"], 3) == [["b"], ["a", "c"], []]


def test_word_loss_on_hand_values():
    img = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    words = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=1)
    targets = torch.tensor([[True, False, True], [False, False, False]])  # image 1 uses no word: left out
    s = 10.0
    c = 1 / math.sqrt(2)
    neg = s * 0.0  # image 0's only negative word is word 1 (cosine 0)
    expected = (math.log1p(math.exp(neg - s * 1.0)) + math.log1p(math.exp(neg - s * c))) / 2
    got = word_loss(img, words, targets, s)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    none = word_loss(img, words, torch.zeros(2, 3, dtype=torch.bool), s)  # nothing usable: zero, still a tensor
    assert none.item() == 0.0
    every = word_loss(img, words, torch.ones(2, 3, dtype=torch.bool), s)  # every word used: no negatives, zero
    assert every.item() == 0.0


def test_word_loss_gradient_pulls_images_towards_their_words():
    img = F.normalize(torch.randn(4, 8, generator=torch.Generator().manual_seed(0)), dim=1).requires_grad_()
    words = F.normalize(torch.randn(5, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    targets = torch.zeros(4, 5, dtype=torch.bool)
    targets[torch.arange(4), torch.arange(4)] = True
    before = (img.detach() * words[:4]).sum(1)
    word_loss(img, words, targets, 10.0).backward()
    after = (F.normalize(img.detach() - 0.1 * img.grad, dim=1) * words[:4]).sum(1)
    assert bool((after > before).all())


@pytest.mark.parametrize(
    "sets, message",
    [
        (["words.size=0"], "words.size"),
        (["words.max_frac=1.5"], "words.max_frac"),
        (["words.min_images=ten"], "words.min_images"),
        (["words.colour=red"], "unknown words keys"),
        (["word_weight=-1"], "word_weight"),
    ],
)
def test_word_config_errors_are_one_clear_line(sets, message):
    with pytest.raises(ValueError, match=message) as err:
        TrainConfig.load(SMOKE, sets)
    assert "\n" not in str(err.value)


def test_run_with_the_word_task(tmp_path, shared):
    from training.train import run

    sets = [
        f"out_dir={tmp_path}",
        f"cache_dir={tmp_path / 'cache'}",
        "export=false",
        "name=words",
        "max_train_pairs=40",
        "max_val_images=6",
        "model.image_size=32",
        "model.hash_bits=0",
        "epochs=1",
        "word_weight=0.5",
        "words.min_images=2",
    ]
    run_dir = run(TrainConfig.load(SMOKE, sets))
    vocab = json.loads((run_dir / "words.json").read_text())
    assert vocab and all(isinstance(w, str) and w.isalpha() for w in vocab)
    line = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert line["loss_word"] > 0 and np.isfinite(line["val_mr"])
    with pytest.raises(ValueError, match="no word is used by at least"):
        run(TrainConfig.load(SMOKE, [*sets, "name=words2", "words.min_images=100000"]))
