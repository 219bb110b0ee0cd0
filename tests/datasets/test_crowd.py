"""Implied crowd regions (``crowd_min_centres``): for COCO files whose crowd flags were lost."""

import numpy as np
import pytest

from datasets.coco import CocoDetection, implied_crowds
from detection.evaluation import coco_evaluate

from .conftest import write_tiny_coco

# One image, 200 x 100. Category 1 ("person"): a wide group box 0..120 x 10..60 holding the
# centres of three 10 x 20 people (and of a tall person box, 40..60 x 0..90, whose own box
# holds two of those centres); a lone person far right. Category 2 ("dog"): three dogs inside
# the group box, whose centres must not count for the people.
PEOPLE = [[0, 10, 120, 50], [10, 20, 10, 20], [50, 20, 10, 20], [90, 20, 10, 20], [40, 0, 20, 90], [170, 10, 10, 20]]
DOGS = [[20, 45, 6, 6], [30, 45, 6, 6], [70, 45, 6, 6]]


def annotations():
    anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": b, "iscrowd": 0} for i, b in enumerate(PEOPLE)]
    return anns + [{"id": 101 + i, "image_id": 1, "category_id": 2, "bbox": b, "iscrowd": 0} for i, b in enumerate(DOGS)]


def tiny(tmp_path, anns=None):
    return write_tiny_coco(tmp_path, annotations=annotations() if anns is None else anns,
                           images=[{"id": 1, "file_name": "1.png", "width": 200, "height": 100}],
                           categories=[{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}])


def xyxy(boxes):
    b = np.asarray(boxes, dtype=np.float32)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1)


def test_centres_counted_by_hand():
    # Centres: group (60, 35), people (15, 30) (55, 30) (95, 30), tall (50, 45), lone (175, 20).
    # The group holds 4 of them (3 people + the tall one's); the tall box (x 40..60) holds (55, 30)
    # and (60, 35) (its border counts): 2.
    assert implied_crowds(xyxy(PEOPLE), 4).tolist() == [True, False, False, False, False, False]
    assert implied_crowds(xyxy(PEOPLE), 3).tolist() == [True, False, False, False, False, False]
    assert implied_crowds(xyxy(PEOPLE), 2).tolist() == [True, False, False, False, True, False]
    assert implied_crowds(xyxy(PEOPLE), 5).tolist() == [False] * 6
    # The aspect keeps the wide group (120 x 50) and drops the tall box (20 x 90).
    assert implied_crowds(xyxy(PEOPLE), 2, min_aspect=1.0).tolist() == [True] + [False] * 5
    assert implied_crowds(xyxy(PEOPLE), 2, min_aspect=2.5).tolist() == [False] * 6


def test_a_box_does_not_count_its_own_centre_and_empty_input_works():
    assert implied_crowds(xyxy([[0, 0, 10, 10]]), 1).tolist() == [False]
    assert implied_crowds(np.zeros((0, 4)), 1).shape == (0,)


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "3"])
def test_bad_min_centres_is_named(value):
    with pytest.raises(ValueError, match=f"min_centres is {value!r}, expected an int >= 1"):
        implied_crowds(xyxy(PEOPLE), value)


def test_dataset_turns_the_implied_crowd_into_an_ignore_region_of_its_category(tmp_path):
    images, path = tiny(tmp_path)
    plain = CocoDetection(images, path)
    ds = CocoDetection(images, path, crowd_min_centres=3)
    assert len(plain.target(0)["boxes"]) == 9 and len(plain.target(0)["ignore_boxes"]) == 0
    t = ds.target(0)
    assert t["ignore_boxes"].tolist() == [[0, 10, 120, 60]]
    assert len(t["boxes"]) == 8 and t["labels"].tolist().count(0) == 5  # the other 5 people stay
    assert ds.implied_crowd_ids == [1]
    ann = ds.coco.anns[1]
    assert ann["iscrowd"] == 1 and ann["implied_crowd"] is True
    assert all(a["iscrowd"] == 0 for i, a in ds.coco.anns.items() if i != 1)
    assert plain.coco.anns[1]["iscrowd"] == 0 and plain.implied_crowd_ids == []


def test_only_boxes_of_the_same_category_count(tmp_path):
    # Three dogs inside a lone person's box do not make it a crowd.
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "iscrowd": 0}]
    anns += [{"id": 2 + i, "image_id": 1, "category_id": 2, "bbox": [10 + 20 * i, 10, 5, 5], "iscrowd": 0}
             for i in range(3)]
    images, path = tiny(tmp_path, anns)
    assert CocoDetection(images, path, crowd_min_centres=3).implied_crowd_ids == []


def test_flagged_crowds_do_not_count_as_members_and_a_subset_of_categories_limits_the_rule(tmp_path):
    anns = annotations()
    anns[1]["iscrowd"] = 1  # one of the three people is already a crowd box: 2 + the tall one = 3
    images, path = tiny(tmp_path, anns)
    assert CocoDetection(images, path, crowd_min_centres=3).implied_crowd_ids == [1]
    assert CocoDetection(images, path, crowd_min_centres=4).implied_crowd_ids == []
    # Dogs only: the people are left-out objects (ignore regions under others=ignore), never marked.
    dogs = CocoDetection(images, path, categories=["dog"], crowd_min_centres=1)
    assert dogs.implied_crowd_ids == [] and dogs.coco.anns[1]["iscrowd"] == 0


def test_min_aspect_narrows_the_rule(tmp_path):
    images, path = tiny(tmp_path)
    assert CocoDetection(images, path, crowd_min_centres=2).implied_crowd_ids == [1, 5]
    assert CocoDetection(images, path, crowd_min_centres=2, crowd_min_aspect=1.0).implied_crowd_ids == [1]


@pytest.mark.parametrize("kwargs,message", [
    ({"crowd_min_centres": 0}, "crowd_min_centres is 0, expected an int >= 1 or None"),
    ({"crowd_min_centres": 3.0}, "crowd_min_centres is 3.0, expected an int >= 1 or None"),
    ({"crowd_min_centres": 3, "crowd_min_aspect": 0}, r"crowd_min_aspect is 0, expected a number > 0"),
    ({"crowd_min_aspect": 1.0}, "crowd_min_aspect is 1.0 but crowd_min_centres is None"),
])
def test_bad_settings_are_named(tmp_path, kwargs, message):
    images, path = tiny(tmp_path)
    with pytest.raises(ValueError, match=message):
        CocoDetection(images, path, **kwargs)


def test_evaluation_treats_the_implied_crowd_as_crowd(tmp_path):
    """Detections of every individual person: with the rule, the group box is a crowd region
    (not a missed person), so person AP is 1; without it the group box is a miss."""
    images, path = tiny(tmp_path)
    dets = [{"image_id": 1, "category_id": 1, "bbox": b, "score": 0.9 - 0.1 * i} for i, b in enumerate(PEOPLE[1:])]
    ruled = CocoDetection(images, path, crowd_min_centres=3)
    plain = CocoDetection(images, path)
    assert coco_evaluate(ruled.coco, dets, cat_ids=[1], verbose=False)["AP"] == pytest.approx(1.0)
    assert coco_evaluate(plain.coco, dets, cat_ids=[1], verbose=False)["AP"] < 0.9
