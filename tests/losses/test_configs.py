"""Every configs/loss/*.yaml instantiates into an object that keeps the loss contract."""

import inspect
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "loss").glob("*.yaml"))
K = 4


def test_the_three_variants_exist():
    assert {"focal", "bce_alpha", "softmax_bg"} <= {p.stem for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_yaml_lists_the_constructor_defaults(path):
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    params = inspect.signature(get_class(cfg.pop("_target_"))).parameters
    assert cfg == {name: p.default for name, p in params.items()}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_interface(path):
    loss_fn = instantiate(OmegaConf.load(path))
    assert type(loss_fn).__name__ in repr(loss_fn)
    C = loss_fn.num_logits(K)
    assert C in (K, K + 1)

    bias = loss_fn.init_bias(K, 0.01)
    assert bias.shape == (C,) and bias.dtype == torch.float32
    prior_scores = loss_fn.scores(bias)
    assert prior_scores.shape == (K,)
    assert 0.01 / K - 1e-6 <= prior_scores.max().item() <= 0.01 + 1e-6

    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, 50, C, generator=g) * 3).requires_grad_()
    labels = torch.randint(-1, K + 1, (2, 50), generator=g)
    labels[0, :3] = torch.tensor([-1, 0, K])  # each kind of anchor at least once
    scores = loss_fn.scores(logits)
    assert scores.shape == (2, 50, K) and ((scores >= 0) & (scores <= 1)).all()

    loss = loss_fn(logits, labels)
    assert loss.shape == (2, 50) and loss.dtype == torch.float32
    ignored = labels == -1
    assert (loss[ignored] == 0).all() and (loss[~ignored] > 0).all()
    loss.sum().backward()
    assert logits.grad.isfinite().all() and (logits.grad[ignored] == 0).all()

    half = loss_fn(logits.detach().to(torch.bfloat16), labels)
    assert half.dtype == torch.float32 and half.isfinite().all()
