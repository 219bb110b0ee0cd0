import math

import pytest
import torch
import torch.nn.functional as F

import losses._fused as fused
from losses.softmax_bg import SoftmaxBgLoss, softmax_bg_loss
from tests.losses.conftest import loss_and_grad

K = 6


def batch(r=300, scale=4.0, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(2, r, K + 1, generator=g) * scale).to(dtype)
    labels = torch.randint(-1, K + 1, (2, r), generator=g)
    return x, labels


def cross_entropy(bg_weight):
    def fn(x, labels):
        weight = torch.ones(x.shape[-1], dtype=x.dtype)
        weight[-1] = bg_weight
        loss = F.cross_entropy(x.flatten(0, 1), labels.flatten(), weight=weight, ignore_index=-1,
                               reduction="none")
        return loss.view(labels.shape)
    return fn


@pytest.mark.parametrize("bg_weight", [1.0, 0.25, 3.0])
def test_equals_cross_entropy(bg_weight):
    x, labels = batch()
    ref = loss_and_grad(cross_entropy(bg_weight), x, labels)
    torch.testing.assert_close(loss_and_grad(SoftmaxBgLoss(bg_weight), x, labels), ref,
                               rtol=1e-12, atol=1e-12)
    loss32, grad32 = loss_and_grad(SoftmaxBgLoss(bg_weight), x.float(), labels)
    torch.testing.assert_close(loss32.double(), ref[0], rtol=2e-6, atol=1e-5)
    torch.testing.assert_close(grad32.double(), ref[1], rtol=1e-5, atol=1e-6)


def test_saturated_logits_and_ignored():
    x = torch.tensor([[[200.0, -200.0, 0.0], [-200.0, 200.0, 0.0], [200.0, 200.0, -200.0]]])
    labels = torch.tensor([[0, 0, -1]])  # right, wrong by 400, ignored
    loss, grad = loss_and_grad(SoftmaxBgLoss(), x, labels)
    torch.testing.assert_close(loss, torch.tensor([[0.0, 400.0, 0.0]]))
    assert grad.isfinite().all() and (grad[0, 2] == 0).all()
    ref = loss_and_grad(cross_entropy(1.0), x, labels)
    torch.testing.assert_close((loss, grad), ref)


@pytest.mark.parametrize("fill", [-1, K])
def test_all_ignored_and_all_background(fill):
    x, _ = batch()
    labels = torch.full(x.shape[:-1], fill)
    loss, grad = loss_and_grad(SoftmaxBgLoss(2.0), x, labels)
    torch.testing.assert_close((loss, grad), loss_and_grad(cross_entropy(2.0), x, labels),
                               rtol=1e-12, atol=1e-12)
    assert (loss == 0).all() == (fill == -1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    x, labels = batch(dtype=dtype)
    loss, grad = loss_and_grad(SoftmaxBgLoss(), x, labels)
    ref_loss, ref_grad = loss_and_grad(SoftmaxBgLoss(), x.float(), labels)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=0)
    torch.testing.assert_close(grad, ref_grad.to(dtype), rtol=0, atol=0)


def test_chunks_give_the_same_result(monkeypatch):
    x, labels = batch(r=1000)
    whole = loss_and_grad(SoftmaxBgLoss(), x, labels)
    monkeypatch.setattr(fused, "CPU_CHUNK_ELEMENTS", 4 * (K + 1) + 2)
    torch.testing.assert_close(loss_and_grad(SoftmaxBgLoss(), x, labels), whole, rtol=0, atol=0)


def test_badly_wrong_rows_keep_their_digits():
    # softmax[y] = e^-100 is a float32 denormal: those rows take logsumexp(x) - x_y.
    x = torch.tensor([[[0.0, 100.0, 0.0], [0.0, 60.0, 0.0], [3.0, 1.0, 2.0]]], dtype=torch.float64)
    labels = torch.tensor([[0, 0, 2]])
    for dtype in (torch.float64, torch.float32):
        loss, grad = loss_and_grad(SoftmaxBgLoss(), x.to(dtype), labels)
        ref = loss_and_grad(cross_entropy(1.0), x, labels)
        torch.testing.assert_close(loss.double(), ref[0], rtol=1e-6, atol=0)
        torch.testing.assert_close(grad.double(), ref[1], rtol=1e-6, atol=1e-7)


def test_no_grad_and_retained_graph():
    x, labels = batch()
    with torch.no_grad():
        loss = SoftmaxBgLoss()(x, labels)
    torch.testing.assert_close(loss, loss_and_grad(SoftmaxBgLoss(), x, labels)[0], rtol=0, atol=0)
    x.requires_grad_()
    total = (SoftmaxBgLoss()(x, labels) * 3.0).sum()
    (g1,) = torch.autograd.grad(total, x, retain_graph=True)
    (g2,) = torch.autograd.grad(total, x)
    (g3,) = torch.autograd.grad((SoftmaxBgLoss()(x, labels) * 3.0).sum(), x)  # in-place path
    assert torch.equal(g1, g2) and torch.equal(g1, g3)


def test_gradcheck():
    x, labels = batch(r=8, scale=2.0, seed=1)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda z: softmax_bg_loss(z, labels, 0.5), (x,))


def test_init_bias_gives_the_prior():
    # p(background) = 1 - prior, so the K foreground probabilities sum to the prior.
    loss = SoftmaxBgLoss()
    bias = loss.init_bias(K, 0.01)
    assert bias.shape == (loss.num_logits(K),) == (K + 1,) and bias.dtype == torch.float32
    assert (bias[:K] == 0).all() and bias[K].item() == pytest.approx(math.log(K * 0.99 / 0.01))
    scores = loss.scores(bias)
    assert scores.shape == (K,)
    torch.testing.assert_close(scores, torch.full((K,), 0.01 / K))


def test_scores_drop_the_background_column():
    x = torch.tensor([[0.0, math.log(2.0), math.log(5.0)]])  # softmax [1, 2, 5] / 8
    torch.testing.assert_close(SoftmaxBgLoss().scores(x), torch.tensor([[1 / 8, 2 / 8]]))


def test_repr_and_bad_arguments():
    assert repr(SoftmaxBgLoss()) == "SoftmaxBgLoss(bg_weight=1.0)"
    with pytest.raises(ValueError, match="bg_weight"):
        SoftmaxBgLoss(bg_weight=-1)
    with pytest.raises(ValueError, match=r"K = 0 classes"):
        SoftmaxBgLoss()(torch.zeros(1, 2, 1), torch.zeros(1, 2, dtype=torch.long))
