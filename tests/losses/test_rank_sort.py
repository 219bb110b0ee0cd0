"""Rank & Sort: a 5-anchor example by hand from the definition, the balance of the update,
and the fast version (sorted prefix sums) against the dense reference."""

import pytest
import torch

from losses import reference
from losses.rank_sort import RankSortLoss, rank_sort_loss
from tests.losses.conftest import loss_and_grad


def test_five_anchors_by_hand():
    """K = 1, delta = 0.5; logits 1 apart, so H(x_j - x_i) is 0 or 1 except H(0) = 1/2.

    anchor   0    1    2    3    4
    logit    2    0    1   -3   -1
    label   fg   fg   bg   bg   fg
    IoU     .9   .6    -    -   .8

    anchor 0: above every other: RE = 0, SE = 0.
    anchor 1: the negative 2 is above it: FP = 1, rank+ = 1/2 + 1 (anchor 0) = 1.5, RE = 1 / 2.5 = 0.4;
              the positives near or above it (0 and itself) have IoU >= .6: SE = 0.
    anchor 4: FP = 1 (anchor 2), rank+ = 1/2 + 1 + 1 = 2.5, RE = 1 / 3.5;
              SE = current - target = (.1 + .1 + .4) / 2.5 - (.1 + .1) / 1.5 = .24 - .1333 = .10667,
              caused by anchor 1 (IoU .6 < .8, ranked above it).
    Booked: anchor 2 carries 0.4 + 1/3.5 = .685714 (both ranking errors), anchor 1 carries .10667.
    The paper's loss, the mean over the 3 positives: (0.4 + 1/3.5 + .10667) / 3 = .264127.
    Update: anchor 1: -0.4 + .10667; anchor 2: +.685714; anchor 4: -1/3.5 - .10667.
    """
    x = torch.tensor([2.0, 0.0, 1.0, -3.0, -1.0], dtype=torch.float64).view(1, 5, 1)
    labels = torch.tensor([[0, 0, 1, 1, 0]])
    quality = torch.tensor([[0.9, 0.6, 0.0, 0.0, 0.8]], dtype=torch.float64)
    se = 0.24 - 0.2 / 1.5
    for fn in (rank_sort_loss, reference.rank_sort_loss):
        x_ = x.clone().requires_grad_()
        loss = fn(x_, labels, quality)
        loss.sum().backward()
        torch.testing.assert_close(loss, torch.tensor([[0.0, se, 0.4 + 1 / 3.5, 0.0, 0.0]], dtype=torch.float64))
        assert abs(loss.sum().item() / 3 - 0.264127) < 1e-6
        torch.testing.assert_close(x_.grad.flatten(), torch.tensor([0.0, -0.4 + se, 0.4 + 1 / 3.5, 0.0, -1 / 3.5 - se],
                                                                   dtype=torch.float64))


def random_case(seed, n=2, r=60, k=3, ties=False, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, r, k, generator=g, dtype=dtype) * 2
    if ties:  # logits on a grid: many exact ties and differences of exactly +-delta
        x = (x * 4).round() / 4
    labels = torch.randint(-1, k + 1, (n, r), generator=g)
    quality = torch.rand(n, r, generator=g, dtype=dtype) * ((labels >= 0) & (labels < k))
    if ties:
        quality = (quality * 4).round() / 4
    return x, labels, quality


@pytest.mark.parametrize("delta", [0.5, 0.0, 2.0])
@pytest.mark.parametrize("ties", [False, True])
def test_fast_equals_the_dense_reference(delta, ties):
    x, labels, quality = random_case(1, ties=ties)
    fast = loss_and_grad(lambda x, lab: rank_sort_loss(x, lab, quality, delta), x, labels)
    dense = loss_and_grad(lambda x, lab: reference.rank_sort_loss(x, lab, quality, delta), x, labels)
    torch.testing.assert_close(fast[0], dense[0])
    torch.testing.assert_close(fast[1], dense[1])


def test_the_update_balances_foreground_and_background():
    """Sum of the update over the positives = - its sum over the negatives (every primary term
    pushes its cause down by what it pushes its positive up), whatever the upstream weights."""
    x, labels, quality = random_case(2)
    k = x.shape[-1]
    positive = torch.nn.functional.one_hot(labels.clamp(min=0), k + 1)[..., :k].bool() & (labels < k)[..., None]
    for weights in (torch.ones(labels.shape, dtype=x.dtype), torch.rand(labels.shape, dtype=x.dtype) + 0.5):
        x_ = x.clone().requires_grad_()
        (rank_sort_loss(x_, labels, quality) * weights).sum().backward()
        on_pos, on_neg = x_.grad[positive].sum(), x_.grad[~positive].sum()
        assert on_pos < 0 < on_neg
        torch.testing.assert_close(on_pos, -on_neg)


def test_no_positive_and_ignored_anchors():
    x, labels, quality = random_case(3)
    labels = torch.where(labels < x.shape[-1], -1, labels)  # background and ignored only
    loss, grad = loss_and_grad(lambda x, lab: rank_sort_loss(x, lab, torch.zeros_like(quality)), x, labels)
    assert (loss == 0).all() and (grad == 0).all()
    x, labels, quality = random_case(4)
    loss, grad = loss_and_grad(lambda x, lab: rank_sort_loss(x, lab, quality), x, labels)
    assert (loss[labels == -1] == 0).all() and (grad[labels == -1] == 0).all() and loss.sum() > 0


def test_half_and_float32_logits():
    x, labels, quality = random_case(5, dtype=torch.float32)
    full = RankSortLoss()(x, labels, quality)
    assert full.dtype == torch.float32
    half = RankSortLoss()(x.to(torch.bfloat16), labels, quality)
    assert half.dtype == torch.float32 and half.isfinite().all()
    torch.testing.assert_close(full, rank_sort_loss(x.double(), labels, quality.double()).float())


def test_bad_delta_is_named():
    with pytest.raises(ValueError, match="delta must be a finite number >= 0"):
        RankSortLoss(delta=-0.1)
