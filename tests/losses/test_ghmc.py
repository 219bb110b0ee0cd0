import math

import pytest
import torch
import torch.nn.functional as F

import losses.ghmc as ghmc
from losses.ghmc import GHMCLoss, ghmc_loss, gradient_bins
from tests.losses.conftest import loss_and_grad

K = 5


def batch(r=200, scale=3.0, dtype=torch.float64, seed=0):
    """Logits Tensor[2, r, K] and labels with ignored, background and every class."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(2, r, K, generator=g) * scale).to(dtype)
    labels = torch.randint(-1, K + 1, (2, r), generator=g)
    return x, labels


def mmdet_ghmc(x, labels, bins, momentum, acc_sum):
    """mmdetection's GHMC.forward re-derived (python loop over bins, python-float edges):
    scalar loss sum(weights * BCE) / tot. acc_sum: a list of floats, updated in place."""
    k = x.shape[-1]
    t = F.one_hot(labels.clamp(min=0), k + 1)[..., :k].to(x.dtype)  # background -> zeros
    valid = (labels >= 0).unsqueeze(-1).expand_as(x)
    edges = [i / bins for i in range(bins + 1)]
    edges[-1] += 1e-6
    g = torch.abs(x.detach().sigmoid() - t)
    tot = max(valid.sum().item(), 1.0)
    weights = torch.zeros_like(x)
    n = 0
    for i in range(bins):
        inds = (g >= edges[i]) & (g < edges[i + 1]) & valid
        num_in_bin = inds.sum().item()
        if num_in_bin > 0:
            if momentum > 0:
                acc_sum[i] = momentum * acc_sum[i] + (1 - momentum) * num_in_bin
                weights[inds] = tot / acc_sum[i]
            else:
                weights[inds] = tot / num_in_bin
            n += 1
    if n > 0:
        weights = weights / n
    return F.binary_cross_entropy_with_logits(x, t, weights, reduction="sum") / tot


def scalar_and_grad(fn, x):
    x = x.detach().clone().requires_grad_()
    loss = fn(x)
    loss.backward()
    return loss.detach(), x.grad


def ours_over_fg(loss_fn, labels, k=K):
    """Our summed loss divided by the foreground count, as the project's normalizer does."""
    num_fg = max(((labels >= 0) & (labels < k)).sum().item(), 1)
    return lambda x: loss_fn(x, labels).sum() / num_fg


