"""ATSS against hand-worked labels and against a plain reference written from the paper."""

import doctest

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

import detection.atss as atss_mod
from detection.anchors import AnchorGenerator
from detection.atss import ATSS
from detection.matcher import Matcher

K = 3  # classes; background label is K


def reference_atss(anchors, gts, gt_labels, levels, topk, ignore_boxes=None, ignore_ioa_thresh=0.5):
    """Algorithm 1 of Zhang et al. (CVPR 2020), one gt and one anchor at a time, with the
    conventions detection/atss.py documents: ties in distance to the lower anchor index, the
    sample std (0 for a single candidate), centres strictly inside, the highest IoU wins (the
    first gt on ties), crowd regions ignore what is not foreground."""
    r = len(anchors)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    iou = box_iou(gts, anchors) if len(gts) else torch.zeros(0, r)  # (M, R), dense: fine for a test
    claims = {}  # anchor -> gts it is a positive of
    for j, g in enumerate(gts):
        gc = (g[:2] + g[2:]) / 2
        candidates, start = [], 0
        for count in levels:  # the topk nearest anchor centres on each level
            d = ((centres[start:start + count] - gc) ** 2).sum(1).numpy()
            order = np.lexsort((np.arange(count), d))  # by distance, then index
            candidates += [start + int(i) for i in order[:topk]]
            start += count
        v = iou[j, candidates].double()
        thresh = v.mean() + (v.std() if len(v) > 1 else 0.0)
        for c in candidates:
            cx, cy = centres[c].tolist()
            if iou[j, c].double() >= thresh and g[0] < cx < g[2] and g[1] < cy < g[3]:
                claims.setdefault(c, []).append(j)
    labels = torch.full((r,), K, dtype=torch.long)
    matched = torch.full((r,), -1, dtype=torch.long)
    for c, js in claims.items():
        best = js[0]
        for j in js[1:]:
            if iou[j, c] > iou[best, c]:
                best = j
        labels[c], matched[c] = gt_labels[best], best
    for q in [] if ignore_boxes is None else ignore_boxes:
        for c in range(r):
            a = anchors[c]
            iw = max(0.0, min(a[2], q[2]) - max(a[0], q[0]))
            ih = max(0.0, min(a[3], q[3]) - max(a[1], q[1]))
            if iw * ih / ((a[2] - a[0]) * (a[3] - a[1])) >= ignore_ioa_thresh and matched[c] < 0:
                labels[c] = -1
    return labels, matched


def _row(xs, size=10.0, cy=5.0):
    """size x size anchors centred at (x, cy) for x in xs."""
    return torch.tensor([[x - size / 2, cy - size / 2, x + size / 2, cy + size / 2] for x in xs])


def _check(anchors, gts, gt_labels, levels, topk, ignore=None):
    """ATSS's labels and matched indices; asserts they equal the reference's."""
    labels, idx = ATSS(topk=topk)(anchors, gts, gt_labels, K, ignore, num_anchors_per_level=levels)
    ref = reference_atss(anchors, gts, gt_labels, levels, topk, ignore)
    assert torch.equal(labels, ref[0]) and torch.equal(idx, ref[1])
    return labels.tolist(), idx.tolist()


def test_ties_in_distance_go_to_the_lower_index_and_std_decides():
    anchors = _row([0, 10, 20, 30, 40])  # one level; the gt's centre x=15 is 5 from x=10 and x=20
    gt, lab = torch.tensor([[8.0, 0, 22, 10]]), torch.tensor([2])  # IoU 7/17 with both
    # topk 1: the tie goes to x=10; a single candidate: threshold = its IoU, and its centre is inside
    assert _check(anchors, gt, lab, [5], 1) == ([K, 2, K, K, K], [-1, 0, -1, -1, -1])
    # topk 2: both at 7/17, std 0: both reach the threshold
    assert _check(anchors, gt, lab, [5], 2) == ([K, 2, 2, K, K], [-1, 0, 0, -1, -1])
    # topk 3: x=0 and x=30 tie at 15, x=0 joins with IoU 0: threshold 7/17 * (2/3 + 1/sqrt(3)) > 7/17
    assert _check(anchors, gt, lab, [5], 3) == ([K] * 5, [-1] * 5)


