"""Noisy-correspondence injection: protocol properties."""

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.data.noise import inject_noise
from training.data.readers import CaptionRecord


def rows(n_img=20, caps=5):
    return [
        CaptionRecord(i, f"img_{i}.jpg", f"caption {i}-{c}", "train", None, i * caps + c)
        for i in range(n_img)
        for c in range(caps)
    ]


@settings(max_examples=25, deadline=None)
@given(rate=st.sampled_from([0.0, 0.2, 0.4, 0.6, 0.8]), seed=st.integers(0, 1000))
def test_properties(rate, seed):
    r = rows()
    noisy, rep = inject_noise(r, rate, seed)
    assert len(rep.selected) == int(rate * len(r))
    assert Counter(x.caption for x in noisy) == Counter(x.caption for x in r)  # captions permuted, not invented
    untouched = np.setdiff1d(np.arange(len(r)), rep.selected)
    assert all(noisy[i] == r[i] for i in untouched)
    assert not rep.corrupted[untouched].any()
    assert rep.effective_rate <= rate + 1e-12
    for i in range(len(r)):  # corrupted exactly when the caption is from another image
        assert rep.corrupted[i] == (not noisy[i].caption.startswith(f"caption {r[i].image_id}-"))
    assert [x.filename for x in noisy] == [x.filename for x in r]


def test_deterministic_and_effective_rate_below_nominal():
    r = rows(50)
    a, ra = inject_noise(r, 0.4, 42)
    b, rb = inject_noise(r, 0.4, 42)
    assert a == b and (ra.corrupted == rb.corrupted).all()
    assert 0.3 < ra.effective_rate <= 0.4
    c, _ = inject_noise(r, 0.4, 43)
    assert c != a


def test_same_image_caption_is_not_corrupted():
    r = [CaptionRecord(0, "a.jpg", "x", "train"), CaptionRecord(0, "a.jpg", "y", "train")]
    _, rep = inject_noise(r, 1.0, 0)
    assert rep.effective_rate == pytest.approx(0.0)
