"""A hand-made COCO ground truth and results with one error of each TIDE type, for the tests of
analysis/errors.py and analysis/analyze.py (the expected numbers are worked out in test_errors.py)."""

import contextlib
import io
import json

from pycocotools.coco import COCO

CAT, DOG, CAR = 1, 2, 3


def make_gt(anns, images=(1, 2), cats=(CAT, DOG, CAR)) -> dict:
    """A COCO instances dict from (image_id, category_id, [x, y, w, h][, iscrowd]) tuples."""
    out = []
    for i, (img, cat, (x, y, w, h), *crowd) in enumerate(anns):
        out.append({"id": i + 1, "image_id": img, "category_id": cat, "bbox": [x, y, w, h],
                    "area": w * h, "iscrowd": int(bool(crowd and crowd[0])),
                    "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
    return {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 200} for i in images],
            "annotations": out, "categories": [{"id": c, "name": f"c{c}"} for c in cats]}


def to_coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = json.loads(json.dumps(dataset))
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def dets(*rows):
    return [{"image_id": i, "category_id": c, "bbox": list(b), "score": s} for i, c, b, s in rows]


# Two images, three classes; one error of each type. Scores put the false positives above
# true positives so that every fix changes AP.
GT = make_gt([
    (1, CAT, (0, 0, 10, 10)),     # G1: found by d1, duplicated by d2
    (1, DOG, (50, 0, 10, 10)),    # G2: only a cat on it (d3, Cls)
    (1, CAT, (0, 50, 10, 10)),    # G3: only a loose cat box (d4, Loc, IoU 0.4)
    (1, CAR, (50, 50, 10, 10)),   # G4: only a loose dog box (d5, Both): Miss
    (2, CAT, (100, 100, 10, 10)),
    (2, DOG, (150, 0, 10, 10)),
    (2, CAR, (150, 150, 10, 10)),
])
DETS = dets(
    (1, CAT, (0, 0, 10, 10), 0.9),     # TP
    (1, CAT, (1, 0, 10, 10), 0.8),     # Dupe (IoU 0.82 with G1)
    (1, CAT, (50, 0, 10, 10), 0.95),   # Cls
    (1, CAT, (0, 50, 10, 25), 0.7),    # Loc
    (1, DOG, (50, 50, 10, 25), 0.85),  # Both (IoU 0.4 with the car G4)
    (2, CAR, (100, 0, 10, 10), 0.8),   # Bkg
    (2, CAT, (100, 100, 10, 10), 0.6),  # TP
    (2, DOG, (150, 0, 10, 10), 0.5),   # TP
    (2, CAR, (150, 150, 10, 10), 0.75),  # TP
)
