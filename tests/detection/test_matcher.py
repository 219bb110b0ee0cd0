import pytest
import torch
from torchvision.models.detection import _utils as tv_utils
from torchvision.ops import box_iou

import detection.matcher as matcher_mod
from detection.anchors import AnchorGenerator
from detection.matcher import Matcher

K = 3  # classes; background label is K


def _box(cx, cy, w, h):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def test_thresholds_are_inclusive_at_fg_and_exclusive_at_bg():
    gt = torch.tensor([[0.0, 0, 10, 10]])
    # IoU with gt: 1.0, 0.5 (exactly), 0.4 (exactly), 0.3 (< 0.4)
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 10, 25], [0, 0, 10, 100 / 3]])
    assert torch.allclose(box_iou(anchors, gt)[:, 0], torch.tensor([1.0, 0.5, 0.4, 0.3]))
    labels, idx = Matcher(allow_low_quality_matches=False)(anchors, gt, torch.tensor([2]), K)
    assert labels.tolist() == [2, 2, -1, K]
    assert idx.tolist() == [0, 0, -1, -1]


def test_each_anchor_takes_its_best_gt():
    gts = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10]])
    anchors = torch.tensor([[1.0, 0, 11, 10], [19, 0, 29, 10], [0, 0, 30, 10]])
    labels, idx = Matcher(allow_low_quality_matches=False)(anchors, gts, torch.tensor([0, 1]), K)
    assert labels.tolist() == [0, 1, K]  # third anchor: IoU 1/3 with both -> background
    assert idx.tolist() == [0, 1, -1]


def test_low_quality_match_keeps_ties_and_uses_the_anchors_best_gt():
    gt = torch.tensor([[0.0, 0, 10, 10]])
    # both anchors have IoU 0.25 with the gt (its best): both become foreground
    anchors = torch.tensor([[0.0, 0, 10, 40], [0, 0, 40, 10], [0, 0, 10, 50]])
    labels, idx = Matcher()(anchors, gt, torch.tensor([1]), K)
    assert labels.tolist() == [1, 1, K]
    assert idx.tolist() == [0, 0, -1]
    labels, _ = Matcher(allow_low_quality_matches=False)(anchors, gt, torch.tensor([1]), K)
    assert labels.tolist() == [K, K, K]


def test_gt_with_zero_best_iou_creates_no_positives():
    """torchvision turns every anchor into a positive here; we keep them background."""
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10]])
    gt = torch.tensor([[100.0, 100, 110, 110]])
    labels, idx = Matcher()(anchors, gt, torch.tensor([0]), K)
    assert labels.tolist() == [K, K]
    assert idx.tolist() == [-1, -1]
    tv = tv_utils.Matcher(0.5, 0.4, True)(box_iou(gt, anchors))
    assert tv.tolist() == [0, 0]  # the peer's behaviour we avoid


def test_min_pos_iou_filters_weak_low_quality_matches():
    gt = torch.tensor([[0.0, 0, 10, 10]])
    anchors = torch.tensor([[0.0, 0, 10, 40]])  # IoU 0.25
    assert Matcher(min_pos_iou=0.3)(anchors, gt, torch.tensor([0]), K)[0].tolist() == [K]
    assert Matcher(min_pos_iou=0.2)(anchors, gt, torch.tensor([0]), K)[0].tolist() == [0]


def test_no_gt_all_background_but_ignore_regions_apply():
    anchors = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]])
    labels, idx = Matcher()(anchors, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), K)
    assert labels.tolist() == [K, K] and idx.tolist() == [-1, -1]
    ign = torch.tensor([[45.0, 45, 100, 100]])
    labels, _ = Matcher()(anchors, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), K, ign)
    assert labels.tolist() == [K, -1]


def test_ignore_regions_use_intersection_over_anchor_area():
    # ignore region covers half (0.5) / 0.4 of an anchor; a small anchor fully inside a big
    # crowd box has IoA 1 even though its IoU with the crowd box is tiny
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [100, 100, 104, 104]])
    ign = torch.tensor([[5.0, 0, 50, 10], [100, 100, 300, 300]])
    labels, _ = Matcher()(anchors, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), K, ign)
    assert labels.tolist() == [-1, -1, -1]
    ign = torch.tensor([[6.0, 0, 50, 10]])  # IoA 0.4 < 0.5
    labels, _ = Matcher()(anchors[:1], torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), K, ign)
    assert labels.tolist() == [K]


def test_ignore_regions_never_override_foreground():
    gt = torch.tensor([[0.0, 0, 10, 10]])
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 20, 10, 30]])
    ign = torch.tensor([[0.0, 0, 10, 40]])
    labels, idx = Matcher()(anchors, gt, torch.tensor([2]), K, ign)
    assert labels.tolist() == [2, -1]
    assert idx.tolist() == [0, -1]


