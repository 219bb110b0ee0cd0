import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss as tv_focal

import losses._fused as fused
from losses import reference
from losses.focal import FocalLoss, sigmoid_focal_loss
from tests.losses.conftest import loss_and_grad

K = 7


def random_batch(n=2, r=300, k=K, scale=4.0, seed=0):
    """float64 logits Tensor[n, r, k] and labels with ignored, background and every class."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, r, k, generator=g, dtype=torch.float64) * scale
    labels = torch.randint(-1, k + 1, (n, r), generator=g)
    return x, labels


def torchvision(x, labels, gamma, alpha):
    """torchvision on the one-hot targets, summed over classes, 0 for ignored anchors."""
    k = x.shape[-1]
    targets = F.one_hot(labels.clamp(min=0), k + 1)[..., :k].to(x.dtype)
    loss = tv_focal(x, targets, alpha=-1 if alpha is None else alpha, gamma=gamma).sum(-1)
    return loss * (labels >= 0)


@pytest.mark.parametrize("alpha", [None, 0.25, 0.75])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_equals_torchvision(gamma, alpha):
    x, labels = random_batch()
    ref_loss, ref_grad = loss_and_grad(lambda z, y: torchvision(z, y, gamma, alpha), x, labels)
    # float64 in, float64 out: the same function up to rounding.
    loss, grad = loss_and_grad(FocalLoss(gamma, alpha), x, labels)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12)
    # float32 against the float64 reference: float32 rounding, nothing more.
    loss32, grad32 = loss_and_grad(FocalLoss(gamma, alpha), x.float(), labels)
    assert loss32.dtype == grad32.dtype == torch.float32
    torch.testing.assert_close(loss32.double(), ref_loss, rtol=2e-6, atol=1e-5)
    torch.testing.assert_close(grad32.double(), ref_grad, rtol=1e-5, atol=1e-5)


def test_gamma0_without_alpha_is_bce():
    x, labels = random_batch()
    targets = F.one_hot(labels.clamp(min=0), K + 1)[..., :K].double()
    bce = F.binary_cross_entropy_with_logits(x, targets, reduction="none").sum(-1) * (labels >= 0)
    torch.testing.assert_close(FocalLoss(gamma=0, alpha=None)(x, labels), bce, rtol=1e-12, atol=1e-12)


def test_hand_computed_background_anchor():
    # Background anchor, logits [200, -200, 0], gamma 2, alpha 0.25; per class
    # (1 - alpha) p^2 softplus(x): 0.75 * 200, 0, 0.75 * 0.25 * ln 2; gradient
    # (1 - alpha) p^2 (p + 2 (1 - p) softplus(x)): 0.75, 0, 0.1875 * (0.5 + ln 2).
    x = torch.tensor([[[200.0, -200.0, 0.0]]], requires_grad=True)
    loss = FocalLoss(2.0, 0.25)(x, torch.tensor([[3]]))
    loss.sum().backward()
    torch.testing.assert_close(loss, torch.tensor([[150 + 0.1875 * math.log(2)]]))
    torch.testing.assert_close(x.grad, torch.tensor([[[0.75, 0.0, 0.1875 * (0.5 + math.log(2))]]]))


@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
def test_saturated_logits_are_finite(gamma, alpha):
    # torchvision's float32 focal loss gives NaN gradients here for gamma = 0.5: the
    # sigmoid rounds to exactly 1 and autograd of (1 - p_t)^0.5 is inf * 0.
    x = torch.tensor([[200.0, -200.0, 0.0, 30.0], [-200.0, 200.0, -30.0, 0.0]]).repeat(3, 1)
    labels = torch.tensor([0, 1, 4, 0, -1, 3])  # right, wrong, background, ..., ignored
    loss, grad = loss_and_grad(FocalLoss(gamma, alpha), x, labels)
    assert loss.isfinite().all() and grad.isfinite().all()
    ref_loss, ref_grad = loss_and_grad(lambda z, y: reference.sigmoid_focal_loss(z, y, gamma, alpha),
                                       x.double(), labels)
    torch.testing.assert_close(loss.double(), ref_loss, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-6, atol=1e-6)


def test_ignored_anchors_give_exactly_zero():
    x, labels = random_batch()
    x[labels == -1] = 200.0  # even a huge logit on an ignored anchor contributes nothing
    loss, grad = loss_and_grad(FocalLoss(), x.float(), labels)
    ignored = labels == -1
    assert ignored.any()
    assert (loss[ignored] == 0).all() and (grad[ignored] == 0).all()
    assert (loss[~ignored] > 0).all()


@pytest.mark.parametrize("fill", [-1, K])
def test_all_ignored_and_all_background(fill):
    x, _ = random_batch()
    labels = torch.full(x.shape[:-1], fill)
    loss, grad = loss_and_grad(FocalLoss(), x, labels)
    ref_loss, ref_grad = loss_and_grad(lambda z, y: torchvision(z, y, 2.0, 0.25), x, labels)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12)
    assert (loss == 0).all() == (fill == -1)


def test_empty_batch():
    x = torch.zeros(2, 0, K, requires_grad=True)
    loss = FocalLoss()(x, torch.zeros(2, 0, dtype=torch.long))
    loss.sum().backward()
    assert loss.shape == (2, 0) and x.grad.shape == x.shape


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    x, labels = random_batch()
    x_half = x.to(dtype)
    loss, grad = loss_and_grad(FocalLoss(), x_half, labels)
    ref_loss, ref_grad = loss_and_grad(FocalLoss(), x_half.float(), labels)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=0)
    torch.testing.assert_close(grad, ref_grad.to(dtype), rtol=0, atol=0)


def test_chunks_give_the_same_result(monkeypatch):
    x, labels = random_batch(r=1000)
    whole = loss_and_grad(FocalLoss(), x, labels)
    monkeypatch.setattr(fused, "CPU_CHUNK_ELEMENTS", 5 * K + 3)  # ~5 rows a chunk, last one ragged
    chunked = loss_and_grad(FocalLoss(), x, labels)
    torch.testing.assert_close(chunked, whole, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_no_grad_gives_the_same_loss(gamma):
    x, labels = random_batch()
    with torch.no_grad():
        loss = FocalLoss(gamma)(x, labels)
    torch.testing.assert_close(loss, loss_and_grad(FocalLoss(gamma), x, labels)[0], rtol=0, atol=0)


def test_second_backward_through_retained_graph():
    # The first backward may not scale the saved gradient in place: the graph lives on.
    x, labels = random_batch()
    x.requires_grad_()
    loss = (FocalLoss()(x, labels) * 3.0).sum()
    (g1,) = torch.autograd.grad(loss, x, retain_graph=True)
    (g2,) = torch.autograd.grad(loss, x)
    (g3,) = torch.autograd.grad((FocalLoss()(x, labels) * 3.0).sum(), x)  # in-place path
    assert torch.equal(g1, g2) and torch.equal(g1, g3)


@pytest.mark.parametrize("gamma,alpha", [(0.0, None), (0.0, 0.75), (0.5, 0.25), (2.0, 0.25), (2.0, None)])
def test_gradcheck(gamma, alpha):
    x, labels = random_batch(n=2, r=6, k=3, scale=2.0, seed=1)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda z: sigmoid_focal_loss(z, labels, gamma, alpha), (x,))


def test_init_bias_gives_the_prior():
    loss = FocalLoss()
    bias = loss.init_bias(K, 0.01)
    assert bias.shape == (loss.num_logits(K),) == (K,) and bias.dtype == torch.float32
    torch.testing.assert_close(loss.scores(bias), torch.full((K,), 0.01))


def test_repr_and_bad_arguments():
    assert repr(FocalLoss()) == "FocalLoss(gamma=2.0, alpha=0.25)"
    assert repr(FocalLoss(alpha=None)) == "FocalLoss(gamma=2.0, alpha=None)"
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="alpha"):
        FocalLoss(alpha=1.5)
    with pytest.raises(ValueError, match="prior"):
        FocalLoss().init_bias(K, 1.0)
