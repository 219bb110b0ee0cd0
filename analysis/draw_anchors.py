"""One image's anchor assignment, level by level: the label contract as a picture.

    python -m tools.draw_anchors --out anchors.png                     # train image 0 of the default dataset
    python -m tools.draw_anchors --index 3 --split val --out a.png dataset=coco_sample
    python -m tools.draw_anchors --out atss.png assigner=atss          # under another assigner

Takes the same overrides as train.py, builds the image as training sees it (resized, no flip)
and the model's anchors and assigner, and draws one panel per pyramid level: the ground truth
(green) and crowd regions (hatched), the foreground anchors (label 0..K-1; max_iou: IoU >= the
foreground threshold, or a gt's best anchor; atss: see detection/atss.py) as blue boxes, the
ignored ones (label -1: IoU between max_iou's thresholds, or inside a crowd region) as orange
boxes, and each location with a background anchor (label K) as a white dot. The title names
the assigner and counts each. Anchors on the batch padding are not drawn (there is none for a
single image beyond the size_divisible rounding).
"""

import argparse
import sys

import numpy as np
import torch
from hydra.utils import instantiate
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from analysis.anchor_scores import inside_image
from analysis.anchor_stats import image_anchors
from analysis.plots import save_png
from datasets.transforms import IMAGENET_MEAN, IMAGENET_STD
from detection import build


def assignment(cfg, split: str = "train", index: int = 0):
    """(image Tensor[3, H, W], target, anchors Tensor[R, 4], labels Tensor[R], per-level anchor
    counts, strides, class names) of image ``index`` of ``split``, as a run assigns them."""
    ds = build.dataset(cfg, split, augment=False)
    if not 0 <= index < len(ds):
        raise ValueError(f"--index {index}: the {split} split of dataset={cfg.dataset.name} has {len(ds)} images")
    model = build.model(cfg, ds.num_classes)
    batch = next(iter(build.eval_loader(cfg, ds, [index])))
    if batch is None:
        raise ValueError(f"image {index} of the {split} split could not be read")
    images, targets = batch
    anchors, sizes = image_anchors(model, images)
    labels, _ = model.match(anchors, targets, sizes)  # (1, R)
    return (images[0], targets[0], anchors, labels[0], model.anchor_generator.num_anchors_per_level(sizes),
            list(model.backbone.strides), ds.class_names)


def _show(image: torch.Tensor) -> np.ndarray:
    """The loader's normalized image back to RGB in [0, 1]."""
    x = image.float() * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def outlines(ax, boxes, color: str, lw: float) -> None:
    """``boxes`` (Tensor[n, 4], x1 y1 x2 y2) drawn as outlines in one artist (a PolyCollection):
    one Rectangle patch per anchor took most of the figure's time (thousands at P3)."""
    x1, y1, x2, y2 = boxes.unbind(1)
    corners = torch.stack([torch.stack(c, 1) for c in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))], 1)
    ax.add_collection(PolyCollection(corners.numpy(), facecolors="none", edgecolors=color, linewidths=lw))


def draw(image, target, anchors, labels, per_level, strides, class_names, path, assigner: str = "") -> list[dict]:
    """The figure (see the module docstring), titled with ``assigner`` (its repr); returns the
    counts per level."""
    k = len(class_names)
    h, w = target["size"]
    fig = Figure(figsize=(3.6 * len(per_level), 1.0 + 3.6 * h / max(w, 1)))
    counts, start = [], 0
    for i, (n, stride) in enumerate(zip(per_level, strides)):
        a, lab = anchors[start:start + n], labels[start:start + n]
        start += n
        inside = inside_image(a, [(h, w)])[0]
        a, lab = a[inside], lab[inside]
        cx, cy = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
        fg, ign, bg = (lab >= 0) & (lab < k), lab == -1, lab == k
        counts.append({"level": i, "stride": stride, "fg": int(fg.sum()), "ignore": int(ign.sum()), "bg": int(bg.sum())})
        ax = fig.add_subplot(1, len(per_level), i + 1)
        ax.imshow(_show(image[:, :h, :w]))
        # one dot per location with a background anchor (its A anchors share the center)
        centers = torch.unique(torch.stack([cx[bg], cy[bg]], 1), dim=0)
        ax.scatter(centers[:, 0].numpy(), centers[:, 1].numpy(), s=max(0.3, stride / 16), c="white",
                   alpha=0.6, linewidths=0)
        outlines(ax, a[ign], "tab:orange", 0.6)
        outlines(ax, a[fg], "tab:blue", 1.0)
        for box, label in zip(target["boxes"].tolist(), target["labels"].tolist()):
            ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False,
                                   edgecolor="tab:green", lw=1.6))
            ax.text(box[0], box[1] - 1, class_names[label], color="white", fontsize=6, va="bottom",
                    bbox={"facecolor": "tab:green", "edgecolor": "none", "pad": 0.5})
        for box in target["ignore_boxes"].tolist():
            ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False,
                                   edgecolor="tab:green", hatch="///", lw=0.8))
        ax.set(xlim=(0, w), ylim=(h, 0), title=f"P{round(np.log2(stride))} (stride {stride}): fg {counts[-1]['fg']}, "
               f"ignore {counts[-1]['ignore']}, bg {counts[-1]['bg']}")
        ax.title.set_fontsize(7)
        ax.axis("off")
    fig.suptitle(("Anchor assignment" + (f" by {assigner}" if assigner else "") + "\nforeground blue, ignore orange, "
                  "background white dots; ground truth green (crowd hatched)"), fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=120)
    return counts


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m tools.draw_anchors", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="config overrides, as for train.py")
    p.add_argument("--split", choices=("train", "val"), default="train")
    p.add_argument("--index", type=int, default=0, help="the image's position in the split")
    p.add_argument("--out", required=True, help="the figure (.png)")
    args = p.parse_args(argv)
    try:
        cfg = build.config(args.overrides)
        parts = assignment(cfg, args.split, args.index)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"tools.draw_anchors: error: {e}")
    counts = draw(*parts, args.out, assigner=repr(instantiate(cfg.assigner)))
    for c in counts:
        print(f"P{round(np.log2(c['stride']))} stride {c['stride']}: fg {c['fg']}  ignore {c['ignore']}  bg {c['bg']}")
    print(f"wrote {args.out}")
    return counts


if __name__ == "__main__":
    main()
