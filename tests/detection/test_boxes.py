import math

import torch
from torchvision.models.detection import _utils as tv_utils
from torchvision.ops import box_iou

from detection.boxes import BoxCoder, paired_iou


def _random_boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 300
    wh = torch.rand(n, 2, generator=g) * 200 + 4
    return torch.cat([xy, xy + wh], 1)


def test_hand_computed_encode():
    coder = BoxCoder()
    anchors = torch.tensor([[0.0, 0, 10, 20]])
    boxes = torch.tensor([[5.0, 0, 25, 20]])  # centre moves +10 in x; width doubles
    d = coder.encode(anchors, boxes)
    assert torch.allclose(d, torch.tensor([[1.0, 0.0, math.log(2), 0.0]]))


def test_round_trip_and_weights():
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        coder = BoxCoder(weights)
        a, b = _random_boxes(500, 0), _random_boxes(500, 1)
        assert torch.allclose(coder.decode(a, coder.encode(a, b)), b, atol=1e-3)


def test_equals_torchvision_box_coder():
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        ours, tv = BoxCoder(weights), tv_utils.BoxCoder(weights)
        a, b = _random_boxes(300, 2), _random_boxes(300, 3)
        assert torch.allclose(ours.encode(a, b), tv.encode_single(b, a), atol=1e-6)
        d = torch.randn(300, 4) * 2
        assert torch.allclose(ours.decode(a, d), tv.decode_single(d, a), atol=1e-3)


def test_decode_clamps_size_and_upcasts_half():
    coder = BoxCoder()
    a = torch.tensor([[0.0, 0, 16, 16]])
    out = coder.decode(a, torch.tensor([[0.0, 0, 100.0, 100.0]]))
    assert torch.isfinite(out).all()
    assert torch.allclose(out[0, 2] - out[0, 0], torch.tensor(1000.0))
    half = coder.decode(a, torch.tensor([[0.5, 0.5, 1.0, 1.0]], dtype=torch.float16))
    assert half.dtype == torch.float32


def test_paired_iou_is_the_diagonal_of_torchvisions_box_iou():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 50
    a = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g) * 30], 1)
    b = a + torch.randn(50, 4, generator=g) * 5
    b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2] + 0.5)
    torch.testing.assert_close(paired_iou(a, b), box_iou(a, b).diagonal())
    assert paired_iou(torch.tensor([1.0, 1, 1, 1]), torch.tensor([2.0, 2, 2, 2])).item() == 0  # empty: 0, not NaN
    assert paired_iou(a[:3], a[:3]).eq(1).all()
