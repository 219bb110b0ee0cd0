"""Figure 4 of the focal loss paper: how the classification loss is spread over anchors.

Each run saves the per-anchor classification losses of its first validation images
(``anchor_losses.pt``, see detection/run_folder.py); split into foreground and background
anchors, each set is sorted from low to high loss and its cumulative sum normalized to 1. A
curve that stays near 0 and jumps at the end means a few hard anchors carry nearly all of the
loss (what focal loss does to the background).
"""

import torch
from torch import Tensor


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


HARDEST = {"hardest_10_fg": ("fg", 0.10), "hardest_1_bg": ("bg", 0.01), "hardest_10_bg": ("bg", 0.10)}


def figure4_numbers(fg: Tensor, bg: Tensor) -> dict:
    """What the report's Figure 4 table shows of one run's per-anchor losses: the number of
    foreground and background anchors and, per key of HARDEST, the share of the loss held by
    that fraction of the hardest anchors of that kind (``hardest_share``; None: no loss).

    Example: fg losses [3, 1, 0, 4] -> fg_anchors 4, hardest_10_fg 4 / 8 = 0.5 (one anchor).
    """
    losses = {"fg": fg, "bg": bg}
    return {"fg_anchors": len(fg), "bg_anchors": len(bg),
            **{k: hardest_share(losses[kind], f) for k, (kind, f) in HARDEST.items()}}
