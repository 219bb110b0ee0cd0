"""GHM-C, the gradient harmonizing classification loss (Li, Liu, Wang, AAAI 2019).

Sigmoid, K logits per anchor, binary targets t_k = [k == y] (background: all 0). Each
(anchor, class) element has gradient norm g = |sigmoid(x) - t| in [0, 1]; the elements are
histogrammed into ``bins`` equal bins of g, and each is weighted by the inverse density of
its bin, so that the many easy negatives (g ~ 0) and the few outliers (g ~ 1) do not
dominate the gradient. As mmdetection's ``GHMC`` (mmdet/models/losses/ghm_loss.py), with
tot the number of valid elements (non-ignored anchors x K) and n the non-empty bins::

    weight = tot / (count of the element's bin) / n           (momentum = 0)
    weight = tot / acc_sum[bin] / n,  acc_sum[i] = m acc_sum[i] + (1 - m) count_i
                                       (momentum m > 0, updated for non-empty bins only)
    loss = sum over valid elements of weight BCE(x, t) / tot    (weights: constants for the gradient)

Bins: bin i holds edges[i] <= g < edges[i + 1], with mmdetection's edges i / bins in the
dtype of the computation (float32 in training, as mmdetection's float32 edge buffer) and
the last raised by 1e-6 so that g = 1 lands in the last bin. The bin index is found by
comparing with these edges, not as floor(g * bins) alone: the product rounds, which moves
some g within an ulp of an edge into the neighbouring bin (``gradient_bins``). So a g
exactly on an edge goes where mmdetection puts it, bit for bit.

Normalization: mmdetection returns sum(weight * BCE) / tot, a weighted mean over the
valid elements (its GHM RetinaNet trains at RetinaNet's learning rate on it). Here the
division is the project's one normalizer outside the loss (by the foreground count,
``losses.normalizer``), as for every variant, so the weights are mmdetection's times
#fg / tot (#fg: foreground anchors of the batch, at least 1)::

    loss per anchor = sum_k (#fg / tot) weight_k BCE(x_k, t_k)

and the summed loss divided by #fg is mmdetection's loss exactly, gradient included (with
the normalizer's EMA on, up to the ratio of this batch's count to the EMA, as for every
variant). Without the factor (weights averaging 1, as plain BCE's) the loss would be
mmdetection's times tot / #fg ~ K / (foreground fraction): thousands (loss_cls ~2600 at
the first step of the default config, against focal's ~1.1), which diverges at any
learning rate tuned for the other losses.

Distributed: under torch.distributed the per-bin counts, tot and #fg are all-reduced
before the weights are computed. Every rank then uses the weights of the histogram of the whole
global batch, which is what one process on that batch would compute: the weights do not
depend on how many ranks share the batch, and the momentum state ``acc_sum`` stays
identical on every rank (so any rank's checkpoint is the right one). mmdetection counts
per rank: each rank's weights come from its own few images, and its acc_sum drifts apart
from the other ranks'.

Cost: vectorized, no loop over bins. One sigmoid, a few elementwise passes and one
bincount give the histogram; one custom autograd Function computes the loss and its gradient
weight * (sigmoid(x) - t) together, keeping the gradient as the only saved tensor. A few
N x R x K buffers live during the call (sigmoid, bin index, weights, BCE).
"""

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from losses._fused import check_inputs, graph_freed_after_backward
from losses.focal import SigmoidOutputs

# F.softplus returns x itself above its threshold (default 20): off by log1p(e^-20) ~ 2e-9,
# visible in float64. Above 40 the omitted term (4e-18) is below float64's resolution of x,
# and exp(40) is still far from overflow in float32.
_SOFTPLUS_THRESHOLD = 40.0


def gradient_bins(g: Tensor, bins: int) -> Tensor:
    """Tensor[...] gradient norms g in [0, 1] -> Tensor[...] int32 bin index in 0..bins-1.

    Bin i: edges[i] <= g < edges[i + 1], edges[i] = i / bins in g's dtype (a correctly
    rounded division, as mmdetection's ``torch.arange(bins + 1).float() / bins``), the
    last edge raised by 1e-6 (here: g = 1 is clamped into the last bin, the same thing).
    """
    # floor(g * bins) alone is off by one bin for some g within an ulp of an edge: the
    # product rounds (float32, bins = 11: the float just below edges[5] times 11 rounds to
    # 5.0, bin 5 where mmdetection says 4). It is
    # never off by more, so one comparison with each neighbouring edge puts it right;
    # b / bins is the same division as the edges', hence edges[b] bit for bit. Twice as
    # fast as torch.bucketize on the edges, which gives the same bins (the tests check).
    # NaN (from NaN logits) goes to bin 0, so that the loss comes out NaN rather than an
    # index error from converting NaN to int.
    b = torch.mul(g, bins).floor_().nan_to_num_(0.0)  # (...) float, integer-valued
    down = (g < b / bins).to(b.dtype)  # below edges[b]
    up = (g >= b.add(1).div_(bins)).to(b.dtype)  # at or above edges[b + 1]
    return b.add_(up).sub_(down).clamp_(0, bins - 1).to(torch.int32)


