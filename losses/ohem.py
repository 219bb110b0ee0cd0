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
from torchvision.ops import box_iou, nms

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

    Equal losses rank by anchor index. The batch is sorted once and the selection is done on
    the sorted masks; only NMS runs per image, over no more candidates than it needs.
    """
    order = loss.argsort(dim=1, descending=True, stable=True)  # (N, R) highest loss first
    fg = ((labels >= 0) & (labels < num_classes)).gather(1, order)  # (N, R) in loss order
    bg = (labels == num_classes).gather(1, order)  # (N, R)
    fg_cap = batch if neg_per_pos is None else int(batch // (1 + neg_per_pos))
    if nms_thresh is not None:  # keep in each group only what survives NMS within it
        for i in range(len(labels)):
            fg[i] = _survivors(fg[i], order[i], boxes[i], fg_cap, nms_thresh)
            bg_limit = batch if neg_per_pos is None else math.floor(neg_per_pos * int(fg[i].sum()))
            bg[i] = _survivors(bg[i], order[i], boxes[i], bg_limit, nms_thresh)
    if neg_per_pos is None:
        candidates = fg | bg
        keep = candidates & (candidates.cumsum(1) <= batch)
    else:
        keep_fg = fg & (fg.cumsum(1) <= fg_cap)
        bg_count = (keep_fg.sum(1, keepdim=True).double() * neg_per_pos).floor()  # (N, 1)
        keep = keep_fg | (bg & (bg.cumsum(1) <= bg_count))
    return torch.zeros_like(keep).scatter_(1, order, keep)  # back to anchor order


def _survivors(group: Tensor, order: Tensor, boxes: Tensor, limit: int, nms_thresh: float) -> Tensor:
    """Of one image's ``group`` (Tensor[R] bool, in loss order ``order``), the first ``limit``
    that greedy NMS over ``boxes`` (Tensor[R, 4], anchor order) keeps: Tensor[R] bool."""
    pos = group.nonzero().squeeze(1)  # (P,) the group's places in loss order
    out = torch.zeros_like(group)
    out[pos[_nms_in_order(order[pos], boxes, limit, nms_thresh)]] = True
    return out


def _nms_in_order(idx: Tensor, boxes: Tensor, limit: int, nms_thresh: float) -> Tensor:
    """Positions in ``idx`` (Tensor[P], anchors in priority order) of the first ``limit``
    anchors that greedy NMS in that order keeps, comparing ``boxes[idx]`` (boxes: Tensor[R, 4]).

    Greedy NMS keeps a box when no box it kept before overlaps it, so it can run a chunk of
    candidates at a time and stop once ``limit`` are kept: a chunk's boxes that overlap a box
    already kept go, NMS within the chunk decides the rest. The work is O(t * limit) for the
    t candidates looked at (t ~ limit), not O(P^2) for all P ~ R of an image.
    """
    kept, kept_boxes, n_kept, start = [], boxes.new_zeros(0, 4, dtype=torch.float32), 0, 0
    want = limit
    while n_kept < limit and start < len(idx):
        stop = min(len(idx), start + want)
        pos = torch.arange(start, stop, device=idx.device)  # (c,)
        chunk = boxes[idx[start:stop]].float()  # (c, 4)
        if n_kept:
            free = box_iou(chunk, kept_boxes).amax(1) <= nms_thresh  # nms suppresses IoU > thresh
            pos, chunk = pos[free], chunk[free]
        rank = torch.arange(len(pos), 0, -1, dtype=torch.float32, device=idx.device)  # nms sorts by it: our order
        survive = nms(chunk, rank, nms_thresh)
        kept.append(pos[survive])
        kept_boxes = torch.cat([kept_boxes, chunk[survive]])
        n_kept, start = n_kept + len(survive), stop
        # the next chunk: what the survival rate so far needs for the rest, with a margin
        want = max(64, math.ceil(1.25 * (limit - n_kept) * stop / max(n_kept, 1)))
    return torch.cat(kept)[:limit] if kept else idx.new_zeros(0)


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

    The model passes ``boxes=Tensor[N, R, 4]`` to ``__call__`` when ``self.extras`` asks for
    them, ``{"boxes": nms_boxes}`` (DEVELOPERS.md, "Contracts").
    """

    name = "ohem"  # its configs/loss/ file: run names and reports name the loss by it

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
        self.extras = {"boxes": nms_boxes} if self.nms_thresh is not None else {}  # what the model passes

    def __call__(self, logits: Tensor, labels: Tensor, boxes: Tensor | None = None) -> Tensor:
        """Tensor[N, R, C] logits, Tensor[N, R] labels (, Tensor[N, R, 4] boxes) -> Tensor[N, R]
        float32: the base loss on the kept anchors, 0 elsewhere."""
        check_enough_anchors("ohem", "loss.batch_per_image", self.batch_per_image, labels)
        if self.extras and (boxes is None or boxes.shape != (*labels.shape, 4)):
            raise ValueError(f"ohem: nms_thresh={self.nms_thresh} needs boxes=Tensor[N, R, 4] ({self.nms_boxes}), "
                             f"got {None if boxes is None else tuple(boxes.shape)} for labels {tuple(labels.shape)}")
        num_classes = logits.shape[-1] - (self.base == "softmax")
        return self.masked(logits, labels, lambda loss, labels: hard_examples(
            loss, labels, num_classes, self.batch_per_image, boxes, self.nms_thresh, self.neg_per_pos))

    def __repr__(self) -> str:
        return (f"OHEMLoss(base={self.base!r}, batch_per_image={self.batch_per_image}, nms_thresh={self.nms_thresh}, "
                f"neg_per_pos={self.neg_per_pos}, nms_boxes={self.nms_boxes!r})")
