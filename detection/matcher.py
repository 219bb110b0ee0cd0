"""Assignment of every anchor to foreground, background or ignore: the ``max_iou`` assigner.

The label contract (consumed by every classification loss in ``losses/``), per anchor:

    -1        ignore: no classification loss, no box loss
    0 .. K-1  foreground of that class: classification loss and box loss
    K         background: classification loss only

Every assigner (``configs/assigner/``: ``max_iou`` is ``Matcher`` here, ``atss`` is
``detection.atss.ATSS``) is a callable with the same contract::

    assigner(anchors[R, 4], gt_boxes[M, 4], gt_labels[M], num_classes, ignore_boxes=None,
             num_anchors_per_level=[R_0, R_1, ...]) -> (labels[R], matched_idx[R])
    assigner.match_batch(anchors[R, 4], [gt_boxes_i], [gt_labels_i], num_classes,
                         [ignore_boxes_i] | None, num_anchors_per_level) -> (labels[N, R], matched_idx[N, R])

``matched_idx`` is the index of the anchor's gt where it is foreground, else -1. The
functions below that both assigners use (input checks, ignore regions) are public.
"""

import torch
from torch import Tensor

IGNORE = -1

# Upper bound on the elements of one (N, chunk, M) IoU block. Each block needs about four
# such float32 buffers at once, so 4M elements keep the matcher's working set near 64 MiB
# whatever R and M are; torchvision materialises the whole (M, R) matrix and its temporaries.
_BLOCK_ELEMS = 1024 * 1024


def check_gts(gt_boxes: list[Tensor], gt_labels: list[Tensor], who: str) -> None:
    """Raises ValueError naming the image when its gt_boxes are not Tensor[M, 4] with one
    label each."""
    if len(gt_boxes) != len(gt_labels):
        raise ValueError(f"{who}: {len(gt_boxes)} images of gt_boxes but {len(gt_labels)} of gt_labels")
    for i, (b, lab) in enumerate(zip(gt_boxes, gt_labels)):
        if b.ndim != 2 or b.shape[-1] != 4 or lab.ndim != 1 or len(b) != len(lab):
            raise ValueError(
                f"{who}: image {i} has gt_boxes of shape {tuple(b.shape)} and gt_labels of "
                f"shape {tuple(lab.shape)}; expected Tensor[M, 4] and Tensor[M]"
            )


def check_num_anchors_per_level(num_anchors_per_level, num_anchors: int, who: str) -> list[int]:
    """``num_anchors_per_level`` as a list of ints; ValueError unless they are >= 0 and sum to
    ``num_anchors`` (R): the anchors are level-major (detection/anchors.py), so these counts
    split them into levels."""
    counts = [int(c) for c in num_anchors_per_level]
    if any(c < 0 for c in counts) or sum(counts) != num_anchors:
        raise ValueError(
            f"{who}: num_anchors_per_level={counts} sums to {sum(counts)}; expected counts >= 0 "
            f"that sum to the number of anchors R={num_anchors}"
        )
    return counts


