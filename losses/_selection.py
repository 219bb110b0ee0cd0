"""What the losses that train on a subset of the anchors share: the per-anchor base loss
they select from, and their argument checks.

A selecting loss (``losses.ohem``, ``losses.sampling``) computes its base loss on every
anchor, then multiplies it by a 0/1 mask of the anchors it keeps; so the gradient reaches the
kept anchors only, the loss is 0 elsewhere (as for ignored anchors), and the reduction stays
the project's one normalizer (by foreground count, ``losses.normalizer``). The base losses
are the fused ones: their backward scales a gradient computed in the forward pass, so the
anchors left out cost one elementwise product, not a second loss.
"""

import torch
from torch import Tensor

from losses.focal import FocalLoss
from losses.softmax_bg import SoftmaxBgLoss

BASES = ("softmax", "sigmoid")


def base_loss(name: str, base: str):
    """``base`` -> the loss object selected from: "softmax" is softmax cross-entropy with a
    background class (K + 1 logits, as ``loss=softmax_bg``), "sigmoid" plain binary
    cross-entropy (K logits, ``loss=bce_alpha`` without alpha)."""
    if base == "softmax":
        return SoftmaxBgLoss()
    if base == "sigmoid":
        return FocalLoss(gamma=0.0, alpha=None)
    raise ValueError(f"{name}: base must be one of {', '.join(BASES)}, got {base!r}")


def check_count(name: str, key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: {key} must be an int >= 1 (anchors per image), got {value!r}")
    return value


def check_enough_anchors(name: str, key: str, batch: int, labels: Tensor) -> None:
    """An image batch with fewer anchors per image than ``batch`` is a configuration error:
    "the top B" of fewer than B anchors would silently keep them all."""
    if labels.shape[-1] < batch:
        raise ValueError(f"{name}: {key}={batch} is larger than the {labels.shape[-1]} anchors per image; "
                         f"expected at most {labels.shape[-1]}")


class Selecting:
    """The loss-contract methods of a selecting loss, delegated to its base loss."""

    base_fn = None  # set by the subclass's __init__

    def num_logits(self, num_classes: int) -> int:
        return self.base_fn.num_logits(num_classes)

    def init_bias(self, num_classes: int, prior: float) -> Tensor:
        return self.base_fn.init_bias(num_classes, prior)

    def scores(self, logits: Tensor) -> Tensor:
        return self.base_fn.scores(logits)

    def masked(self, logits: Tensor, labels: Tensor, keep) -> Tensor:
        """The base loss of every anchor, times the mask ``keep(loss, labels)`` (Tensor[N, R] bool)."""
        loss = self.base_fn(logits, labels)  # (N, R)
        with torch.no_grad():
            mask = keep(loss.detach(), labels)
        return loss * mask

