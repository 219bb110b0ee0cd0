import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import COCO_SAMPLE, COCO_SAMPLE_ANNOTATIONS, ROOT

REPO = ROOT

# Real COCO train2017 images with their original annotations, shipped in the repository.
SAMPLE_IMAGES = COCO_SAMPLE / "train2017"
SAMPLE_JSON = COCO_SAMPLE_ANNOTATIONS


@pytest.fixture(scope="session")
def sample_json():
    return json.loads(SAMPLE_JSON.read_text())


def write_tiny_coco(
    root: Path, annotations=None, images=None, categories=None
) -> tuple[Path, Path]:
    """Three 40x30 (w x h) PNG images and a COCO file; returns (image folder, json path)."""
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    if images is None:
        images = [{"id": i, "file_name": f"{i}.png", "width": 40, "height": 30} for i in (1, 2, 3)]
    for img in images:
        rgb = np.full((img["height"], img["width"], 3), 10 * img["id"], dtype=np.uint8)
        Image.fromarray(rgb).save(img_dir / img["file_name"])
    if categories is None:
        categories = [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}]
    if annotations is None:
        annotations = [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 5,
                "bbox": [1, 2, 10, 8],
                "iscrowd": 0,
                "area": 80,
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 9,
                "bbox": [20, 5, 10, 10],
                "iscrowd": 0,
                "area": 100,
            },
            {
                "id": 3,
                "image_id": 2,
                "category_id": 5,
                "bbox": [0, 0, 30, 20],
                "iscrowd": 1,
                "area": 600,
            },
        ]
    path = root / "instances.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return img_dir, path


@pytest.fixture
def tiny_coco(tmp_path):
    return write_tiny_coco(tmp_path)
