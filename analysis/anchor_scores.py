"""How confident a trained detector is on background anchors, against foreground anchors.

For every anchor inside the image (padding anchors are left out) of the evaluated images, its
highest foreground probability ``max_k cls_loss.scores(logits)[k]`` (the score inference ranks
by), split by what the assigner assigns it: foreground (labels 0..K-1) or background (K);
ignored anchors are left out. The background handling decides exactly this: a loss that lets
easy background anchors go keeps their scores low; one that does not, or that over-suppresses,
shows here before it shows in AP.

Written by the run analysis (analysis/callback.py) into ``<run>/analysis/``:
anchor_scores.json ({"edges": histogram bin edges, "fg"/"bg": counts per bin, "fg_anchors",
"bg_anchors", "images", "score_thresh": the model's inference threshold,
"bg_above_thresh_per_image": background anchors scoring >= it per image (each one a candidate
false positive before NMS), "fg_above_thresh_share", "fg_median", "bg_median", "bg_p999":
quantiles of the scores}) and anchor_scores.png. Also on its own:

    python -m tools.anchor_scores RUN_DIR [--images N]

The bins are fixed (10 per decade from 1e-6 to 1, scores below 1e-6 in the first), so runs and
seeds add up bin by bin (the sweep report sums them per method).
"""

import argparse
import os
import sys

import numpy as np
import torch

from analysis.plots import plot_histograms

# [0, 1e-6), then 10 bins per decade up to 1 (1 itself in the last bin, as np.histogram does)
EDGES = np.concatenate([[0.0], np.logspace(-6, 0, 61)])


def inside_image(anchors, sizes) -> torch.Tensor:
    """Tensor[N, R] bool: anchor centers within each image's own (unpadded) size (h, w).

    Anchors: Tensor[R, 4] xyxy; sizes: [(h, w)] per image. The rest lie on batch padding."""
    cx = (anchors[:, 0] + anchors[:, 2]) / 2
    cy = (anchors[:, 1] + anchors[:, 3]) / 2
    hw = torch.tensor(sizes, dtype=anchors.dtype, device=anchors.device)  # (N, 2)
    return (cx[None] < hw[:, 1:2]) & (cy[None] < hw[:, 0:1])  # (N, R)


@torch.no_grad()
def collect_scores(model, batches, device=None, channels_last: bool = False):
    """(fg scores Tensor[P], bg scores Tensor[Q], images) over ``batches`` of (images, targets).

    The model in eval mode; targets as the data loader gives them (boxes, labels, ignore_boxes,
    ``size`` (h, w) after resizing)."""
    from detection.engine import to_device  # what evaluation does with a batch

    model.eval()
    device = device or torch.device("cpu")
    k = model.num_classes
    fg, bg, n = [torch.zeros(0)], [torch.zeros(0)], 0
    for batch in batches:
        if batch is None:  # only unreadable images (on_bad_image=skip)
            continue
        images, targets = to_device(*batch, device, channels_last)
        cls_logits, _, anchors, sizes = model.predict(images)  # (N, R, C)
        labels, _ = model.match(anchors, targets, sizes)  # (N, R)
        score = model.cls_loss.scores(cls_logits.float()).amax(-1)  # (N, R)
        inside = inside_image(anchors, [tuple(t["size"]) for t in targets])
        fg.append(score[inside & (labels >= 0) & (labels < k)].cpu())
        bg.append(score[inside & (labels == k)].cpu())
        n += len(targets)
    return torch.cat(fg), torch.cat(bg), n


def summarize(fg: torch.Tensor, bg: torch.Tensor, images: int, score_thresh: float) -> dict:
    """anchor_scores.json's content (see the module docstring) from the two score sets."""
    def hist(x):
        return np.histogram(x.double().clamp(0, 1).numpy(), bins=EDGES)[0].tolist()

    def quantile(x, q):
        return round(float(np.quantile(x.numpy(), q)), 8) if len(x) else None

    return {"edges": [float(e) for e in EDGES], "fg": hist(fg), "bg": hist(bg),
            "fg_anchors": len(fg), "bg_anchors": len(bg), "images": images, "score_thresh": score_thresh,
            "bg_above_thresh_per_image": float((bg >= score_thresh).sum()) / images if images else None,
            "fg_above_thresh_share": float((fg >= score_thresh).float().mean()) if len(fg) else None,
            "fg_median": quantile(fg, 0.5), "bg_median": quantile(bg, 0.5), "bg_p999": quantile(bg, 0.999)}


def anchor_scores(cfg, eval_ds, checkpoint, out_dir, max_images: int | None = None) -> dict:
    """anchor_scores.json and .png in ``out_dir``: the weights of ``checkpoint`` (a run's
    last.pt) built as ``cfg``'s model, on ``eval_ds`` (its first ``max_images``)."""
    from detection import build
    from detection.run_folder import load_checkpoint, write_json_atomic

    model = build.model(cfg, eval_ds.num_classes)
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    device = build.pick_device(cfg.device)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    n = len(eval_ds) if max_images is None else min(max_images, len(eval_ds))
    fg, bg, images = collect_scores(model, build.eval_loader(cfg, eval_ds, range(n)), device, cfg.channels_last)
    result = summarize(fg, bg, images, float(model.score_thresh))
    os.makedirs(out_dir, exist_ok=True)
    write_json_atomic(os.path.join(out_dir, "anchor_scores.json"), result)
    plot_histograms({f"{model.cls_loss.name} ({images} images)": result},
                    os.path.join(out_dir, "anchor_scores.png"), result["score_thresh"])
    return result


def run_anchor_scores(run_dir, out_dir, max_images: int | None = None) -> dict:
    """``anchor_scores`` of a finished run folder: its final weights (checkpoints/last.pt) on
    the images it was evaluated on (its config's eval split)."""
    from omegaconf import OmegaConf

    from detection import build
    from detection.run_folder import RunFolder

    folder = RunFolder(run_dir)
    for path, what in ((folder.config, "resolved config"), (folder.checkpoint, "final weights")):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the anchor scores need the run's {what}")
    cfg = OmegaConf.load(folder.config)
    return anchor_scores(cfg, build.datasets(cfg)[1], folder.checkpoint, out_dir, max_images)


def format_summary(s: dict) -> str:
    return (f"anchor scores ({s['images']} images): background anchors {s['bg_anchors']:,} (median "
            f"{s['bg_median']:.2g}, 99.9th pct {s['bg_p999']:.3g}), >= {s['score_thresh']}: "
            f"{s['bg_above_thresh_per_image']:.1f} per image; foreground anchors {s['fg_anchors']:,} (median "
            f"{s['fg_median']:.3g}), >= {s['score_thresh']}: {100 * s['fg_above_thresh_share']:.1f}%")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m tools.anchor_scores", description=__doc__.split("\n")[0])
    p.add_argument("run_dir", help="a finished run folder (config.yaml, checkpoints/last.pt)")
    p.add_argument("--images", type=int, default=None, help="only the first N evaluated images")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/analysis)")
    args = p.parse_args(argv)
    out = args.out or os.path.join(args.run_dir, "analysis")
    try:
        s = run_anchor_scores(args.run_dir, out, args.images)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"tools.anchor_scores: error: {e}")
    print(format_summary(s))
    print(f"wrote anchor_scores.json and anchor_scores.png to {out}")
    return s


if __name__ == "__main__":
    main()