def test_gt_smaller_than_every_anchor_on_two_levels():
    # level 0: 16 px anchors every 8 px; level 1: 32 px anchors every 16 px; all centred at y=8
    anchors = torch.cat([_row([0, 8, 16, 24, 32], 16, 8), _row([0, 16, 32], 32, 8)])
    levels = [5, 3]
    # a 4 px gt centred on (8, 8). Candidates (topk 2): level 0 x=8 (IoU 1/16), x=0 (tie with
    # x=16 at distance 8; IoU 8/264); level 1 x=0, x=16 (IoU 1/64 each). Threshold 0.0309 +
    # 0.0221 = 0.053: only level 0's x=8, whose centre is inside the gt
    gt = torch.tensor([[6.0, 6, 10, 10]])
    assert _check(anchors, gt, torch.tensor([1]), levels, 2) == ([K, 1, K, K, K, K, K, K], [-1, 0] + [-1] * 6)
    # the same gt moved off the grid: no anchor centre inside it, so no positives (documented);
    # max_iou's low-quality matches still give it its two best anchors (level 0's x=8 and x=16, tied)
    gt = torch.tensor([[9.0, 9, 13, 13]])
    assert _check(anchors, gt, torch.tensor([1]), levels, 2) == ([K] * 8, [-1] * 8)
    assert Matcher()(anchors, gt, torch.tensor([1]), K)[0].tolist() == [K, 1, 1, K, K, K, K, K]


def test_gt_on_the_image_border_does_not_own_anchors_centred_on_its_edges():
    anchors = _row([0, 10, 30])  # centres x = 0 and 10 lie on the left and right edges of [0, 10]
    # both candidates (topk 2) have IoU 1/3, so std 0 and both reach the threshold, but a centre
    # on the gt's edge is not inside it
    assert _check(anchors, torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0]), [3], 2) == ([K] * 3, [-1] * 3)
    # half a pixel wider on each side: both centres are inside (IoU 55/155 each)
    assert _check(anchors, torch.tensor([[-0.5, 0, 10.5, 10]]), torch.tensor([0]), [3], 2) == ([0, 0, K], [0, 0, -1])


def test_an_anchor_claimed_by_two_gts_goes_to_the_higher_iou_then_the_first():
    anchors = _row([0, 10, 20, 30])
    # both gts' nearest anchor is x=10 (topk 1), its centre inside both; IoU 9/13 vs 9/17
    gts = torch.tensor([[2.0, 0, 14, 10], [6, 0, 22, 10]])
    assert _check(anchors, gts, torch.tensor([0, 1]), [4], 1) == ([K, 0, K, K], [-1, 0, -1, -1])
    assert _check(anchors, gts.flip(0), torch.tensor([1, 0]), [4], 1) == ([K, 0, K, K], [-1, 1, -1, -1])
    # equal IoUs (2/3 each): the first gt
    gts = torch.tensor([[3.0, 0, 13, 10], [7, 0, 17, 10]])
    assert _check(anchors, gts, torch.tensor([0, 1]), [4], 1) == ([K, 0, K, K], [-1, 0, -1, -1])
    assert _check(anchors, gts.flip(0), torch.tensor([0, 1]), [4], 1) == ([K, 0, K, K], [-1, 0, -1, -1])


def test_no_gts_all_background_and_crowd_regions_ignore_what_is_not_foreground():
    anchors = _row([0, 10, 20, 30])
    none = torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
    assert _check(anchors, *none, [4], 9) == ([K] * 4, [-1] * 4)
    crowd = torch.tensor([[19.0, 0, 100, 10]])  # covers 60% of x=20's anchor and all of x=30's
    assert _check(anchors, *none, [4], 9, crowd) == ([K, K, -1, -1], [-1] * 4)
    # a gt at x=10 (topk 1): its anchor stays foreground under a crowd box covering it
    crowd = torch.tensor([[0.0, 0, 40, 10]])
    assert _check(anchors, torch.tensor([[5.0, 0, 15, 10]]), torch.tensor([2]), [4], 1, crowd) == (
        [-1, 2, -1, -1], [-1, 0, -1, -1])


