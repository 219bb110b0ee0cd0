import pytest
import torch
from torch import nn

from detection.head import RetinaHead

SIZES = [(6, 5), (3, 3), (2, 1)]  # (h, w) per level, deliberately not square


@pytest.mark.parametrize("num_logits", [3, 4])  # K sigmoid logits, K+1 softmax logits (K = 3)
@pytest.mark.parametrize("norm", [None, "gn"])
def test_shapes(num_logits, norm):
    head = RetinaHead(in_channels=16, num_anchors=9, num_logits=num_logits, num_convs=2, width=32, norm=norm)
    assert head.num_anchors == 9 and head.num_logits == num_logits
    feats = [torch.randn(2, 16, h, w) for h, w in SIZES]
    cls, box = head(feats)
    r = 9 * sum(h * w for h, w in SIZES)
    assert cls.shape == (2, r, num_logits)
    assert box.shape == (2, r, 4)


def _code(n, level, y, x):
    return n * 1000 + level * 10000 + y * 100 + x  # distinct integers, exact in float32


@pytest.mark.parametrize("num_logits", [3, 4])
def test_flat_index_order(num_logits):
    """Output channel a*C + c at level l, location (y, x) lands at offset_l + (y*w + x)*A + a."""
    a_, c_ = 3, num_logits
    head = RetinaHead(in_channels=1, num_anchors=a_, num_logits=c_, num_convs=0, prior_init=False)
    # Each output channel copies the input (centre tap) and adds 1e6 * its channel index, so
    # every output value names its level, location, image and channel.
    with torch.no_grad():
        for conv in (head.cls_subnet[-1], head.box_subnet[-1]):
            conv.weight.zero_()
            conv.weight[:, 0, 1, 1] = 1.0
            conv.bias.copy_(torch.arange(conv.out_channels, dtype=torch.float32) * 1e6)
    feats = []
    for level, (h, w) in enumerate(SIZES):
        f = torch.empty(2, 1, h, w)
        for n in range(2):
            for y in range(h):
                for x in range(w):
                    f[n, 0, y, x] = _code(n, level, y, x)
        feats.append(f)
    cls, box = head(feats)

    offset = 0
    for level, (h, w) in enumerate(SIZES):
        for y in range(h):
            for x in range(w):
                for a in range(a_):
                    i = offset + (y * w + x) * a_ + a
                    for n in range(2):
                        expect_cls = [_code(n, level, y, x) + (a * c_ + c) * 1e6 for c in range(c_)]
                        expect_box = [_code(n, level, y, x) + (a * 4 + j) * 1e6 for j in range(4)]
                        assert cls[n, i].tolist() == expect_cls
                        assert box[n, i].tolist() == expect_box
        offset += h * w * a_
    assert offset == cls.shape[1]


def test_init_bias_per_anchor_and_paper_init():
    torch.manual_seed(0)
    init_bias = torch.tensor([-4.6, -4.6, 2.0])  # e.g. softmax with a background logit
    head = RetinaHead(in_channels=256, num_anchors=9, num_logits=3, init_bias=init_bias)
    # all-zero features: every conv sees zeros, so the logits are the output bias
    cls, box = head([torch.zeros(1, 256, 4, 4), torch.zeros(1, 256, 2, 2)])
    torch.testing.assert_close(cls, init_bias.expand(1, 9 * 20, 3))
    torch.testing.assert_close(box, torch.zeros(1, 9 * 20, 4))
    for sub in (head.cls_subnet, head.box_subnet):
        convs = [m for m in sub if isinstance(m, nn.Conv2d)]
        assert len(convs) == 5
        w = torch.cat([c.weight.flatten() for c in convs])
        assert abs(w.mean().item()) < 1e-3 and 0.0095 < w.std().item() < 0.0105
    assert all(c.bias.abs().max() == 0 for c in head.box_subnet if isinstance(c, nn.Conv2d))

    no_prior = RetinaHead(in_channels=8, num_anchors=2, num_logits=3, init_bias=init_bias, prior_init=False)
    assert no_prior.cls_subnet[-1].bias.abs().max() == 0


def test_group_norm_option():
    head = RetinaHead(in_channels=64, num_anchors=1, num_logits=2, num_convs=2, width=64, norm="gn")
    gns = [m for m in head.cls_subnet if isinstance(m, nn.GroupNorm)]
    assert len(gns) == 2 and gns[0].num_groups == 32
    convs = [m for m in head.cls_subnet if isinstance(m, nn.Conv2d)]
    assert convs[0].bias is None and convs[-1].bias is not None
    assert RetinaHead(8, 1, 2, width=48, norm="gn").box_subnet[1].num_groups == 16


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"init_bias has shape \(4,\): expected \(3,\)"):
        RetinaHead(8, 9, 3, init_bias=torch.zeros(4))
    with pytest.raises(ValueError, match="norm='bn'"):
        RetinaHead(8, 9, 3, norm="bn")


@pytest.mark.parametrize("norm", [None, "gn"])
def test_equals_torchvision_retinanet_head(norm):
    """Same weights -> same outputs as torchvision's RetinaNetHead (v1, or v2 with GroupNorm),
    whose flattening (view [N, A, C, H, W], permute to [N, H, W, A, C]) defines the same order."""
    from functools import partial

    from torchvision.models.detection.retinanet import RetinaNetHead

    torch.manual_seed(0)
    ref = RetinaNetHead(32, 3, 5, norm_layer=partial(nn.GroupNorm, 32) if norm else None).eval()
    ours = RetinaHead(32, num_anchors=3, num_logits=5, num_convs=4, width=32, norm=norm).eval()
    for mine, theirs in ((ours.cls_subnet, ref.classification_head), (ours.box_subnet, ref.regression_head)):
        pairs = list(zip(mine.parameters(), theirs.parameters(), strict=True))
        with torch.no_grad():
            for p, q in pairs:
                assert p.shape == q.shape
                p.copy_(torch.randn_like(q))
                q.copy_(p)
    feats = [torch.randn(2, 32, h, w) for h, w in SIZES]
    cls, box = ours(feats)
    expected = ref(feats)
    torch.testing.assert_close(cls, expected["cls_logits"])
    torch.testing.assert_close(box, expected["bbox_regression"])
