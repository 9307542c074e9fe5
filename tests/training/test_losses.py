"""Each loss against hand-computed values on tiny tensors."""

import math

import pytest
import torch

from training.losses import (
    SelfPacedParams,
    affiliation_loss,
    curriculum_triplet,
    hash_contrastive,
    info_nce,
    per_pair_nce,
    positive_mask,
    quantization_loss,
    robust_triplet,
    self_paced_loss,
    sp_regulariser,
    sp_weight,
    thresholds,
    uniformity_loss,
)

E2 = torch.eye(2)


def test_info_nce_diagonal():
    # logits [[1,0],[0,1]]: CE = log(1 + e^-1)
    assert float(info_nce(E2, E2, 1.0)) == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)


def test_info_nce_multi_positive():
    # both rows are captions of the same image: target [.5,.5] -> -(.5 log p0 + .5 log p1)
    pos = positive_mask(torch.tensor([7, 7]))
    expected = 0.5 * math.log(1 + math.exp(-1)) + 0.5 * math.log(1 + math.exp(1))
    assert float(info_nce(E2, E2, 1.0, pos)) == pytest.approx(expected, abs=1e-6)


def test_positive_mask_text_ids():
    m = positive_mask(torch.tensor([0, 1, 2]), torch.tensor([5, 6, 5]))
    assert m.tolist() == [[True, False, True], [False, True, False], [True, False, True]]


def test_per_pair_nce_learned_scale_gradient():
    s = torch.tensor(2.0, requires_grad=True)
    l1, l2, sim = per_pair_nce(E2, E2, s)
    (l1 + l2).sum().backward()
    assert s.grad is not None and float(s.grad) < 0  # a larger scale lowers the loss on a perfect match
    assert torch.allclose(sim, E2)


def test_affiliation_unique_and_pir_rows():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    assert float(affiliation_loss(x, x, labels, 1.0)) == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    # PIR-CLIP row centres: rows 0,1 logits [1,1,0] target own row; row 2 logits [0,0,1]
    a = math.log(2 + math.exp(-1))
    b = math.log(1 + 2 * math.exp(-1))
    got = float(affiliation_loss(x, x, labels, 1.0, mode="pir_rows"))
    assert got == pytest.approx((2 * a + b) / 3, abs=1e-6)


def test_affiliation_weights():
    x = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    w = torch.tensor([1.0, 0.0, 1.0])
    full = affiliation_loss(x, x, labels, 1.0, weights=torch.ones(3))
    assert float(full) == pytest.approx(float(affiliation_loss(x, x, labels, 1.0)), abs=1e-6)
    assert float(affiliation_loss(x, x, labels, 1.0, weights=w)) != pytest.approx(float(full))


def test_self_paced_weight_and_regulariser():
    assert float(sp_weight(torch.tensor(1.0), 2.0)) == pytest.approx(math.cos(math.pi / 4))
    assert float(sp_weight(torch.tensor(3.0), 2.0)) == 0.0
    v = torch.tensor(math.cos(math.pi / 4))
    assert float(sp_regulariser(v, 2.0)) == pytest.approx(0.193207, abs=1e-5)
    # cos(pi*l/2g) minimises v*l + R(v;g) over v in [0,1]
    vs = torch.linspace(0, 1, 10001)
    lv, g = 1.3, 2.0
    best = vs[torch.argmin(vs * lv + sp_regulariser(vs, g))]
    assert float(best) == pytest.approx(math.cos(math.pi * lv / (2 * g)), abs=1e-3)


def test_robust_triplet_hand_values():
    sim = torch.tensor([[0.5, 0.8], [0.1, 0.9]])
    got = robust_triplet(sim, torch.eye(2, dtype=torch.bool), 0.6)
    assert got.tolist() == pytest.approx([1.28, 0.5], abs=1e-6)


def test_thresholds_scale_invariant():
    p = SelfPacedParams()
    g1, g2 = thresholds(p, 100, 4)  # RRSITR setting: 4 CE terms, batch 100 -> ~5 and ~18
    assert g1 == pytest.approx(0.27 * 4 * math.log(100)) and g1 == pytest.approx(4.97, abs=0.01)
    assert g2 == pytest.approx(18.05, abs=0.01)
    a1, _ = thresholds(p, 256, 2)
    assert a1 / (2 * math.log(256)) == pytest.approx(g1 / (4 * math.log(100)))
    q = SelfPacedParams(threshold_mode="quantile")
    assert thresholds(q, 64, 2, (1.0, 2.0)) == (1.0, 2.0)
    assert thresholds(SelfPacedParams(gamma1=5, gamma2=18, threshold_mode="absolute"), 64) == (5, 18)


