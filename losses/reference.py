"""The classification losses in plain PyTorch: readable, differentiated by autograd, and the
file to copy when adding a background handling.

Why one file and not each next to its fused version: the fused files (``losses.focal``,
``losses.softmax_bg``) are mostly chunking and hand-derived gradients, which a new variant
should not start from; here the variants stand side by side, ten lines each, and differ
only where they treat background differently. The fused versions compute the same numbers
with a fraction of the memory; the tests check them against these, and these against
torchvision and ``F.cross_entropy``. ``loss.fused=false`` trains with these.

To add a variant: copy a function below (logits Tensor[N, R, C], labels Tensor[N, R] with -1
ignore, 0..K-1 class, K background -> per-anchor loss Tensor[N, R], 0 where ignored), wrap it
in a class with ``num_logits``, ``init_bias``, ``scores`` and ``__call__`` as in
``losses.focal`` (DEVELOPERS.md, "Contracts"), and add a yaml to ``configs/loss/``.
Normalization happens outside (``losses.normalizer``).

Both work in log space (``logsigmoid``, ``log_softmax``), so that loss and gradient stay
finite for logits of any size: ``log(sigmoid(x))`` is -inf at x = -200 in float32.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from losses._fused import check_inputs


def _float(logits: Tensor) -> Tensor:
    """fp16/bf16 logits are computed in float32 (their exp under- and overflows early)."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def sigmoid_focal_loss(logits: Tensor, labels: Tensor, gamma: float = 2.0, alpha: float | None = 0.25) -> Tensor:
    """Sigmoid focal loss: Tensor[N, R, K] logits, Tensor[N, R] labels -> Tensor[N, R].

    Per anchor, summed over the K classes with targets t_k = [k == label] (background: all 0)::

        w_t (1 - p_t)^gamma CE(x_k, t_k),   w_t = alpha if t = 1 else 1 - alpha (1 if alpha is None)

    gamma = 0 is alpha-balanced binary cross-entropy (``loss=bce_alpha``).
    """
    k = check_inputs("sigmoid_focal_loss", logits, labels)
    x = _float(logits)
    t = F.one_hot(labels.long().clamp(min=0), k + 1)[..., :k].to(x.dtype)  # (N, R, K); label K -> zeros
    z = torch.where(t == 1, x, -x)  # the logit of the true outcome: p_t = sigmoid(z)
    ce = -F.logsigmoid(z)
    # (1 - p_t)^gamma = sigmoid(-z)^gamma, through log space: pow(1 - p_t, gamma) has an
    # infinite derivative once p_t rounds to 1 when gamma < 1, and autograd gives inf * 0 = NaN.
    modulation = torch.exp(gamma * F.logsigmoid(-z))
    weight = 1.0 if alpha is None else alpha * t + (1 - alpha) * (1 - t)
    return (weight * modulation * ce).sum(-1) * (labels >= 0)  # (N, R), 0 where ignored


def softmax_bg_loss(logits: Tensor, labels: Tensor, bg_weight: float = 1.0) -> Tensor:
    """Softmax cross-entropy with a background class: Tensor[N, R, K+1] logits (background
    last), Tensor[N, R] labels -> Tensor[N, R]. Background anchors weigh ``bg_weight``."""
    k = check_inputs("softmax_bg_loss", logits, labels, extra_columns=1)
    x = _float(logits)
    labels = labels.long()
    # Ignored anchors read column 0 (any valid index) and are weighted 0 below.
    nll = -F.log_softmax(x, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (N, R)
    weight = torch.where(labels == k, bg_weight, (labels >= 0).to(x.dtype))  # (N, R)
    return nll * weight


def rank_sort_loss(logits: Tensor, labels: Tensor, quality: Tensor, delta: float = 0.5) -> Tensor:
    """Rank & Sort loss booked per anchor, by its definition (``losses.rank_sort``, whose fast
    version this checks): Tensor[N, R, K] logits, Tensor[N, R] labels and quality -> Tensor[N, R].

    Dense: every positive against every element, P x N x R x K values, as the official
    code's loop over the positives; for small inputs (the tests). The loss is not
    differentiated: its backward is the paper's identity update, which autograd gives here
    as the gradient of a surrogate with the loss's value, sum over primary terms of
    L_ij (x_j - x_i) with L_ij detached: d/dx_j = L_ij, d/dx_i = -L_ij.
    """
    k = check_inputs("rank_sort_loss", logits, labels)
    x = _float(logits).reshape(-1, k)  # (E rows, K)
    lab = labels.reshape(-1).long()
    fg_rows = ((lab >= 0) & (lab < k)).nonzero().squeeze(1)  # (P,)
    fg_cols = lab[fg_rows]
    positive = torch.zeros_like(x, dtype=torch.bool)
    positive[fg_rows, fg_cols] = True
    negative = (lab >= 0)[:, None] & ~positive  # (R, K)
    xp, y = x[fg_rows, fg_cols], quality.reshape(-1)[fg_rows].to(x.dtype)  # (P,)

    def step(t):  # H(t): the smoothed step of the paper (delta = 0: the step itself)
        return (t / (2 * delta) + 0.5).clamp(0, 1) if delta > 0 else (t >= 0).to(t.dtype)

    with torch.no_grad():
        h_neg = step(x[None] - xp[:, None, None]) * negative  # (P, R, K): H(x_j - x_i) over negatives
        h_pos = step(xp[None, :] - xp[:, None])  # (P, P): H(x_k - x_i), i itself included
        rank_pos = h_pos.sum(1)
        rank = rank_pos + h_neg.sum((1, 2))
        l_rank = h_neg / rank[:, None, None]  # RE(i) H(x_j - x_i) / FP(i), as FP(i) / rank(i) = RE(i)
        above = y[None, :] >= y[:, None]  # y_k >= y_i
        current = (h_pos * (1 - y)).sum(1) / rank_pos
        target = (h_pos * above * (1 - y)).sum(1) / (h_pos * above).sum(1)
        missorted = h_pos * ~above  # positives with a lower IoU ranked near or above i
        spread = missorted.sum(1)
        l_sort = torch.where(spread > 0, (current - target) / spread.clamp(min=1e-300), 0.0)[:, None] * missorted
    booked = l_rank.sum(0).index_put((fg_rows, fg_cols), l_sort.sum(0), accumulate=True)  # (R, K)
    surrogate = (l_rank * (x[None] - xp[:, None, None])).sum(0) + torch.zeros_like(x).index_put(
        (fg_rows, fg_cols), (l_sort * (xp[None, :] - xp[:, None])).sum(0))
    return (booked + surrogate - surrogate.detach()).sum(-1).view(labels.shape)
