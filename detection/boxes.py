"""Box coding between anchors and boxes (the R-CNN parameterisation).

Other box operations (IoU, NMS, format conversion) come from ``torchvision.ops``.
"""

import math

import torch
from torch import Tensor

# Largest log-scale a width/height delta may take when decoding: exp(4.135) = 62.5,
# so a 16 px anchor can grow to 1000 px at most. Without the clamp an untrained head
# can emit exp(80) and overflow to inf (same value as torchvision and detectron2).
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class BoxCoder:
    """Encodes boxes as deltas relative to anchors, and decodes them back.

    For an anchor with centre (xa, ya) and size (wa, ha) and a box with centre (x, y) and
    size (w, h), with weights (wx, wy, ww, wh)::

        dx = wx * (x - xa) / wa        dy = wy * (y - ya) / ha
        dw = ww * log(w / wa)          dh = wh * log(h / ha)

    Boxes are xyxy. ``decode(anchors, encode(anchors, boxes)) == boxes`` up to float error.
    Matches torchvision's ``det_utils.BoxCoder`` numerically (same formulas, same clamp).

    Args:
        weights: (wx, wy, ww, wh). RetinaNet uses (1, 1, 1, 1).
        scale_clamp: upper bound on dw / ww and dh / wh when decoding.
    """

    def __init__(self, weights=(1.0, 1.0, 1.0, 1.0), scale_clamp: float = DEFAULT_SCALE_CLAMP):
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    def encode(self, anchors: Tensor, boxes: Tensor) -> Tensor:
        """Tensor[..., 4] anchors and matching Tensor[..., 4] boxes -> Tensor[..., 4] deltas."""
        wx, wy, ww, wh = self.weights
        aw = anchors[..., 2] - anchors[..., 0]
        ah = anchors[..., 3] - anchors[..., 1]
        ax = anchors[..., 0] + 0.5 * aw
        ay = anchors[..., 1] + 0.5 * ah
        bw = boxes[..., 2] - boxes[..., 0]
        bh = boxes[..., 3] - boxes[..., 1]
        bx = boxes[..., 0] + 0.5 * bw
        by = boxes[..., 1] + 0.5 * bh
        return torch.stack(
            (wx * (bx - ax) / aw, wy * (by - ay) / ah, ww * torch.log(bw / aw), wh * torch.log(bh / ah)),
            dim=-1,
        )

    def decode(self, anchors: Tensor, deltas: Tensor) -> Tensor:
        """Tensor[..., 4] anchors and Tensor[..., 4] deltas -> Tensor[..., 4] xyxy boxes.

        Computed in the deltas' dtype but at least float32, so half-precision head outputs
        do not lose the box to rounding of exp().
        """
        dtype = torch.promote_types(deltas.dtype, torch.float32)
        anchors = anchors.to(dtype)
        deltas = deltas.to(dtype)
        wx, wy, ww, wh = self.weights
        aw = anchors[..., 2] - anchors[..., 0]
        ah = anchors[..., 3] - anchors[..., 1]
        ax = anchors[..., 0] + 0.5 * aw
        ay = anchors[..., 1] + 0.5 * ah
        dx = deltas[..., 0] / wx
        dy = deltas[..., 1] / wy
        dw = (deltas[..., 2] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[..., 3] / wh).clamp(max=self.scale_clamp)
        cx = dx * aw + ax
        cy = dy * ah + ay
        half_w = 0.5 * torch.exp(dw) * aw
        half_h = 0.5 * torch.exp(dh) * ah
        return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=-1)


def paired_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of each box with its partner: Tensor[..., 4] and Tensor[..., 4] xyxy -> Tensor[...].

    ``torchvision.ops.box_iou`` compares every box with every other (P x P); this is its
    diagonal, in O(P). Empty boxes (zero area on both sides) give 0, not NaN.
    """
    lt = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    rb = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area1 = (boxes1[..., 2:] - boxes1[..., :2]).clamp(min=0).prod(-1)
    area2 = (boxes2[..., 2:] - boxes2[..., :2]).clamp(min=0).prod(-1)
    union = area1 + area2 - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), 0.0)
