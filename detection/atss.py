"""The ``atss`` assigner: Adaptive Training Sample Selection (Zhang et al., CVPR 2020,
"Bridging the Gap Between Anchor-based and Anchor-free Detection via Adaptive Training
Sample Selection", Algorithm 1).

Same contract as ``detection.matcher.Matcher`` (labels -1 / 0..K-1 / K and each anchor's
matched gt index), so every loss trains with it unchanged. Chosen with ``assigner=atss``
(``configs/assigner/atss.yaml``).
"""

import torch
from torch import Tensor

from detection.matcher import IGNORE, Assigner, check_gts, check_num_anchors_per_level, in_ignore_regions

# Upper bound on the elements of one (gts, anchors of a level) block of centre distances. A
# block holds two such float32 buffers and a bool mask at once: 2M elements keep the working
# set near 20 MiB whatever R and M are (182k anchors x 500 gts would be 350 MiB dense).
_BLOCK_ELEMS = 2 * 1024 * 1024


class ATSS(Assigner):
    """Labels anchors by ATSS: each gt's IoU threshold adapts to the IoUs of its nearest anchors.

    Rules, applied per image (Algorithm 1 of the paper):

    1. Candidates: for each gt, on each pyramid level, the ``topk`` anchors whose centres are
       nearest (Euclidean) the gt's centre (all of the level's anchors if it has fewer). Equal
       distances (the A anchors of a location share their centre) go to the lower anchor index.
    2. The gt's IoU threshold is the mean plus the sample standard deviation (n - 1) of its
       candidates' IoUs (computed in float64; with a single candidate the std is 0).
    3. A candidate is foreground for that gt when its IoU is >= the threshold and its centre
       lies strictly inside the gt box (on the border is outside).
    4. An anchor that is foreground for several gts goes to the one of highest IoU (the first
       gt on ties). Every other anchor is background: ATSS has no ignore band.
    5. Ignore regions (crowd boxes, objects of categories left out of a subset): an anchor
       covered for >= ``ignore_ioa_thresh`` of its own area is ignored unless foreground, as in
       ``max_iou``.

    A gt with no anchor centre strictly inside it (narrower than the stride and between grid
    points, or a thin box along the image border whose nearest centres lie on its edge) gets no
    positives: nothing makes up for it, unlike ``max_iou``'s low-quality matches
    (``python -m tools.anchor_stats`` counts such gts). mmdetection's ATSSAssigner follows the
    same rules (its centres must be 0.01 px inside; its ties in distance fall where topk puts them).

    Memory: centre distances are computed level by level in blocks of gts (no R x M matrix);
    IoUs only for the M x (topk x levels) candidates. ``num_anchors_per_level`` is required.

    Example (one level of 9 anchors, ``topk=7``, one gt, K = 2 classes)::

        >>> anchors = torch.tensor([[0., 0, 10, 10], [2, 0, 12, 10]] + [[x, 0, x + 10, 10] for x in range(20, 90, 10)])
        >>> ATSS(topk=7)(anchors, torch.tensor([[0., 0, 10, 10]]), torch.tensor([1]), num_classes=2,
        ...              num_anchors_per_level=[9])
        (tensor([1, 1, 2, 2, 2, 2, 2, 2, 2]), tensor([ 0,  0, -1, -1, -1, -1, -1, -1, -1]))

    The candidates are the 7 anchors nearest the gt's centre (the last two are not); their
    IoUs 1, 2/3 and five 0 give the threshold 0.238 + 0.418 = 0.656, so the anchor of IoU 2/3
    is foreground too (its centre (7, 5) is inside the gt); the rest are background (K = 2).
    """

    def __init__(self, topk: int = 9, ignore_ioa_thresh: float = 0.5):
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ValueError(f"ATSS: topk={topk!r}; expected an integer >= 1 (candidates per gt and pyramid level)")
        self.topk = topk
        self.ignore_ioa_thresh = ignore_ioa_thresh

    @torch.no_grad()
    def match_batch(self, anchors, gt_boxes, gt_labels, num_classes, ignore_boxes=None, num_anchors_per_level=None):
        """Match N images that share the same anchors.

        Args:
            anchors: Tensor[R, 4] xyxy, level-major (detection/anchors.py).
            gt_boxes: list of N Tensor[M_i, 4] xyxy.
            gt_labels: list of N Tensor[M_i] int64 in 0..K-1.
            num_classes: K.
            ignore_boxes: list of N Tensor[Q_i, 4], or None.
            num_anchors_per_level: anchors per pyramid level, summing to R.

        Returns:
            labels: Tensor[N, R] int64 in {-1, 0..K-1, K}; matched_idx: Tensor[N, R] int64
            (index into image i's gts where foreground, else -1).
        """
        if num_anchors_per_level is None:
            raise ValueError("ATSS: num_anchors_per_level is required (the anchors' count per pyramid level, "
                             "in anchor order); got None")
        levels = check_num_anchors_per_level(num_anchors_per_level, len(anchors), "ATSS")
        check_gts(gt_boxes, gt_labels, "ATSS")
        anchors = anchors.float()
        device = anchors.device
        n, r = len(gt_boxes), len(anchors)
        counts = torch.tensor([len(b) for b in gt_boxes], device=device)
        gts = torch.cat([b.float().reshape(-1, 4) for b in gt_boxes]) if n else anchors.new_zeros((0, 4))  # (G, 4)
        classes = torch.cat([lab.long() for lab in gt_labels]) if n else counts.new_zeros(0)  # (G,)
        image = torch.repeat_interleave(torch.arange(n, device=device), counts)  # (G,) each gt's image
        first = counts.cumsum(0) - counts  # (N,) index of image i's first gt

        # For each (image, anchor): the IoU of its winning gt (-1: none) and that gt's index in
        # the concatenated list (len(gts): none).
        best_iou = anchors.new_full((n * r,), -1.0)
        owner = torch.full((n * r,), len(gts), dtype=torch.long, device=device)
        if len(gts):
            cand = self._candidates(anchors, gts, levels)  # (G, C) anchor indices
            iou = _iou_pairs(anchors[cand], gts[:, None, :])  # (G, C)
            ious = iou.double()
            std = ious.std(dim=1) if cand.shape[1] > 1 else torch.zeros_like(ious[:, 0])
            thresh = ious.mean(dim=1) + std  # (G,)
            cx = (anchors[cand, 0] + anchors[cand, 2]) / 2
            cy = (anchors[cand, 1] + anchors[cand, 3]) / 2
            g = gts[:, None, :]
            inside = (cx > g[..., 0]) & (cx < g[..., 2]) & (cy > g[..., 1]) & (cy < g[..., 3])  # (G, C)
            gi, ci = ((ious >= thresh[:, None]) & inside).nonzero(as_tuple=True)  # positive (gt, candidate) pairs
            key = image[gi] * r + cand[gi, ci]  # (P,) flat (image, anchor)
            val = iou[gi, ci]
            best_iou.scatter_reduce_(0, key, val, "amax")
            wins = val == best_iou[key]  # the highest IoU for its anchor (ties: several)
            owner.scatter_reduce_(0, key[wins], gi[wins], "amin")  # the first gt among them
        best_iou, owner = best_iou.view(n, r), owner.view(n, r)
        fg = best_iou >= 0  # (N, R)
        owner_safe = torch.where(fg, owner, 0)
        classes_pad = torch.cat([classes, classes.new_full((1,), num_classes)])  # index len(gts): background
        labels = torch.where(fg, classes_pad[owner], num_classes)  # (N, R)
        matched_idx = torch.where(fg, owner_safe - first[:, None], -1) if n else owner.new_zeros((0, r))
        ignored = in_ignore_regions(anchors, ignore_boxes, self.ignore_ioa_thresh)  # (N, R) or None
        if ignored is not None:
            labels[ignored & ~fg] = IGNORE
        return labels, matched_idx

    def _candidates(self, anchors: Tensor, gts: Tensor, levels: list[int]) -> Tensor:
        """Tensor[G, C] anchor indices: each gt's ``topk`` nearest anchors (by centre) on every
        level, C = sum over levels of min(topk, R_l); ties in distance go to the lower index."""
        ac = (anchors[:, :2] + anchors[:, 2:]) / 2  # (R, 2) centres
        gc = (gts[:, :2] + gts[:, 2:]) / 2  # (G, 2)
        out, start = [], 0
        for count in levels:
            k = min(self.topk, count)
            if k == 0:
                continue
            ax, ay = ac[start : start + count, 0], ac[start : start + count, 1]
            chunk = max(1, _BLOCK_ELEMS // count)
            picked = []
            for s in range(0, len(gc), chunk):
                gx, gy = gc[s : s + chunk, 0:1], gc[s : s + chunk, 1:2]
                d = (ax[None, :] - gx).square_()
                d.add_((ay[None, :] - gy).square_())  # (g, R_l) squared distances
                kth = d.topk(k, dim=1, largest=False, sorted=True).values[:, -1:]  # (g, 1)
                # Every anchor within the k-th distance (more than k on ties), then the first k of
                # each gt in (distance, anchor index) order: exact and deterministic on ties,
                # where topk's own choice is not.
                rows, cols = (d <= kth).nonzero(as_tuple=True)  # row-major: cols ascending per row
                order = torch.sort(d[rows, cols], stable=True).indices
                order = order[torch.sort(rows[order], stable=True).indices]  # (row, distance, col)
                rows, cols = rows[order], cols[order]
                per_row = torch.bincount(rows, minlength=len(gx))
                rank = torch.arange(len(rows), device=rows.device) - (per_row.cumsum(0) - per_row)[rows]
                picked.append(cols[rank < k].view(len(gx), k) + start)
            out.append(torch.cat(picked))
            start += count
        return torch.cat(out, dim=1)

    def __repr__(self) -> str:
        return f"ATSS(topk={self.topk}, ignore_ioa_thresh={self.ignore_ioa_thresh})"


def _iou_pairs(a: Tensor, b: Tensor) -> Tensor:
    """IoU of Tensor[..., 4] boxes with Tensor[..., 4] boxes, element by element (broadcast).

    The arithmetic of ``torchvision.ops.box_iou`` in its order, so the values are
    bit-identical to it on the same pairs."""
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a + area_b - inter)
