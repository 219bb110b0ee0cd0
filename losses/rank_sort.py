"""Rank & Sort loss (Oksuz et al., ICCV 2021), with the paper's identity-update backward:
foreground and background compete only through the ranking of their scores; no
weighting hyperparameter, no sampling, no prior to tune.

Elements: every (anchor, class) of the non-ignored anchors. The positives P are the
foreground anchors' own classes, with the continuous label y_i = IoU of the anchor's decoded
(detached) prediction with its gt (``extras``); every other element is a negative (all of a
background anchor's classes, and a foreground anchor's other classes). With the smoothed
step H(t) = clamp(t / (2 delta) + 1/2, 0, 1) (delta = 0: [t >= 0]) of logit differences, for
a positive i::

    rank+(i) = sum_{k in P} H(x_k - x_i)          (i itself included: H(0) = 1/2, as the official code)
    FP(i)    = sum_{j in N} H(x_j - x_i)          rank(i) = rank+(i) + FP(i)
    ranking error  RE(i) = FP(i) / rank(i)
    sorting error  SE(i) = sum_{k in P} H(x_k - x_i)(1 - y_k) / rank+(i)
                          - sum_{k in P, y_k >= y_i} H(x_k - x_i)(1 - y_k) / sum_{k in P, y_k >= y_i} H(x_k - x_i)

and the paper's loss is the mean over P of RE(i) + SE(i) (both in [0, 1]). Each error is
split into primary terms over the elements that cause it (the paper's ranking and sorting
probability mass functions): L_ij = RE(i) H(x_j - x_i) / FP(i) = H(x_j - x_i) / rank(i) for
a negative j ranked near or above i, and L_ik = SE(i) H(x_k - x_i) / M(i) for a positive k
with y_k < y_i ranked near or above i (M(i) the sum of those H). The identity update then
pushes each cause down by its terms and each positive up by its own error::

    update(j) = + sum_i L_ij                          (j a cause, negative or positive)
    update(i) = - sum_j L_ij  [= - RE(i) - SE(i)]     (i a positive with an error)

so the updates sum to zero over all elements: foreground and background balance (the
paper's Theorem). That update replaces the gradient in ``backward``.

Per-anchor loss (the contract's Tensor[N, R]): each primary term is booked on its cause, so a
background anchor carries the ranking error it causes, a foreground anchor the sorting error
it causes (and the ranking error its other classes cause); the anchors' losses sum to
sum_i RE(i) + SE(i). The project's normalizer then divides by the (EMA of the) foreground
count, i.e. |P|: the paper's mean. An anchor can be pushed up (a positive with an error)
while carrying no loss of its own. Upstream weights w per anchor (the normalizer's 1 / n,
uniform in training) weigh each primary term by its cause's anchor: update(j) = w_j sum_i
L_ij, update(i) = - sum_j w_j L_ij; with w uniform this is the paper's update times w.

Per batch, not per image: the positives of all the images a process holds are ranked
against the negatives of all of them, as the official implementation flattens a GPU's
mini-batch; AP, what the loss stands for, ranks the detections of the whole dataset, not
of one image. Under DDP each rank ranks its own share of the batch (an all-gather of every
logit would be needed otherwise, and gradients do not flow through it), again as the
official code; the normalizer's count is global, so each positive's error weighs
1 / (global foreground count), and a DDP run differs from one process on the same global
batch only in which negatives each positive is ranked against.

Departures: the official RS-RetinaNet also replaces the box loss by a GIoU whose weight is set
each iteration to the ratio of the RS loss to it ("self-balance"); here the box loss stays
the project's, so that the comparison changes only the classification loss. Its tuned
learning rate (0.008 at batch 16 for RS-RetinaNet vs 0.01) differs from focal's; the
project's lr was tuned for focal and is used as is. A positive whose prediction has IoU 0
with its gt stays a positive (the official code makes it a negative: its targets > 0 test).

Cost: O(E log E) for E elements: the negatives are sorted once, and every FP(i) and every
sum_i H(x_j - x_i) / rank(i) comes from prefix sums over the sorted values (H is piecewise
linear, so a window sum is a count and a sum of logits); only positive x positive terms are
dense (P^2; P = 2000 positives is 16 MB in float32). The official code loops over the
positives in Python, each over every relevant negative: O(P E). ``losses.reference.
rank_sort_loss`` is that dense definition in plain autograd (its gradient is the update
through a surrogate), the tests' reference.
"""

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from losses._fused import check_inputs
from losses.focal import SigmoidOutputs
from losses.qfl import check_quality