def _scene(seed, num_gt, anchors, hw=(256, 320)):
    g = torch.Generator().manual_seed(seed)
    h, w = hw
    wh = torch.rand(num_gt, 2, generator=g) * torch.tensor([w / 2, h / 2]) + 6
    xy = torch.rand(num_gt, 2, generator=g) * (torch.tensor([w, h]) - wh)
    boxes = torch.cat([xy, xy + wh], 1)
    keep = box_iou(boxes, anchors).max(dim=1).values > 0  # gts that overlap something
    return boxes[keep], torch.randint(0, K, (int(keep.sum()),), generator=g)


@pytest.mark.parametrize("seed", range(6))
def test_identical_to_torchvision_matcher_on_random_scenes(seed):
    feats = [(32, 40), (16, 20), (8, 10), (4, 5), (2, 3)]
    anchors = AnchorGenerator().grid_anchors(feats)
    boxes, gl = _scene(seed, [1, 3, 10, 40, 100, 200][seed], anchors)
    labels, idx = Matcher()(anchors, boxes, gl, K)
    tv = tv_utils.Matcher(0.5, 0.4, True)(box_iou(boxes, anchors))
    fg = tv >= 0
    assert torch.equal(idx[fg], tv[fg])
    assert torch.equal(labels[fg], gl[tv[fg]])
    assert torch.equal(labels == K, tv == -1)
    assert torch.equal(labels == -1, tv == -2)
    assert torch.equal(idx == -1, ~fg)


def test_batch_equals_per_image_and_chunking_changes_nothing(monkeypatch):
    anchors = AnchorGenerator().grid_anchors([(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)])
    scenes = [_scene(s, n, anchors, (128, 128)) for s, n in [(0, 5), (1, 0), (2, 30)]]
    ignores = [torch.tensor([[10.0, 10, 60, 60]]), torch.tensor([[0.0, 0, 128, 20]]), torch.zeros(0, 4)]
    m = Matcher()
    single = [m(anchors, b, lab, K, q) for (b, lab), q in zip(scenes, ignores)]
    monkeypatch.setattr(matcher_mod, "_BLOCK_ELEMS", 1)  # chunks of the 1024-anchor minimum
    labels, idx = m.match_batch(anchors, [s[0] for s in scenes], [s[1] for s in scenes], K, ignores)
    for i, (lab, ix) in enumerate(single):
        assert torch.equal(labels[i], lab) and torch.equal(idx[i], ix)
    assert (labels[1] != -1).sum() < len(anchors)  # the ignore region applied to the empty image
    assert (labels[1][labels[1] != -1] == K).all()


def test_bad_gt_shapes_are_reported():
    with pytest.raises(ValueError, match="expected Tensor\\[M, 4\\]"):
        Matcher()(torch.zeros(3, 4), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), K)
    with pytest.raises(ValueError, match="bg_iou_thresh"):
        Matcher(fg_iou_thresh=0.4, bg_iou_thresh=0.5)


@pytest.mark.parametrize("overrides,expected", [
    ([], [0, 0, -1, -1, K, 1]),  # the paper's: ignore band [0.4, 0.5), gt 1's best anchor (IoU 0.25) claimed
    (["assigner.bg_iou_thresh=0.5"], [0, 0, K, K, K, 1]),  # no ignore band
    (["assigner.allow_low_quality_matches=false"], [0, 0, -1, -1, K, K]),  # gt 1 has no positive
    (["assigner.min_pos_iou=0.3"], [0, 0, -1, -1, K, K]),  # its best IoU 0.25 is too weak
    (["assigner.min_pos_iou=0.2"], [0, 0, -1, -1, K, 1]),
    (["assigner.bg_iou_thresh=0.5", "assigner.allow_low_quality_matches=false"], [0, 0, K, K, K, K]),
    (["assigner.fg_iou_thresh=0.4", "assigner.bg_iou_thresh=0.4"], [0, 0, 0, 0, K, 1]),
])
def test_max_iou_switches_from_the_config_against_hand_computed_labels(overrides, expected):
    from hydra.utils import instantiate

    from tests.conftest import compose_config

    gts = torch.tensor([[0.0, 0, 10, 10], [100, 0, 110, 10]])
    # IoUs with gt 0: 1, 0.5, 0.45, 0.4, 0.3; the last anchor has IoU 0.25 with gt 1 (0 with gt 0)
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 10, 100 / 4.5], [0, 0, 10, 25],
                            [0, 0, 10, 100 / 3], [100, 0, 110, 40]])
    assert torch.allclose(box_iou(anchors, gts).amax(1), torch.tensor([1.0, 0.5, 0.45, 0.4, 0.3, 0.25]))
    m = instantiate(compose_config(overrides).assigner)
    assert isinstance(m, Matcher)
    labels, idx = m(anchors, gts, torch.tensor([0, 1]), K, num_anchors_per_level=[4, 2])
    assert labels.tolist() == expected
    fg_gt = [0, 0, 0, 0, 0, 1]  # the gt each anchor matches where it is foreground
    assert idx.tolist() == [g if 0 <= lab < K else -1 for g, lab in zip(fg_gt, expected)]
