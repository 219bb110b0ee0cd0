import math

import pytest
import torch
import torch.nn.functional as F

from losses.softmax_bg import SoftmaxBgLoss, softmax_bg_loss
from losses.softmax_focal import SoftmaxFocalLoss, softmax_focal_loss
from tests.losses.conftest import loss_and_grad

K = 6


def batch(r=300, scale=4.0, dtype=torch.float64, seed=0):
    """Logits Tensor[2, r, K+1] and labels with ignored, background and every class."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(2, r, K + 1, generator=g) * scale).to(dtype)
    labels = torch.randint(-1, K + 1, (2, r), generator=g)
    return x, labels


def reference(gamma, alpha):
    """Written differently: probabilities first, then (1 - p)^gamma * -log p (float64 inputs)."""
    def fn(x, labels):
        k = x.shape[-1] - 1
        p = torch.softmax(x, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        w = torch.ones_like(p) if alpha is None else torch.where(labels == k, 1 - alpha, alpha)
        return w * (1 - p) ** gamma * -torch.log(p) * (labels >= 0)
    return fn


def test_hand_computed_three_logits():
    # K = 2, logits [0, ln 2, ln 5]: softmax = [1, 2, 5] / 8. gamma 2, alpha 0.25.
    x = torch.tensor([[0.0, math.log(2), math.log(5)]], dtype=torch.float64).repeat(4, 1)
    labels = torch.tensor([1, 2, 0, -1])  # class 1 (p = 1/4), background (p = 5/8), class 0 (1/8), ignored
    loss, grad = loss_and_grad(SoftmaxFocalLoss(2.0, 0.25), x, labels)
    expected = [0.25 * (3 / 4) ** 2 * math.log(4),
                0.75 * (3 / 8) ** 2 * math.log(8 / 5),
                0.25 * (7 / 8) ** 2 * math.log(8),
                0.0]
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)
    # Row 0 by hand: L = -w q^2 log p, q = 1 - p, p = 1/4;
    # dL/dp = -w (-2 q log p + q^2 / p); dp/dx_j = p ([j == y] - p_j).
    w, p, q = 0.25, 1 / 4, 3 / 4
    dl_dp = -w * (-2 * q * math.log(p) + q ** 2 / p)
    probs = [1 / 8, 2 / 8, 5 / 8]
    row0 = [dl_dp * p * ((j == 1) - probs[j]) for j in range(3)]
    upstream = 0.5  # loss_and_grad weighs the first anchor 0.5
    torch.testing.assert_close(grad[0], upstream * torch.tensor(row0, dtype=torch.float64), rtol=1e-12, atol=1e-15)
    assert (grad[3] == 0).all()


def test_gamma0_without_alpha_is_cross_entropy():
    x, labels = batch()

    def cross_entropy(z, y):
        return F.cross_entropy(z.flatten(0, 1), y.flatten(), ignore_index=-1, reduction="none").view(y.shape)

    ref = loss_and_grad(cross_entropy, x, labels)
    torch.testing.assert_close(loss_and_grad(SoftmaxFocalLoss(0.0, None), x, labels), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.25, 0.75])
def test_gamma0_with_alpha_is_weighted_softmax_bg(alpha):
    x, labels = batch()

    def scaled(z, y):
        return softmax_bg_loss(z, y) * torch.where(y == K, 1 - alpha, alpha)

    ref = loss_and_grad(scaled, x, labels)
    torch.testing.assert_close(loss_and_grad(SoftmaxFocalLoss(0.0, alpha), x, labels), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_equals_independent_reference(gamma, alpha):
    x, labels = batch()
    ref = loss_and_grad(reference(gamma, alpha), x, labels)
    torch.testing.assert_close(loss_and_grad(SoftmaxFocalLoss(gamma, alpha), x, labels), ref, rtol=1e-10, atol=1e-12)
    loss32, grad32 = loss_and_grad(SoftmaxFocalLoss(gamma, alpha), x.float(), labels)
    assert loss32.dtype == grad32.dtype == torch.float32
    torch.testing.assert_close(loss32.double(), ref[0], rtol=2e-5, atol=1e-5)
    torch.testing.assert_close(grad32.double(), ref[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_saturated_logits_are_finite(gamma):
    # float32 softmax rounds p_y to exactly 1 (row 0) and to 0 (row 1): log1p(-p) or pow
    # would give -inf / NaN gradients there for gamma < 1.
    x = torch.tensor([[[200.0, -200.0, 0.0], [-200.0, 200.0, 0.0], [200.0, -200.0, -200.0],
                       [-200.0, -200.0, 200.0], [200.0, 200.0, -200.0]]])
    labels = torch.tensor([[0, 0, 2, 2, -1]])  # right, wrong by 400, wrong bg, right bg, ignored
    loss, grad = loss_and_grad(SoftmaxFocalLoss(gamma, 0.25), x, labels)
    assert loss.isfinite().all() and grad.isfinite().all()
    # wrong by 400: p = e^-400, (1 - p)^gamma = 1; right: (1 - p)^gamma log p = 0 (gamma > 0) or ~ -e^-200.
    torch.testing.assert_close(loss, torch.tensor([[0.0, 0.25 * 400, 0.75 * 400, 0.0, 0.0]]))
    assert (grad[0, 4] == 0).all()
    # gradient of the wrong row: w (softmax - one_hot) (the modulation is 1 with derivative ~0)
    torch.testing.assert_close(grad[0, 1] / grad[0, 1].abs().max(), torch.tensor([-1.0, 1.0, 0.0]))


def test_ignored_anchors_give_exactly_zero():
    x, labels = batch(dtype=torch.float32)
    x[labels == -1] = 200.0
    loss, grad = loss_and_grad(SoftmaxFocalLoss(), x, labels)
    ignored = labels == -1
    assert ignored.any()
    assert (loss[ignored] == 0).all() and (grad[ignored] == 0).all()
    assert (loss[~ignored] > 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    x, labels = batch(dtype=dtype)
    loss, grad = loss_and_grad(SoftmaxFocalLoss(), x, labels)
    ref_loss, ref_grad = loss_and_grad(SoftmaxFocalLoss(), x.float(), labels)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=0)
    torch.testing.assert_close(grad, ref_grad.to(dtype), rtol=0, atol=0)


@pytest.mark.parametrize("gamma,alpha", [(0.0, None), (0.5, 0.25), (2.0, 0.25)])
def test_gradcheck(gamma, alpha):
    x, labels = batch(r=8, scale=2.0, seed=1)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda z: softmax_focal_loss(z, labels, gamma, alpha), (x,))


def test_init_bias_and_scores_are_softmax_bg_total():
    loss, bg = SoftmaxFocalLoss(), SoftmaxBgLoss(prior="total")
    assert loss.num_logits(K) == K + 1
    bias = loss.init_bias(K, 0.01)
    assert bias.dtype == torch.float32 and torch.equal(bias, bg.init_bias(K, 0.01))
    torch.testing.assert_close(loss.scores(bias), torch.full((K,), 0.01 / K))
    x, _ = batch(dtype=torch.bfloat16)
    scores = loss.scores(x)
    assert scores.dtype == torch.float32 and torch.equal(scores, bg.scores(x))


def test_repr_and_bad_arguments():
    assert repr(SoftmaxFocalLoss()) == "SoftmaxFocalLoss(gamma=2.0, alpha=0.25)"
    assert repr(SoftmaxFocalLoss(0.5, None)) == "SoftmaxFocalLoss(gamma=0.5, alpha=None)"
    for gamma in (-1, float("nan"), float("inf"), "2"):
        with pytest.raises(ValueError, match="gamma"):
            SoftmaxFocalLoss(gamma=gamma)
    for alpha in (-0.1, 1.5, "0.25"):
        with pytest.raises(ValueError, match="alpha"):
            SoftmaxFocalLoss(alpha=alpha)
    with pytest.raises(ValueError, match=r"K = 0 classes"):
        SoftmaxFocalLoss()(torch.zeros(1, 2, 1), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels range"):
        SoftmaxFocalLoss()(torch.zeros(1, 2, 3), torch.tensor([[0, 3]]))