def rank_sort_loss(logits: Tensor, labels: Tensor, quality: Tensor, delta: float = 0.5) -> Tensor:
    """Tensor[N, R, K] logits, Tensor[N, R] labels and quality -> Tensor[N, R] float32 loss
    booked per anchor (module docstring); its backward is the identity update."""
    k = check_inputs("rank_sort_loss", logits, labels)
    check_quality("rank_sort_loss", quality, labels)
    x = logits.reshape(-1, k)
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    loss = _RankSort.apply(x, labels.reshape(-1).long(), quality.reshape(-1).detach(), float(delta))
    return loss.view(labels.shape)


def _smoothed_step(t: Tensor, delta: float) -> Tensor:
    """H(t): clamp(t / (2 delta) + 1/2, 0, 1), or [t >= 0] when delta = 0."""
    return (t / (2 * delta) + 0.5).clamp_(0, 1) if delta > 0 else (t >= 0).to(t.dtype)


def _window(sorted_x: Tensor, values: Tensor, delta: float, inside_right: bool):
    """Index bounds in ``sorted_x`` (ascending) around each of ``values``.

    ``inside_right``: for H(sorted - value): elements at or above value + delta count 1 (from
    ``full``), the window (value - delta, value + delta) linearly (from ``lo`` to ``full``).
    Otherwise for H(value - sorted): elements at or below value - delta count 1 (up to
    ``full``), the window from ``full`` to ``hi``.
    """
    if inside_right:
        full = torch.searchsorted(sorted_x, values + delta, side="left")
        lo = full if delta == 0 else torch.searchsorted(sorted_x, values - delta, side="right")
        return lo, full
    full = torch.searchsorted(sorted_x, values - delta, side="right")
    hi = full if delta == 0 else torch.searchsorted(sorted_x, values + delta, side="left")
    return full, hi


def _prefix(v: Tensor) -> Tensor:
    """[0, v_0, v_0 + v_1, ...]: Tensor[M + 1] float64."""
    return torch.cat([v.new_zeros(1), v.cumsum(0)])