@pytest.mark.parametrize("bins", [1, 3, 10, 30])
def test_equals_mmdetection_without_momentum(bins):
    x, labels = batch()
    ref = scalar_and_grad(lambda z: mmdet_ghmc(z, labels, bins, 0.0, None), x)
    ours = scalar_and_grad(ours_over_fg(GHMCLoss(bins), labels), x)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-15)
    # float32 against the float64 reference (no element near an edge: same bins)
    loss32, grad32 = scalar_and_grad(ours_over_fg(GHMCLoss(bins), labels), x.float())
    torch.testing.assert_close(loss32.double(), ref[0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad32.double(), ref[1], rtol=1e-4, atol=1e-9)


def test_equals_mmdetection_with_momentum_over_three_calls():
    ours, acc_ref = GHMCLoss(bins=10, momentum=0.75), [0.0] * 10
    for seed in range(3):
        x, labels = batch(seed=seed)
        ref = scalar_and_grad(lambda z, y=labels: mmdet_ghmc(z, y, 10, 0.75, acc_ref), x)
        torch.testing.assert_close(scalar_and_grad(ours_over_fg(ours, labels), x), ref, rtol=1e-6, atol=1e-12)
        # acc_sum is float32, as mmdetection's buffer
        torch.testing.assert_close(torch.tensor(ours.state_dict()["acc_sum"], dtype=torch.float64),
                                   torch.tensor(acc_ref, dtype=torch.float64), rtol=1e-6, atol=0)
    assert all(a > 0 for a in acc_ref)


def test_hand_computed_two_bins():
    # K = 1, bins = 2 (edges 0, 0.5, 1): a foreground anchor at p = 3/4 (g = 1/4, bin 0), a
    # background anchor at p = 1/4 (g = 1/4, bin 0), a background anchor at p = 1/2 (g = 1/2,
    # exactly on the edge: bin 1), an ignored one. tot = 3, n = 2: mmdetection's weights
    # 3 / 2 / 2 = 0.75 in bin 0 and 3 / 1 / 2 = 1.5 in bin 1 (they sum to tot), ours those
    # times #fg / tot = 1 / 3: 0.25 and 0.5 (they sum to #fg).
    x = torch.tensor([[[math.log(3)], [-math.log(3)], [0.0], [5.0]]], dtype=torch.float64)
    labels = torch.tensor([[0, 1, 1, -1]])
    loss, grad = loss_and_grad(GHMCLoss(bins=2), x, labels)
    bce_13 = math.log(4 / 3)  # softplus(-ln 3) = BCE of both bin-0 anchors
    torch.testing.assert_close(loss, torch.tensor([[0.25 * bce_13, 0.25 * bce_13, 0.5 * math.log(2), 0.0]],
                                                  dtype=torch.float64), rtol=1e-12, atol=0)
    # gradient w (p - t) times loss_and_grad's upstream weights 0.5, 1, 1.5, 2
    torch.testing.assert_close(grad.view(-1), torch.tensor([0.5 * 0.25 * -0.25, 1.0 * 0.25 * 0.25,
                                                            1.5 * 0.5 * 0.5, 0.0], dtype=torch.float64))
    # momentum 0.5 from zeros: acc_sum = 0.5 * counts = [1, 0.5], weights 3 / 1 / 2 and
    # 3 / 0.5 / 2, times 1 / 3
    loss_fn = GHMCLoss(bins=2, momentum=0.5)
    loss = loss_fn(x, labels)
    torch.testing.assert_close(loss, torch.tensor([[0.5 * bce_13, 0.5 * bce_13, 1.0 * math.log(2), 0.0]],
                                                  dtype=torch.float64), rtol=1e-12, atol=0)
    assert loss_fn.state_dict() == {"acc_sum": [1.0, 0.5]}
    # second call: [0.5 * 1 + 0.5 * 2, 0.5 * 0.5 + 0.5 * 1] = [1.5, 0.75]
    loss_fn(x, labels)
    assert loss_fn.state_dict() == {"acc_sum": [1.5, 0.75]}
    # third call, 2 elements, both in bin 0: bin 1 is empty and keeps its running count
    # (no decay); n = 1, weight tot / acc_sum[0] = 2 / (0.5 * 1.5 + 0.5 * 2), times #fg / tot
    # = 1 / 2 (no foreground: #fg counts as 1, as in the normalizer)
    loss = loss_fn(x[:, [1, 1]], torch.tensor([[1, 1]]))  # background at p = 1/4: g = 1/4
    assert loss_fn.state_dict() == {"acc_sum": [1.75, 0.75]}
    torch.testing.assert_close(loss, torch.full((1, 2), 1 / 1.75 * bce_13, dtype=torch.float64), rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bins", [1, 2, 3, 10, 11, 19, 29, 30, 41, 47, 997])
def test_bins_on_the_edges_are_mmdetections(bins, dtype):
    # floor(g * bins) alone misplaces some of these (float32, bins 11: the edge 5/11).
    edges = torch.arange(bins + 1, dtype=dtype) / bins  # mmdetection's edges (float32 in training)
    edges[-1] += 1e-6
    on = torch.arange(bins + 1, dtype=dtype) / bins
    g = torch.cat([on, torch.nextafter(on, torch.tensor(-1.0, dtype=dtype)),
                   torch.nextafter(on, torch.tensor(2.0, dtype=dtype)), torch.rand(500, dtype=dtype)]).clamp(0, 1)
    expected = torch.full(g.shape, -1)
    for i in range(bins):  # mmdetection's comparisons
        expected[(g >= edges[i]) & (g < edges[i + 1])] = i
    assert (expected >= 0).all()
    assert torch.equal(gradient_bins(g, bins).long(), expected)
    if dtype == torch.float64:  # the same as python-float edges (the original GHM code)
        assert on.tolist() == [i / bins for i in range(bins + 1)]


@pytest.mark.parametrize("bins", [2, 4, 10])
def test_edge_values_through_the_loss(bins):
    # float32 logits 0 (g = 0.5, the edge of bins 2 and 10), +-200 (g exactly 0 and 1: first
    # and last bin), against the reference on the same values in float64.
    x = torch.tensor([[[0.0, 200.0, -200.0], [0.0, -200.0, 200.0], [200.0, 0.0, -200.0],
                       [-200.0, 0.0, 200.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[0, 1, 3, 2, -1]])
    ref = scalar_and_grad(lambda z: mmdet_ghmc(z, labels, bins, 0.0, None), x.double())
    ours = scalar_and_grad(ours_over_fg(GHMCLoss(bins), labels, k=3), x)
    assert ours[0].isfinite() and ours[1].isfinite().all()
    torch.testing.assert_close((ours[0].double(), ours[1].double()), ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("momentum", [0.0, 0.75])
def test_saturated_logits_are_finite(momentum):
    x = torch.tensor([[200.0, -200.0, 0.0, 30.0, -30.0], [-200.0, 200.0, -30.0, 0.0, 30.0]]).repeat(3, 1)
    labels = torch.tensor([0, 1, 5, 0, -1, 3])  # right, wrong, background, ..., ignored
    loss, grad = loss_and_grad(GHMCLoss(10, momentum), x, labels)
    assert loss.isfinite().all() and grad.isfinite().all()
    ref = scalar_and_grad(lambda z: mmdet_ghmc(z, labels, 10, momentum, [0.0] * 10), x.double())
    ours = scalar_and_grad(ours_over_fg(GHMCLoss(10, momentum), labels), x)
    torch.testing.assert_close((ours[0].double(), ours[1].double()), ref, rtol=1e-6, atol=1e-7)


def test_ignored_anchors_give_exactly_zero():
    x, labels = batch(dtype=torch.float32)
    x[labels == -1] = 200.0  # even a huge logit on an ignored anchor contributes nothing
    loss, grad = loss_and_grad(GHMCLoss(10, 0.75), x, labels)
    ignored = labels == -1
    assert ignored.any()
    assert (loss[ignored] == 0).all() and (grad[ignored] == 0).all()
    assert (loss[~ignored] > 0).all() and (grad[~ignored] != 0).any(-1).all()


def test_ignored_anchors_do_not_count_in_the_histogram():
    x, labels = batch()
    some = labels.clone()
    some[:, ::3] = -1
    kept = some[0] >= 0
    # ignoring anchors = leaving them out of the batch
    alone = GHMCLoss(10)(x[:, kept.nonzero().squeeze(1)][:1], some[:1, kept])
    with_ignored = GHMCLoss(10)(x[:1], some[:1])
    torch.testing.assert_close(with_ignored[0, kept], alone[0], rtol=1e-14, atol=0)


@pytest.mark.parametrize("fill", [-1, K])
def test_all_ignored_and_all_background(fill):
    x, _ = batch()
    labels = torch.full(x.shape[:-1], fill)
    ref = scalar_and_grad(lambda z: mmdet_ghmc(z, labels, 10, 0.0, None), x)
    ours = scalar_and_grad(ours_over_fg(GHMCLoss(10), labels), x)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-15)
    assert (ours[0] == 0) == (fill == -1)


def test_empty_batch():
    x = torch.zeros(2, 0, K, requires_grad=True)
    loss = GHMCLoss(10, 0.75)(x, torch.zeros(2, 0, dtype=torch.long))
    loss.sum().backward()
    assert loss.shape == (2, 0) and x.grad.shape == x.shape


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    x, labels = batch(dtype=dtype)
    loss, grad = loss_and_grad(GHMCLoss(), x, labels)
    ref_loss, ref_grad = loss_and_grad(GHMCLoss(), x.float(), labels)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=0)
    torch.testing.assert_close(grad, ref_grad.to(dtype), rtol=0, atol=0)


def test_no_grad_and_retained_graph():
    x, labels = batch()
    with torch.no_grad():
        loss = GHMCLoss()(x, labels)
    torch.testing.assert_close(loss, loss_and_grad(GHMCLoss(), x, labels)[0], rtol=0, atol=0)
    x.requires_grad_()
    total = (GHMCLoss()(x, labels) * 3.0).sum()
    (g1,) = torch.autograd.grad(total, x, retain_graph=True)
    (g2,) = torch.autograd.grad(total, x)
    (g3,) = torch.autograd.grad((GHMCLoss()(x, labels) * 3.0).sum(), x)  # in-place path
    assert torch.equal(g1, g2) and torch.equal(g1, g3)


def test_gradcheck():
    # The weights are constants: gradcheck's steps (1e-6) move no element across an edge here.
    x, labels = batch(r=8, scale=2.0, seed=1)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda z: ghmc_loss(z, labels, 3)[0], (x,))


def test_distributed_counts_are_all_reduced(monkeypatch):
    # A fake second rank with the same batch: all_reduce doubles the counts and tot. The
    # weights must then be those of one process on both batches together.
    x, labels = batch()
    monkeypatch.setattr(ghmc.dist, "is_available", lambda: True)
    monkeypatch.setattr(ghmc.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(ghmc.dist, "get_backend", lambda: "gloo")
    monkeypatch.setattr(ghmc.dist, "all_reduce", lambda t, op=None: t.mul_(2))
    x[:, :50] = 0.3  # an uneven histogram, so that a missing reduction would change n or the weights
    labels[:, :50] = K
    dist_loss = GHMCLoss(10, 0.75)
    per_rank = dist_loss(x, labels)
    monkeypatch.undo()
    single = GHMCLoss(10, 0.75)
    both = single(torch.cat([x, x]), torch.cat([labels, labels]))
    torch.testing.assert_close(per_rank, both[:2], rtol=1e-14, atol=0)
    assert dist_loss.state_dict() == single.state_dict()


def test_state_dict_round_trip_reproduces_the_next_call():
    loss_fn = GHMCLoss(bins=10, momentum=0.75)
    assert loss_fn.state_dict() == {"acc_sum": None}
    for seed in (0, 1):
        loss_fn(*batch(dtype=torch.float32, seed=seed))
    state = loss_fn.state_dict()
    assert isinstance(state["acc_sum"], list) and len(state["acc_sum"]) == 10
    resumed = GHMCLoss(bins=10, momentum=0.75)
    resumed.load_state_dict(state)
    x, labels = batch(dtype=torch.float32, seed=2)
    assert torch.equal(resumed(x, labels), loss_fn(x, labels))
    assert resumed.state_dict() == loss_fn.state_dict()
    # A fresh one (no state) gives a different loss: the state matters.
    assert not torch.equal(GHMCLoss(bins=10, momentum=0.75)(x, labels), loss_fn(x, labels))
    resumed.load_state_dict({"acc_sum": None})
    assert resumed.state_dict() == {"acc_sum": None}
    assert GHMCLoss().state_dict() == {"acc_sum": None}  # momentum 0: no state


@pytest.mark.parametrize("state", [{"acc_sum": [1.0] * 9}, {"acc_sum": [1.0] * 9 + [-1.0]},
                                   {"acc_sum": [1.0] * 9 + [float("nan")]}, {"acc_sum": "x"}])
def test_load_state_dict_rejects_bad_state(state):
    with pytest.raises(ValueError, match=r"'acc_sum'.*10"):
        GHMCLoss(bins=10, momentum=0.75).load_state_dict(state)
    with pytest.raises(ValueError, match="acc_sum"):
        GHMCLoss(bins=10, momentum=0.75).load_state_dict({"generator": None})


def test_init_bias_and_scores():
    loss = GHMCLoss()
    bias = loss.init_bias(K, 0.01)
    assert bias.shape == (loss.num_logits(K),) == (K,) and bias.dtype == torch.float32
    torch.testing.assert_close(loss.scores(bias), torch.full((K,), 0.01))
    assert loss.scores(bias.to(torch.bfloat16)).dtype == torch.float32


def test_repr_and_bad_arguments():
    assert repr(GHMCLoss()) == "GHMCLoss(bins=10, momentum=0.0)"
    assert repr(GHMCLoss(30, 0.75)) == "GHMCLoss(bins=30, momentum=0.75)"
    for bins in (0, 1.5, -3, True, "10"):
        with pytest.raises(ValueError, match=r"bins must be an int >= 1"):
            GHMCLoss(bins=bins)
    for momentum in (1, 1.0, -0.1, float("nan"), None):
        with pytest.raises(ValueError, match="momentum"):
            GHMCLoss(momentum=momentum)
    with pytest.raises(ValueError, match="labels range"):
        GHMCLoss()(torch.zeros(1, 2, 3), torch.tensor([[0, 4]]))
