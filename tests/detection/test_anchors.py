import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from detection.anchors import AnchorGenerator


def test_hand_computed_single_level():
    gen = AnchorGenerator(sizes=(32,), strides=(8,), scales=(1.0,), aspect_ratios=(0.5, 1.0))
    a = gen.grid_anchors([(2, 2)])
    # ratio 0.5 (h/w): w = 32 / sqrt(.5) = 45.25 -> half 22.6 -> 23, h = 32 * sqrt(.5) -> half 11
    base = torch.tensor([[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0]])
    shifts = torch.tensor([[0.0, 0], [8, 0], [0, 8], [8, 8]])  # row-major: (y=0,x=0), (0,1), (1,0)
    expected = (shifts.repeat(1, 2)[:, None, :] + base[None]).reshape(-1, 4)
    assert torch.equal(a, expected)
    assert gen.num_anchors_per_location == 2


def test_offset_centres_anchors_in_cells():
    gen = AnchorGenerator(sizes=(16,), strides=(8,), scales=(1.0,), aspect_ratios=(1.0,), offset=0.5)
    assert torch.equal(gen.grid_anchors([(1, 1)]), torch.tensor([[-4.0, -4.0, 12.0, 12.0]]))


def test_level_major_order_and_counts():
    gen = AnchorGenerator()
    feats = [(8, 10), (4, 5), (2, 3), (1, 2), (1, 1)]
    a = gen.grid_anchors(feats)
    counts = gen.num_anchors_per_level(feats)
    assert len(a) == sum(counts) == 9 * (80 + 20 + 6 + 2 + 1)
    # the first anchor of each level has that level's size: widths grow level by level
    starts = torch.tensor([0] + counts[:-1]).cumsum(0)
    sq = a[starts + 3]  # type 3 = ratio 1.0, scale 1 -> the base size itself
    assert torch.equal(sq[:, 2] - sq[:, 0], torch.tensor([32.0, 64, 128, 256, 512]))


def test_matches_torchvision_retinanet_anchors():
    """Equal to torchvision's RetinaNet anchors up to its integer rounding of the sizes
    (torchvision truncates 32 * 2**(1/3) = 40.3 to 40 before building the anchors)."""
    sizes = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in [32, 64, 128, 256, 512])
    tv = TVAnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 5)
    h, w = 256, 384
    feats = [(h // s, w // s) for s in (8, 16, 32, 64, 128)]
    images = ImageList(torch.zeros(1, 3, h, w), [(h, w)])
    fmaps = [torch.zeros(1, 1, fh, fw) for fh, fw in feats]
    theirs = tv(images, fmaps)[0]
    ours = AnchorGenerator().grid_anchors(feats)
    assert ours.shape == theirs.shape
    diff = (ours - theirs).abs()
    # the truncation costs at most 1 px per side once rounded
    assert diff.max() <= 1.0
    # scale-1 anchors have integer sizes in both: exactly equal, so the order agrees
    scale1 = torch.arange(len(ours)) % 3 == 0
    assert torch.equal(ours[scale1], theirs[scale1])


def test_cache_per_size_and_device():
    gen = AnchorGenerator()
    f = [(4, 4), (2, 2), (1, 1), (1, 1), (1, 1)]
    assert gen.grid_anchors(f) is gen.grid_anchors(f)
    assert gen.grid_anchors(f) is not gen.grid_anchors([(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)])


def test_bad_input_names_what_was_expected():
    with pytest.raises(ValueError, match="one entry per pyramid level"):
        AnchorGenerator(sizes=(32, 64), strides=(8,))
    with pytest.raises(ValueError, match="expected 5"):
        AnchorGenerator().grid_anchors([(4, 4)])
