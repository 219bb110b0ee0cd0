"""Softmax cross-entropy with an explicit background class (K + 1 logits, background last).

Per anchor with label y in 0..K (K = background) and logits x[0..K]::

    loss = w_y (logsumexp(x) - x_y),   w_y = bg_weight if y == K else 1

Ignored anchors (y = -1) give 0 loss and 0 gradient. Equal to
``F.cross_entropy(x, y, weight=[1, ..., 1, bg_weight], ignore_index=-1, reduction="none")``,
with one N x R x (K+1) allocation, the gradient, where F.cross_entropy makes three.
"""

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from losses import reference
from losses._fused import check_inputs, chunk_rows, graph_freed_after_backward


def softmax_bg_loss(logits: Tensor, labels: Tensor, bg_weight: float = 1.0) -> Tensor:
    """Tensor[N, R, K+1] logits and Tensor[N, R] integer labels -> Tensor[N, R] float loss.

    Any leading shape works. fp16/bf16 logits are computed in float32, float64 in float64.
    """
    check_inputs("softmax_bg_loss", logits, labels, extra_columns=1)
    _check_bg_weight(bg_weight)
    x = logits.reshape(-1, logits.shape[-1])  # (N*R, K+1)
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    loss = _SoftmaxBg.apply(x.contiguous(), labels.reshape(-1).long(), float(bg_weight))
    return loss.view(labels.shape)


class _SoftmaxBg(torch.autograd.Function):
    """Tensor[R, K+1] logits, Tensor[R] int64 labels -> Tensor[R] loss; gradient computed in forward.

    One softmax pass per chunk gives both: the gradient softmax - one_hot, kept for
    backward, and the loss -log softmax[y]. F.cross_entropy spends two exp passes
    (log_softmax, then its backward) and three R x (K+1) buffers; this one.
    """

    @staticmethod
    def forward(ctx, x, labels, bg_weight):
        need_grad = ctx.needs_input_grad[0]
        R, C = x.shape
        idx = labels.clamp(min=0).unsqueeze(1)  # (R, 1); ignored rows use column 0, weight 0
        p_y = x.new_empty(R, 1)
        grad = torch.empty_like(x) if need_grad else None
        rows = chunk_rows(x)
        buf = None if need_grad else x.new_empty(min(rows, R), C)
        for start in range(0, R, rows):
            stop = min(start + rows, R)
            out = grad[start:stop] if need_grad else buf[: stop - start]
            prob = torch.softmax(x[start:stop], dim=1, out=out)  # (rows, K+1)
            torch.gather(prob, 1, idx[start:stop], out=p_y[start:stop])
        nll = p_y.squeeze(1).log_().neg_()  # (R,)
        # Below ~1e-30, softmax[y] loses digits to denormals (0 past 1e-45, loss inf):
        # those rows, a loss > 69 (rare: badly wrong), take logsumexp(x) - x_y instead.
        far = torch.nonzero(nll > 69).squeeze(1)
        if far.numel():
            nll[far] = torch.logsumexp(x[far], dim=1) - x[far, idx[far, 0]]
        row_w = torch.where(labels == C - 1, bg_weight, (labels >= 0).to(x.dtype))  # (R,)
        if need_grad:
            grad.scatter_add_(1, idx, grad.new_full(idx.shape, -1.0))  # softmax - one_hot
            ctx.save_for_backward(grad, row_w)
        return nll.mul_(row_w)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        grad, row_w = ctx.saved_tensors
        scale = (grad_loss * row_w).unsqueeze(1)  # (R, 1)
        # In place when the graph dies with this backward, as in losses.focal.
        return (grad.mul_(scale) if graph_freed_after_backward() else grad * scale), None, None


def _check_bg_weight(bg_weight) -> None:
    if not isinstance(bg_weight, (int, float)) or not math.isfinite(bg_weight) or bg_weight < 0:
        raise ValueError(f"softmax_bg loss: bg_weight must be a finite number >= 0, got {bg_weight!r}")


class SoftmaxBgLoss:
    """Softmax over K foreground logits plus one background logit; ``loss=softmax_bg``.

    Args:
        bg_weight: weight of the background anchors' loss (foreground anchors weigh 1).
        prior: how ``init_bias`` reads the prior probability: "total" (all foreground classes
            together start at the prior, each at prior / K) or "per_class" (each class starts at
            the prior, as every class of the sigmoid losses does: a control of the comparison).
        fused: True computes with the fused Function above; False with the plain autograd
            version (``losses.reference``): the same numbers, more time and memory.
    """

    name = "softmax_bg"  # its configs/loss/ file: run names and reports name the loss by it

    def __init__(self, bg_weight: float = 1.0, prior: str = "total", fused: bool = True):
        _check_bg_weight(bg_weight)
        if prior not in ("total", "per_class"):
            raise ValueError(f"softmax_bg loss: prior must be 'total' or 'per_class', got {prior!r}")
        self.bg_weight = float(bg_weight)
        self.prior = prior
        self.fused = bool(fused)

    def num_logits(self, num_classes: int) -> int:
        return num_classes + 1

    def init_bias(self, num_classes: int, prior: float) -> Tensor:
        """Tensor[K+1] float32: 0 for the K classes, b for the background logit.

        With foreground logits 0 and background logit b, each class has p = 1 / (K + e^b).
        prior="total": p(bg) = e^b / (K + e^b) = 1 - prior  <=>  b = log(K (1 - prior) / prior);
        each class then has p = prior / K.
        prior="per_class": 1 / (K + e^b) = prior  <=>  b = log(1 / prior - K), which needs
        K * prior < 1 (the classes are exclusive: their probabilities add up).
        """
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"init_bias: num_classes must be an int >= 1, got {num_classes!r}")
        if not 0 < prior < 1:
            raise ValueError(f"init_bias: prior must be in (0, 1), got {prior!r}")
        bias = torch.zeros(num_classes + 1, dtype=torch.float32)
        if self.prior == "total":
            bias[-1] = math.log(num_classes * (1 - prior) / prior)
        elif num_classes * prior < 1:
            bias[-1] = math.log(1 / prior - num_classes)
        else:
            raise ValueError(f"softmax_bg loss.prior=per_class: {num_classes} classes at prior {prior} each add up "
                             f"to {num_classes * prior:.3g} >= 1; use a prior below {1 / num_classes:.4g}")
        return bias

    def scores(self, logits: Tensor) -> Tensor:
        """Tensor[..., K+1] logits -> Tensor[..., K] float32: softmax, background column dropped."""
        return torch.softmax(logits.float(), dim=-1)[..., :-1]

    def __call__(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Tensor[N, R, K+1] logits, Tensor[N, R] labels -> Tensor[N, R] float32 loss."""
        loss_fn = softmax_bg_loss if self.fused else reference.softmax_bg_loss
        return loss_fn(logits, labels, self.bg_weight)

    def __repr__(self) -> str:
        extra = ("" if self.prior == "total" else f", prior={self.prior!r}") + ("" if self.fused else ", fused=False")
        return f"SoftmaxBgLoss(bg_weight={self.bg_weight}{extra})"
