import pytest

from analysis.anchor_coverage import coverage
from tests.conftest import compose_config
from tests.datasets.conftest import write_tiny_coco


def test_best_iou_by_hand(tmp_path):
    """One 128 px image, no resize, no padding. A 16 px box on the anchor centred at (32, 32)
    (stride 8, size 16, offset 0) has IoU 1; a 4 px box there reaches 16 / 256 at best (the
    16 px anchors; the larger ones and the 2:1 ones, 22.6 x 11.3 px, hold it too but are
    larger)."""
    anns = [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [24, 24, 16, 16]},
            {"id": 2, "image_id": 1, "category_id": 5, "bbox": [30, 30, 4, 4]}]
    images, path = write_tiny_coco(tmp_path, annotations=anns,
                                   images=[{"id": 1, "file_name": "1.png", "width": 128, "height": 128}])
    cfg = compose_config(["dataset=coco", f"dataset.train.images={images}", f"dataset.train.annotations={path}",
                          "dataset.min_size=128", "dataset.max_size=128"])
    rows = {r["band"]: r for r in coverage(cfg, max_images=1)}
    assert set(rows) == {"0-8", "16-32", "all"}
    assert (rows["0-8"]["boxes"], rows["0-8"]["matched"]) == (1, 0.0)
    assert rows["0-8"]["median_iou"] == pytest.approx(16 / 256)
    assert (rows["16-32"]["boxes"], rows["16-32"]["matched"], rows["16-32"]["median_iou"]) == (1, 1.0, pytest.approx(1.0))
    assert (rows["all"]["boxes"], rows["all"]["matched"]) == (2, 0.5)
    # With anchors from 8 px the small box gets closer (16 / 64) but still not matched.
    cfg.model.anchor_generator.sizes = [8, 16, 32, 64, 128]
    small = {r["band"]: r for r in coverage(cfg, max_images=1)}["0-8"]
    assert small["matched"] == 0.0 and small["median_iou"] == pytest.approx(16 / 64)
