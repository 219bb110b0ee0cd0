"""How well a model's anchors cover a dataset's boxes: for every training box (crowd regions
left out), the best IoU any anchor reaches, at the size the run trains at.

    python -m tools.anchor_coverage dataset=coco_person
    python -m tools.anchor_coverage dataset=bccd 'model.anchor_generator.sizes=[8,16,32,64,128]'

Takes the same overrides as train.py (so input size and anchors are the run's). A box whose
best IoU is >= the matcher's fg threshold gets ordinary foreground anchors; below it, it is
foreground only through the low-quality match (one anchor, or none with
``allow_low_quality_matches=false``). Printed per size band of sqrt(box area) in the resized
image: the number of boxes, the share matched at the fg threshold and the median best IoU.
"""

import argparse

import torch
from torchvision.ops import box_iou

from analysis.anchor_stats import image_anchors
from detection import build

BANDS = (0, 8, 16, 32, 64, 128, 256, float("inf"))


def best_ious(cfg, max_images: int = 100):
    """Tensor[B] best anchor IoU and Tensor[B] sqrt(area) of every box of the first
    ``max_images`` training images (resized as a run's, without flips)."""
    ds = build.dataset(cfg, "train", augment=False)
    model = build.model(cfg, ds.num_classes)
    best, side = [], []
    for batch in build.eval_loader(cfg, ds, range(min(max_images, len(ds)))):
        if batch is None:
            continue
        images, targets = batch
        anchors, _ = image_anchors(model, images)  # (R, 4)
        for t in targets:
            boxes = t["boxes"]  # (M, 4)
            if len(boxes):
                best.append(box_iou(boxes, anchors).max(1).values)
                side.append(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt())
    return torch.cat(best), torch.cat(side)


def coverage(cfg, max_images: int = 100, fg: float = 0.5) -> list[dict]:
    """Per band of sqrt(area): {"band", "boxes", "matched" (share with best IoU >= ``fg``,
    max_iou's foreground threshold), "median_iou"}; the last row is all boxes."""
    best, side = best_ious(cfg, max_images)
    rows = []
    for lo, hi in [*zip(BANDS[:-1], BANDS[1:]), (0, float("inf"))]:
        m = (side >= lo) & (side < hi)
        if m.any():
            rows.append({"band": f"{lo}-{hi}" if (lo, hi) != (0, float("inf")) else "all", "boxes": int(m.sum()),
                         "matched": float((best[m] >= fg).float().mean()),
                         "median_iou": float(best[m].median())})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.anchor_coverage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="config overrides, as for train.py")
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--iou", type=float, default=0.5, help="the IoU a box's best anchor must reach (max_iou's fg threshold)")
    args = p.parse_args(argv)
    cfg = build.config(args.overrides)
    rows = coverage(cfg, args.images, args.iou)
    print(f"{' '.join(args.overrides) or 'the default config'}: anchors {list(cfg.model.anchor_generator.sizes)}, "
          f"boxes with an anchor at IoU >= {args.iou}:")
    for r in rows:
        print(f"  sqrt(area) {r['band']:>9} px: {r['boxes']:6d} boxes  matched {100 * r['matched']:5.1f}%  "
              f"median best IoU {r['median_iou']:.2f}")
    return rows


if __name__ == "__main__":
    main()
