"""Varifocal Loss: the formula on hand tensors, gradcheck, finiteness, ignored anchors."""

import math

import pytest
import torch

from losses.vfl import VarifocalLoss, varifocal_loss

K = 3


def by_hand(x, label, q, alpha=0.75, gamma=2.0):
    """One anchor's loss from the definition, element by element in Python floats."""
    total = 0.0
    for k, xk in enumerate(x):
        t = q if k == label else 0.0
        p = 1 / (1 + math.exp(-xk))
        bce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
        total += bce * (t if t > 0 else alpha * p ** gamma)
    return total


def test_docstring_example():
    loss = VarifocalLoss()(torch.zeros(1, 1, 2), torch.tensor([[0]]), torch.tensor([[0.8]]))
    torch.testing.assert_close(loss, torch.tensor([[math.log(2) * (0.8 + 0.75 * 0.25)]]))
    assert abs(loss.item() - 0.68449) < 1e-5


def test_per_anchor_loss_is_the_formula():
    x = torch.tensor([[[0.5, -1.0, 2.0], [-3.0, 0.0, 1.0], [1.5, 1.5, -0.5], [0.2, 0.3, 0.4], [1.0, 2.0, 3.0]]],
                     dtype=torch.float64)
    labels = torch.tensor([[2, 0, K, -1, 1]])
    q = torch.tensor([[0.7, 0.35, 0.0, 0.0, 0.0]], dtype=torch.float64)  # the last: a fg anchor with IoU 0
    loss = varifocal_loss(x, labels, q)
    expected = [by_hand(x[0, 0].tolist(), 2, 0.7), by_hand(x[0, 1].tolist(), 0, 0.35),
                by_hand(x[0, 2].tolist(), None, 0.0), 0.0, by_hand(x[0, 4].tolist(), None, 0.0)]
    torch.testing.assert_close(loss, torch.tensor([expected], dtype=torch.float64))
    # alpha and gamma are the negatives' only: a positive element's weight is its quality
    torch.testing.assert_close(varifocal_loss(x[:, :1], labels[:, :1], q[:, :1], alpha=0.1, gamma=0.0)
                               - 0.1 * (torch.nn.functional.softplus(x[0, 0, :2])).sum(),
                               torch.tensor([[0.7 * (torch.nn.functional.softplus(-x[0, 0, 2]) * 0.7
                                                     + torch.nn.functional.softplus(x[0, 0, 2]) * 0.3).item()]],
                                            dtype=torch.float64))


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 6, K, generator=g, dtype=torch.float64) * 2).requires_grad_()
    labels = torch.tensor([[0, 1, 2, K, -1, 1], [K, K, 0, -1, 2, 2]])
    q = torch.rand(2, 6, generator=g, dtype=torch.float64) * ((labels >= 0) & (labels < K))
    assert torch.autograd.gradcheck(lambda x: varifocal_loss(x, labels, q), (x,))
    assert torch.autograd.gradcheck(lambda x: varifocal_loss(x, labels, q, gamma=0.5), (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_at_extreme_logits_and_quality(dtype):
    x = torch.tensor([[[100.0, -100.0, 100.0], [-100.0, 100.0, -100.0], [100.0, 100.0, -100.0], [-100.0, -100.0, 100.0]]],
                     dtype=dtype, requires_grad=True)
    labels = torch.tensor([[0, 0, 1, K]])
    q = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=dtype)
    for gamma in (2.0, 0.5):
        x.grad = None
        loss = varifocal_loss(x, labels, q, gamma=gamma)
        loss.sum().backward()
        assert loss.isfinite().all() and x.grad.isfinite().all()


def test_ignored_anchors_give_exactly_zero_loss_and_gradient():
    x = torch.randn(1, 4, K, requires_grad=True)
    labels = torch.tensor([[-1, 0, -1, K]])
    q = torch.tensor([[0.0, 0.6, 0.0, 0.0]])
    loss = varifocal_loss(x, labels, q)
    (loss * torch.tensor([[1.0, 2.0, 3.0, 4.0]])).sum().backward()
    assert (loss[labels == -1] == 0).all() and (x.grad[labels == -1] == 0).all()
    assert (x.grad[labels != -1] != 0).all()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\]"):
        VarifocalLoss(alpha=0)
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0"):
        VarifocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="quality must be a floating-point"):
        varifocal_loss(torch.zeros(1, 2, K), torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long))
