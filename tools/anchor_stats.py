"""Anchor statistics of a dataset config: foreground / background / ignore anchors per image.

    python tools/anchor_stats.py                                   # the default dataset
    python tools/anchor_stats.py dataset=synthetic_bg2000 --images 200
    python tools/anchor_stats.py dataset=coco128 model.matcher.ignore_ioa_thresh=0.7

Takes the same overrides as train.py, builds the training set (without flips) and the
model's anchors and matcher, and prints the mean counts and the background:foreground ratio:
the number that decides how hard the background problem is for a one-stage detector.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

import train  # noqa: E402,F401  (registers the config resolvers)
from datasets.transforms import build_transforms, collate  # noqa: E402


def anchor_stats(cfg, max_images: int = 100, batch_size: int = 16) -> dict:
    """Mean #fg, #bg, #ignore anchors per image over the first ``max_images`` training images."""
    d = cfg.dataset
    ds = instantiate(d.train, transforms=build_transforms(False, d.min_size, d.max_size))
    anchor_gen = instantiate(cfg.model.anchor_generator)
    matcher = instantiate(cfg.model.matcher)
    totals = torch.zeros(3, dtype=torch.float64)
    n = min(max_images, len(ds))
    for start in range(0, n, batch_size):
        batch = collate([ds[i] for i in range(start, min(n, start + batch_size))], d.size_divisible)
        if batch is None:
            continue
        images, targets = batch
        h, w = images.shape[-2:]
        anchors = anchor_gen.gen([(-(-h // s), -(-w // s)) for s in anchor_gen.strides])
        labels, _ = matcher.match_batch(anchors, [t["boxes"] for t in targets], [t["labels"] for t in targets],
                                        ds.num_classes, [t["ignore_boxes"] for t in targets])
        k = ds.num_classes
        totals += torch.tensor([((labels >= 0) & (labels < k)).sum(), (labels == k).sum(), (labels == -1).sum()],
                               dtype=torch.float64)
    fg, bg, ign = (totals / n).tolist()
    return {"images": n, "anchors": fg + bg + ign, "fg": fg, "bg": bg, "ignore": ign,
            "bg_per_fg": bg / fg if fg else float("inf")}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="config overrides, as for train.py")
    p.add_argument("--images", type=int, default=100)
    args = p.parse_args()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=args.overrides)
    s = anchor_stats(cfg, args.images)
    print(f"{cfg.dataset.name}: {s['images']} images, {s['anchors']:.0f} anchors/image: "
          f"fg {s['fg']:.1f}  bg {s['bg']:.1f}  ignore {s['ignore']:.1f}  -> background:foreground 1:{s['bg_per_fg']:.0f}")


if __name__ == "__main__":
    main()
