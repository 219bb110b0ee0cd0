import math

import pytest
from torch import nn

from detection.optim import build_sgd, lr_factor


def test_warmup_then_cosine_hand_computed():
    f = lambda it: lr_factor(it, max_iters=100, warmup_iters=10, warmup_factor=0.001, decay="cosine")  # noqa: E731
    assert f(0) == pytest.approx(0.001 * (0.5 * (1 + math.cos(0))))
    assert f(5) == pytest.approx((0.001 * 0.5 + 0.5) * 0.5 * (1 + math.cos(math.pi * 0.05)))
    assert f(50) == pytest.approx(0.5)
    assert f(100) == pytest.approx(0.0, abs=1e-12)


def test_step_and_constant_decay():
    kw = dict(max_iters=90000, decay="step", steps=(60000, 80000), gamma=0.1)
    assert [lr_factor(i, **kw) for i in (0, 59999, 60000, 80000)] == pytest.approx([1, 1, 0.1, 0.01])
    assert lr_factor(123, max_iters=200, decay="constant") == 1.0
    with pytest.raises(ValueError, match="schedule.decay='linear'"):
        lr_factor(0, max_iters=10, decay="linear")


def test_norm_layers_get_their_own_weight_decay_and_frozen_params_are_left_out():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 1), nn.GroupNorm(2, 8))
    model[2].weight.requires_grad_(False)
    opt = build_sgd(model, lr=0.1, weight_decay=1e-4, weight_decay_norm=0.0)
    decayed, norms = opt.param_groups
    assert decayed["weight_decay"] == 1e-4 and norms["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(model[0].weight), id(model[0].bias), id(model[2].bias)}
    assert len(norms["params"]) == 4
