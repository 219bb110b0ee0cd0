import pytest
import torch

from losses.focal import sigmoid_focal_loss
from losses.sampling import RandomSamplingLoss, random_sample
from losses.softmax_bg import softmax_bg_loss
from tests.losses.conftest import loss_and_grad


def _labels():
    labels = torch.full((3, 400), 2)  # K = 2: background
    labels[0, :10] = 0  # 10 fg: all drawn at B=64 (cap 32)
    labels[1, :100] = 1  # 100 fg: 32 drawn
    labels[:, 390:] = -1  # ignored: never drawn
    labels[2, :395] = 2  # no fg: the whole batch is background
    return labels


def test_counts_follow_detectron2s_subsample_labels():
    keep = random_sample(_labels(), 2, 64, 0.5, torch.Generator().manual_seed(0))
    labels = _labels()
    fg, bg = (labels >= 0) & (labels < 2), labels == 2
    assert (keep & fg).sum(1).tolist() == [10, 32, 0]  # min(P, int(64 * 0.5))
    assert (keep & bg).sum(1).tolist() == [54, 32, 64]  # the rest of the batch
    assert not (keep & (labels == -1)).any()


def test_draws_are_uniform():
    labels = torch.full((1, 50), 1)  # K = 1, 50 background anchors, 10 drawn each time
    g = torch.Generator().manual_seed(0)
    counts = sum(random_sample(labels, 1, 10, 0.5, g).long() for _ in range(4000))[0]
    # each anchor is drawn with p = 0.2: mean 800, std 25 over 4000 draws
    assert ((counts - 800).abs() < 5 * 25.3).all(), counts


def test_seeded_reproducible_and_resumable():
    x = torch.randn(3, 400, 2)
    a, b = RandomSamplingLoss(batch_per_image=64, seed=3), RandomSamplingLoss(batch_per_image=64, seed=3)
    assert torch.equal(a(x, _labels()), b(x, _labels()))
    state = a.state_dict()
    first = a(x, _labels())
    assert not torch.equal(first, a(x, _labels()))  # a new draw each step
    c = RandomSamplingLoss(batch_per_image=64, seed=99)
    c.load_state_dict(state)
    assert torch.equal(c(x, _labels()), first)


def test_null_seed_is_the_runs_seed():
    x = torch.randn(3, 400, 2)
    torch.manual_seed(7)
    run = RandomSamplingLoss(batch_per_image=64)(x, _labels())
    assert torch.equal(run, RandomSamplingLoss(batch_per_image=64, seed=7)(x, _labels()))


@pytest.mark.parametrize("base", ["softmax", "sigmoid"])
def test_loss_and_gradient_are_the_base_ones_on_the_drawn_anchors(base):
    K = 2
    x = torch.randn(3, 400, K + (base == "softmax"), generator=torch.Generator().manual_seed(1)) * 3
    loss_fn = RandomSamplingLoss(base=base, batch_per_image=64, seed=0)
    loss, grad = loss_and_grad(loss_fn, x, _labels())
    keep = random_sample(_labels(), K, 64, 0.5, torch.Generator().manual_seed(0))
    ref = softmax_bg_loss if base == "softmax" else (lambda x, y: sigmoid_focal_loss(x, y, 0.0, None))
    ref_loss, ref_grad = loss_and_grad(ref, x, _labels())
    torch.testing.assert_close(loss, ref_loss * keep)
    torch.testing.assert_close(grad, ref_grad * keep.unsqueeze(-1))


def test_bad_arguments_name_the_key():
    with pytest.raises(ValueError, match=r"positive_fraction must be in \(0, 1\) \(1 leaves no negatives"):
        RandomSamplingLoss(positive_fraction=1.0)
    with pytest.raises(ValueError, match="positive_fraction"):
        RandomSamplingLoss(positive_fraction=0)
    with pytest.raises(ValueError, match="batch_per_image must be an int >= 1"):
        RandomSamplingLoss(batch_per_image=0)
    with pytest.raises(ValueError, match="batch_per_image=256 is larger than the 100 anchors"):
        RandomSamplingLoss()(torch.zeros(1, 100, 2), torch.zeros(1, 100, dtype=torch.long))
    with pytest.raises(ValueError, match="seed"):
        RandomSamplingLoss(seed=1.5)
    with pytest.raises(ValueError, match="generator"):
        RandomSamplingLoss().load_state_dict({"ema": 1})
