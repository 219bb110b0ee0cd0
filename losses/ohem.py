"""Online hard example mining (Shrivastava et al., 2016): the method the focal loss replaced,
as in the focal-loss paper's Table 1d.

Every anchor is scored by its base loss (softmax cross-entropy with a background class, the
paper's setting, or sigmoid binary cross-entropy); NMS at ``nms_thresh`` removes the
near-duplicates of a high-loss example; of what is left, the ``batch_per_image``
highest-loss anchors of each image are trained on, the others give 0 loss and 0 gradient.
With ``neg_per_pos = r`` (the paper's "OHEM 1:3" is r = 3), at most
``floor(batch_per_image / (1 + r))`` foreground anchors are kept, the hardest, and
``floor(r * kept foreground)`` background anchors, the hardest: SSD's hard negative mining
(torchvision's ``ssd.py``) with the batch cap on top. An image without a kept foreground
anchor then trains on none of its background, as in SSD.

Which boxes the NMS compares (``nms_boxes``): by default each anchor's *predicted* box, its
regression output decoded (detached): what the anchor would detect, the counterpart of the
regions OHEM's NMS compares. The anchors themselves (``nms_boxes: anchors``) are a fixed
grid: two distinct anchors overlap at IoU <= 0.67 on the default config, so NMS at 0.7
would remove nothing and 0.5 would thin the grid the same way at every step.
NMS runs within the foreground anchors and within the background anchors, not across them:
a foreground and a background anchor on one spot are not two copies of one example (their
targets are opposite), and across them a high-loss background anchor would suppress the
foreground anchor beside it.

Normalization is the project's (``losses.normalizer``: the sum over kept anchors divided by
the foreground count), not the paper's per-minibatch mean: a constant factor per image that
each method's tuned learning rate absorbs, and the variants keep one reduction.

Worked example, one image, batch_per_image 2, no NMS, losses of anchors 0..3 = [.1, .9, .5,
.7] with labels [bg, bg, fg, ignore]: the two hardest valid anchors are 1 (.9) and 2 (.5);
the loss returned is [0, .9, .5, 0]. With neg_per_pos 1 the cap on foreground is 2 // 2 =
1: anchor 2, then one background anchor, the hardest: 1. Same result here; with labels
[bg, bg, bg, ignore] the 1:1 version keeps nothing (no foreground).
"""

import math

import torch
from torch import Tensor
from torchvision.ops import nms

from losses._selection import Selecting, base_loss, check_count, check_enough_anchors


