import math
from types import SimpleNamespace

import pytest
import torch
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.ssd import SSD
from torchvision.ops import nms

from losses.focal import sigmoid_focal_loss
from losses.ohem import OHEMLoss, _nms_in_order, hard_examples
from losses.softmax_bg import softmax_bg_loss
from tests.losses.conftest import loss_and_grad


def test_docstring_example():
    loss = torch.tensor([[0.1, 0.9, 0.5, 0.7]])
    labels = torch.tensor([[1, 1, 0, -1]])  # K = 1: bg, bg, fg, ignore
    assert hard_examples(loss, labels, 1, batch=2).tolist() == [[False, True, True, False]]
    assert hard_examples(loss, labels, 1, batch=2, neg_per_pos=1).tolist() == [[False, True, True, False]]
    assert not hard_examples(loss, torch.tensor([[1, 1, 1, -1]]), 1, batch=2, neg_per_pos=1).any()
    # without a ratio the top 2 are both background
    assert hard_examples(loss, torch.tensor([[1, 1, 1, -1]]), 1, batch=2).tolist() == [[False, True, True, False]]


def test_top_b_by_loss_per_image():
    loss = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.3], [5.0, 4.0, 3.0, 2.0, 1.0]])
    labels = torch.tensor([[1, 1, 1, 1, 0], [-1, 1, 0, 1, 1]])
    keep = hard_examples(loss, labels, 1, batch=3)
    assert keep.tolist() == [[False, True, True, True, False], [False, True, True, True, False]]


def test_nms_suppresses_the_lower_loss_duplicate_within_a_label_group():
    boxes = torch.tensor([[[0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60], [0, 0, 10, 10.0]]])  # IoU(0, 1) = .9
    loss = torch.tensor([[0.9, 0.8, 0.1, 0.05]])
    labels = torch.tensor([[1, 1, 1, 0]])  # three background anchors, then a foreground one on anchor 0's box
    assert hard_examples(loss, labels, 1, 3, boxes, nms_thresh=0.7).tolist() == [[True, False, True, True]]
    assert hard_examples(loss, labels, 1, 3, boxes, nms_thresh=0.95).tolist() == [[True, True, True, False]]
    assert hard_examples(loss, labels, 1, 3).tolist() == [[True, True, True, False]]


def test_nms_a_chunk_at_a_time_equals_nms_over_all():
    g = torch.Generator().manual_seed(0)
    R = 3000
    xy = torch.rand(R, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 20 + torch.rand(R, 2, generator=g) * 30], 1)
    order = torch.rand(R, generator=g).argsort(descending=True)  # priority order of the anchors
    full = nms(boxes[order], torch.arange(R, 0, -1, dtype=torch.float32), 0.5)  # NMS of everything, in order
    for limit in (0, 1, 7, 64, 500, 5000):
        assert torch.equal(_nms_in_order(order, boxes, limit, 0.5), full[:limit])


def _reference_hard_examples(loss, labels, K, batch, boxes, nms_thresh, neg_per_pos):
    """OHEM per image the plain way: each label group sorted, full NMS over all of it, then
    the top B of both groups (or the 1:r rule)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    for i in range(len(labels)):
        groups = []
        for mask in ((labels[i] >= 0) & (labels[i] < K), labels[i] == K):
            idx = mask.nonzero().squeeze(1)
            idx = idx[loss[i, idx].argsort(descending=True, stable=True)]
            if nms_thresh is not None and len(idx):
                idx = idx[nms(boxes[i, idx], torch.arange(len(idx), 0, -1, dtype=torch.float32), nms_thresh)]
            groups.append(idx)
        fg, bg = groups
        if neg_per_pos is None:
            both = torch.cat([fg, bg]).sort().values  # equal losses: lower anchor index first
            chosen = both[loss[i, both].argsort(descending=True, stable=True)[:batch]]
        else:
            fg = fg[:int(batch // (1 + neg_per_pos))]
            chosen = torch.cat([fg, bg[:math.floor(neg_per_pos * len(fg))]])
        keep[i, chosen] = True
    return keep


def test_hard_examples_equal_the_plain_per_image_selection():
    g = torch.Generator().manual_seed(2)
    K, N, R = 5, 3, 1500
    loss = torch.rand(N, R, generator=g).round(decimals=2)  # ties: ranked by anchor index
    labels = torch.full((N, R), K)
    labels[torch.rand(N, R, generator=g) < 0.05] = 2
    labels[torch.rand(N, R, generator=g) < 0.1] = -1
    labels[2][labels[2] < K] = K  # an image without foreground
    xy = torch.rand(N, R, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 10 + torch.rand(N, R, 2, generator=g) * 40], 2)
    for batch in (1, 40, 256, 1500):
        for nms_thresh in (None, 0.5, 0.7):
            for neg_per_pos in (None, 3, 0.5):
                if neg_per_pos is not None and batch // (1 + neg_per_pos) < 1:
                    continue
                ours = hard_examples(loss, labels, K, batch, boxes, nms_thresh, neg_per_pos)
                ref = _reference_hard_examples(loss, labels, K, batch, boxes, nms_thresh, neg_per_pos)
                assert torch.equal(ours, ref), (batch, nms_thresh, neg_per_pos)


def _ssd_reference(logits, labels, K):
    """torchvision's SSD loss (hard negative mining 1:3) on our logits and labels, times the
    foreground count: the sum of the kept anchors' softmax cross-entropy."""
    N, R, _ = logits.shape
    ssd_logits = torch.cat([logits[..., K:], logits[..., :K]], -1)  # SSD: background is class 0
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0]]).expand(R, 4)
    targets, matched = [], []
    for i in range(N):
        fg = (labels[i] < K).nonzero().squeeze(1)
        targets.append({"boxes": anchors[fg], "labels": labels[i, fg] + 1})
        m = torch.full((R,), -1)
        m[fg] = torch.arange(len(fg))
        matched.append(m)
    fake_ssd = SimpleNamespace(box_coder=det_utils.BoxCoder((10.0, 10.0, 5.0, 5.0)), neg_to_pos_ratio=3)
    out = SSD.compute_loss(fake_ssd, targets, {"cls_logits": ssd_logits, "bbox_regression": torch.zeros(N, R, 4)},
                           [anchors] * N, matched)
    return out["classification"] * max(1, int((labels < K).sum()))


