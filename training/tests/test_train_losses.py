"""Losses, centering and masks against small hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reddino_train.loss.centering import MomentumCenter, sinkhorn_knopp
from reddino_train.loss.dino import cross_entropy, dino_loss
from reddino_train.loss.ibot import ibot_loss
from reddino_train.loss.koleo import koleo_loss
from reddino_train.loss.masking import block_mask, step_masks


def test_sinkhorn_knopp_rows_sum_to_one_and_columns_balance():
    torch.manual_seed(0)
    logits = torch.randn(12, 5) * 3 + torch.tensor([2.0, 0, 0, 0, -2.0])  # prototype 0 favoured, 4 disfavoured
    q = sinkhorn_knopp(logits, temp=0.5, n_iterations=50)
    assert torch.allclose(q.sum(dim=1), torch.ones(12), atol=1e-5)
    assert torch.allclose(q.sum(dim=0), torch.full((5,), 12 / 5), atol=1e-3)  # each prototype gets B/K
    plain = torch.softmax(logits / 0.5, dim=1).sum(dim=0)
    assert plain.max() / plain.min() > 3  # without Sinkhorn-Knopp the columns are far from balanced


def test_sinkhorn_knopp_three_iterations_by_hand():
    logits = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 1.0]])
    q = np.exp(logits.numpy() / 1.0).T  # K x B
    q /= q.sum()
    for _ in range(3):
        q /= q.sum(axis=1, keepdims=True) * 2
        q /= q.sum(axis=0, keepdims=True) * 3
    expected = (q * 3).T
    np.testing.assert_allclose(sinkhorn_knopp(logits, 1.0, 3).numpy(), expected, rtol=1e-6)


def test_momentum_center_softmax_and_update():
    c = MomentumCenter(2, momentum=0.9)
    c.center.copy_(torch.tensor([[1.0, 0.0]]))
    t = torch.tensor([[1.0, 1.0], [3.0, 1.0]])
    probs = c(t, temp=0.5)
    # (t - c)/0.5 = [[0, 2], [4, 2]]
    e = math.exp
    assert torch.allclose(probs[0], torch.tensor([1 / (1 + e(2)), e(2) / (1 + e(2))]))
    assert torch.allclose(probs[1], torch.tensor([e(4) / (e(4) + e(2)), e(2) / (e(4) + e(2))]))
    assert torch.allclose(c.center, torch.tensor([[0.9 * 1 + 0.1 * 2, 0.9 * 0 + 0.1 * 1]]))


def test_dino_loss_pairs_each_crop_with_the_other_teacher_crop():
    s = torch.tensor([[0.0, 0.0], [math.log(3), 0.0]])  # crop 0 then crop 1 (B = 1)
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # student crop 0 (uniform) vs teacher crop 1 → -log 0.5; student crop 1 (p = 3/4, 1/4) vs teacher crop 0 → -log 0.75
    expected = (math.log(2) - math.log(0.75)) / 2
    assert dino_loss(s, t, n_global=2, student_temp=1.0).item() == pytest.approx(expected, rel=1e-6)
    assert cross_entropy(s[:1], t[1:], 1.0).item() == pytest.approx(math.log(2), rel=1e-6)
    # a local crop adds one term per global teacher crop
    local = torch.tensor([[0.0, math.log(3)]])
    expected_l = (math.log(2) - math.log(0.75) - math.log(0.25) - math.log(0.75)) / 4
    assert dino_loss(s, t, 2, 1.0, local, n_local=1).item() == pytest.approx(expected_l, rel=1e-6)


def test_ibot_loss_weights_patches_per_image_and_averages_over_all_images():
    masks = torch.zeros(3, 2, 2, dtype=torch.bool)
    masks[0, 0, 0] = masks[0, 1, 1] = True  # image 0: 2 masked patches
    masks[2, 0, 1] = True  # image 2: 1; image 1: none
    s = torch.tensor([[0.0, 0.0], [0.0, 0.0], [math.log(3), 0.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    expected = (0.5 * math.log(2) + 0.5 * math.log(2) + 1.0 * -math.log(0.75)) / 3
    assert ibot_loss(s, t, masks, student_temp=1.0).item() == pytest.approx(expected, rel=1e-6)


def test_koleo_loss_is_minus_mean_log_nearest_neighbour_distance():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])  # normalised: e1, e2, -e1
    # nearest of e1 is e2 (sqrt 2), of e2 is e1 (first max; sqrt 2), of -e1 is e2 (sqrt 2)
    assert koleo_loss(x).item() == pytest.approx(-math.log(math.sqrt(2)), rel=1e-5)
    y = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    d01 = math.dist((1, 0), (1 / math.hypot(1, 0.1), 0.1 / math.hypot(1, 0.1)))
    d2 = math.dist((0, 1), (1 / math.hypot(1, 0.1), 0.1 / math.hypot(1, 0.1)))
    assert koleo_loss(y).item() == pytest.approx(-(2 * math.log(d01) + math.log(d2)) / 3, rel=1e-4)


def test_block_mask_never_exceeds_target_and_is_blocky():
    rng = np.random.default_rng(0)
    for target in (0, 5, 20, 60):
        m = block_mask(rng, (16, 16), target)
        assert m.sum() <= target
        if target >= 20:
            assert m.sum() >= target * 0.5
    m = block_mask(np.random.default_rng(1), (16, 16), 40)
    neighbours = m[1:, :] & m[:-1, :]
    assert neighbours.sum() > m.sum() * 0.3  # blocks, not scattered pixels


def test_step_masks_follow_probability_and_stratified_ratio_bounds():
    n, grid = 64, (16, 16)
    masks = step_masks(seed=0, step=3, n_images=n, grid=grid, probability=0.5, ratio_min_max=(0.1, 0.5))
    counts = masks.reshape(n, -1).sum(1)
    assert (counts > 0).sum() == n // 2  # half of the global crops masked
    ratios = np.sort(counts[counts > 0]) / 256
    assert ratios.max() <= 0.5 and ratios.min() >= 0.05
    assert ratios[-4:].mean() > 0.4 and ratios[:4].mean() < 0.2  # stratified: spans the whole range
    # a process's share equals the same rows of the whole batch (DDP), and the step fixes the masks
    part = step_masks(0, 3, n, grid, 0.5, (0.1, 0.5), select=np.arange(16, 32))
    np.testing.assert_array_equal(part, masks[16:32])
    assert not np.array_equal(step_masks(0, 4, n, grid), masks)


def test_collapse_monitors():
    """The two columns that tell a collapsed DINO run apart: target entropy = ln K for uniform targets, 0 for
    one-hot ones; effective rank 1 for identical features, about D for spread ones."""
    from reddino_train.train.metrics import effective_rank, mean_entropy

    k = 64
    assert mean_entropy(torch.full((8, k), 1.0 / k)) == pytest.approx(math.log(k), abs=1e-5)
    assert mean_entropy(torch.eye(k)[:8]) == pytest.approx(0.0, abs=1e-6)
    assert effective_rank(torch.ones(16, 8)) == pytest.approx(1.0, abs=1e-3)
    assert effective_rank(torch.eye(8)) == pytest.approx(8.0, abs=1e-2)
