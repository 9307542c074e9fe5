"""Division-guided caption sampling: batches, per-row losses, groups and the per-image draw."""

import numpy as np
import pytest
import torch

from training.caption_sampling import NOISY, divide, row_losses, sample_rows, slot_batches


def _rows(n_img: int, per_img: int) -> np.ndarray:
    return np.repeat(np.arange(n_img), per_img)


def test_slot_batches_cover_every_row_once_with_unique_images():
    row_img = np.concatenate([_rows(50, 5), np.array([50, 51, 51])])  # uneven caption counts too
    batches = slot_batches(row_img, 16, np.random.RandomState(0))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(row_img)))
    for b in batches:
        assert 0 < len(b) <= 16
        assert len(np.unique(row_img[b])) == len(b)


def test_row_losses_separate_permuted_captions():
    rng = np.random.RandomState(0)
    torch.manual_seed(0)
    n_img, per, dim = 64, 5, 128
    row_img = _rows(n_img, per)
    img = torch.nn.functional.normalize(torch.randn(n_img, dim), dim=1)
    # each row gets its own caption embedding close to its image; 30 % of rows point at another image
    corrupted = rng.rand(len(row_img)) < 0.3
    src = np.where(corrupted, (row_img + 1 + rng.randint(0, n_img - 1, len(row_img))) % n_img, row_img)
    txt = torch.nn.functional.normalize(img[src] + 0.05 * torch.randn(len(row_img), dim), dim=1)
    row_txt = np.arange(len(row_img))
    losses = row_losses(img, txt, row_img, row_txt, 20.0, slot_batches(row_img, 32, rng))
    assert np.isfinite(losses).all()
    assert np.median(losses[corrupted]) > 3 * np.median(losses[~corrupted])
    chance = 2 * np.log(32)
    noisy = divide(losses, 0.1 * chance, 0.4 * chance) == NOISY
    precision = (noisy & corrupted).sum() / noisy.sum()
    recall = (noisy & corrupted).sum() / corrupted.sum()
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)


def test_sample_rows_avoids_noisy_rows():
    row_img = _rows(4, 3)
    group = np.array([2, 0, 2, 2, 2, 2, 1, 2, 0, 2, 2, 2], dtype=np.int8)
    losses = np.array([9, 1, 9, 8, 3, 7, 2, 9, 1, 9, 5, 6], dtype=np.float32)
    for seed in range(20):
        rows = sample_rows(row_img, group, losses, np.random.RandomState(seed))
        assert sorted(row_img[rows].tolist()) == [0, 1, 2, 3]  # one row per image
        picked = dict(zip(row_img[rows].tolist(), rows.tolist(), strict=True))
        assert picked[0] == 1  # the only non-noisy row
        assert picked[1] == 4  # all noisy: the lowest-loss row
        assert picked[2] in (6, 8)
        assert picked[3] == 10


def test_sample_rows_replace_never_draws_a_noisy_row_and_keeps_the_size():
    row_img = _rows(4, 3)
    group = np.array([2, 0, 2, 2, 2, 2, 1, 2, 0, 2, 0, 2], dtype=np.int8)  # image 1: no intact row
    losses = np.zeros(12, dtype=np.float32)
    for seed in range(20):
        rows = sample_rows(row_img, group, losses, np.random.RandomState(seed), all_noisy="replace")
        assert len(rows) == 4 and len(set(rows.tolist())) == 4
        assert (group[rows] != 2).all()
        assert 1 not in row_img[rows]  # image 1 has no intact row: replaced by another image's
    with pytest.raises(ValueError, match="all_noisy"):
        sample_rows(row_img, group, losses, np.random.RandomState(0), all_noisy="drop")


def test_redraw_tail_swaps_only_the_unseen_images_captions():
    from training.caption_sampling import redraw_tail

    rng = np.random.RandomState(1)
    row_img = _rows(40, 5)
    rows = np.array([5 * i + rng.randint(5) for i in rng.permutation(40)])  # one row per image, shuffled
    drawn = np.array([5 * i + 4 for i in range(40)])  # the division picked each image's last caption
    out = redraw_tail(rows, 15, drawn, row_img)
    assert (out[:15] == rows[:15]).all()
    assert (out[15:] % 5 == 4).all()
    assert (row_img[out] == row_img[rows]).all()  # same image in every slot, so each image still once
    with pytest.raises(ValueError, match="no row"):
        redraw_tail(rows, 0, drawn[:10], row_img)
