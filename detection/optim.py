"""SGD parameter groups and the iteration-based learning-rate schedule."""

import math

import torch
from torch import nn

_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm)


def build_sgd(model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 1e-4,
              weight_decay_norm: float = 0.0, nesterov: bool = False) -> torch.optim.SGD:
    """SGD over the trainable parameters; normalization layers get ``weight_decay_norm``
    (detectron2's default 0: decaying a norm's scale towards 0 fights the normalization)."""
    norm_params, other = [], []
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                (norm_params if isinstance(module, _NORMS) else other).append(p)
    groups = [{"params": other, "weight_decay": weight_decay}]
    if norm_params:
        groups.append({"params": norm_params, "weight_decay": weight_decay_norm})
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)


def lr_factor(it: int, max_iters: int, warmup_iters: int = 0, warmup_factor: float = 0.001,
              decay: str = "cosine", steps=(), gamma: float = 0.1, min_lr_factor: float = 0.0) -> float:
    """Multiplier of the base learning rate at iteration ``it`` (0-based).

    Linear warmup from ``warmup_factor`` to 1 over ``warmup_iters``, multiplied by the decay:
    ``cosine`` from 1 to ``min_lr_factor`` over ``max_iters``, ``step`` (times ``gamma`` at
    each of ``steps``) or ``constant``. A pure function of the iteration, so a resumed run
    needs no scheduler state.
    """
    if decay == "cosine":
        t = min(it, max_iters) / max(1, max_iters)
        f = min_lr_factor + (1 - min_lr_factor) * 0.5 * (1 + math.cos(math.pi * t))
    elif decay == "step":
        f = gamma ** sum(it >= s for s in steps)
    elif decay == "constant":
        f = 1.0
    else:
        raise ValueError(f"schedule.decay={decay!r}: expected 'cosine', 'step' or 'constant'")
    if it < warmup_iters:
        alpha = it / warmup_iters
        f *= warmup_factor * (1 - alpha) + alpha
    return f
