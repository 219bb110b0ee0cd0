"""CocoDetection.cache_images: decoded images held in memory give the items of the files."""

import json
import warnings

import pytest
import torch

from datasets.coco import CocoDetection
from datasets.sampler import SeededItems
from datasets.transforms import build_transforms

from .conftest import SAMPLE_IMAGES, SAMPLE_JSON, write_tiny_coco


def assert_items_equal(a, b):
    (ia, ta), (ib, tb) = a, b
    assert torch.equal(ia, ib)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]) if torch.is_tensor(ta[k]) else ta[k] == tb[k], k


def sample(**kwargs):
    return CocoDetection(SAMPLE_IMAGES, SAMPLE_JSON, **kwargs)


def test_cached_items_equal_the_files_items():
    """Real JPEGs of several sizes, with the training transforms under the same item seeds:
    bit-identical images and targets."""
    t = build_transforms(True, 256, 427)
    plain, cached = SeededItems(sample(transforms=t)), SeededItems(sample(transforms=t))
    assert cached.dataset.cache_images(max_mb=100) is True
    sizes = [3 * plain.dataset.coco.imgs[i]["height"] * plain.dataset.coco.imgs[i]["width"]
             for i in plain.dataset.image_ids]
    assert cached.dataset.cached_mb == sum(sizes) / 2**20 and plain.dataset.cached_mb == 0
    assert len({s for s in sizes}) > 1  # the buffer holds images of different sizes
    for i in range(len(plain)):
        for seed in (0, 1, 12345):
            assert_items_equal(plain[(i, seed)], cached[(i, seed)])


def test_cache_holds_the_pixels_and_items_cannot_change_it(tmp_path):
    images, ann = write_tiny_coco(tmp_path)
    ds = CocoDetection(images, ann)
    expected = [ds[i] for i in range(len(ds))]
    assert ds.cache_images(1) and ds.cache_images(1)  # a second call keeps the first cache
    for f in images.iterdir():  # held in memory: the files are not read again
        f.unlink()
    image, _ = ds[0]
    image.add_(1.0)  # an item's image is a copy, not a view of the cache
    for i in range(len(ds)):
        assert_items_equal(ds[i], expected[i])
    assert torch.equal(ds[2][0], torch.full((3, 30, 40), 30 / 255))


def test_over_the_limit_falls_back_to_the_files(tmp_path):
    images, ann = write_tiny_coco(tmp_path)  # 3 images of 3 x 30 x 40 bytes = 10800 B
    ds = CocoDetection(images, ann)
    expected = ds[1]
    assert ds.cache_images(max_mb=10799 / 2**20) is False and ds.cached_mb == 0
    assert_items_equal(ds[1], expected)
    (images / "2.png").unlink()  # not held: items still read the files
    with pytest.raises(ValueError, match=r"bad image file .*2\.png \(image id 2\)"):
        ds[1]
    images, ann = write_tiny_coco(tmp_path / "again")
    assert CocoDetection(images, ann).cache_images(max_mb=10800 / 2**20) is True  # exactly fits


def test_bad_image_raises_when_caching_or_is_skipped_each_read(tmp_path):
    images, ann = write_tiny_coco(tmp_path)
    (images / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(ValueError, match=r"bad image file .*2\.png \(image id 2\)"):
        CocoDetection(images, ann).cache_images(1)
    skip = CocoDetection(images, ann, on_bad_image="skip")
    assert skip.cache_images(1)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        items = [skip[i] for i in (0, 1, 2, 1)]
    assert items[1] is None and items[3] is None and skip.skipped == 2
    assert sum("skipped bad image file" in str(x.message) and "2.png" in str(x.message) for x in w) == 2
    assert torch.equal(items[2][0], torch.full((3, 30, 40), 30 / 255))


def test_wrongly_sized_image_raises_when_caching(tmp_path):
    images, ann = write_tiny_coco(tmp_path)
    doc = json.loads(ann.read_text())
    doc["images"][2]["width"] = 41
    ann.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"3\.png \(image id 3\): image is 40x30 px, but .*gives width x height 41x30"):
        CocoDetection(images, ann).cache_images(1)


@pytest.mark.parametrize("bad", [-1, True, "1024", float("nan"), None])
def test_bad_limit_names_the_argument(tiny_coco, bad):
    with pytest.raises(ValueError, match=r"cache_images\(max_mb=.*\): expected a number of MiB >= 0"):
        CocoDetection(*tiny_coco).cache_images(bad)
