"""Loss anatomy: which anchors the classification loss comes from (logged by the engine)."""

import torch
from torch import Tensor


@torch.no_grad()
def loss_anatomy(loss: Tensor, labels: Tensor, scores: Tensor) -> dict[str, Tensor]:
    """Shares of the classification loss from foreground, background and easy background.

    Args:
        loss: Tensor[N, R] per-anchor classification loss (any variant).
        labels: Tensor[N, R] int: -1 ignore, 0..K-1 class, K background.
        scores: Tensor[N, R, K] foreground probabilities (the loss's ``scores``).

    Returns:
        float32 scalars "fg_share", "bg_share", "easy_bg_share": the loss summed over
        foreground / background / easy-background anchors divided by the loss summed over
        all non-ignored anchors (0 when that total is 0). An easy background anchor is a
        background anchor whose largest foreground probability is < 0.5, i.e. one the
        detector already classifies correctly. fg_share + bg_share = 1 when the total > 0.

    Example: labels [0, 2, 2, -1] (K = 2), loss [1, 2, 5, 9], max scores [.9, .3, .6, .1]:
    total 8, fg 1/8, bg 7/8, easy bg (the .3 anchor) 2/8; the ignored 9 counts nowhere.
    """
    if loss.shape != labels.shape or scores.dim() < 1 or scores.shape[:-1] != labels.shape \
            or scores.shape[-1] < 1:
        raise ValueError(f"loss_anatomy: expected loss Tensor[N, R], labels Tensor[N, R] and scores "
                         f"Tensor[N, R, K] (K >= 1) with the same N, R; got {tuple(loss.shape)}, "
                         f"{tuple(labels.shape)}, {tuple(scores.shape)}")
    K = scores.shape[-1]
    loss = loss.float()
    fg = (labels >= 0) & (labels < K)
    bg = labels == K
    easy_bg = bg & (scores.amax(-1) < 0.5)
    # torch.where rather than boolean indexing or an `if`: no host sync on a GPU.
    fg_sum, bg_sum = torch.where(fg, loss, 0).sum(), torch.where(bg, loss, 0).sum()
    easy_sum = torch.where(easy_bg, loss, 0).sum()
    total = fg_sum + bg_sum

    def share(part: Tensor) -> Tensor:
        return torch.where(total > 0, part / total.clamp(min=torch.finfo(total.dtype).tiny), 0.0)

    return {"fg_share": share(fg_sum), "bg_share": share(bg_sum), "easy_bg_share": share(easy_sum)}
