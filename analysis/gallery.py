"""The highest-scoring background false positives of a results file, drawn on their images.

    python -m tools.gallery ANNOTATIONS.json DETECTIONS.json --images IMAGE_DIR --out gallery.png [-n 16]

A background false positive is TIDE's Bkg error (analysis/errors.py): a kept detection whose IoU
with every ground-truth box of any class is <= 0.1. Each panel shows one image whole, its
ground truth (green, class names), the false positive (red, class and score) and the image's
other detections above the score in thin grey, so a reader sees what the detector took for an
object: a texture, a part of an object, an unlabelled object. A run's analysis draws it into
``<run>/analysis/gallery.png`` on request (``hydra.callbacks.analysis.gallery=16``).
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from analysis.errors import BKG, tide_errors
from analysis.plots import save_png


def top_background_fps(coco_gt, detections: list[dict], n: int) -> list[dict]:
    """The ``n`` highest-scoring Bkg errors among checked COCO results, highest first (ties:
    position in the results)."""
    if n < 0:
        raise ValueError(f"gallery size n={n}: expected >= 0")
    types = tide_errors(coco_gt, detections).det_types
    idx = np.flatnonzero(types == BKG)
    idx = idx[np.argsort([-detections[i]["score"] for i in idx], kind="stable")][:n]
    return [detections[i] for i in idx]


def _box(ax, xywh, color, lw, text=None):
    x, y, w, h = xywh
    ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=color, linewidth=lw))
    if text:
        ax.text(x, y - 1, text, color="white", fontsize=6, va="bottom",
                bbox={"facecolor": color, "edgecolor": "none", "pad": 0.5, "alpha": 0.8})


def draw_gallery(coco_gt, detections: list[dict], fps: list[dict], images_dir, path, cols: int = 4) -> None:
    """One panel per false positive of ``fps`` (see the module docstring)."""
    names = {c["id"]: c["name"] for c in coco_gt.dataset["categories"]}
    n = max(len(fps), 1)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.2 * cols, 3.2 * rows))
    for i, fp in enumerate(fps):
        ax = fig.add_subplot(rows, cols, i + 1)
        info = coco_gt.imgs[fp["image_id"]]
        file = Path(images_dir) / info["file_name"]
        try:
            ax.imshow(np.asarray(Image.open(file).convert("RGB")))
        except OSError as e:
            raise FileNotFoundError(f"image {fp['image_id']} ({info['file_name']}) could not be read from "
                                    f"{images_dir}: {e}") from e
        for d in detections:
            if d["image_id"] == fp["image_id"] and d is not fp and d["score"] >= fp["score"]:
                _box(ax, d["bbox"], "0.7", 0.6)
        for a in coco_gt.imgToAnns[fp["image_id"]]:
            _box(ax, a["bbox"], "tab:green", 1.0, names.get(a["category_id"], "?") + (" (crowd)" if a.get("iscrowd") else ""))
        _box(ax, fp["bbox"], "tab:red", 1.6, f"{names.get(fp['category_id'], '?')} {fp['score']:.2f}")
        ax.set_title(f"#{i + 1} image {fp['image_id']}", fontsize=8)
        ax.axis("off")
    if not fps:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no background false positives", ha="center", va="center")
        ax.axis("off")
    fig.suptitle("Highest-scoring background false positives (red; ground truth green)", fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def gallery(coco_gt, detections: list[dict], images_dir, path, n: int = 16) -> list[dict]:
    """Draws the ``n`` top background false positives into ``path``; returns them."""
    fps = top_background_fps(coco_gt, detections, n)
    draw_gallery(coco_gt, detections, fps, images_dir, path)
    return fps


def main(argv=None) -> list[dict]:
    from analysis.coco_files import load_ground_truth, load_results

    p = argparse.ArgumentParser(prog="python -m tools.gallery", description=__doc__.split("\n")[0])
    p.add_argument("annotations", help="COCO instances JSON (ground truth)")
    p.add_argument("detections", help="COCO results JSON")
    p.add_argument("--images", required=True, help="the folder of the annotations' image files")
    p.add_argument("--out", required=True, help="the figure (.png)")
    p.add_argument("-n", type=int, default=16, help="how many false positives (default 16)")
    args = p.parse_args(argv)
    try:
        coco_gt = load_ground_truth(args.annotations)
        detections = load_results(args.detections, coco_gt)
        fps = gallery(coco_gt, detections, args.images, args.out, args.n)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"tools.gallery: error: {e}")
    for i, d in enumerate(fps):
        print(f"#{i + 1}: image {d['image_id']} category {d['category_id']} score {d['score']:.3f} bbox {d['bbox']}")
    print(f"wrote {args.out}")
    return fps


if __name__ == "__main__":
    main()