def ghm_bin_weights(counts: Tensor, tot: Tensor, momentum: float = 0.0,
                    acc_sum: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Per-bin weights from the histogram, as mmdetection's GHMC.

    Args:
        counts: Tensor[bins] valid elements per bin.
        tot: number of valid elements (a 0-dim Tensor); clamped to >= 1.
        momentum: m in [0, 1); 0 uses this batch's counts, > 0 the running acc_sum.
        acc_sum: Tensor[bins] float32 running counts (None: zeros, the start).
    Returns:
        Tensor[bins] float64 weight of an element in each bin (0 for empty bins) and the
        updated acc_sum (None when momentum = 0).
    """
    nonempty = counts > 0
    n = nonempty.sum().clamp(min=1)
    tot = tot.double().clamp(min=1)
    if momentum > 0:
        acc = torch.zeros(counts.shape, dtype=torch.float32, device=counts.device) if acc_sum is None \
            else acc_sum.to(device=counts.device, dtype=torch.float32)
        # float32 as mmdetection's buffer: m * acc rounds to float32, the count term is added in float32
        update = acc * momentum + ((1 - momentum) * counts.double()).float()
        acc_sum = torch.where(nonempty, update, acc)  # empty bins keep their running count
        density = acc_sum.double()
    else:
        acc_sum = None
        density = counts.double()
    # Empty bins get 0, not tot / 0: no element reads them.
    weight = torch.where(nonempty, tot / density.clamp(min=1e-30), 0.0) / n
    return weight, acc_sum


def ghmc_loss(logits: Tensor, labels: Tensor, bins: int = 10, momentum: float = 0.0,
              acc_sum: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Tensor[N, R, K] logits and Tensor[N, R] integer labels -> (Tensor[N, R] float loss, 0
    where ignored; the updated acc_sum Tensor[bins] float32, None when momentum = 0).

    Any leading shape works. fp16/bf16 logits are computed in float32, float64 in float64.
    """
    K = check_inputs("ghmc_loss", logits, labels)
    _check_bins_momentum(bins, momentum)
    shape = labels.shape
    x = logits.reshape(-1, K)  # (R, K), R = all anchors of the batch
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    x = x.contiguous()
    labels = labels.reshape(-1).long()  # (R,)
    valid = labels >= 0
    fg_rows = torch.nonzero(valid & (labels < K)).squeeze(1)  # (P,)
    fg_cols = labels[fg_rows]
    with torch.no_grad():
        p = torch.sigmoid(x)  # (R, K)
        b = gradient_bins(p, bins)  # (R, K) int32; g = p for the 0 targets
        b[fg_rows, fg_cols] = gradient_bins(1 - p[fg_rows, fg_cols], bins)  # g = 1 - p for the 1 targets
        # Histogram of the valid elements: all elements minus those of the ignored rows
        # (few), cheaper than marking the ignored rows in the full index tensor.
        counts = torch.bincount(b.view(-1), minlength=bins) \
            - torch.bincount(b[~valid].view(-1), minlength=bins)  # (bins,)
        tot = valid.sum() * K
        counts, tot, num_fg = _all_reduce(counts, tot, torch.tensor(len(fg_rows), device=counts.device))
        weight, acc_sum = ghm_bin_weights(counts, tot, momentum, acc_sum)
        # mmdetection's weights times #fg / tot: the normalizer's division by #fg then gives its loss
        weight = (weight * (num_fg.clamp(min=1) / tot.clamp(min=1).double())).to(x.dtype)
    loss = _WeightedBCE.apply(x, p, b, weight, valid, fg_rows, fg_cols)
    return loss.view(shape), acc_sum


def _all_reduce(counts: Tensor, tot: Tensor, num_fg: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Sums the per-bin counts Tensor[bins], tot and num_fg (0-dim) over the ranks
    (unchanged without torch.distributed), in one all-reduce."""
    if not (dist.is_available() and dist.is_initialized()):
        return counts, tot, num_fg
    every = torch.cat([counts, tot.view(1), num_fg.view(1)]).long()  # (bins + 2,)
    if dist.get_backend() == "nccl" and every.device.type == "cpu":
        every = every.cuda()
    dist.all_reduce(every, op=dist.ReduceOp.SUM)
    every = every.to(counts.device)
    return every[:-2], every[-2], every[-1]


class _WeightedBCE(torch.autograd.Function):
    """sum_k w_k BCE(x_k, t_k) per row, 0 for ignored rows; gradient w (p - t) computed in forward.

    Inputs: x Tensor[R, K] logits; p Tensor[R, K] = sigmoid(x) (detached); b Tensor[R, K]
    int32 bin index; weight Tensor[bins] per-bin weight; valid Tensor[R] bool;
    fg_rows, fg_cols Tensor[P]: the 1 targets. Returns Tensor[R].
    """

    @staticmethod
    def forward(ctx, x, p, b, weight, valid, fg_rows, fg_cols):
        w = weight.index_select(0, b.view(-1)).view_as(x)  # (R, K) per-element weight
        fg = (fg_rows, fg_cols)
        x_fg, w_fg = x[fg], w[fg]  # (P,)
        # BCE: softplus(x) for 0 targets, softplus(-x) for 1 targets, computed directly (not
        # softplus(x) - x: it cancels once x >> 0).
        s = F.softplus(x, threshold=_SOFTPLUS_THRESHOLD)  # (R, K)
        s[fg] = F.softplus(-x_fg, threshold=_SOFTPLUS_THRESHOLD)
        row_w = valid.to(x.dtype)  # (R,)
        loss = torch.sum(s.mul_(w), 1).mul_(row_w)
        if ctx.needs_input_grad[0]:
            grad = w.mul_(p)  # w (p - t), in w's buffer; 1 targets: p - 1 = -sigmoid(-x)
            grad[fg] = -w_fg * torch.sigmoid(-x_fg)
            ctx.save_for_backward(grad, row_w)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        grad, row_w = ctx.saved_tensors
        scale = (grad_loss * row_w).unsqueeze(1)  # (R, 1); 0 for ignored rows
        # In place when the graph dies with this backward, as in losses.focal.
        grad = grad.mul_(scale) if graph_freed_after_backward() else grad * scale
        return grad, None, None, None, None, None, None


def _check_bins_momentum(bins, momentum) -> None:
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"ghmc loss: bins must be an int >= 1, got {bins!r}")
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
        raise ValueError(f"ghmc loss: momentum must be a number in [0, 1), got {momentum!r}")


class GHMCLoss(SigmoidOutputs):
    """GHM-C: sigmoid BCE weighted by inverse gradient density, K logits; ``loss=ghmc``.

    Stateful when momentum > 0: the running bin counts ``acc_sum`` (``state_dict`` /
    ``load_state_dict``, saved with the model so that a resumed run continues identically).

    Args:
        bins: number of equal bins of the gradient norm g in [0, 1] (paper: 30).
        momentum: m in [0, 1) of the running bin counts (paper: 0.75); 0 uses each batch's
            own histogram.
    """

    name = "ghmc"  # its configs/loss/ file: run names and reports name the loss by it

    def __init__(self, bins: int = 10, momentum: float = 0.0):
        _check_bins_momentum(bins, momentum)
        self.bins = bins
        self.momentum = float(momentum)
        self.acc_sum: Tensor | None = None  # Tensor[bins] float32, None before the first call

    def __call__(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Tensor[N, R, K] logits, Tensor[N, R] labels -> Tensor[N, R] float32 loss.

        With momentum > 0 every call updates acc_sum (as mmdetection's forward does).
        """
        loss, acc_sum = ghmc_loss(logits, labels, self.bins, self.momentum, self.acc_sum)
        if self.momentum > 0:
            self.acc_sum = acc_sum
        return loss

    def state_dict(self) -> dict:
        """{"acc_sum": the running bin counts as Python floats (exact for float32), or None
        before the first call and with momentum 0}."""
        return {"acc_sum": None if self.acc_sum is None else self.acc_sum.tolist()}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or "acc_sum" not in state:
            raise ValueError(f"GHMCLoss.load_state_dict: expected a dict with key 'acc_sum', got {state!r:.80}")
        acc = state["acc_sum"]
        if acc is not None and not (isinstance(acc, (list, tuple)) and len(acc) == self.bins and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                for v in acc)):
            raise ValueError(f"GHMCLoss.load_state_dict: 'acc_sum' must be None or a list of {self.bins} "
                             f"finite numbers >= 0 (one per bin, bins={self.bins}), got {acc!r:.80}")
        self.acc_sum = None if acc is None else torch.tensor(acc, dtype=torch.float32)

    def __repr__(self) -> str:
        return f"GHMCLoss(bins={self.bins}, momentum={self.momentum})"
