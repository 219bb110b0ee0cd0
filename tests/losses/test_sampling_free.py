"""Sampling-free: the bias init against its closed form, the guided scale on hand numbers."""

import math

import pytest
import torch

from losses.focal import FocalLoss
from losses.sampling_free import SamplingFreeLoss, guided_weight, optimal_prior

COUNTS = torch.tensor([5, 2, 8, 990])  # 5 ignored, 2 of class 0, 8 of class 1, 990 background: n = 1000


def initial_bce(b, n_k, n):
    """A class column's BCE summed over the n non-ignored anchors, every logit at b."""
    p = 1 / (1 + math.exp(-b))
    return -n_k * math.log(p) - (n - n_k) * math.log(1 - p)


def test_prior_and_bias_are_the_closed_form():
    torch.testing.assert_close(optimal_prior(COUNTS), torch.tensor([0.005, 0.005], dtype=torch.float64))
    torch.testing.assert_close(optimal_prior(COUNTS, per_class=True), torch.tensor([0.002, 0.008], dtype=torch.float64))
    for prior, pi in (("mean", [0.005, 0.005]), ("per_class", [0.002, 0.008])):
        loss = SamplingFreeLoss(prior=prior)
        loss.fit_label_counts(COUNTS)
        bias = loss.init_bias(2, 0.01)
        torch.testing.assert_close(bias, torch.tensor([-math.log((1 - p) / p) for p in pi]))
        torch.testing.assert_close(loss.score_thresholds(), torch.tensor(pi))


def test_the_bias_minimises_the_initial_loss():
    # per class: each column's own minimum; mean: the best bias shared by all columns
    loss = SamplingFreeLoss(prior="per_class")
    loss.fit_label_counts(COUNTS)
    for b, n_k in zip(loss.init_bias(2, 0.01).double().tolist(), (2, 8)):
        assert initial_bce(b, n_k, 1000) < min(initial_bce(b - 1e-3, n_k, 1000), initial_bce(b + 1e-3, n_k, 1000))
    loss = SamplingFreeLoss()
    loss.fit_label_counts(COUNTS)
    b = loss.init_bias(2, 0.01)[0].item()

    def shared(b):
        return initial_bce(b, 2, 1000) + initial_bce(b, 8, 1000)

    assert shared(b) < min(shared(b - 1e-3), shared(b + 1e-3))


def test_a_class_without_anchors_keeps_a_finite_bias():
    loss = SamplingFreeLoss(prior="per_class")
    loss.fit_label_counts(torch.tensor([0, 0, 10, 990]))
    assert loss.init_bias(2, 0.01).isfinite().all() and loss.priors()[0] == 1 / 1000


def test_before_the_counts_it_is_plain_bce_from_the_models_prior():
    loss = SamplingFreeLoss()
    torch.testing.assert_close(loss.init_bias(3, 0.01), torch.full((3,), -math.log(99)))
    assert loss.score_thresholds() is None
    x, labels = torch.randn(2, 7, 3), torch.tensor([[0, 1, 2, 3, -1, 3, 3], [3] * 7])
    torch.testing.assert_close(loss(x, labels), FocalLoss(gamma=0.0, alpha=None)(x, labels))


def test_guided_scale_on_hand_numbers():
    # L_cls = 2.0, L_box = 0.5: r = 0.25, and r * L_cls = L_box
    assert guided_weight(torch.tensor(2.0), torch.tensor(0.5)).item() == 0.25
    assert SamplingFreeLoss().cls_weight(torch.tensor(2.0), torch.tensor(0.5)).item() == 0.25
    assert SamplingFreeLoss(guided=False).cls_weight(torch.tensor(2.0), torch.tensor(0.5)).item() == 1.0
    assert guided_weight(torch.tensor(0.0), torch.tensor(0.5)).item() == 0.0  # no loss to scale, no NaN
    assert guided_weight(torch.tensor(2.0), torch.tensor(0.0)).item() == 0.0  # no foreground: no cls signal
    w = guided_weight(torch.tensor(2.0, requires_grad=True), torch.tensor(0.5, requires_grad=True))
    assert not w.requires_grad


def test_thresholds_off_and_state_round_trip():
    loss = SamplingFreeLoss(adaptive_threshold=False)
    loss.fit_label_counts(COUNTS)
    assert loss.score_thresholds() is None
    other = SamplingFreeLoss()
    other.load_state_dict(loss.state_dict())
    assert torch.equal(other.label_counts, COUNTS)
    other.load_state_dict(SamplingFreeLoss().state_dict())
    assert other.label_counts is None


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="prior must be one of mean, per_class"):
        SamplingFreeLoss(prior="total")
    with pytest.raises(ValueError, match="guided must be true or false"):
        SamplingFreeLoss(guided=1)
    with pytest.raises(ValueError, match="integer Tensor"):
        SamplingFreeLoss().fit_label_counts(torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="no foreground or background anchor"):
        SamplingFreeLoss().fit_label_counts(torch.tensor([7, 0, 0]))
    loss = SamplingFreeLoss()
    loss.fit_label_counts(COUNTS)
    with pytest.raises(ValueError, match="of 2 classes, the model has 3"):
        loss.init_bias(3, 0.01)
    with pytest.raises(ValueError, match="load_state_dict"):
        loss.load_state_dict({"generator": None})
