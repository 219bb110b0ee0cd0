"""The valid range of every numeric (and enumerated) config key, in one table.

``train.py`` checks the composed config against ``RULES`` before anything is built (dry runs
included): a value out of range is one line naming the key, the value and what is expected,

    optim.lr=-0.1: expected a number > 0

and exit status 2, instead of a traceback from deep inside torch or a DataLoader.

A rule is keyed by the dotted path of its key and applies when that key is in the composed
config (``OmegaConf.select``): ``loss.gamma`` is checked for the losses that have one, the
``assigner.*`` thresholds once the assigner is a config group, and a key no config has is
simply not checked. A rule's test receives the value and the whole config, for rules that
relate two keys (``bg_iou_thresh <= fg_iou_thresh``, the batch split over the processes).
"""

import numbers
import os
from typing import Any, Callable, NamedTuple

from omegaconf import DictConfig, ListConfig, OmegaConf

_ABSENT = object()


class ConfigError(ValueError):
    """A config value out of its valid range; the message is one line per bad key."""


class Rule(NamedTuple):
    key: str  # dotted path in the composed config
    expected: str  # what the message says is expected
    test: Callable[[Any, DictConfig], bool]  # (value, config) -> valid
    nullable: bool = False  # null is valid ("off", "none", "the default")