def hard_examples(loss: Tensor, labels: Tensor, num_classes: int, batch: int, boxes: Tensor | None = None,
                  nms_thresh: float | None = None, neg_per_pos: float | None = None) -> Tensor:
    """The anchors OHEM trains on: Tensor[N, R] bool.

    Args:
        loss: Tensor[N, R] per-anchor loss (the ranking key; ignored anchors never kept).
        labels: Tensor[N, R] (-1 ignore, 0..K-1 class, K background).
        num_classes: K.
        batch: at most this many anchors per image.
        boxes: Tensor[N, R, 4] xyxy, the boxes NMS compares; needed when nms_thresh is set.
        nms_thresh: IoU above which a lower-loss anchor is suppressed; None: no NMS.
        neg_per_pos: r background anchors per foreground anchor; None: no ratio.
    """
    keep = torch.zeros_like(labels, dtype=torch.bool)
    for i in range(labels.shape[0]):
        b = None if boxes is None else boxes[i]
        fg_mask = (labels[i] >= 0) & (labels[i] < num_classes)
        if neg_per_pos is None:
            fg = _hardest(loss[i], fg_mask, batch, b, nms_thresh)
            bg = _hardest(loss[i], labels[i] == num_classes, batch, b, nms_thresh)
            both = torch.cat([fg, bg])
            chosen = both[loss[i, both].argsort(descending=True, stable=True)[:batch]]
        else:
            fg = _hardest(loss[i], fg_mask, int(batch // (1 + neg_per_pos)), b, nms_thresh)
            bg = _hardest(loss[i], labels[i] == num_classes, math.floor(neg_per_pos * len(fg)), b, nms_thresh)
            chosen = torch.cat([fg, bg])
        keep[i, chosen] = True
    return keep


def _hardest(loss: Tensor, candidates: Tensor, limit: int, boxes: Tensor | None, nms_thresh: float | None) -> Tensor:
    """Indices of at most ``limit`` of the ``candidates`` (Tensor[R] bool), highest loss first,
    after greedy NMS in loss order when ``nms_thresh`` is set."""
    idx = candidates.nonzero().squeeze(1)
    idx = idx[loss[idx].argsort(descending=True, stable=True)]  # (P,) highest loss first
    if nms_thresh is None or limit <= 0 or len(idx) == 0:
        return idx[:max(limit, 0)]
    # Greedy NMS decides each box from the higher-ranked boxes it kept, so NMS over the first
    # t candidates keeps exactly what NMS over all of them keeps among those t: grow t until
    # `limit` survive or every candidate is in (O(t^2) instead of O(P^2) for P ~ R).
    t = min(len(idx), 4 * limit)
    while True:
        head = idx[:t]
        rank = torch.arange(t, 0, -1, dtype=torch.float32, device=idx.device)  # nms sorts by it: our order
        kept = head[nms(boxes[head].float(), rank, nms_thresh)]
        if len(kept) >= limit or t == len(idx):
            return kept[:limit]
        t = min(len(idx), 4 * t)


class OHEMLoss(Selecting):
    """Online hard example mining on a softmax or sigmoid cross-entropy; ``loss=ohem``.

    Args:
        base: "softmax" (K + 1 logits, background a class: the paper's OHEM) or "sigmoid"
            (K logits, plain binary cross-entropy).
        batch_per_image: B, the anchors kept per image (paper: 128, 256, 512).
        nms_thresh: NMS IoU threshold among the ranked anchors (paper: 0.5, 0.7); null: none.
        neg_per_pos: background anchors per foreground anchor (paper's "1:3": 3); null: the
            top B whatever their label.
        nms_boxes: "predicted" (each anchor's decoded box) or "anchors" (see the module docstring).

    The model passes ``boxes=Tensor[N, R, 4]`` to ``__call__`` when ``self.boxes`` names
    which (DEVELOPERS.md, "Contracts").
    """

    def __init__(self, base: str = "softmax", batch_per_image: int = 256, nms_thresh: float | None = 0.7,
                 neg_per_pos: float | None = None, nms_boxes: str = "predicted"):
        self.base, self.base_fn = base, base_loss("ohem", base)
        self.batch_per_image = check_count("ohem", "batch_per_image", batch_per_image)
        if nms_thresh is not None and (isinstance(nms_thresh, bool) or not isinstance(nms_thresh, (int, float))
                                       or not 0 < nms_thresh <= 1):
            raise ValueError(f"ohem: nms_thresh must be in (0, 1] or null (no NMS), got {nms_thresh!r}")
        if neg_per_pos is not None:
            if isinstance(neg_per_pos, bool) or not isinstance(neg_per_pos, (int, float)) \
                    or not math.isfinite(neg_per_pos) or neg_per_pos <= 0:
                raise ValueError(f"ohem: neg_per_pos={neg_per_pos!r} leaves no negatives; expected a number > 0 "
                                 "(background anchors per foreground anchor) or null (no ratio)")
            if batch_per_image // (1 + neg_per_pos) < 1:
                raise ValueError(f"ohem: neg_per_pos={neg_per_pos} with batch_per_image={batch_per_image} leaves "
                                 f"no foreground anchor (B // (1 + r) = 0); expected batch_per_image >= {1 + neg_per_pos}")
        if nms_boxes not in ("predicted", "anchors"):
            raise ValueError(f"ohem: nms_boxes must be 'predicted' or 'anchors', got {nms_boxes!r}")
        self.nms_thresh = None if nms_thresh is None else float(nms_thresh)
        self.neg_per_pos = None if neg_per_pos is None else float(neg_per_pos)
        self.nms_boxes = nms_boxes
        self.boxes = nms_boxes if self.nms_thresh is not None else None  # what the model passes

    def __call__(self, logits: Tensor, labels: Tensor, boxes: Tensor | None = None) -> Tensor:
        """Tensor[N, R, C] logits, Tensor[N, R] labels (, Tensor[N, R, 4] boxes) -> Tensor[N, R]
        float32: the base loss on the kept anchors, 0 elsewhere."""
        check_enough_anchors("ohem", "loss.batch_per_image", self.batch_per_image, labels)
        if self.boxes is not None and (boxes is None or boxes.shape != (*labels.shape, 4)):
            raise ValueError(f"ohem: nms_thresh={self.nms_thresh} needs boxes=Tensor[N, R, 4] ({self.nms_boxes}), "
                             f"got {None if boxes is None else tuple(boxes.shape)} for labels {tuple(labels.shape)}")
        num_classes = logits.shape[-1] - (self.base == "softmax")
        return self.masked(logits, labels, lambda loss, labels: hard_examples(
            loss, labels, num_classes, self.batch_per_image, boxes, self.nms_thresh, self.neg_per_pos))

    def __repr__(self) -> str:
        return (f"OHEMLoss(base={self.base!r}, batch_per_image={self.batch_per_image}, nms_thresh={self.nms_thresh}, "
                f"neg_per_pos={self.neg_per_pos}, nms_boxes={self.nms_boxes!r})")
