"""Quality Focal Loss (Li et al., NeurIPS 2020, "Generalized Focal Loss", eq. 5): sigmoid,
the class score trained towards the quality of the anchor's box, so that background
competes with badly localised foreground, not only with foreground.

Per element (anchor, class k), with p = sigmoid(x) and the soft target y::

    y    = IoU(the anchor's decoded prediction, its matched gt box)   at a foreground anchor's class
    y    = 0                                                           elsewhere (every background element)
    loss = BCE(x, y) * |y - p|^beta,   beta = 2

summed over the K classes. The IoU is computed by the model, detached (``extras``, see
``detection.retinanet.EXTRAS``); a background element's loss is focal's 0-target term
without alpha, BCE(x, 0) p^beta. Ignored anchors give 0 loss and 0 gradient.

Worked example, K = 2, one anchor of class 0 with quality 0.8, logits [0, 0] (p = 0.5, and
BCE(0, y) = log 2 for any y): class 0: log 2 * |0.8 - 0.5|^2 = 0.06238; class 1 (y = 0):
log 2 * 0.5^2 = 0.17329; the anchor's loss is 0.23567.

What is GFL's and what is not: the loss is mmdetection's ``quality_focal_loss`` (the IoU
with the decoded, detached prediction as the target, mmdet's ``GFLHead``). GFL's box branch
(the Distribution Focal Loss, and GIoU weighted by the predicted score) is not used: the box
loss stays the project's, so that the comparison changes only the classification loss.
Normalization: GFL divides the summed QFL by the number of positive anchors (averaged over
the GPUs); the project's normalizer divides by the EMA of the foreground count, the same
quantity smoothed, so the tuned learning rate needs nothing to absorb beyond the EMA.

Cost: plain autograd (a handful of N x R x K elementwise passes, several saved for
backward). With the default config's K = 6 that is ~1% of a training step; at K = 80 it
would be worth fusing as ``losses.focal`` is.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from losses._fused import check_inputs
from losses.focal import SigmoidOutputs


def check_quality(name: str, quality, labels: Tensor) -> None:
    """Raises a ValueError naming ``name`` unless ``quality`` is a floating Tensor[N, R] with
    ``labels``' shape and device, every value in [0, 1]."""
    if not isinstance(quality, Tensor) or not quality.is_floating_point():
        raise ValueError(f"{name}: quality must be a floating-point Tensor[N, R] (each foreground anchor's "
                         f"IoU, 0 elsewhere; the model passes it through extras), got "
                         f"{type(quality).__name__} {getattr(quality, 'dtype', '')}")
    if quality.shape != labels.shape or quality.device != labels.device:
        raise ValueError(f"{name}: quality {tuple(quality.shape)} on {quality.device} must have the labels' "
                         f"shape {tuple(labels.shape)} and device {labels.device}")
    if quality.numel():
        lo, hi = torch.aminmax(quality.detach())
        if not (0 <= float(lo) and float(hi) <= 1):
            raise ValueError(f"{name}: quality ranges over [{float(lo)}, {float(hi)}], expected IoUs in [0, 1]")


def quality_targets(labels: Tensor, quality: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """Tensor[N, R] labels and quality -> Tensor[N, R, K] soft targets: the quality at a
    foreground anchor's class, 0 elsewhere (background and ignored anchors: all 0)."""
    one_hot = F.one_hot(labels.long().clamp(min=0), num_classes + 1)[..., :num_classes]  # label K -> zeros
    fg = (labels >= 0) & (labels < num_classes)
    return one_hot.to(dtype) * torch.where(fg, quality.to(dtype), 0).unsqueeze(-1)


def quality_focal_loss(logits: Tensor, labels: Tensor, quality: Tensor, beta: float = 2.0) -> Tensor:
    """Tensor[N, R, K] logits, Tensor[N, R] labels and quality -> Tensor[N, R] loss (module
    docstring). fp16/bf16 logits are computed in float32."""
    k = check_inputs("quality_focal_loss", logits, labels)
    check_quality("quality_focal_loss", quality, labels)
    x = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    y = quality_targets(labels, quality, k, x.dtype)  # (N, R, K)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")  # log-space: finite for any logit
    modulation = (y - torch.sigmoid(x)).abs().pow(beta)  # beta >= 1: a finite derivative at p = y
    return (ce * modulation).sum(-1) * (labels >= 0)  # (N, R), 0 where ignored


class QualityFocalLoss(SigmoidOutputs):
    """Quality Focal Loss, K sigmoid logits per anchor; ``loss=qfl``.

    Args:
        beta: the modulating exponent (GFL: 2, its best). At least 1: below, |y - p|^beta
            has an infinite derivative where p = y.

    The model passes ``quality=Tensor[N, R]`` (``extras``); inference scores are the
    sigmoids, unchanged.
    """

    name = "qfl"
    extras = {"quality": "iou"}

    def __init__(self, beta: float = 2.0):
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 1:
            raise ValueError(f"qfl: beta must be a finite number >= 1 (GFL: 2), got {beta!r}")
        self.beta = float(beta)

    def __call__(self, logits: Tensor, labels: Tensor, quality: Tensor) -> Tensor:
        """Tensor[N, R, K] logits, Tensor[N, R] labels, Tensor[N, R] quality -> Tensor[N, R] float32."""
        return quality_focal_loss(logits, labels, quality, self.beta)

    def __repr__(self) -> str:
        return f"QualityFocalLoss(beta={self.beta})"