def _number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _integer(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _get(cfg: DictConfig, key: str, default=None):
    value = OmegaConf.select(cfg, key, default=_ABSENT)
    return default if value is _ABSENT or value is None else value


def world_size() -> int:
    """The number of processes the launcher started (torchrun, SLURM tasks); 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", 1)))


def positive(key, nullable=False) -> Rule:
    return Rule(key, "a number > 0" + (" or null" if nullable else ""), lambda v, _: _number(v) and v > 0, nullable)


def non_negative(key, nullable=False) -> Rule:
    return Rule(key, "a number >= 0" + (" or null" if nullable else ""), lambda v, _: _number(v) and v >= 0,
                nullable)


def count(key, low=1, nullable=False, off="null: off") -> Rule:
    return Rule(key, f"an integer >= {low}" + (f" or null ({off})" if nullable else ""),
                lambda v, _: _integer(v) and v >= low, nullable)


def fraction(key, nullable=False, closed_high=True, closed_low=True) -> Rule:
    lo, hi = "[" if closed_low else "(", "]" if closed_high else ")"
    return Rule(key, f"a number in {lo}0, 1{hi}" + (" or null" if nullable else ""),
                lambda v, _: _number(v) and (0 <= v if closed_low else 0 < v) and (v <= 1 if closed_high else v < 1),
                nullable)


def one_of(key, *choices) -> Rule:
    return Rule(key, f"one of {', '.join(map(str, choices))}", lambda v, _: v in choices)


def iou_pair(prefix) -> list[Rule]:
    """fg/bg IoU thresholds of a matcher: both in [0, 1], background below foreground."""
    fg = f"{prefix}.fg_iou_thresh"
    return [fraction(fg),
            Rule(f"{prefix}.bg_iou_thresh", f"a number in [0, 1] and <= {fg}",
                 lambda v, c: _number(v) and 0 <= v <= 1 and v <= _get(c, fg, 1.0))]


def _batch_split(v, _) -> bool:
    return _integer(v) and v >= 1 and v % world_size() == 0


def _max_size(v, c) -> bool:
    return _integer(v) and v >= _get(c, "dataset.min_size", 1)


def _steps(v, c) -> bool:
    return isinstance(v, (list, tuple, ListConfig)) and all(_integer(s) and s >= 1 for s in v)


def _workers(v, _) -> bool:
    return v == "auto" or (_integer(v) and v >= 0)


def _device(v, _) -> bool:
    return isinstance(v, str) and (v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()))


RULES: tuple[Rule, ...] = (
    # run
    Rule("device", "auto, cpu, cuda or cuda:N", _device),
    one_of("amp", "auto", "bf16", "fp16", "off"),
    Rule("num_workers", "auto or an integer >= 0", _workers),
    non_negative("cache_images_mb"),
    one_of("eval_split", "val", "tune"),
    fraction("tune_fraction", closed_low=False, closed_high=False),
    count("loss_cdf_images", low=0),
    # optimizer
    positive("optim.lr"),
    fraction("optim.momentum", closed_high=False),
    non_negative("optim.weight_decay"),
    non_negative("optim.weight_decay_norm"),
    positive("optim.clip_grad_norm", nullable=True),
    # schedule
    count("schedule.max_iters"),
    Rule("schedule.batch_size", "an integer >= 1 divisible by the number of processes (WORLD_SIZE)", _batch_split),
    count("schedule.eval_batch_size"),
    count("schedule.warmup_iters", low=0),
    fraction("schedule.warmup_factor", closed_low=False),
    one_of("schedule.decay", "cosine", "step", "constant"),
    Rule("schedule.steps", "a list of integers >= 1", _steps),
    positive("schedule.gamma"),
    fraction("schedule.min_lr_factor"),
    count("schedule.log_every"),
    count("schedule.checkpoint_every", nullable=True, off="null: at the end only"),
    count("schedule.eval_every", nullable=True, off="null: at the end only"),
    count("schedule.stop_after", nullable=True, off="null: run to max_iters"),
    # dataset
    count("dataset.min_size"),
    Rule("dataset.max_size", "an integer >= dataset.min_size", _max_size),
    count("dataset.size_divisible"),
    non_negative("dataset.min_box_size"),
    one_of("dataset.on_bad_image", "error", "skip"),
    one_of("dataset.others", "ignore", "background", "drop_images"),
    count("dataset.generator.image_size"),
    count("dataset.generator.num_train"),
    count("dataset.generator.num_val"),
    count("dataset.generator.num_classes"),
    fraction("dataset.generator.empty_fraction"),
    fraction("dataset.generator.crowd_fraction"),
    # model
    fraction("model.prior_prob", closed_low=False, closed_high=False),
    fraction("model.score_thresh"),
    fraction("model.nms_thresh"),
    count("model.topk_candidates"),
    count("model.detections_per_img"),
    count("model.head_convs", low=0),
    count("model.head_width"),
    count("model.backbone.fpn_channels"),
    non_negative("model.box_loss.beta"),
    fraction("model.normalizer.ema_momentum", nullable=True, closed_high=False),
    # the assigner config group (assigner=max_iou | atss)
    *iou_pair("assigner"),
    fraction("assigner.min_pos_iou"),
    fraction("assigner.ignore_ioa_thresh"),
    count("assigner.topk"),
    # classification losses (a key applies to the losses that have it)
    fraction("loss.alpha", nullable=True),
    non_negative("loss.gamma"),
    non_negative("loss.beta"),
    non_negative("loss.bg_weight"),
    count("loss.batch_per_image"),
    fraction("loss.positive_fraction"),
    fraction("loss.nms_thresh", nullable=True),
    count("loss.bins"),
    fraction("loss.momentum", closed_high=False),
)


def violations(cfg: DictConfig, rules=RULES) -> list[str]:
    """One ``key=value: expected ...`` line per rule ``cfg`` breaks (keys it lacks are skipped)."""
    lines = []
    for rule in rules:
        value = OmegaConf.select(cfg, rule.key, default=_ABSENT)
        if value is _ABSENT or (value is None and rule.nullable):
            continue
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        if value is None or not rule.test(value, cfg):
            lines.append(f"{rule.key}={'null' if value is None else value}: expected {rule.expected}")
    return lines


def check(cfg: DictConfig) -> None:
    """Raises ConfigError listing every value of ``cfg`` out of its range."""
    lines = violations(cfg)
    if lines:
        raise ConfigError("\n".join(lines))