def test_self_paced_loss_groups_and_value():
    per = torch.tensor([1.0, 3.0, 10.0])
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.3, 0.8, 0.2]])
    pos = torch.eye(3, dtype=torch.bool)
    p = SelfPacedParams()
    loss, info = self_paced_loss(per, sim, pos, 2.0, 5.0, p)
    assert info["group"].tolist() == [0, 1, 2]
    clean = math.cos(math.pi / 4) * 1.0 + 0.193207
    v2 = math.cos(3 * math.pi / 10)
    amb = 0.8 * (v2 * 3.0 + float(sp_regulariser(torch.tensor(v2), 5.0)))
    noisy = 0.9 * float(robust_triplet(sim, pos, 0.6)[2])
    assert float(loss) == pytest.approx((clean + amb + noisy) / 3, abs=1e-5)
    assert info["weight"].tolist() == pytest.approx([math.cos(math.pi / 4), 0.8 * v2, 0.0], abs=1e-6)


def test_uniformity():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    want = (2 * math.exp(-4) + math.exp(-8)) / 3
    assert float(uniformity_loss(x, 2.0)) == pytest.approx(want, rel=1e-5)
    assert float(uniformity_loss(x, 2.0, use_log=True)) == pytest.approx(math.log(want), rel=1e-5)


def test_curriculum_triplet():
    sim = torch.tensor([[0.5, 0.4], [0.1, 0.9]])
    got = curriculum_triplet(sim, torch.eye(2, dtype=torch.bool), 0.2, 0.5)
    assert float(got) == pytest.approx(0.1 * math.exp(-0.05) / 4, abs=1e-7)


def test_quantization_and_hash_contrastive():
    assert float(quantization_loss(torch.tensor([[0.5, -0.5]]))) == pytest.approx(0.5)
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    want = math.log(1 + math.exp(-1 / 0.5))
    assert float(hash_contrastive(h, h, temperature=0.5)) == pytest.approx(want, abs=1e-6)
    w = torch.tensor([1.0, 0.0])
    assert float(hash_contrastive(h, h, weights=w, temperature=0.5)) == pytest.approx(want, abs=1e-6)


def test_multi_positive_nce_hand_values():
    """Two images, three captions (image 0 owns captions 0 and 1): each positive competes only with negatives."""
    import math

    from training.losses import multi_positive_nce

    img = torch.eye(2)
    txt = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    own = torch.tensor([0, 0, 1])
    pos = torch.tensor([[True, True, False], [False, False, True]])
    l_i2t, l_t2i, sim = multi_positive_nce(img, txt, own, pos, 1.0)
    assert sim.shape == (2, 3)
    # caption 1 of image 0: s=0.6 against image 0's only negative (caption 2, s=0)
    assert float(l_i2t[1]) == pytest.approx(math.log(1 + math.exp(0.0 - 0.6)), abs=1e-6)
    # caption 1 -> images: s=0.6 against image 1 (s=0.8)
    assert float(l_t2i[1]) == pytest.approx(math.log(1 + math.exp(0.8 - 0.6)), abs=1e-6)
    # image 1's caption 2: negatives are captions 0 and 1 (s = 0, 0.8)
    want = -math.log(math.exp(1) / (math.exp(1) + math.exp(0) + math.exp(0.8)))
    assert float(l_i2t[2]) == pytest.approx(want, abs=1e-6)
    # one caption per image: same as the diagonal per-pair InfoNCE
    from training.losses import per_pair_nce

    e = torch.nn.functional.normalize(torch.randn(5, 4), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(5, 4), dim=-1)
    a = multi_positive_nce(e, t, torch.arange(5), torch.eye(5, dtype=torch.bool), 3.0)
    b = per_pair_nce(e, t, 3.0)
    assert torch.allclose(a[0], b[0], atol=1e-5) and torch.allclose(a[1], b[1], atol=1e-5)


def test_robust_triplet_own_matches_diagonal():
    sim = torch.tensor([[0.9, 0.2, 0.4], [0.1, 0.8, 0.3], [0.5, 0.0, 0.7]])
    pos = torch.eye(3, dtype=torch.bool)
    assert torch.allclose(robust_triplet(sim, pos), robust_triplet(sim, pos, own=torch.arange(3)))
