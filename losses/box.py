"""Box regression losses shared by every classification variant.

Computed per foreground anchor; like the classification losses they are summed and
divided by the foreground count outside (``losses.normalizer``).
"""

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss

KINDS = ("smooth_l1", "l1", "giou")


class BoxLoss:
    """Per-anchor regression loss over foreground anchors.

    ``smooth_l1`` and ``l1`` compare the predicted deltas with the encoded targets
    ``box_coder.encode(anchors, gt_boxes)``, summed over the 4 coordinates. ``giou`` decodes
    the predicted deltas into boxes and takes torchvision's generalized IoU loss
    (1 - GIoU) against the ground-truth boxes. Computed in float32 at least.

    Args:
        kind: "smooth_l1" | "l1" | "giou".
        beta: smooth L1 transition point (quadratic below beta, linear above); 0 is L1.
            0.1 is detectron2's RetinaNet value. torchvision's RetinaNet uses plain L1
            (``RetinaNetRegressionHead._loss_type = "l1"``, which its ``_box_loss`` computes
            with ``F.l1_loss``; ``retinanet_resnet50_fpn_v2`` sets "giou"). torchvision's
            smooth L1 with beta 1/9 is its RPN's and Fast R-CNN box head's, not RetinaNet's.
    """

    def __init__(self, kind: str = "smooth_l1", beta: float = 0.1):
        if kind not in KINDS:
            raise ValueError(f"BoxLoss: kind must be one of {KINDS}, got {kind!r}")
        if not isinstance(beta, (int, float)) or not beta >= 0:
            raise ValueError(f"BoxLoss: beta must be a number >= 0, got {beta!r}")
        self.kind = kind
        self.beta = float(beta)

    def __call__(self, pred_deltas: Tensor, anchors: Tensor, gt_boxes: Tensor, box_coder) -> Tensor:
        """Tensor[P, 4] deltas, Tensor[P, 4] xyxy anchors, Tensor[P, 4] xyxy boxes -> Tensor[P]."""
        for name, t in (("pred_deltas", pred_deltas), ("anchors", anchors), ("gt_boxes", gt_boxes)):
            if not isinstance(t, Tensor) or t.dim() != 2 or t.shape[1] != 4:
                raise ValueError(f"BoxLoss: {name} must be a Tensor[P, 4], got "
                                 f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
        if not pred_deltas.shape[0] == anchors.shape[0] == gt_boxes.shape[0]:
            raise ValueError(f"BoxLoss: pred_deltas, anchors and gt_boxes must have the same "
                             f"number of rows P, got {pred_deltas.shape[0]}, {anchors.shape[0]}, "
                             f"{gt_boxes.shape[0]}")
        dtype = torch.promote_types(pred_deltas.dtype, torch.float32)
        pred = pred_deltas.to(dtype)
        anchors, gt_boxes = anchors.to(dtype), gt_boxes.to(dtype)
        if self.kind == "giou":
            return generalized_box_iou_loss(box_coder.decode(anchors, pred), gt_boxes, reduction="none")
        target = box_coder.encode(anchors, gt_boxes)
        if self.kind == "l1":
            return F.l1_loss(pred, target, reduction="none").sum(1)
        return F.smooth_l1_loss(pred, target, reduction="none", beta=self.beta).sum(1)

    def __repr__(self) -> str:
        return f"BoxLoss(kind={self.kind!r}, beta={self.beta})"
