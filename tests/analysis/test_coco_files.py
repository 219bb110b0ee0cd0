import json

import pytest

from analysis.coco_files import check_results, load_ground_truth, load_results
from analysis.errors import tide_errors

GT = {
    "images": [{"id": 7, "file_name": "7.jpg", "width": 100, "height": 80}],
    "categories": [{"id": 3, "name": "cat"}, {"id": 5, "name": "dog"}],
    "annotations": [  # no area, iscrowd or id: filled as the training path fills them
        {"image_id": 7, "category_id": 3, "bbox": [10, 10, 20, 30]},
        {"image_id": 7, "category_id": 5, "bbox": [50, 10, 4, 5], "iscrowd": 1, "id": 9},
    ],
}
GOOD = {"image_id": 7, "category_id": 3, "bbox": [10, 10, 20, 30], "score": 0.5}


@pytest.fixture
def gt(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(GT))
    return load_ground_truth(path)


def test_missing_area_iscrowd_and_id_are_filled_as_for_training(gt):
    first, second = gt.dataset["annotations"]
    assert (first["area"], first["iscrowd"], first["id"]) == (600.0, 0, 10)
    assert (second["area"], second["iscrowd"], second["id"]) == (20.0, 1, 9)
    assert gt.anns[10] is first  # the index holds the filled annotations


def test_missing_files_are_named(tmp_path, gt):
    with pytest.raises(FileNotFoundError, match="annotations file not found.*nope.json"):
        load_ground_truth(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="detections file not found.*dets.json"):
        load_results(tmp_path / "dets.json", gt)


@pytest.mark.parametrize("bad, message", [
    ({"image_id": 8}, r"dets.json\[1\].image_id=8 is not an image of the annotations"),
    ({"category_id": 4}, r"dets.json\[1\].category_id=4 is not a category of the annotations \(their ids: \[3, 5\]\)"),
    ({"bbox": [1, 2, 3]}, r"dets.json\[1\].bbox: expected \[x, y, width, height\] \(4 numbers\), got \[1, 2, 3\]"),
    ({"bbox": [1, 2, 3, float("nan")]}, r"dets.json\[1\].bbox: expected .*4 finite numbers"),
    ({"bbox": [1, 2, -3, 4]}, r"dets.json\[1\].bbox: width and height must be >= 0"),
    ({"score": float("nan")}, r"dets.json\[1\].score: expected a finite number, got nan"),
    ({"score": float("inf")}, r"dets.json\[1\].score: expected a finite number, got inf"),
    ({"score": "0.5"}, r"dets.json\[1\].score: expected a number"),
    ({"image_id": True}, r"dets.json\[1\].image_id: expected a number, got True"),
])
def test_bad_results_name_the_entry(tmp_path, gt, bad, message):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([GOOD, {**GOOD, **bad}]))  # NaN and Infinity as Python writes them
    with pytest.raises(ValueError, match=message):
        load_results(path, gt)


def test_good_results_load_as_plain_numbers(tmp_path, gt):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([GOOD, {**GOOD, "bbox": [0, 0, 5, 5], "score": 1}]))
    results = load_results(path, gt)
    assert results[1] == {"image_id": 7, "category_id": 3, "bbox": [0.0, 0.0, 5.0, 5.0], "score": 1.0}
    assert check_results([], gt) == []
    assert tide_errors(gt, results).counts["Bkg"] == 1  # the filled GT works downstream