def _scene(seed, num_gt, hw=(128, 160)):
    g = torch.Generator().manual_seed(seed)
    h, w = hw
    wh = torch.rand(num_gt, 2, generator=g) ** 2 * torch.tensor([w * 0.8, h * 0.8]) + 2  # many small boxes
    xy = torch.rand(num_gt, 2, generator=g) * torch.tensor([w, h]) - wh / 2
    boxes = torch.cat([xy, xy + wh], 1)
    boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([w, h, w, h], dtype=torch.float32))  # some on the border
    boxes = boxes[((boxes[:, 2:] - boxes[:, :2]) > 1).all(1)]
    return boxes, torch.randint(0, K, (len(boxes),), generator=g)


FEATS = [(16, 20), (8, 10), (4, 5), (2, 3), (1, 2)]  # a 128 x 160 input, strides 8 .. 128


@pytest.mark.parametrize("seed", range(6))
def test_identical_to_the_reference_on_random_scenes(seed):
    gen = AnchorGenerator(sizes=(16, 32, 64, 128, 256))
    anchors = gen.grid_anchors(FEATS)
    levels = gen.num_anchors_per_level(FEATS)
    boxes, labels = _scene(seed, [1, 3, 8, 20, 40, 60][seed])
    crowd = [torch.zeros(0, 4), torch.tensor([[0.0, 0, 50, 40]])][seed % 2]
    topk = [9, 9, 1, 4, 9, 20][seed]
    out = ATSS(topk=topk)(anchors, boxes, labels, K, crowd, levels)
    ref = reference_atss(anchors, boxes, labels, levels, topk, crowd)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    assert (out[0] < K).sum() > 0  # the scenes have positives


def test_batch_equals_per_image_and_chunking_changes_nothing(monkeypatch):
    gen = AnchorGenerator(sizes=(16, 32, 64, 128, 256))
    anchors, levels = gen.grid_anchors(FEATS), gen.num_anchors_per_level(FEATS)
    scenes = [_scene(s, n) for s, n in [(0, 5), (1, 0), (2, 30)]]
    ignores = [torch.tensor([[10.0, 10, 60, 60]]), torch.tensor([[0.0, 0, 128, 20]]), torch.zeros(0, 4)]
    a = ATSS()
    single = [a(anchors, b, lab, K, q, levels) for (b, lab), q in zip(scenes, ignores)]
    monkeypatch.setattr(atss_mod, "_BLOCK_ELEMS", 1)  # one gt per distance block
    labels, idx = a.match_batch(anchors, [s[0] for s in scenes], [s[1] for s in scenes], K, ignores, levels)
    for i, (lab, ix) in enumerate(single):
        assert torch.equal(labels[i], lab) and torch.equal(idx[i], ix)
    assert (labels[1] == -1).any() and (labels[1][labels[1] != -1] == K).all()  # empty image: crowd only
    assert ((labels[2] >= 0) & (labels[2] < K)).any()


def test_a_level_with_fewer_anchors_than_topk_gives_all_of_them():
    anchors = torch.cat([_row([0, 10, 20, 30]), _row([15], 30, 5)])  # level 1 has a single anchor
    gt = torch.tensor([[0.0, 0, 30, 10]])
    labels, idx = _check(anchors, gt, torch.tensor([0]), [4, 1], 9)
    assert len(labels) == 5


def test_bad_input_is_reported():
    anchors = _row([0, 10, 20])
    gt, lab = torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([0])
    with pytest.raises(ValueError, match=r"num_anchors_per_level=\[2, 2\] sums to 4; .*R=3"):
        ATSS()(anchors, gt, lab, K, num_anchors_per_level=[2, 2])
    with pytest.raises(ValueError, match=r"num_anchors_per_level=\[2, 2\] sums to 4; .*R=3"):
        Matcher()(anchors, gt, lab, K, num_anchors_per_level=[2, 2])
    with pytest.raises(ValueError, match="ATSS: num_anchors_per_level is required"):
        ATSS()(anchors, gt, lab, K)
    for topk in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=rf"ATSS: topk={topk!r}; expected an integer >= 1"):
            ATSS(topk=topk)
    with pytest.raises(ValueError, match=r"expected Tensor\[M, 4\] and Tensor\[M\]"):
        ATSS()(anchors, torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), K, num_anchors_per_level=[3])


def test_docstring_example():
    assert doctest.testmod(atss_mod).failed == 0
