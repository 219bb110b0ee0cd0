"""Transforms and collate: hand-computed boxes, torchvision references, real images."""

from functools import partial

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.models.detection.transform import resize_boxes

from datasets.coco import CocoDetection
from datasets.transforms import (
    Compose,
    Normalize,
    RandomHorizontalFlip,
    Resize,
    build_transforms,
    collate,
    remove_degenerate,
)

from .conftest import SAMPLE_IMAGES, SAMPLE_JSON


def make_target(boxes, ignore=((0.0, 0.0, 4.0, 4.0),)):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return {
        "boxes": boxes,
        "labels": torch.arange(len(boxes)),
        "ignore_boxes": torch.tensor(ignore, dtype=torch.float32).reshape(-1, 4),
        "image_id": 1,
        "orig_size": (100, 200),
    }


def test_resize_shorter_side_hand_computed():
    image = torch.rand(3, 100, 200)
    out, t = Resize(50, 1000)(image, make_target([[10, 20, 30, 40]]))
    assert out.shape == (3, 50, 100) and t["size"] == (50, 100)
    assert t["boxes"].tolist() == [[5.0, 10.0, 15.0, 20.0]]
    assert t["ignore_boxes"].tolist() == [[0.0, 0.0, 2.0, 2.0]]
    assert t["labels"].tolist() == [0] and t["dropped_boxes"] == 0 and t["orig_size"] == (100, 200)


def test_resize_longer_side_capped_hand_computed():
    # shorter side to 100 would make the longer 400 > 300: the cap wins, scale 1.5
    out, t = Resize(100, 300)(torch.rand(3, 50, 200), make_target([[0, 0, 200, 50]]))
    assert out.shape == (3, 75, 300) and t["size"] == (75, 300)
    assert t["boxes"].tolist() == [[0.0, 0.0, 300.0, 75.0]]


def test_resize_boxes_match_torchvision_and_keep_pixels():
    torch.manual_seed(0)
    image = torch.rand(3, 37, 53)
    boxes = torch.rand(6, 4) * torch.tensor([26.0, 18.0, 26.0, 18.0])
    boxes[:, 2:] += boxes[:, :2] + 1
    out, t = Resize(64, 128)(image, make_target(boxes.tolist()))
    torch.testing.assert_close(t["boxes"], resize_boxes(boxes, (37, 53), tuple(out.shape[-2:])))
    same, _ = Resize(37, 128)(image, make_target(boxes.tolist()))
    assert torch.equal(same, image)  # already the right size: untouched


def test_degenerate_boxes_dropped_and_counted():
    t = remove_degenerate(
        make_target([[1, 1, 5, 5], [3, 3, 3, 8], [2, 2, 6, 6]], ignore=[[1, 1, 1, 1], [0, 0, 2, 2]])
    )
    assert t["boxes"].tolist() == [[1, 1, 5, 5], [2, 2, 6, 6]] and t["labels"].tolist() == [0, 2]
    assert t["ignore_boxes"].tolist() == [[0, 0, 2, 2]] and t["dropped_boxes"] == 2


def test_flip_hand_computed_and_involution():
    image = torch.arange(2 * 3 * 5, dtype=torch.float32).view(2, 3, 5)[:1].expand(3, 3, 5)
    t = make_target([[1, 0, 3, 2]], ignore=[[0, 0, 1, 3]])
    out, ft = RandomHorizontalFlip(p=1.0)(image, t)
    assert ft["boxes"].tolist() == [[2.0, 0.0, 4.0, 2.0]] and ft["ignore_boxes"].tolist() == [
        [4.0, 0.0, 5.0, 3.0]
    ]
    assert out[0, 0].tolist() == [4.0, 3.0, 2.0, 1.0, 0.0]
    back, bt = RandomHorizontalFlip(p=1.0)(out, ft)
    assert torch.equal(back, image) and torch.equal(bt["boxes"], t["boxes"])
    same, st = RandomHorizontalFlip(p=0.0)(image, t)
    assert same is image and st is t