class _RankSort(torch.autograd.Function):
    """Tensor[R, K] logits, Tensor[R] labels, Tensor[R] quality -> Tensor[R] booked loss."""

    @staticmethod
    def forward(ctx, x, labels, quality, delta):
        rows, k = x.shape
        valid = labels >= 0
        fg_rows = torch.nonzero(valid & (labels < k)).squeeze(1)  # (P,)
        pos = fg_rows * k + labels[fg_rows]  # (P,) flat element index of each positive
        ctx.shape, ctx.dtype, ctx.delta = x.shape, x.dtype, delta
        loss = torch.zeros(rows, dtype=torch.float64, device=x.device)
        if len(pos) == 0:  # no positive: no error to rank, nothing to push
            ctx.empty = True
            return loss.to(x.dtype)
        ctx.empty = False
        flat = x.detach().reshape(-1).double()
        is_neg = valid.repeat_interleave(k)
        is_neg[pos] = False
        neg = is_neg.nonzero().squeeze(1)  # (M,) flat element index of each negative
        xs, order = torch.sort(flat[neg])  # (M,) ascending
        xp, y = flat[pos], quality[fg_rows].double()  # (P,)

        # FP(i) = sum_j H(x_j - x_i) over the sorted negatives: 1 from `full` on, linear in the window
        lo, full = _window(xs, xp, delta, inside_right=True)
        s = _prefix(xs)
        fp = (len(xs) - full).double()
        if delta > 0:
            n_win = (full - lo).double()
            fp = fp + (s[full] - s[lo] - n_win * xp) / (2 * delta) + 0.5 * n_win

        # positives among themselves, dense: h[i, k] = H(x_k - x_i)
        h = _smoothed_step(xp[None, :] - xp[:, None], delta)  # (P, P)
        rank_pos = h.sum(1)
        rank = rank_pos + fp
        ge = y[None, :] >= y[:, None]  # (P, P): y_k >= y_i, correctly sorted above i
        one_minus_y = 1 - y
        a_cnt, b_cnt = (h * ge).sum(1), (h * ~ge).sum(1)
        a_err, b_err = (h * ge * one_minus_y).sum(1), (h * ~ge * one_minus_y).sum(1)
        # SE = (a + b) / (A + B) - a / A, written so that it is exactly 0 when B = 0; A >= H(0) > 0
        sorting = (b_err * a_cnt - a_err * b_cnt) / (a_cnt * rank_pos)
        l_sort = torch.where(b_cnt > 0, sorting / b_cnt.clamp(min=1e-300), 0.0)[:, None] * h * ~ge  # (P, P)

        # each negative's sum_i H(x_j - x_i) / rank(i), over the positives sorted by logit
        ps, p_order = torch.sort(xp)
        c = (1 / rank)[p_order]
        cs, cxs = _prefix(c), _prefix(c * ps)
        full_p, hi_p = _window(ps, xs, delta, inside_right=False)
        g = cs[full_p]  # (M,) in sorted-negative order
        if delta > 0:
            c_win = cs[hi_p] - cs[full_p]
            g = g + (xs * c_win - (cxs[hi_p] - cxs[full_p])) / (2 * delta) + 0.5 * c_win

        neg_sorted = neg[order]  # flat element of each sorted negative
        loss.index_add_(0, neg_sorted // k, g)
        loss.index_add_(0, fg_rows, l_sort.sum(0))
        ctx.save_for_backward(neg_sorted, xs, g, lo, full, xp, rank, pos, fg_rows, l_sort)
        return loss.to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        rows, k = ctx.shape
        grad = torch.zeros(rows * k, dtype=torch.float64, device=grad_loss.device)
        if ctx.empty:
            return grad.view(rows, k).to(ctx.dtype), None, None, None
        neg_sorted, xs, g, lo, full, xp, rank, pos, fg_rows, l_sort = ctx.saved_tensors
        w = grad_loss.double()
        w_neg = w[neg_sorted // k]  # (M,) weight of each sorted negative's anchor
        grad[neg_sorted] = w_neg * g  # causes of ranking errors: pushed down
        # each positive: - sum_j w_j H(x_j - x_i) / rank(i), the weighted FP from prefix sums
        ws = _prefix(w_neg)
        wfp = ws[-1] - ws[full]
        if ctx.delta > 0:
            wxs = _prefix(w_neg * xs)
            w_win = ws[full] - ws[lo]
            wfp = wfp + (wxs[full] - wxs[lo] - w_win * xp) / (2 * ctx.delta) + 0.5 * w_win
        w_pos = w[fg_rows]
        # sorting: a positive k causing L_ik is pushed down by w_k L_ik, i pushed up by it
        grad[pos] = -wfp / rank + w_pos * l_sort.sum(0) - l_sort @ w_pos
        return grad.view(rows, k).to(ctx.dtype), None, None, None


class RankSortLoss(SigmoidOutputs):
    """Rank & Sort loss, K sigmoid logits per anchor; ``loss=rank_sort``.

    Args:
        delta: half-width of the smoothed step on logit differences (the paper: 0.5);
            0 is the exact step.

    The model passes ``quality=Tensor[N, R]`` (``extras``); inference scores are the
    sigmoids of the logits, unchanged (the ranking of the logits is the ranking of scores).
    """

    name = "rank_sort"
    extras = {"quality": "iou"}

    def __init__(self, delta: float = 0.5):
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not math.isfinite(delta) or delta < 0:
            raise ValueError(f"rank_sort: delta must be a finite number >= 0 (the paper: 0.5), got {delta!r}")
        self.delta = float(delta)

    def __call__(self, logits: Tensor, labels: Tensor, quality: Tensor) -> Tensor:
        """Tensor[N, R, K] logits, Tensor[N, R] labels, Tensor[N, R] quality -> Tensor[N, R] float32."""
        return rank_sort_loss(logits, labels, quality, self.delta)

    def __repr__(self) -> str:
        return f"RankSortLoss(delta={self.delta})"
