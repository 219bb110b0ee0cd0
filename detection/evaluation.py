"""COCO box evaluation with pycocotools' COCOeval, and atomic JSON writing for its results."""

import contextlib
import io
import numbers
import os

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# The order of COCOeval.stats for iouType="bbox".
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def load_coco(path) -> COCO:
    """Reads a COCO instances JSON, without pycocotools' prints, with errors naming the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotations file not found: {path!r}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(path)
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        raise ValueError(f"annotations file {path!r} is not a COCO instances JSON ({type(e).__name__}: {e})") from e
    missing = [k for k in ("images", "annotations", "categories") if k not in coco.dataset]
    if missing:
        raise ValueError(f"annotations file {path!r} has no {missing} (expected a COCO instances JSON)")
    return coco


def check_detections(detections, source: str = "detections") -> list[dict]:
    """Validates a COCO results list; returns fresh dicts with plain Python numbers.

    Fresh dicts also protect the caller's list: ``COCO.loadRes`` adds keys to the dicts it gets.

    Args:
        detections: list of {"image_id": int, "category_id": int, "bbox": [x, y, w, h], "score": float}.
        source: how errors name the input (e.g. the results file's path).
    """
    if not isinstance(detections, list):
        raise ValueError(f"{source}: expected a list of {{image_id, category_id, bbox, score}}, got {type(detections).__name__}")
    out = []
    for i, d in enumerate(detections):
        if not isinstance(d, dict) or not {"image_id", "category_id", "bbox", "score"} <= d.keys():
            raise ValueError(f"{source}[{i}]: expected a dict with image_id, category_id, bbox, score; got {d!r:.200}")
        bbox = d["bbox"]
        if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(isinstance(v, numbers.Real) for v in bbox)):
            raise ValueError(f"{source}[{i}].bbox: expected [x, y, width, height] (4 numbers), got {bbox!r:.200}")
        for key in ("image_id", "category_id"):
            if not isinstance(d[key], numbers.Integral):
                raise ValueError(f"{source}[{i}].{key}: expected an integer, got {d[key]!r}")
        if not isinstance(d["score"], numbers.Real):
            raise ValueError(f"{source}[{i}].score: expected a number, got {d['score']!r}")
        out.append({"image_id": int(d["image_id"]), "category_id": int(d["category_id"]),
                    "bbox": [float(v) for v in bbox], "score": float(d["score"])})
    return out


def _empty_results(coco_gt: COCO) -> COCO:
    """A results COCO with no detections: ``COCO.loadRes([])`` fails on the empty list."""
    res = COCO()
    res.dataset = {"images": list(coco_gt.dataset["images"]), "annotations": [],
                   "categories": list(coco_gt.dataset["categories"])}
    with contextlib.redirect_stdout(io.StringIO()):
        res.createIndex()
    return res


def coco_evaluate(coco_gt, detections: list[dict], image_ids=None, cat_ids=None, verbose: bool = True) -> dict:
    """COCO bbox evaluation of a results list against ground truth.

    Args:
        coco_gt: a pycocotools ``COCO`` or the path of an instances JSON.
        detections: COCO results: {"image_id", "category_id" (the annotations' own ids),
            "bbox" [x, y, w, h] in original image pixels, "score"}. Not modified.
        image_ids: evaluate on these images only (default: every image of coco_gt, so an
            image without detections counts its ground truth as missed).
        cat_ids: evaluate these categories only (default: all).
        verbose: print COCOeval's standard 12-line summary.

    Returns:
        {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}:
        floats as COCOeval's ``stats`` (-1 where the split has no ground truth), and
        "per_category": {category name: AP at IoU .50:.95, all areas, 100 detections}, -1 for a
        category without ground truth. No detections gives 0 wherever there is ground truth.
    """
    if not isinstance(coco_gt, COCO):
        coco_gt = load_coco(coco_gt)
    dets = check_detections(detections)
    known_imgs, known_cats = set(coco_gt.getImgIds()), set(coco_gt.getCatIds())
    for i, d in enumerate(dets):
        if d["image_id"] not in known_imgs:
            raise ValueError(f"detections[{i}].image_id={d['image_id']} is not an image of the annotations")
        if d["category_id"] not in known_cats:
            raise ValueError(
                f"detections[{i}].category_id={d['category_id']} is not a category of the annotations "
                f"(expected one of their own ids, e.g. {sorted(known_cats)[:5]}, not a contiguous label)"
            )
    for name, ids, known in (("image_ids", image_ids, known_imgs), ("cat_ids", cat_ids, known_cats)):
        if ids is not None and not set(ids) <= known:
            raise ValueError(f"coco_evaluate {name}: {sorted(set(ids) - known)[:10]} not in the annotations")

    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        coco_dt = coco_gt.loadRes(dets) if dets else _empty_results(coco_gt)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        if image_ids is not None:
            ev.params.imgIds = sorted(set(image_ids))
        if cat_ids is not None:
            ev.params.catIds = sorted(set(cat_ids))
        ev.evaluate()
        ev.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        ev.summarize()
    if verbose:
        print(summary.getvalue(), end="")

    result = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}
    # precision: [T iou thresholds, R recall points, K categories, A area ranges, M max dets];
    # area "all" is index 0 and maxDets=100 the last, as in summarize()'s AP.
    precision = ev.eval["precision"]
    per_category = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_category[coco_gt.cats[cat_id]["name"]] = float(np.mean(p)) if p.size else -1.0
    result["per_category"] = per_category
    return result
