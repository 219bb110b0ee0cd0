"""A detection confusion matrix with a background row and column, as a table and a picture.

    rows     ground-truth class 0..K-1, then "background" (K): detections that overlap no box
    columns  predicted class 0..K-1, then "background" (K): boxes no detection found

Classes are the categories in id order, named by their names. At a score threshold (default
0.3) and an IoU threshold (default 0.5), per image:

- every detection with score >= score_thresh and every non-crowd box with IoU >= iou_thresh
  adds 1 to [box class, detection class] (diagonal: right class; elsewhere: class confusion);
- a detection that overlaps no such box adds 1 to [background, detection class];
- a box that no detection OF ITS CLASS overlaps adds 1 to [box class, background].

These are the semantics of mmdetection's tools/analysis_tools/confusion_matrix.py, so the
cells count detections except the background column, which counts boxes: a detection that
overlaps two boxes counts in both rows, duplicates count once each on the diagonal, and a box
found only under a wrong class counts in its confusion cell AND as missed. Differences:

- Crowd boxes are ignore regions, as in COCOeval and in training (datasets/coco.py): a
  detection that overlaps no regular box but covers a crowd box (intersection over the
  detection's area >= iou_thresh, COCOeval's crowd overlap) counts nowhere, and a crowd box is
  never missed. mmdetection counts crowd instances like any other box.
- No option to redo NMS; the detections are evaluated as given (a COCO results list).
- The matrix holds counts; the picture colours each row by its share of the row's total,
  as mmdetection normalizes its picture.
"""

import math
from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from analysis.coco_files import check_results
from analysis.markdown import markdown_table
from analysis.plots import save_png

BACKGROUND = "background"


def _overlaps(dt_boxes: np.ndarray, gt_boxes: np.ndarray, crowd: bool) -> np.ndarray:
    """COCO IoU [D, G] of [x, y, w, h] boxes; with ``crowd``, intersection over the detection's area."""
    if len(dt_boxes) == 0 or len(gt_boxes) == 0:
        return np.zeros((len(dt_boxes), len(gt_boxes)))
    return np.asarray(mask_utils.iou(dt_boxes, gt_boxes, [int(crowd)] * len(gt_boxes))).reshape(len(dt_boxes), len(gt_boxes))


def confusion_matrix(coco_gt: COCO, detections, score_thresh: float = 0.3,
                     iou_thresh: float = 0.5) -> tuple[np.ndarray, list[str]]:
    """The (K+1) x (K+1) confusion matrix of a COCO results list (see the module docstring).

    Args:
        coco_gt: the ground truth, a pycocotools ``COCO``; every image of it is counted (an
            image without detections has all its boxes missed).
        detections: COCO results [{"image_id", "category_id", "bbox" [x, y, w, h], "score"}],
            validated by ``analysis.coco_files.check_results``.
        score_thresh: detections scored below it are left out.
        iou_thresh: the overlap at which a detection is on a box.

    Returns:
        (matrix int64[K+1, K+1], names: the K class names and "background").

    Example: a cat box found by a cat and a dog detection, a dog box with none, one detection
    of a dog on nothing. Classes (cat, dog):

                      cat  dog  background
        cat             1    1           0
        dog             0    0           1
        background      0    1           0
    """
    cat_ids = sorted(coco_gt.getCatIds())
    index = {c: i for i, c in enumerate(cat_ids)}
    k = len(cat_ids)
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    by_image = defaultdict(list)
    for d in check_results(detections, coco_gt):
        if d["score"] >= score_thresh:
            by_image[d["image_id"]].append(d)

    for img in coco_gt.getImgIds():
        anns = coco_gt.imgToAnns.get(img, [])
        regular = [a for a in anns if not a.get("iscrowd", 0)]
        crowd = [a for a in anns if a.get("iscrowd", 0)]
        dets = by_image.get(img, [])
        gt_cls = np.array([index[a["category_id"]] for a in regular], dtype=np.int64)
        dt_cls = np.array([index[d["category_id"]] for d in dets], dtype=np.int64)
        dt_boxes = np.array([d["bbox"] for d in dets], dtype=np.float64).reshape(-1, 4)
        hits = _overlaps(dt_boxes, np.array([a["bbox"] for a in regular], dtype=np.float64).reshape(-1, 4), False) >= iou_thresh
        on_crowd = _overlaps(dt_boxes, np.array([a["bbox"] for a in crowd], dtype=np.float64).reshape(-1, 4), True) >= iou_thresh
        di, gi = np.nonzero(hits)
        np.add.at(matrix, (gt_cls[gi], dt_cls[di]), 1)
        on_nothing = ~hits.any(axis=1) & ~on_crowd.any(axis=1)
        np.add.at(matrix, (k, dt_cls[on_nothing]), 1)
        found = (hits & (dt_cls[:, None] == gt_cls[None, :])).any(axis=0)  # (G,) by a detection of its class
        np.add.at(matrix, (gt_cls[~found], k), 1)
    return matrix, [coco_gt.cats[c]["name"] for c in cat_ids] + [BACKGROUND]


def _check(matrix: np.ndarray, names: list[str]) -> None:
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] != len(names):
        raise ValueError(f"confusion matrix of shape {matrix.shape} does not fit {len(names)} names "
                         "(expected (K+1, K+1) and the K class names plus 'background', as confusion_matrix returns)")


def confusion_table(matrix: np.ndarray, names: list[str]) -> list[str]:
    """The matrix as markdown lines: one row per ground-truth class, one column per predicted."""
    matrix = np.asarray(matrix)
    _check(matrix, names)
    return markdown_table(["ground truth \\ predicted", *names],
                          [[name, *(int(v) for v in row)] for name, row in zip(names, matrix)])


def plot_confusion(matrix: np.ndarray, names: list[str], path, title: str | None = None) -> None:
    """The matrix as a picture: each cell coloured by its share of the row, counts written in
    when there are at most 30 rows; the background row and column set apart by lines."""
    matrix = np.asarray(matrix)
    _check(matrix, names)
    n = len(names)
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    side = min(max(4.0, 0.45 * n + 2.0), 14.0)  # 81 classes: 14 inches, tick labels at 3 pt
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the row")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")
    fontsize = 8 if n <= 30 else max(3, math.floor(300 / n))
    ax.set_xticks(range(n), names, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), names, fontsize=fontsize)
    ax.axhline(n - 1.5, color="0.4", linewidth=0.8)
    ax.axvline(n - 1.5, color="0.4", linewidth=0.8)
    ax.set(xlabel="predicted class", ylabel="ground-truth class",
           title=title or "Confusion matrix (last row and column: background)")
    fig.tight_layout()
    save_png(fig, path)