def test_one_to_three_equals_torchvisions_ssd_hard_negative_mining():
    g = torch.Generator().manual_seed(1)
    K, N, R = 4, 3, 300
    logits = torch.randn(N, R, K + 1, generator=g) * 2
    labels = torch.full((N, R), K)
    labels[0, torch.randperm(R, generator=g)[:20]] = torch.randint(0, K, (20,), generator=g)
    labels[1, torch.randperm(R, generator=g)[:3]] = 1
    # image 2: no foreground, so SSD keeps none of its background either
    ours = OHEMLoss(base="softmax", batch_per_image=R, nms_thresh=None, neg_per_pos=3)(logits, labels)
    torch.testing.assert_close(ours.sum(), _ssd_reference(logits, labels, K))
    assert (ours[2] == 0).all() and ((ours > 0).sum(1) == torch.tensor([80, 12, 0])).all()


def test_one_to_three_caps_the_foreground_at_b_over_four():
    loss = torch.arange(20.0).flip(0).unsqueeze(0)  # anchor 0 hardest
    labels = torch.tensor([[0] * 10 + [1] * 10])  # 10 fg, 10 bg, K = 1
    keep = hard_examples(loss, labels, 1, batch=8, neg_per_pos=3)
    assert keep[0, :10].tolist() == [True, True] + [False] * 8  # 8 // 4 = 2 hardest fg
    assert keep[0, 10:].tolist() == [True] * 6 + [False] * 4  # 3 x 2 hardest bg


@pytest.mark.parametrize("base", ["softmax", "sigmoid"])
def test_loss_and_gradient_are_the_base_ones_on_the_kept_anchors(base):
    g = torch.Generator().manual_seed(2)
    K, N, R = 3, 2, 200
    C = K + (base == "softmax")
    x = torch.randn(N, R, C, generator=g) * 3
    labels = torch.randint(-1, K + 1, (N, R), generator=g)
    xy = torch.rand(N, R, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 15], -1)
    ohem = OHEMLoss(base=base, batch_per_image=32, nms_thresh=0.5)
    base_fn = softmax_bg_loss if base == "softmax" else (lambda x, y: sigmoid_focal_loss(x, y, 0.0, None))
    loss, grad = loss_and_grad(lambda x, y: ohem(x, y, boxes=boxes), x, labels)
    ref_loss, ref_grad = loss_and_grad(base_fn, x, labels)
    keep = hard_examples(ref_loss, labels, K, 32, boxes, 0.5)
    assert ((keep.sum(1) > 0) & (keep.sum(1) <= 32)).all()
    torch.testing.assert_close(loss, ref_loss * keep)
    torch.testing.assert_close(grad, ref_grad * keep.unsqueeze(-1))


@pytest.mark.parametrize("base", ["softmax", "sigmoid"])
def test_saturated_logits_are_finite(base):
    K = 3
    x = torch.tensor([[[200.0, -200.0, 200.0, -200.0][: K + (base == "softmax")]] * 4])
    x[0, 1] *= -1
    labels = torch.tensor([[0, K, -1, 1]])
    loss, grad = loss_and_grad(OHEMLoss(base=base, batch_per_image=2, nms_thresh=None), x, labels)
    assert loss.isfinite().all() and grad.isfinite().all()
    assert loss[0, 2] == 0 and (grad[0, 2] == 0).all()


def test_bad_arguments_name_the_key():
    with pytest.raises(ValueError, match="batch_per_image=256 is larger than the 100 anchors"):
        OHEMLoss(nms_thresh=None)(torch.zeros(1, 100, 3), torch.zeros(1, 100, dtype=torch.long))
    with pytest.raises(ValueError, match="neg_per_pos=0 leaves no negatives"):
        OHEMLoss(neg_per_pos=0)
    with pytest.raises(ValueError, match="leaves no foreground"):
        OHEMLoss(batch_per_image=3, neg_per_pos=3)
    with pytest.raises(ValueError, match="batch_per_image must be an int >= 1"):
        OHEMLoss(batch_per_image=0)
    with pytest.raises(ValueError, match="nms_thresh"):
        OHEMLoss(nms_thresh=1.5)
    with pytest.raises(ValueError, match="base must be one of softmax, sigmoid"):
        OHEMLoss(base="focal")
    with pytest.raises(ValueError, match="nms_boxes"):
        OHEMLoss(nms_boxes="gt")
    with pytest.raises(ValueError, match=r"needs boxes=Tensor\[N, R, 4\]"):
        OHEMLoss(batch_per_image=4)(torch.zeros(1, 10, 3), torch.zeros(1, 10, dtype=torch.long))


def test_boxes_requested_only_with_nms():
    assert OHEMLoss().extras == {"boxes": "predicted"}
    assert OHEMLoss(nms_boxes="anchors").extras == {"boxes": "anchors"}
    assert OHEMLoss(nms_thresh=None).extras == {}
