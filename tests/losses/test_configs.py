"""Every configs/loss/*.yaml instantiates into an object that keeps the loss contract."""

import inspect
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "loss").glob("*.yaml"))
K = 4


# A ranking loss books each anchor's share of the errors it causes (losses/rank_sort.py): an
# anchor may be pushed without carrying a loss of its own, and a background anchor ranked
# below every foreground one carries none.
RANKING = {"rank_sort"}


def test_the_variants_exist():
    assert {"focal", "bce_alpha", "softmax_bg", "ohem", "sampling", "softmax_focal", "ghmc",
            "qfl", "vfl", "sampling_free", "rank_sort"} <= {p.stem for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_the_class_names_its_yaml(path):
    """The run name and the reports read a loss's short name from its class (``name``)."""
    loss_fn = instantiate(OmegaConf.load(path))
    if hasattr(type(loss_fn), "name"):  # the older losses get theirs in another change
        assert type(loss_fn).name == path.stem


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_the_loss_class_is_named_as_its_config_file(path):
    """``name``, the short name run names and reports use, is the class's own (a subclass such as
    AlphaBCELoss(FocalLoss) must not inherit its parent's), and ``loss=<name>`` selects it."""
    cls = get_class(OmegaConf.load(path)._target_)
    assert "name" in vars(cls) and cls.name == path.stem


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
    R = 400  # more than the default batch_per_image of the selecting losses (ohem, sampling)
    logits = (torch.randn(2, R, C, generator=g) * 3).requires_grad_()
    labels = torch.randint(-1, K + 1, (2, R), generator=g)
    labels[0, :3] = torch.tensor([-1, 0, K])  # each kind of anchor at least once
    scores = loss_fn.scores(logits)
    assert scores.shape == (2, R, K) and ((scores >= 0) & (scores <= 1)).all()

    # a loss that asks for extras (OHEM's boxes, QFL's quality) gets them, as the model passes them
    xy = torch.rand(2, R, 2, generator=g) * 100
    fg = (labels >= 0) & (labels < K)
    example = {"predicted": torch.cat([xy, xy + 10], -1), "anchors": torch.cat([xy, xy + 10], -1),
               "iou": torch.where(fg, 0.05 + 0.95 * torch.rand(2, R, generator=g), 0.0)}
    extra = {keyword: example[source] for keyword, source in getattr(loss_fn, "extras", {}).items()}
    loss = loss_fn(logits, labels, **extra)
    assert loss.shape == (2, R) and loss.dtype == torch.float32
    ignored = labels == -1
    assert (loss[ignored] == 0).all()
    if hasattr(loss_fn, "batch_per_image"):  # trains on a subset: at most B anchors per image
        assert ((loss > 0).sum(1) <= loss_fn.batch_per_image).all() and ((loss > 0).sum(1) > 0).all()
        assert (loss[loss != 0] > 0).all()
    elif path.stem in RANKING:
        assert (loss >= 0).all() and loss.sum() > 0
    else:
        assert (loss[~ignored] > 0).all()
    loss.sum().backward()
    assert logits.grad.isfinite().all() and (logits.grad[ignored] == 0).all()
    if path.stem not in RANKING:  # the gradient reaches exactly the anchors with a loss
        assert ((logits.grad != 0).any(-1) == (loss > 0)).all()

    half = loss_fn(logits.detach().to(torch.bfloat16), labels, **extra)
    assert half.dtype == torch.float32 and half.isfinite().all()
