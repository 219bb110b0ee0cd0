from analysis.crowd_stats import against_flags, config_counts
from tests.conftest import COCO_PERSON_SAMPLE, compose_config
from tests.datasets.conftest import write_tiny_coco


def test_against_flags_counts_found_crowds_and_false_alarms(tmp_path):
    """Image 1: a wide flagged crowd box over three people. Image 2: a tall person box holding
    the centres of three small people (a false alarm without the aspect rule)."""
    people = [(1, [0, 0, 100, 40], 1), (1, [10, 10, 10, 20], 0), (1, [40, 10, 10, 20], 0), (1, [70, 10, 10, 20], 0),
              (2, [0, 0, 40, 100], 0), (2, [5, 10, 5, 10], 0), (2, [15, 40, 5, 10], 0), (2, [25, 70, 5, 10], 0)]
    anns = [{"id": i + 1, "image_id": img, "category_id": 5, "bbox": b, "iscrowd": c} for i, (img, b, c) in enumerate(people)]
    anns.append({"id": 99, "image_id": 2, "category_id": 9, "bbox": [0, 0, 40, 100], "iscrowd": 0})  # a dog: not counted
    images = [{"id": i, "file_name": f"{i}.png", "width": 120, "height": 120} for i in (1, 2)]
    _, path = write_tiny_coco(tmp_path, annotations=anns, images=images)
    assert against_flags(path, "cat", 3) == {"boxes": 8, "crowd": 1, "found": 1, "false_alarms": [(2, 5)]}
    assert against_flags(path, "cat", 3, 1.0) == {"boxes": 8, "crowd": 1, "found": 1, "false_alarms": []}
    assert against_flags(path, "cat", 4)["found"] == 0


def test_config_counts_on_the_coco_person_slice():
    counts = config_counts(compose_config(["dataset=coco_person", f"dataset.root={COCO_PERSON_SAMPLE}"]))
    assert counts == {"train": {"boxes": 6, "marked": 0, "images": 0, "examples": []},
                      "val": {"boxes": 2, "marked": 0, "images": 0, "examples": []}}