def in_ignore_regions(anchors: Tensor, ignore_boxes, ioa_thresh: float) -> Tensor | None:
    """Tensor[N, R] bool: anchors Tensor[R, 4] covered for at least ``ioa_thresh`` of their own
    area by one of image i's ignore regions (``ignore_boxes``: list of N Tensor[Q_i, 4], crowd
    boxes and objects of left-out categories); None when no image has one.

    Intersection over the anchor's area, not IoU: a small anchor inside a large crowd box has
    a tiny IoU with it but lies wholly inside. Computed in anchor chunks (bounded memory).
    """
    if ignore_boxes is None or not any(len(q) for q in ignore_boxes):
        return None
    anchors = anchors.float()
    area_a = _area(anchors)
    ign, ign_valid = _pad([q.float() for q in ignore_boxes], anchors)
    chunk = max(1024, _BLOCK_ELEMS // max(1, len(ignore_boxes) * ign.shape[1]))
    ioa = torch.cat(
        [_ioa_max(anchors[s : s + chunk], area_a[s : s + chunk], ign, ign_valid) for s in range(0, len(anchors), chunk)],
        dim=1,
    )  # (N, R)
    return ioa >= ioa_thresh


def _pairwise_iou_(a: Tensor, area_a: Tensor, b: Tensor, area_b: Tensor) -> Tensor:
    """IoU of Tensor[C, 4] anchors with Tensor[N, M, 4] boxes -> Tensor[N, C, M].

    Same arithmetic, in the same order, as ``torchvision.ops.box_iou`` (so the values are
    bit-identical), but with in-place ops so a block costs ~4 buffers instead of ~8.
    """
    a = a[None, :, None, :]  # (1, C, 1, 4)
    b = b[:, None, :, :]  # (N, 1, M, 4)
    iw = torch.minimum(a[..., 2], b[..., 2]).sub_(torch.maximum(a[..., 0], b[..., 0])).clamp_(min=0)
    ih = torch.minimum(a[..., 3], b[..., 3]).sub_(torch.maximum(a[..., 1], b[..., 1])).clamp_(min=0)
    inter = iw.mul_(ih)  # (N, C, M)
    union = (area_a[None, :, None] + area_b[:, None, :]).sub_(inter)
    return inter.div_(union)


def _ioa_max(a: Tensor, area_a: Tensor, b: Tensor, valid: Tensor) -> Tensor:
    """Largest intersection over the anchor's own area, Tensor[C, 4] x Tensor[N, Q, 4] -> Tensor[N, C]."""
    a = a[None, :, None, :]
    b = b[:, None, :, :]
    iw = torch.minimum(a[..., 2], b[..., 2]).sub_(torch.maximum(a[..., 0], b[..., 0])).clamp_(min=0)
    ih = torch.minimum(a[..., 3], b[..., 3]).sub_(torch.maximum(a[..., 1], b[..., 1])).clamp_(min=0)
    ioa = iw.mul_(ih).div_(area_a[None, :, None])
    ioa.masked_fill_(~valid[:, None, :], 0.0)
    return ioa.amax(dim=2)


def _pad(boxes: list[Tensor], anchors: Tensor) -> tuple[Tensor, Tensor]:
    """Stack per-image Tensor[M_i, 4] into Tensor[N, M, 4] plus a Tensor[N, M] validity mask."""
    m = max((len(b) for b in boxes), default=0)
    out = anchors.new_zeros((len(boxes), m, 4))
    valid = torch.zeros((len(boxes), m), dtype=torch.bool, device=anchors.device)
    for i, b in enumerate(boxes):
        out[i, : len(b)] = b
        valid[i, : len(b)] = True
    return out, valid


def _area(boxes: Tensor) -> Tensor:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


class Assigner:
    """The assigner contract (``assigner=``): ``match_batch`` labels the anchors of N images;
    calling the assigner matches one image with it."""

    def __call__(self, anchors, gt_boxes, gt_labels, num_classes, ignore_boxes=None, num_anchors_per_level=None):
        """Match one image (``match_batch`` on a batch of one).

        Args:
            anchors: Tensor[R, 4] xyxy.
            gt_boxes: Tensor[M, 4] xyxy (M may be 0).
            gt_labels: Tensor[M] int64 in 0..K-1.
            num_classes: K.
            ignore_boxes: Tensor[Q, 4] xyxy ignore regions, or None.
            num_anchors_per_level: anchors per pyramid level (summing to R), or None.

        Returns:
            labels: Tensor[R] int64 in {-1, 0..K-1, K}.
            matched_idx: Tensor[R] int64, the matched gt index where foreground, else -1.
        """
        ignore = None if ignore_boxes is None else [ignore_boxes]
        labels, idx = self.match_batch(anchors, [gt_boxes], [gt_labels], num_classes, ignore, num_anchors_per_level)
        return labels[0], idx[0]


class Matcher(Assigner):
    """The ``max_iou`` assigner (RetinaNet's): foreground, background or ignore by IoU.

    Rules, applied per image:

    1. Each anchor takes the gt of highest IoU (first one on ties). IoU >= ``fg_iou_thresh``:
       foreground of that gt's class; IoU < ``bg_iou_thresh``: background; between: ignore.
    2. Low-quality matches (``allow_low_quality_matches``): for each gt, the anchors with its
       highest IoU (all of them on ties) become foreground too, with their own best gt — as in
       torchvision and detectron2, so small or odd-shaped objects still get a positive. Unlike
       them, a gt whose best IoU is 0 (or below ``min_pos_iou``) creates no positives: in
       torchvision/mmdetection every anchor has the "highest" IoU 0 with such a gt, and all of
       them would become foreground.
    3. Ignore regions (crowd boxes, objects of categories left out of a subset): an anchor whose
       intersection over its own area with one of them is >= ``ignore_ioa_thresh`` is ignored
       unless it is foreground. Otherwise a crowd of people is trained as background.
    4. An image without gt: every anchor is background (ignore regions still apply).

    The switches (``configs/assigner/max_iou.yaml``; the defaults are the paper's):

    - ``bg_iou_thresh`` = ``fg_iou_thresh``: no ignore band, every anchor not foreground is
      background (only ignore regions still make label -1).
    - ``allow_low_quality_matches=false``: only IoU >= ``fg_iou_thresh`` is foreground; a gt
      no anchor reaches then has no positive at all.
    - ``min_pos_iou``: a low-quality match needs at least this IoU (mmdetection's
      ``min_pos_iou``); 0 keeps every gt's best anchors (if their IoU is > 0).

    ``num_anchors_per_level`` is checked (it must sum to R) but the IoU rule does not use it.
    IoU is computed in anchor chunks so memory stays bounded whatever R x M is, and the batch
    is processed at once (gts padded) rather than image by image.

    Example (one gt, three anchors, K = 2 classes)::

        >>> m = Matcher()
        >>> anchors = torch.tensor([[0., 0, 10, 10], [0, 0, 10, 20], [50, 50, 60, 60]])
        >>> m(anchors, torch.tensor([[0., 0, 10, 10]]), torch.tensor([1]), num_classes=2)
        (tensor([1, 1, 2]), tensor([ 0,  0, -1]))

    The first anchor has IoU 1 (class 1), the second IoU 0.5 (foreground too), the third 0
    (background, label K = 2; ``matched_idx`` -1 where not foreground).
    """

    def __init__(
        self,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.4,
        allow_low_quality_matches: bool = True,
        min_pos_iou: float = 0.0,
        ignore_ioa_thresh: float = 0.5,
    ):
        if bg_iou_thresh > fg_iou_thresh:
            raise ValueError(
                f"Matcher: bg_iou_thresh={bg_iou_thresh} must be <= fg_iou_thresh={fg_iou_thresh}"
            )
        self.fg_iou_thresh = fg_iou_thresh
        self.bg_iou_thresh = bg_iou_thresh
        self.allow_low_quality_matches = allow_low_quality_matches
        self.min_pos_iou = min_pos_iou
        self.ignore_ioa_thresh = ignore_ioa_thresh

    @torch.no_grad()
    def match_batch(self, anchors, gt_boxes, gt_labels, num_classes, ignore_boxes=None, num_anchors_per_level=None):
        """Match N images that share the same anchors.

        Args:
            anchors: Tensor[R, 4].
            gt_boxes: list of N Tensor[M_i, 4].
            gt_labels: list of N Tensor[M_i].
            num_classes: K.
            ignore_boxes: list of N Tensor[Q_i, 4], or None.
            num_anchors_per_level: anchors per pyramid level (summing to R), or None.

        Returns:
            labels: Tensor[N, R] int64; matched_idx: Tensor[N, R] int64 (index into image i's
            gts where foreground, else -1).
        """
        check_gts(gt_boxes, gt_labels, "Matcher")
        if num_anchors_per_level is not None:
            check_num_anchors_per_level(num_anchors_per_level, len(anchors), "Matcher")
        anchors = anchors.float()
        n, r = len(gt_boxes), len(anchors)
        gts, valid = _pad([b.float() for b in gt_boxes], anchors)  # (N, M, 4), (N, M)
        m = gts.shape[1]
        area_a = _area(anchors)
        area_g = _area(gts)
        has_padding = not bool(valid.all())

        best_iou = anchors.new_full((n, r), -1.0)  # -1: no gt at all -> background
        best_idx = torch.zeros((n, r), dtype=torch.long, device=anchors.device)
        gt_best = anchors.new_full((n, m), -1.0)  # each gt's highest IoU over all anchors
        chunk = max(1024, _BLOCK_ELEMS // max(1, n * m))
        if m > 0:
            for s in range(0, r, chunk):
                iou = _pairwise_iou_(anchors[s : s + chunk], area_a[s : s + chunk], gts, area_g)
                if has_padding:
                    iou.masked_fill_(~valid[:, None, :], -1.0)
                best_iou[:, s : s + chunk], best_idx[:, s : s + chunk] = iou.max(dim=2)
                torch.maximum(gt_best, iou.amax(dim=1), out=gt_best)

        fg = best_iou >= self.fg_iou_thresh  # (N, R)
        if self.allow_low_quality_matches and m > 0:
            fg |= self._low_quality(anchors, area_a, gts, area_g, valid, best_iou, gt_best, chunk)

        gt_labels_pad = torch.full((n, max(m, 1)), num_classes, dtype=torch.long, device=anchors.device)
        for i, lab in enumerate(gt_labels):
            gt_labels_pad[i, : len(lab)] = lab
        labels = torch.where(
            fg,
            torch.gather(gt_labels_pad, 1, best_idx),
            torch.where(best_iou < self.bg_iou_thresh, num_classes, IGNORE),
        )
        ignored = in_ignore_regions(anchors, ignore_boxes, self.ignore_ioa_thresh)  # (N, R) or None
        if ignored is not None:
            labels[ignored & ~fg] = IGNORE
        matched_idx = torch.where(fg, best_idx, -1)
        return labels, matched_idx

    def _low_quality(self, anchors, area_a, gts, area_g, valid, best_iou, gt_best, chunk):
        """Tensor[N, R] mask of anchors that hold some gt's highest IoU (ties kept).

        Only gts whose best IoU is > 0 and >= min_pos_iou take part. An anchor can only hold
        gt j's highest IoU if its own best IoU reaches it, so the second IoU pass runs over
        those few candidate anchors instead of all R.
        """
        eligible = valid & (gt_best > 0) & (gt_best >= self.min_pos_iou)  # (N, M)
        lowq = torch.zeros_like(best_iou, dtype=torch.bool)
        if not bool(eligible.any()):
            return lowq
        floor = torch.where(eligible, gt_best, torch.inf).amin(dim=1)  # (N,)
        cand = torch.nonzero((best_iou >= floor[:, None]).any(dim=0)).squeeze(1)  # (P,)
        target = torch.where(eligible, gt_best, torch.inf)  # never equal where not eligible
        for s in range(0, len(cand), chunk):
            idx = cand[s : s + chunk]
            iou = _pairwise_iou_(anchors[idx], area_a[idx], gts, area_g)  # (N, P, M)
            lowq[:, idx] = (iou == target[:, None, :]).any(dim=2)
        return lowq

    def __repr__(self) -> str:
        return (
            f"Matcher(fg_iou_thresh={self.fg_iou_thresh}, bg_iou_thresh={self.bg_iou_thresh}, "
            f"allow_low_quality_matches={self.allow_low_quality_matches}, "
            f"min_pos_iou={self.min_pos_iou}, ignore_ioa_thresh={self.ignore_ioa_thresh})"
        )
