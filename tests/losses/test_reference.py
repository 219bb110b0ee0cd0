"""The plain losses (losses/reference.py) against independent implementations, and the fused
ones against them: values and gradients, ignored anchors, saturation, half precision, and the
``loss.fused=false`` switch."""

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torchvision.ops import sigmoid_focal_loss as tv_focal

from losses import reference
from losses.bce_alpha import AlphaBCELoss
from losses.focal import FocalLoss
from losses.softmax_bg import SoftmaxBgLoss
from tests.conftest import compose_config

K = 5


def batch(columns, scale=4.0, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(2, 200, columns, generator=g) * scale).to(dtype)
    labels = torch.randint(-1, K + 1, (2, 200), generator=g)
    return x, labels


def loss_and_grad(fn, x, labels):
    x = x.detach().clone().requires_grad_()
    loss = fn(x, labels)
    weights = torch.linspace(0.5, 2.0, loss.numel(), dtype=loss.dtype).view_as(loss)  # per-anchor scaling too
    (loss * weights).sum().backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize("gamma,alpha", [(0.0, None), (0.0, 0.75), (2.0, 0.25), (0.5, 0.5)])
def test_focal_reference_equals_torchvision(gamma, alpha):
    x, labels = batch(K)

    def torchvision(z, y):
        targets = F.one_hot(y.clamp(min=0), K + 1)[..., :K].to(z.dtype)
        return tv_focal(z, targets, alpha=-1 if alpha is None else alpha, gamma=gamma).sum(-1) * (y >= 0)

    torch.testing.assert_close(loss_and_grad(lambda z, y: reference.sigmoid_focal_loss(z, y, gamma, alpha), x, labels),
                               loss_and_grad(torchvision, x, labels), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bg_weight", [1.0, 0.3])
def test_softmax_reference_equals_cross_entropy(bg_weight):
    x, labels = batch(K + 1)

    def cross_entropy(z, y):
        w = torch.ones(K + 1, dtype=z.dtype)
        w[-1] = bg_weight
        return F.cross_entropy(z.flatten(0, 1), y.flatten(), weight=w, ignore_index=-1, reduction="none").view(y.shape)

    torch.testing.assert_close(loss_and_grad(lambda z, y: reference.softmax_bg_loss(z, y, bg_weight), x, labels),
                               loss_and_grad(cross_entropy, x, labels), rtol=1e-12, atol=1e-12)


PAIRS = [(FocalLoss(2.0, 0.25), FocalLoss(2.0, 0.25, fused=False), K),
         (AlphaBCELoss(0.75), AlphaBCELoss(0.75, fused=False), K),
         (SoftmaxBgLoss(0.5), SoftmaxBgLoss(0.5, fused=False), K + 1)]


@pytest.mark.parametrize("fused,plain,columns", PAIRS, ids=lambda v: repr(v) if not isinstance(v, int) else "")
def test_fused_equals_reference(fused, plain, columns):
    x, labels = batch(columns)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        torch.testing.assert_close(loss_and_grad(fused, x.to(dtype), labels),
                                   loss_and_grad(plain, x.to(dtype), labels), rtol=tol, atol=tol)
    assert "fused=False" in repr(plain) and "fused" not in repr(fused)


@pytest.mark.parametrize("fused,plain,columns", PAIRS, ids=lambda v: repr(v) if not isinstance(v, int) else "")
def test_reference_is_finite_at_200_and_zero_where_ignored(fused, plain, columns):
    x, labels = batch(columns)
    x = torch.where(torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) < 0.5, 200.0, -200.0).float()
    loss, grad = loss_and_grad(plain, x, labels)
    assert loss.isfinite().all() and grad.isfinite().all()
    ignored = labels == -1
    assert (loss[ignored] == 0).all() and (grad[ignored] == 0).all()
    torch.testing.assert_close((loss, grad), loss_and_grad(fused, x, labels), rtol=1e-5, atol=1e-4)
    half = plain(x.to(torch.bfloat16), labels)
    assert half.dtype == torch.float32 and half.isfinite().all()


def test_reference_checks_the_label_contract():
    with pytest.raises(ValueError, match=r"labels range over \[-1, 9\]"):
        reference.softmax_bg_loss(torch.zeros(1, 3, K + 1), torch.tensor([[0, 9, -1]]))


@pytest.mark.parametrize("loss", ["focal", "bce_alpha", "softmax_bg"])
def test_config_switch_trains_with_the_reference(loss):
    cls_loss = instantiate(compose_config([f"loss={loss}", "loss.fused=false"]).loss)
    assert cls_loss.fused is False and "fused=False" in repr(cls_loss)
    assert instantiate(compose_config([f"loss={loss}"]).loss).fused is True
