"""Varifocal Loss (Zhang et al., CVPR 2021, "VarifocalNet", eq. 2): sigmoid, IoU-aware
soft targets as QFL's (``losses.qfl``), but the weighting is asymmetric: positives are
weighted up by their quality, only the negatives are focal-modulated.

Per element (anchor, class k), with p = sigmoid(x) and the soft target t (the detached IoU
of the anchor's decoded prediction with its gt at a foreground anchor's class, 0 elsewhere)::

    loss = BCE(x, t) * w,   w = t                      where t > 0
                            w = alpha * p^gamma        where t = 0   (alpha = 0.75, gamma = 2)

summed over the K classes. A foreground anchor whose prediction misses its gt entirely
(IoU 0) is a negative at its class too, as in the paper's definition. Ignored anchors give 0
loss and 0 gradient. As mmdetection's ``varifocal_loss`` with ``iou_weighted=True``: the
weight is differentiated through p (not detached), as the focal loss's is.

Worked example, K = 2, one anchor of class 0 with quality 0.8, logits [0, 0] (p = 0.5, and
BCE(0, t) = log 2 for any t): class 0: log 2 * 0.8 = 0.55452; class 1 (t = 0):
log 2 * 0.75 * 0.5^2 = 0.12997; the anchor's loss is 0.68449.

What is VarifocalNet's and what is not: its star-shaped box refinement and the IoU of the
*refined* box as the target are not used (the decoded prediction of the project's head is the
box); the box loss stays the project's. Normalization: VFNet divides the summed VFL by the
number of positives (averaged over GPUs); the project's normalizer divides by the EMA of the
foreground count, the same quantity smoothed.

Cost: plain autograd, as ``losses.qfl`` (~1% of a training step at K = 6).
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from losses._fused import check_inputs
from losses.focal import SigmoidOutputs
from losses.qfl import check_quality, quality_targets


def varifocal_loss(logits: Tensor, labels: Tensor, quality: Tensor, alpha: float = 0.75,
                   gamma: float = 2.0) -> Tensor:
    """Tensor[N, R, K] logits, Tensor[N, R] labels and quality -> Tensor[N, R] loss (module
    docstring). fp16/bf16 logits are computed in float32."""
    k = check_inputs("varifocal_loss", logits, labels)
    check_quality("varifocal_loss", quality, labels)
    x = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    t = quality_targets(labels, quality, k, x.dtype)  # (N, R, K)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    # p^gamma through log space: its derivative stays finite for any logit and any gamma >= 0
    # (pow(p, gamma) has an infinite one at p = 0 for gamma < 1), and torch.where's unused
    # branch then never carries inf * 0 = NaN into the gradient.
    weight = torch.where(t > 0, t, alpha * torch.exp(gamma * F.logsigmoid(x)))
    return (ce * weight).sum(-1) * (labels >= 0)  # (N, R), 0 where ignored


class VarifocalLoss(SigmoidOutputs):
    """Varifocal Loss, K sigmoid logits per anchor; ``loss=vfl``.

    Args:
        alpha: weight of the negatives (VarifocalNet: 0.75).
        gamma: focusing exponent on the negatives (VarifocalNet: 2).

    The model passes ``quality=Tensor[N, R]`` (``extras``); inference scores are the
    sigmoids, unchanged.
    """

    name = "vfl"
    extras = {"quality": "iou"}

    def __init__(self, alpha: float = 0.75, gamma: float = 2.0):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
            raise ValueError(f"vfl: alpha must be in (0, 1] (VarifocalNet: 0.75), got {alpha!r}")
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma < 0:
            raise ValueError(f"vfl: gamma must be a finite number >= 0 (VarifocalNet: 2), got {gamma!r}")
        self.alpha, self.gamma = float(alpha), float(gamma)

    def __call__(self, logits: Tensor, labels: Tensor, quality: Tensor) -> Tensor:
        """Tensor[N, R, K] logits, Tensor[N, R] labels, Tensor[N, R] quality -> Tensor[N, R] float32."""
        return varifocal_loss(logits, labels, quality, self.alpha, self.gamma)

    def __repr__(self) -> str:
        return f"VarifocalLoss(alpha={self.alpha}, gamma={self.gamma})"
