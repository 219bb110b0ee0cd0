"""CocoDetection on real COCO (the shipped sample): non-contiguous ids, crowd boxes, empty images."""

import warnings
from collections import Counter

import numpy as np
import pytest
import torch
import torchvision
from torchvision.ops import box_convert

from datasets.coco import CocoDetection

from .conftest import SAMPLE_IMAGES, SAMPLE_JSON


def sample(**kwargs):
    return CocoDetection(SAMPLE_IMAGES, SAMPLE_JSON, **kwargs)


def xyxy(b):
    return [b[0], b[1], b[0] + b[2], b[1] + b[3]]


def rows(t):
    """Tensor[M, 4] -> sorted list of rounded tuples, for order-free comparison."""
    return sorted(tuple(round(v, 3) for v in r) for r in t.tolist())


@pytest.fixture(scope="module")
def full():
    return sample()


def test_all_categories_contiguous_labels_and_mapping(full, sample_json):
    assert full.num_classes == 80 and len(full.class_names) == 80
    assert full.cat_ids == sorted(c["id"] for c in sample_json["categories"])
    assert full.cat_ids[:3] == [1, 2, 3] and full.cat_ids[-1] == 90  # ids are not contiguous
    assert (
        full.class_names[0] == "person" and full.class_names[full.cat_ids.index(90)] == "toothbrush"
    )
    assert full.image_ids == [img["id"] for img in sample_json["images"]]


