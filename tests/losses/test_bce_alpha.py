import pytest
import torch
import torch.nn.functional as F

from losses.bce_alpha import AlphaBCELoss
from losses.focal import sigmoid_focal_loss
from tests.losses.conftest import loss_and_grad

K = 5


def batch(dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 200, K, generator=g) * 4).to(dtype)
    labels = torch.randint(-1, K + 1, (2, 200), generator=g)
    return x, labels


@pytest.mark.parametrize("alpha", [0.75, 0.25, None])
def test_equals_weighted_binary_cross_entropy(alpha):
    x, labels = batch()

    def reference(z, y):
        t = F.one_hot(y.clamp(min=0), K + 1)[..., :K].to(z.dtype)
        w = None if alpha is None else alpha * t + (1 - alpha) * (1 - t)
        bce = F.binary_cross_entropy_with_logits(z, t, weight=w, reduction="none")
        return bce.sum(-1) * (y >= 0)

    ours = loss_and_grad(AlphaBCELoss(alpha), x, labels)
    ref = loss_and_grad(reference, x, labels)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    ours32 = loss_and_grad(AlphaBCELoss(alpha), x.float(), labels)
    torch.testing.assert_close(ours32[0].double(), ref[0], rtol=2e-6, atol=1e-5)
    torch.testing.assert_close(ours32[1].double(), ref[1], rtol=1e-5, atol=1e-6)


def test_hand_computed():
    # Class-1 anchor, logits [0, 0]: class 0 is a 0 target, 0.25 * ln 2; class 1 a 1 target,
    # 0.75 * ln 2. Gradients 0.25 * p = 0.125 and 0.75 * (p - 1) = -0.375.
    x = torch.zeros(1, 1, 2, requires_grad=True)
    loss = AlphaBCELoss(0.75)(x, torch.tensor([[1]]))
    loss.sum().backward()
    torch.testing.assert_close(loss, torch.tensor([[torch.log(torch.tensor(2.0)).item()]]))
    torch.testing.assert_close(x.grad, torch.tensor([[[0.125, -0.375]]]))


def test_saturated_and_ignored():
    x = torch.tensor([[[200.0, -200.0], [-200.0, 200.0], [200.0, 200.0]]], requires_grad=True)
    loss = AlphaBCELoss()(x, torch.tensor([[0, 0, -1]]))
    loss.sum().backward()
    # right: 0; wrong: 0.75 * 200 (class 0) + 0.25 * 200 (class 1); ignored: 0.
    torch.testing.assert_close(loss, torch.tensor([[0.0, 200.0, 0.0]]))
    torch.testing.assert_close(x.grad, torch.tensor([[[0.0, 0.0], [-0.75, 0.25], [0.0, 0.0]]]))


def test_gradcheck():
    x, labels = batch()
    x = x[:, :8, :3].clone().requires_grad_()
    labels = labels[:, :8].clamp(max=3)
    assert torch.autograd.gradcheck(lambda z: sigmoid_focal_loss(z, labels, 0.0, 0.75), (x,))


def test_interface():
    loss = AlphaBCELoss()
    assert loss.num_logits(K) == K
    torch.testing.assert_close(loss.scores(loss.init_bias(K, 0.01)), torch.full((K,), 0.01))
    assert repr(loss) == "AlphaBCELoss(alpha=0.75)"
    with pytest.raises(ValueError, match="alpha"):
        AlphaBCELoss(alpha=-0.1)
