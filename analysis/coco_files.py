"""Reading a COCO ground truth and a COCO results file for the tools, with errors naming the entry.

The ground truth goes through the training path's loader (``datasets.coco_json.load_coco_json``),
so a file without ``area``, ``iscrowd`` or annotation ``id`` is filled exactly as training fills
it (box area, 0, numbered after the largest id) instead of failing inside COCOeval with
``KeyError: 'area'``.
"""

import hashlib
import json
import math
import os
from pathlib import Path
from typing import NamedTuple

from pycocotools.coco import COCO

from datasets.coco_json import load_coco_json
from detection.evaluation import check_detections
from detection.run_folder import RunFolder


def load_ground_truth(path) -> COCO:
    """A COCO instances JSON as a pycocotools ``COCO``, checked and filled as for training."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotations file not found: {path!r}")
    return load_coco_json(path)


def load_results(path, coco_gt: COCO) -> list[dict]:
    """Reads a COCO results file and checks it against ``coco_gt``.

    Returns fresh dicts with plain numbers (``detection.evaluation.check_detections``). Beyond
    that function's checks (a list of dicts, 4-number boxes, integer ids, numeric scores),
    rejects non-finite or boolean numbers, negative box sizes and image or category ids that
    ``coco_gt`` does not have; every error names the file and the entry, e.g.
    ``dets.json[3].score: expected a finite number, got nan``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"detections file not found: {path!r}")
    try:
        with open(path) as f:
            raw = json.load(f)  # Python's json reads NaN and Infinity: caught below
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"detections file {path!r} is not valid JSON ({e})") from e
    return check_results(raw, coco_gt, source=path)


def check_results(raw, coco_gt: COCO, source: str = "detections") -> list[dict]:
    """``load_results``'s checks on a results list already in memory."""
    dets = check_detections(raw, source=source)
    images, cats = coco_gt.imgs, coco_gt.cats
    for i, (r, d) in enumerate(zip(raw, dets)):
        where = f"{source}[{i}]"
        for key in ("image_id", "category_id", "score"):
            if isinstance(r[key], bool):
                raise ValueError(f"{where}.{key}: expected a number, got {r[key]!r}")
        if any(isinstance(v, bool) for v in r["bbox"]) or not all(map(math.isfinite, d["bbox"])):
            raise ValueError(f"{where}.bbox: expected [x, y, width, height] (4 finite numbers), got {r['bbox']!r}")
        if d["bbox"][2] < 0 or d["bbox"][3] < 0:
            raise ValueError(f"{where}.bbox: width and height must be >= 0 ([x, y, width, height]), got {r['bbox']!r}")
        if not math.isfinite(d["score"]):
            raise ValueError(f"{where}.score: expected a finite number, got {r['score']!r}")
        if d["image_id"] not in images:
            raise ValueError(f"{where}.image_id={d['image_id']} is not an image of the annotations")
        if d["category_id"] not in cats:
            raise ValueError(
                f"{where}.category_id={d['category_id']} is not a category of the annotations "
                f"(their ids: {sorted(cats)[:10]}{', ...' if len(cats) > 10 else ''})"
            )
    return dets


class Inputs(NamedTuple):
    """What a tool evaluates: the ground truth, the results file, the images and categories
    (None: all), and the folder its default output goes under."""

    annotations: str
    detections: str
    image_ids: list[int] | None
    cat_ids: list[int] | None
    base: str


def tool_inputs(paths: list[str], image_ids: list[int] | None = None) -> Inputs:
    """``[RUN]`` (a run folder: the annotation file, images and categories its evaluation used,
    from its data.json, and its detections.json) or ``[ANNOTATIONS, DETECTIONS]``.
    ``image_ids`` (the user's) replace the run's."""
    if len(paths) == 1:
        folder = RunFolder(paths[0])
        if not folder.path.is_dir():
            raise FileNotFoundError(f"run folder not found: {paths[0]!r} (or give ANNOTATIONS.json DETECTIONS.json)")
        data = folder.read_data()
        if data is None:
            raise FileNotFoundError(f"{folder.data} not found: the run does not say which annotations it was "
                                    "evaluated on (a run made before data.json); give ANNOTATIONS.json DETECTIONS.json")
        return Inputs(data["annotations"], str(folder.detections), image_ids or data.get("image_ids"),
                      data.get("cat_ids"), str(folder.path))
    if len(paths) == 2:
        return Inputs(paths[0], paths[1], image_ids, None, os.path.dirname(os.path.abspath(paths[1])))
    raise ValueError(f"expected a run folder, or ANNOTATIONS.json DETECTIONS.json; got {len(paths)} paths")


def output_folder(out: str | None, inputs: Inputs, tool: str, user_image_ids) -> str:
    """Where a tool writes: ``out``, or by default a new folder under ``inputs.base`` named by
    what was evaluated (``<tool>_<detections file>``, ``_<n>images-<hash>`` with the user's
    ``--image-ids``). A run's own records are never replaced: ValueError when the folder is a
    run folder or a run's analysis/."""
    if out is None:
        name = f"{tool}_{os.path.splitext(os.path.basename(inputs.detections))[0]}"
        if user_image_ids:
            ids = ",".join(map(str, sorted(user_image_ids)))
            name += f"_{len(user_image_ids)}images-{hashlib.sha256(ids.encode()).hexdigest()[:8]}"
        out = os.path.join(inputs.base, name)
    folder = Path(out).resolve()
    for run in (folder, folder.parent if folder.name == "analysis" else None):
        if run is not None and RunFolder(run).holds_run():
            raise ValueError(f"{out} holds the records of run {run} (its eval.json, analysis/): they are never "
                             "replaced; give --out another folder, or none (a new folder under the run)")
    return out