def test_label_round_trip_every_image(full, sample_json):
    """labels -> cat_ids gives back exactly the non-crowd annotations of each image."""
    by_image = {}
    for a in sample_json["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for i in range(len(full)):
        img_id = full.image_ids[i]
        target = full.target(i)
        anns = by_image.get(img_id, [])
        want = Counter(
            (a["category_id"], tuple(round(v, 3) for v in xyxy(a["bbox"])))
            for a in anns
            if not a["iscrowd"]
        )
        got = Counter(
            (full.cat_ids[int(label)], tuple(round(v, 3) for v in box))
            for label, box in zip(target["labels"].tolist(), target["boxes"].tolist())
        )
        assert got == want, img_id
        assert rows(target["ignore_boxes"]) == rows(
            torch.tensor([xyxy(a["bbox"]) for a in anns if a["iscrowd"]]).reshape(-1, 4)
        )


def test_item_types_and_image_9_by_hand(full):
    image, target = full[0]
    assert {k: v for k, v in target.items() if k not in ("boxes", "labels", "ignore_boxes")} == {
        "image_id": 9,
        "orig_size": (480, 640),
    }
    for key in ("boxes", "labels", "ignore_boxes"):
        assert torch.equal(target[key], full.target(0)[key])
    assert target["image_id"] == 9 and target["orig_size"] == (480, 640)
    assert image.dtype == torch.float32 and image.shape == (3, 480, 640)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert target["ignore_boxes"].shape == (0, 4)
    # bowl (id 51) is label 45, orange (55) 49, broccoli (56) 50: the position in id order.
    assert target["labels"].tolist() == [45, 45, 50, 45, 49, 49, 49, 49]
    torch.testing.assert_close(
        target["boxes"][0], torch.tensor([1.08, 187.69, 1.08 + 611.59, 187.69 + 285.84])
    )


def test_matches_torchvision_reference():
    """Same pixels (up to JPEG decoder rounding) and boxes as torchvision's CocoDetection."""
    ours = sample(image_ids=[9, 315])
    ref = torchvision.datasets.CocoDetection(str(SAMPLE_IMAGES), str(SAMPLE_JSON))
    for i, img_id in enumerate(ours.image_ids):
        image, target = ours[i]
        ref_img, ref_anns = ref[ref.ids.index(img_id)]
        ref_img = torchvision.transforms.functional.to_tensor(ref_img)
        assert ref_img.shape == image.shape
        assert (image - ref_img).abs().mean() < 2 / 255
        ref_boxes = box_convert(
            torch.tensor([a["bbox"] for a in ref_anns if not a["iscrowd"]]), "xywh", "xyxy"
        )
        assert rows(target["boxes"]) == rows(ref_boxes)


def test_subset_by_names_keeps_given_order(sample_json):
    ds = sample(categories=["orange", "bowl"])
    assert ds.class_names == ["orange", "bowl"] and ds.cat_ids == [55, 51] and ds.num_classes == 2
    assert len(ds) == len(sample_json["images"]) == 8  # images without oranges or bowls stay: pure background
    _, t = ds[0]
    assert sorted(t["labels"].tolist()) == [0, 0, 0, 0, 1, 1, 1]
    # the broccoli of image 9 is an ignore region under the default others="ignore"
    assert rows(t["ignore_boxes"]) == rows(
        torch.tensor([[249.6, 229.27, 249.6 + 316.24, 229.27 + 245.08]])
    )


def test_unknown_category_lists_valid_names():
    with pytest.raises(
        ValueError, match=r"unknown categories \['persn'\].*valid names:.*person"
    ) as e:
        sample(categories=["person", "persn"])
    assert "instances_train2017.json" in str(e.value) and "toothbrush" in str(e.value)


def test_crowd_becomes_ignore_not_background_or_dropped():
    ds = sample(categories=["person"], others="background", image_ids=[315])
    _, t = ds[0]
    # image 315: a person crowd [45, 169, 527, 121] and an umbrella crowd (other category)
    assert rows(t["ignore_boxes"]) == rows(torch.tensor([[45.0, 169.0, 572.0, 290.0]]))
    assert [45.0, 169.0, 572.0, 290.0] not in t["boxes"].tolist()
    assert (t["labels"] == 0).all() and len(t["labels"]) > 0


@pytest.mark.parametrize("others", ["ignore", "background", "drop_images"])
def test_others_policy(others, sample_json):
    # drop_images leaves only the two empty images: meant here, so said so
    ds = sample(categories=["person"], others=others, allow_no_annotations=others == "drop_images")
    anns = {}
    for a in sample_json["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    clean = [
        i["id"]
        for i in sample_json["images"]
        if all(a["category_id"] == 1 for a in anns.get(i["id"], []))
    ]
    if others == "drop_images":
        assert ds.image_ids == clean and clean == [250, 508]  # no other category: the empty images
    else:
        assert len(ds) == 8
    for img_id in ds.image_ids:
        t = ds.target(ds.image_ids.index(img_id))
        a = anns.get(img_id, [])
        n_person = sum(x["category_id"] == 1 and not x["iscrowd"] for x in a)
        n_crowd_person = sum(x["category_id"] == 1 and x["iscrowd"] for x in a)
        n_other = sum(x["category_id"] != 1 for x in a)
        assert len(t["boxes"]) == n_person
        expected_ignore = n_crowd_person + (n_other if others == "ignore" else 0)
        assert len(t["ignore_boxes"]) == expected_ignore, img_id


def test_empty_images_kept_unless_drop_empty(full):
    for img_id in (250, 508):  # no annotation at all
        assert img_id in full.image_ids
        assert full.target(full.image_ids.index(img_id))["boxes"].shape == (0, 4)
    ds = sample(drop_empty=True)
    assert len(ds) == 6 and 250 not in ds.image_ids and 508 not in ds.image_ids
    person = sample(categories=["person"], drop_empty=True)
    assert all(len(person.target(person.image_ids.index(i))["boxes"]) > 0 for i in person.image_ids)
    assert person.image_ids == [49, 149, 315]  # the images with a person


def test_max_images_seeded_pick_and_image_id_list(tmp_path, full):
    a, b, c = (
        sample(max_images=4, seed=1),
        sample(max_images=4, seed=1),
        sample(max_images=4, seed=2),
    )
    assert a.image_ids == b.image_ids != c.image_ids
    assert len(a) == 4 and set(a.image_ids) <= set(full.image_ids)
    assert a.image_ids == sorted(a.image_ids, key=full.image_ids.index)  # dataset order kept
    assert len(sample(max_images=1000)) == 8
    assert sample(image_ids=[315, 9]).image_ids == [315, 9]
    f = tmp_path / "ids.txt"
    f.write_text("315  # a crowd image\n9, 25\n")
    assert sample(image_ids=str(f)).image_ids == [315, 9, 25]
    f.write_text("[30, 9]")
    assert sample(image_ids=f).image_ids == [30, 9]


def test_min_box_size_drops_with_one_counting_warning(sample_json):
    ds_all = sample(image_ids=[9])
    n_small = sum(
        1
        for a in sample_json["annotations"]
        if a["image_id"] == 9 and min(a["bbox"][2], a["bbox"][3]) < 50
    )
    assert n_small == 2  # hand check: two oranges are under 50 px high (46.53, 46.67)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = sample(image_ids=[9], min_box_size=50)
    msgs = [str(x.message) for x in w if "min_box_size" in str(x.message)]
    assert len(msgs) == 1 and "dropped 2 boxes" in msgs[0]
    assert (
        len(ds.target(ds.image_ids.index(9))["boxes"])
        == len(ds_all.target(ds_all.image_ids.index(9))["boxes"]) - 2
    )


def test_coco_object_keeps_original_annotations_for_cocoeval(sample_json):
    ds = sample(categories=["person"], others="background", max_images=5)
    assert len(ds.coco.dataset["annotations"]) == len(sample_json["annotations"])
    assert sum(a["iscrowd"] for a in ds.coco.dataset["annotations"]) == 3  # 149: 1, 315: 2
    assert np.isin(ds.image_ids, ds.coco.getImgIds()).all()
