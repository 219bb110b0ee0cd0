"""Quality Focal Loss: the formula on hand tensors, gradcheck, finiteness, ignored anchors."""

import math

import pytest
import torch

from losses.qfl import QualityFocalLoss, quality_focal_loss, quality_targets

K = 3


def by_hand(x, label, q, beta=2.0):
    """One anchor's loss from the definition, element by element in Python floats."""
    total = 0.0
    for k, xk in enumerate(x):
        y = q if k == label else 0.0
        p = 1 / (1 + math.exp(-xk))
        bce = -(y * math.log(p) + (1 - y) * math.log(1 - p))
        total += bce * abs(y - p) ** beta
    return total


def test_docstring_example():
    loss = QualityFocalLoss()(torch.zeros(1, 1, 2), torch.tensor([[0]]), torch.tensor([[0.8]]))
    torch.testing.assert_close(loss, torch.tensor([[math.log(2) * (0.3 ** 2 + 0.5 ** 2)]]))
    assert abs(loss.item() - 0.23567) < 1e-5


def test_per_anchor_loss_is_the_formula():
    x = torch.tensor([[[0.5, -1.0, 2.0], [-3.0, 0.0, 1.0], [1.5, 1.5, -0.5], [0.2, 0.3, 0.4]]], dtype=torch.float64)
    labels = torch.tensor([[2, 0, K, -1]])
    q = torch.tensor([[0.7, 0.35, 0.0, 0.0]], dtype=torch.float64)
    loss = quality_focal_loss(x, labels, q)
    expected = [by_hand(x[0, 0].tolist(), 2, 0.7), by_hand(x[0, 1].tolist(), 0, 0.35), by_hand(x[0, 2].tolist(), None, 0.0), 0.0]
    torch.testing.assert_close(loss, torch.tensor([expected], dtype=torch.float64))
    # beta = 1 and a background anchor is focal's 0-target term without alpha: BCE(x, 0) p^beta
    torch.testing.assert_close(quality_focal_loss(x, labels, q, beta=1.0)[0, 1],
                               torch.tensor(by_hand(x[0, 1].tolist(), 0, 0.35, beta=1.0), dtype=torch.float64))


def test_targets():
    t = quality_targets(torch.tensor([1, K, -1, 0]), torch.tensor([0.5, 0.9, 0.9, 1.0]), K, torch.float32)
    torch.testing.assert_close(t, torch.tensor([[0, 0.5, 0], [0, 0, 0], [0, 0, 0], [1.0, 0, 0]]))


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 6, K, generator=g, dtype=torch.float64) * 2).requires_grad_()
    labels = torch.tensor([[0, 1, 2, K, -1, 1], [K, K, 0, -1, 2, 2]])
    q = torch.rand(2, 6, generator=g, dtype=torch.float64) * ((labels >= 0) & (labels < K))
    assert torch.autograd.gradcheck(lambda x: quality_focal_loss(x, labels, q), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_at_extreme_logits_and_quality(dtype):
    x = torch.tensor([[[100.0, -100.0, -100.0], [-100.0, -100.0, -100.0], [100.0, -100.0, -100.0],
                       [-100.0, -100.0, 100.0]]], dtype=dtype, requires_grad=True)
    labels = torch.tensor([[0, 0, 0, K]])
    q = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=dtype)
    loss = quality_focal_loss(x, labels, q)
    loss.sum().backward()
    assert loss.isfinite().all() and x.grad.isfinite().all()
    assert loss[0, 0] < 1e-30  # confident, and its box is its gt: nothing to learn
    # confidently wrong: missed (quality 1, p ~ 0), scored but its box misses its gt (quality 0,
    # p ~ 1), background scored as class 2: each BCE 100 at full modulation
    torch.testing.assert_close(loss[0, 1:], torch.full((3,), 100.0, dtype=dtype))


def test_ignored_anchors_give_exactly_zero_loss_and_gradient():
    x = torch.randn(1, 4, K, requires_grad=True)
    labels = torch.tensor([[-1, 0, -1, K]])
    q = torch.tensor([[0.0, 0.6, 0.0, 0.0]])
    loss = quality_focal_loss(x, labels, q)
    (loss * torch.tensor([[1.0, 2.0, 3.0, 4.0]])).sum().backward()
    assert (loss[labels == -1] == 0).all() and (x.grad[labels == -1] == 0).all()
    assert (x.grad[labels != -1] != 0).all()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="beta must be a finite number >= 1"):
        QualityFocalLoss(beta=0.5)
    labels = torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"quality ranges over \[0.0, 1.5\]"):
        quality_focal_loss(torch.zeros(1, 2, K), labels, torch.tensor([[0.0, 1.5]]))
    with pytest.raises(ValueError, match="quality .* must have the labels' shape"):
        quality_focal_loss(torch.zeros(1, 2, K), labels, torch.zeros(2))
    with pytest.raises(TypeError):
        QualityFocalLoss()(torch.zeros(1, 2, K), labels)  # the model always passes quality
