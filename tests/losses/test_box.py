import pytest
import torch

from detection.boxes import BoxCoder
from losses.box import BoxLoss

ANCHOR = torch.tensor([[0.0, 0.0, 10.0, 10.0]])


def test_smooth_l1_hand_computed():
    # Target deltas 0 (gt == anchor). beta 0.1: 0.5 d^2 / beta below beta, |d| - beta / 2 above:
    # 0.05 -> 0.0125, -0.5 -> 0.45, 0 -> 0, 0.2 -> 0.15.
    pred = torch.tensor([[0.05, -0.5, 0.0, 0.2]], requires_grad=True)
    loss = BoxLoss("smooth_l1", beta=0.1)(pred, ANCHOR, ANCHOR, BoxCoder())
    torch.testing.assert_close(loss, torch.tensor([0.6125]))
    loss.sum().backward()
    torch.testing.assert_close(pred.grad, torch.tensor([[0.5, -1.0, 0.0, 1.0]]))


def test_l1_against_encoded_targets():
    # gt shifted by 1 px on a 10 px anchor: target deltas (0.1, 0.1, 0, 0); weights (10, 10, 5, 5)
    # scale them to (1, 1, 0, 0).
    gt = torch.tensor([[1.0, 1.0, 11.0, 11.0]])
    pred = torch.zeros(1, 4)
    torch.testing.assert_close(BoxLoss("l1")(pred, ANCHOR, gt, BoxCoder()), torch.tensor([0.2]))
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    torch.testing.assert_close(BoxLoss("l1")(pred, ANCHOR, gt, coder), torch.tensor([2.0]))
    assert BoxLoss("smooth_l1", beta=0.0)(pred, ANCHOR, gt, BoxCoder()).item() == pytest.approx(0.2)


def test_giou_on_decoded_boxes():
    # Zero deltas decode to the anchor (0, 0, 10, 10); gt (0, 0, 10, 20): IoU 1/2 and the
    # enclosing box is the union, so GIoU = 1/2 and the loss 1/2. Disjoint boxes: the
    # enclosing box (0, 0, 30, 10) has area 300, union 200: GIoU = 0 - 100/300.
    gt = torch.tensor([[0.0, 0.0, 10.0, 20.0], [20.0, 0.0, 30.0, 10.0]])
    anchors = ANCHOR.repeat(2, 1)
    pred = torch.zeros(2, 4, requires_grad=True)
    loss = BoxLoss("giou")(pred, anchors, gt, BoxCoder())
    torch.testing.assert_close(loss, torch.tensor([0.5, 1 + 1 / 3]))
    loss.sum().backward()
    assert pred.grad.abs().sum() > 0
    perfect = BoxCoder().encode(anchors, gt)
    torch.testing.assert_close(BoxLoss("giou")(perfect, anchors, gt, BoxCoder()), torch.zeros(2),
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["smooth_l1", "l1", "giou"])
def test_half_and_empty_inputs(kind):
    gt = torch.tensor([[1.0, 2.0, 12.0, 9.0]])
    pred = torch.tensor([[0.1, -0.2, 0.05, 0.3]])
    loss = BoxLoss(kind)(pred.half(), ANCHOR, gt, BoxCoder())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, BoxLoss(kind)(pred.half().float(), ANCHOR, gt, BoxCoder()))
    empty = BoxLoss(kind)(torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0, 4), BoxCoder())
    assert empty.shape == (0,)


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        BoxLoss("iou")
    with pytest.raises(ValueError, match="beta"):
        BoxLoss(beta=-1)
    with pytest.raises(ValueError, match=r"gt_boxes must be a Tensor\[P, 4\]"):
        BoxLoss()(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 5), BoxCoder())
    with pytest.raises(ValueError, match="same number of rows"):
        BoxLoss()(torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(2, 4), BoxCoder())
    assert repr(BoxLoss()) == "BoxLoss(kind='smooth_l1', beta=0.1)"
