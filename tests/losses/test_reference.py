"""The plain losses (losses/reference.py) against independent implementations (torchvision,
F.cross_entropy), and the fused losses against the plain ones: values and gradients,
ignored anchors, saturated logits, half precision, and the ``loss.fused=false`` switch."""

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch.autograd.function import BackwardCFunction
from torchvision.ops import sigmoid_focal_loss as tv_focal

from losses import reference
from losses.bce_alpha import AlphaBCELoss
from losses.focal import FocalLoss
from losses.softmax_bg import SoftmaxBgLoss
from tests.conftest import compose_config
from tests.losses.conftest import loss_and_grad

K = 5


def batch(columns, scale=4.0, seed=0):
    """float64 logits Tensor[2, 200, columns] and labels with ignored, background and every class."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 200, columns, generator=g, dtype=torch.float64) * scale
    labels = torch.randint(-1, K + 1, (2, 200), generator=g)
    return x, labels


@pytest.mark.parametrize("alpha", [None, 0.25, 0.75])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_focal_reference_equals_torchvision(gamma, alpha):
    x, labels = batch(K)

    def torchvision(z, y):  # on one-hot targets (background: all 0), 0 for ignored anchors
        targets = F.one_hot(y.clamp(min=0), K + 1)[..., :K].to(z.dtype)
        return tv_focal(z, targets, alpha=-1 if alpha is None else alpha, gamma=gamma).sum(-1) * (y >= 0)

    torch.testing.assert_close(loss_and_grad(lambda z, y: reference.sigmoid_focal_loss(z, y, gamma, alpha), x, labels),
                               loss_and_grad(torchvision, x, labels), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bg_weight", [1.0, 0.25, 3.0])
def test_softmax_reference_equals_cross_entropy(bg_weight):
    x, labels = batch(K + 1)

    def cross_entropy(z, y):
        w = torch.ones(K + 1, dtype=z.dtype)
        w[-1] = bg_weight
        return F.cross_entropy(z.flatten(0, 1), y.flatten(), weight=w, ignore_index=-1, reduction="none").view(y.shape)

    torch.testing.assert_close(loss_and_grad(lambda z, y: reference.softmax_bg_loss(z, y, bg_weight), x, labels),
                               loss_and_grad(cross_entropy, x, labels), rtol=1e-12, atol=1e-12)


# (class, kwargs, logit columns): each built twice, fused=True and fused=False.
LOSSES = [pytest.param(FocalLoss, dict(gamma=2.0, alpha=0.25), K, id="focal"),
          pytest.param(FocalLoss, dict(gamma=0.5, alpha=None), K, id="focal-gamma0.5"),
          pytest.param(AlphaBCELoss, dict(alpha=0.75), K, id="bce_alpha"),
          pytest.param(SoftmaxBgLoss, dict(bg_weight=0.5), K + 1, id="softmax_bg")]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cls,kwargs,columns", LOSSES)
def test_fused_equals_reference(cls, kwargs, columns, dtype):
    fused, plain = cls(**kwargs, fused=True), cls(**kwargs, fused=False)
    assert "fused" not in repr(fused) and repr(plain).endswith(", fused=False)")
    x, labels = batch(columns)
    x = x.to(dtype)
    loss, grad = loss_and_grad(fused, x, labels)
    ref_loss, ref_grad = loss_and_grad(plain, x, labels)
    # Half precision is computed in float32 by both; the gradient returns in the input's dtype.
    assert loss.dtype == ref_loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert grad.dtype == ref_grad.dtype == dtype
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else {}  # else: assert_close's for the dtype
    torch.testing.assert_close((loss, grad), (ref_loss, ref_grad), **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("cls,kwargs,columns", LOSSES)
def test_saturated_logits_are_finite_and_ignored_anchors_zero(cls, kwargs, columns, dtype):
    x, labels = batch(columns)
    x = torch.where(x > 0, 200.0, -200.0).to(dtype)  # every anchor right or wrong by far
    results = [loss_and_grad(cls(**kwargs, fused=fused), x, labels) for fused in (True, False)]
    ignored = labels == -1
    assert ignored.any()
    for loss, grad in results:
        assert loss.isfinite().all() and grad.isfinite().all()
        assert (loss[ignored] == 0).all() and (grad[ignored] == 0).all()
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-4)


def test_reference_checks_the_label_contract():
    with pytest.raises(ValueError, match=r"labels range over \[-1, 9\]"):
        reference.softmax_bg_loss(torch.zeros(1, 3, K + 1), torch.tensor([[0, 9, -1]]))
    with pytest.raises(ValueError, match="integer Tensor"):
        reference.sigmoid_focal_loss(torch.zeros(1, 3, K), torch.zeros(1, 3))


def uses_fused_function(loss_fn, columns) -> bool:
    """Whether the loss's autograd graph holds a custom autograd Function (the fused path)."""
    x, labels = batch(columns)
    nodes = [loss_fn(x.requires_grad_(), labels).grad_fn]
    while nodes:
        node = nodes.pop()
        if isinstance(node, BackwardCFunction):
            return True
        nodes += [n for n, _ in (node.next_functions if node is not None else ())]
    return False


@pytest.mark.parametrize("loss", ["focal", "bce_alpha", "softmax_bg"])
def test_config_switch_trains_with_the_reference(loss):
    default = instantiate(compose_config([f"loss={loss}"]).loss)
    plain = instantiate(compose_config([f"loss={loss}", "loss.fused=false"]).loss)
    assert default.fused is True and plain.fused is False and "fused=False" in repr(plain)
    columns = default.num_logits(K)
    assert uses_fused_function(default, columns) and not uses_fused_function(plain, columns)
