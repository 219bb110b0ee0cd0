"""Anchor statistics of a dataset config: foreground / background / ignore anchors per image.

    python -m tools.anchor_stats                                  # the default dataset
    python -m tools.anchor_stats dataset=synthetic_fg1to3500 --images 2000   # all its train images
    python -m tools.anchor_stats dataset=coco128 model.matcher.ignore_ioa_thresh=0.7

Takes the same overrides as train.py, builds the training set (without flips) and the
model's anchors and matcher as a run would, and prints the mean counts and the
foreground:background ratio: the number that decides how hard the background problem is for a
one-stage detector.
"""

import argparse

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
    """Mean #fg, #bg, #ignore anchors per image over the first ``max_images`` training images."""
    ds = build.dataset(cfg, "train", augment=False)
    model = build.model(cfg, ds.num_classes)
    k = ds.num_classes
    totals = torch.zeros(3, dtype=torch.float64)
    n = min(max_images, len(ds))
    for batch in build.eval_loader(cfg, ds, range(n)):  # batched and padded as a run's are
        if batch is None:
            continue
        images, targets = batch
        anchors, _ = image_anchors(model, images)
        labels, _ = model.match(anchors, targets)  # (N, R)
        totals += torch.tensor([((labels >= 0) & (labels < k)).sum(), (labels == k).sum(), (labels == -1).sum()],
                               dtype=torch.float64)
    fg, bg, ign = (totals / n).tolist()
    return {"images": n, "anchors": fg + bg + ign, "fg": fg, "bg": bg, "ignore": ign,
            "bg_per_fg": bg / fg if fg else float("inf")}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.anchor_stats", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="config overrides, as for train.py")
    p.add_argument("--images", type=int, default=100)
    args = p.parse_args(argv)
    cfg = build.config(args.overrides)
    s = anchor_stats(cfg, args.images)
    print(f"{' '.join(args.overrides) or 'the default config'}: {s['images']} training images, "
          f"{s['anchors']:.0f} anchors/image: fg {s['fg']:.1f}  bg {s['bg']:.1f}  ignore {s['ignore']:.1f}"
          f"  -> foreground:background 1:{s['bg_per_fg']:.0f}")
    return s


if __name__ == "__main__":
    main()