def test_flip_probability():
    torch.manual_seed(0)
    flip = RandomHorizontalFlip(p=0.3)
    t = make_target([[0, 0, 1, 1]])
    flips = sum(flip(torch.zeros(3, 2, 4), t)[1]["boxes"][0, 0].item() == 3.0 for _ in range(2000))
    assert 500 < flips < 700


def test_normalize_and_build_transforms():
    image = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1) + torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(3, 1, 1)
    out, _ = Normalize()(image.expand(3, 2, 2), make_target([]))
    torch.testing.assert_close(out, torch.ones(3, 2, 2))
    train = build_transforms(train=True, min_size=8, max_size=16, flip_prob=0.5)
    assert [type(s) for s in train.transforms] == [Resize, RandomHorizontalFlip, Normalize]
    assert [type(s) for s in build_transforms(False, 8, 16).transforms] == [Resize, Normalize]


def test_resize_and_flip_move_boxes_with_the_pixels():
    """A real COCO sample image with one box painted out: after resize + flip, the painted
    pixels' extent equals the transformed box (to a pixel)."""
    ds = CocoDetection(SAMPLE_IMAGES, SAMPLE_JSON, image_ids=[9])
    image, target = ds[0]
    x1, y1, x2, y2 = target["boxes"][4].round().int().tolist()  # an orange, 76 x 47 px
    image[:, y1:y2, x1:x2] = torch.tensor([1.0, 0.0, 1.0]).view(
        3, 1, 1
    )  # magenta, absent from the photo
    t = dict(
        target,
        boxes=torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32),
        labels=torch.tensor([0]),
    )
    out, ot = Compose([Resize(512, 853), RandomHorizontalFlip(p=1.0)])(image, t)
    assert ot["size"] == (512, 683) == tuple(out.shape[-2:])
    mask = (out[0] > 0.9) & (out[1] < 0.1) & (out[2] > 0.9)
    ys, xs = torch.nonzero(mask, as_tuple=True)
    found = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
    assert (found - ot["boxes"][0]).abs().max() <= 1.0, (found, ot["boxes"])
    assert len(ot["ignore_boxes"]) == 0


def test_collate_pads_records_sizes_and_drops_none():
    a = (torch.ones(3, 100, 150), make_target([[0, 0, 5, 5]]))
    b = (torch.full((3, 130, 90), 2.0), make_target([]))
    images, targets = collate([a, None, b])
    assert images.shape == (2, 3, 256, 256)
    assert [t["size"] for t in targets] == [(100, 150), (130, 90)]
    assert (
        images[0, :, :100, :150].eq(1).all()
        and images[0, :, 100:].eq(0).all()
        and images[0, :, :, 150:].eq(0).all()
    )
    assert images[1, :, :130, :90].eq(2).all() and images[1].sum() == 2 * 3 * 130 * 90
    assert collate([a], size_divisible=32)[0].shape == (1, 3, 128, 160)
    assert collate([None, None]) is None
    with pytest.raises(ValueError, match="size_divisible"):
        collate([a], size_divisible=0)


def test_dataloader_on_the_coco_sample():
    ds = CocoDetection(
        SAMPLE_IMAGES, SAMPLE_JSON, max_images=4, transforms=build_transforms(True, 256, 427)
    )
    images, targets = next(
        iter(DataLoader(ds, batch_size=4, collate_fn=partial(collate, size_divisible=128)))
    )
    assert images.shape[0] == 4 and images.shape[2] % 128 == 0 and images.shape[3] % 128 == 0
    for img_id, t in zip(ds.image_ids, targets):
        h, w = t["size"]
        assert min(h, w) == 256 or max(h, w) == 427
        assert t["image_id"] == img_id
        assert (t["boxes"][:, 2] <= w).all() and (t["boxes"][:, 3] <= h).all()
