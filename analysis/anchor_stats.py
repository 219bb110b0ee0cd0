"""Anchor statistics of a dataset config: foreground / background / ignore anchors per image.

    python -m tools.anchor_stats                                  # the default dataset
    python -m tools.anchor_stats dataset=synthetic_fg1to3500 --images 2000   # all its train images
    python -m tools.anchor_stats dataset=coco128 assigner.ignore_ioa_thresh=0.7
    python -m tools.anchor_stats assigner=atss                    # another assigner

Takes the same overrides as train.py, builds the training set (without flips) and the
model's anchors and assigner as a run would, and prints the mean counts and the
foreground:background ratio: the number that decides how hard the background problem is for a
one-stage detector; and how many ground-truth boxes got no foreground anchor at all (never
trained on: max_iou without low-quality matches, or atss for a gt with no anchor centre inside).
"""

import argparse
import sys

import torch

from detection import build


def image_anchors(model, images):
    """The anchors Tensor[R, 4] of a padded batch Tensor[N, 3, H, W] and the feature map sizes
    [(h_l, w_l)], without running the network: every level's map is the batch size divided by
    its stride, rounded up."""
    h, w = images.shape[-2:]
    sizes = [(-(-h // s), -(-w // s)) for s in model.backbone.strides]
    return model.anchor_generator.grid_anchors(sizes), sizes


def anchor_stats(cfg, max_images: int = 100) -> dict:
    """Mean #fg, #bg, #ignore anchors per image over the first ``max_images`` training images,
    and the number of their gt boxes (``gts``) that no anchor is assigned to (``gts_without_fg``)."""
    ds = build.dataset(cfg, "train", augment=False)
    model = build.model(cfg, ds.num_classes)
    k = ds.num_classes
    totals = torch.zeros(3, dtype=torch.float64)
    gts = gts_without_fg = 0
    n = min(max_images, len(ds))
    for batch in build.eval_loader(cfg, ds, range(n)):  # batched and padded as a run's are
        if batch is None:
            continue
        images, targets = batch
        anchors, sizes = image_anchors(model, images)
        labels, matched = model.match(anchors, targets, sizes)  # (N, R)
        for t, idx in zip(targets, matched):
            gts += len(t["boxes"])
            gts_without_fg += len(t["boxes"]) - len(torch.unique(idx[idx >= 0]))
        totals += torch.tensor([((labels >= 0) & (labels < k)).sum(), (labels == k).sum(), (labels == -1).sum()],
                               dtype=torch.float64)
    fg, bg, ign = (totals / n).tolist()
    return {"images": n, "anchors": fg + bg + ign, "fg": fg, "bg": bg, "ignore": ign,
            "bg_per_fg": bg / fg if fg else float("inf"), "gts": gts, "gts_without_fg": gts_without_fg}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.anchor_stats", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="config overrides, as for train.py")
    p.add_argument("--images", type=int, default=100)
    args = p.parse_args(argv)
    try:
        s = anchor_stats(build.config(args.overrides), args.images)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"tools.anchor_stats: error: {e}")
    print(f"{' '.join(args.overrides) or 'the default config'}: {s['images']} training images, "
          f"{s['anchors']:.0f} anchors/image: fg {s['fg']:.1f}  bg {s['bg']:.1f}  ignore {s['ignore']:.1f}"
          f"  -> foreground:background 1:{s['bg_per_fg']:.0f}; {s['gts_without_fg']} of {s['gts']} gt boxes "
          "without a foreground anchor")
    return s


if __name__ == "__main__":
    main()
