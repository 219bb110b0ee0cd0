"""Figure 4 of the focal loss paper: how the classification loss is spread over anchors.

For a trained model, the per-anchor classification loss on validation images is split into
foreground and background anchors; each set is sorted from low to high loss and its
cumulative sum normalized to 1. A curve that stays near 0 and jumps at the end means a few
hard anchors carry nearly all of the loss (what focal loss does to the background).
"""

from functools import partial

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from datasets.transforms import build_transforms, collate
from detection import checkpoint as ckpt


def pick_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def val_batches(cfg, num_images: int, cache: dict | None = None) -> tuple[int, list]:
    """(K, batches of the first ``num_images`` validation images) for a run's config, built as
    train.py builds its validation set, in batches of ``schedule.eval_batch_size`` padded by
    ``collate`` to ``dataset.size_divisible`` (padding anchors count as background, as in training).

    ``cache``: a dict shared between calls; runs of one sweep usually read the same images,
    and decoding them is a third of the time of a run's curves.
    """
    key = (OmegaConf.to_yaml(cfg.dataset), cfg.schedule.eval_batch_size, num_images)
    if cache is not None and key in cache:
        return cache[key]
    ds = instantiate(cfg.dataset.val, transforms=build_transforms(False, cfg.dataset.min_size, cfg.dataset.max_size))
    # Padded as train.py pads (checkpoints from before dataset.size_divisible: collate's default).
    pad = partial(collate, size_divisible=cfg.dataset.get("size_divisible", 128))
    loader = DataLoader(Subset(ds, range(min(num_images, len(ds)))), batch_size=cfg.schedule.eval_batch_size,
                        collate_fn=pad, num_workers=0)
    result = ds.num_classes, [b for b in loader if b is not None]  # None: every image skipped as bad
    if cache is not None:
        cache[key] = result
    return result


@torch.no_grad()
def anchor_loss_samples(checkpoint_path, num_images: int = 64, device: str = "cpu",
                        cache: dict | None = None) -> tuple[Tensor, Tensor]:
    """Per-anchor classification losses of foreground and of background anchors, float32 1-D.

    The model and loss are built from the checkpoint's own config exactly as train.py builds
    them, in eval mode, and run on ``val_batches(config, num_images, cache)``.
    """
    state = ckpt.load(checkpoint_path)
    if "config" not in state:
        raise ValueError(f"checkpoint {checkpoint_path} holds no 'config': cannot rebuild its model and data")
    cfg = OmegaConf.create(state["config"])
    dev = pick_device(device)
    k, batches = val_batches(cfg, num_images, cache)
    model = instantiate(cfg.model, num_classes=k, cls_loss=instantiate(cfg.loss))
    model.load_state_dict(state["model"])
    model.to(dev).eval()
    fg, bg = [], []
    tensors = ("boxes", "labels", "ignore_boxes")
    for images, targets in batches:
        targets = [{n: (v.to(dev) if n in tensors else v) for n, v in t.items()} for t in targets]
        losses, labels = model.anchor_losses(images.to(dev), targets)  # (N, R), (N, R)
        losses, labels = losses.float().cpu(), labels.cpu()
        fg.append(losses[(labels >= 0) & (labels < k)])
        bg.append(losses[labels == k])
    empty = torch.zeros(0)
    return torch.cat(fg) if fg else empty, torch.cat(bg) if bg else empty


def cumulative_loss(losses: Tensor, max_points: int | None = None) -> tuple[Tensor, Tensor]:
    """Tensor[P] losses -> (fraction of anchors, cumulative normalized loss), each Tensor[P].

    Sorted from low to high loss: point i is the share of the total loss held by the i + 1
    lowest-loss anchors, at x = (i + 1) / P. ``max_points`` keeps that many evenly spaced
    points (always the last) for plotting. Empty or all-zero losses give empty tensors.

    Example: losses [3, 1, 0, 4] -> x [.25, .5, .75, 1], y [0, .125, .5, 1].
    """
    losses = losses.double().flatten()
    total = losses.sum()
    if len(losses) == 0 or not total > 0:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    y = losses.sort().values.cumsum(0) / total
    x = torch.arange(1, len(y) + 1, dtype=torch.float64) / len(y)
    if max_points is not None and len(y) > max_points:
        idx = torch.linspace(0, len(y) - 1, max_points).round().long()
        x, y = x[idx], y[idx]
    return x, y


def hardest_share(losses: Tensor, fraction: float) -> float | None:
    """The share of the total loss held by the ``fraction`` of anchors with the highest loss.

    At least one anchor is counted. None when there is no loss to share.
    """
    losses = losses.double().flatten()
    total = losses.sum()
    if len(losses) == 0 or not total > 0:
        return None
    n = max(1, round(fraction * len(losses)))
    return float(losses.topk(n).values.sum() / total)
