"""Sigmoid focal loss (Lin et al., 2017) on integer labels, as one fused autograd Function.

Per anchor with label y and class logits x[0..K-1], p_k = sigmoid(x_k)::

    loss = sum_k  w_t (1 - p_t)^gamma CE(x_k, t_k),   t_k = [k == y]
    w_t  = alpha for t = 1, 1 - alpha for t = 0 (1 for both when alpha is None)

Background anchors (y = K) have t = 0 everywhere; ignored anchors (y = -1) give 0 loss and
0 gradient. Equal to ``torchvision.ops.sigmoid_focal_loss(x, one_hot(y)).sum(-1)``, without
building the one-hot and with the gradient written analytically in the same pass as the
loss, so that nothing of size N x R x K is kept but the gradient itself (which backward
then scales in place). On a GPU it costs three host syncs per call (the label check, the
foreground rows, the chunk bounds), as detectron2's ``num_pos_anchors.item()`` does one.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from losses import reference
from losses._fused import check_inputs, chunk_rows, graph_freed_after_backward


def sigmoid_focal_loss(logits: Tensor, labels: Tensor, gamma: float = 2.0,
                       alpha: float | None = 0.25) -> Tensor:
    """Tensor[N, R, K] logits and Tensor[N, R] integer labels -> Tensor[N, R] float loss.

    Any leading shape works (``[..., K]`` with labels ``[...]``). fp16/bf16 logits are
    computed in float32, float64 in float64. With ``gamma = 0`` this is alpha-balanced
    binary cross-entropy.
    """
    K = check_inputs("sigmoid_focal_loss", logits, labels)
    _check_gamma_alpha(gamma, alpha)
    x = logits.reshape(-1, K)  # (N*R, K)
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    w_pos, w_neg = (1.0, 1.0) if alpha is None else (float(alpha), 1.0 - float(alpha))
    loss = _SigmoidFocal.apply(x.contiguous(), labels.reshape(-1).long(), float(gamma), w_pos, w_neg)
    return loss.view(labels.shape)


class _SigmoidFocal(torch.autograd.Function):
    """Tensor[R, K] logits, Tensor[R] int64 labels -> Tensor[R] loss; gradient computed in forward."""

    @staticmethod
    def forward(ctx, x, labels, gamma, w_pos, w_neg):
        need_grad = ctx.needs_input_grad[0]
        loss, grad, fg_rows, fg_cols, fg_grad = _focal_forward(x, labels, gamma, w_pos, w_neg, need_grad)
        if need_grad:
            row_w = (labels >= 0).to(x.dtype) * w_neg  # (R,) weight of the 0-target terms
            ctx.save_for_backward(grad, row_w, fg_rows, fg_cols, fg_grad)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        grad, row_w, fg_rows, fg_cols, fg_grad = ctx.saved_tensors
        scale = (grad_loss * row_w).unsqueeze(1)  # (R, 1)
        # In place when the graph dies with this backward: a fresh R x K output costs as
        # much as the arithmetic (page faults). With retain_graph the buffer must survive.
        grad = grad.mul_(scale) if graph_freed_after_backward() else grad * scale
        grad[fg_rows, fg_cols] = grad_loss[fg_rows] * fg_grad  # the 1-target entries
        return grad, None, None, None, None


def _focal_forward(x: Tensor, labels: Tensor, gamma: float, w_pos: float, w_neg: float,
                   need_grad: bool):
    """Loss and gradient pieces for Tensor[R, K] logits and Tensor[R] labels.

    Every element is treated as a 0 target, dense and chunk by chunk; the one labelled
    element of each foreground row is then replaced by its 1-target term (sparse: 1% of
    the rows). Returns:
        loss Tensor[R], weighted, 0 for ignored rows;
        grad Tensor[R, K] | None: d/dx of the unweighted 0-target terms (the caller
            scales rows by w_neg, 0 when ignored, in backward, then writes fg_grad);
        fg_rows, fg_cols Tensor[P]: the foreground rows and their class;
        fg_grad Tensor[P]: d loss / dx of their 1-target term, weighted.
    """
    R, K = x.shape
    valid = labels >= 0
    fg_rows = torch.nonzero(valid & (labels < K)).squeeze(1)  # (P,), sorted
    fg_cols = labels[fg_rows]
    loss = x.new_empty(R)
    grad = torch.empty_like(x) if need_grad else None

    rows = chunk_rows(x)
    bounds = torch.searchsorted(fg_rows, torch.arange(0, R + rows, rows, device=x.device)).tolist()
    # Scratch: s and t; p lives in the gradient's own chunk when there is one.
    s_buf, t_buf = (x.new_empty(min(rows, R), K) for _ in range(2))
    p_buf = None if need_grad else x.new_empty(min(rows, R), K)
    for i, start in enumerate(range(0, R, rows)):
        stop = min(start + rows, R)
        xc = x[start:stop]
        # fg elements of the chunk, to zero their 0-target term: the 1-target term goes
        # in below; subtracting it later instead would cancel catastrophically (x >> 0).
        fg = (fg_rows[bounds[i]: bounds[i + 1]] - start, fg_cols[bounds[i]: bounds[i + 1]])
        p = grad[start:stop] if need_grad else p_buf[: stop - start]
        s, t = s_buf[: stop - start], t_buf[: stop - start]

        torch.sigmoid(xc, out=p)
        # s = CE of a 0 target = softplus(x) = relu(x) - log(sigmoid(|x|)), and
        # sigmoid(|x|) = max(p, 1 - p). The log's argument stays in [0.5, 1]: finite for
        # any finite x (log(1 - p) is -inf once p rounds to 1) and never a denormal (log of
        # one is ~9x slower on this CPU; F.softplus's log1p(exp(x)) 2.5x slower once logits
        # saturate below -87). 12% faster than abs + sigmoid + log, 5% than logaddexp(x, 0).
        torch.neg(p, out=s).add_(1)
        torch.maximum(p, s, out=s).log_()
        torch.clamp(xc, min=0, out=t)
        torch.sub(t, s, out=s)
        if gamma == 0:  # the gradient is p, already in place
            s[fg] = 0
            torch.sum(s, 1, out=loss[start:stop])
            continue
        torch.pow(p, gamma, out=t)  # modulating factor p^g
        t[fg] = 0
        if need_grad:
            # d/dx [p^g softplus(x)] = p^g (p + g (1 - p) softplus(x)). Written without
            # p^(g - 1), so it stays finite for g < 1 where autograd of pow gives inf * 0.
            p.addcmul_(p, s, value=-gamma).add_(s, alpha=gamma).mul_(t)
        # Product then torch.sum (pairwise): einsum's dot product drifts 10x more.
        torch.sum(t.mul_(s), 1, out=loss[start:stop])
    loss.mul_(valid.to(x.dtype) * w_neg)

    # 1-target terms: q = 1 - p, CE = softplus(-x) = -logsigmoid(x), P elements only.
    x_fg = x[fg_rows, fg_cols]
    p_fg, q_fg = torch.sigmoid(x_fg), torch.sigmoid(-x_fg)
    ce_fg = -F.logsigmoid(x_fg)
    mod = q_fg.pow(gamma) * w_pos  # w (1 - p)^g; 0^0 = 1 gives plain CE at gamma = 0
    loss.index_add_(0, fg_rows, mod * ce_fg)
    # d/dx [q^g softplus(-x)] = -q^g (g p softplus(-x) + q)
    fg_grad = -mod * (gamma * p_fg * ce_fg + q_fg)
    return loss, grad, fg_rows, fg_cols, fg_grad


def _check_gamma_alpha(gamma, alpha) -> None:
    if not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma < 0:
        raise ValueError(f"focal loss: gamma must be a finite number >= 0, got {gamma!r}")
    if alpha is not None and (not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1):
        raise ValueError(f"focal loss: alpha must be in [0, 1] or None (no weighting), got {alpha!r}")


def sigmoid_init_bias(num_classes: int, prior: float) -> Tensor:
    """Tensor[K] float32 bias b with sigmoid(b) = prior: b = -log((1 - prior) / prior)."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"init_bias: num_classes must be an int >= 1, got {num_classes!r}")
    if not 0 < prior < 1:
        raise ValueError(f"init_bias: prior must be in (0, 1), got {prior!r}")
    return torch.full((num_classes,), -math.log((1 - prior) / prior), dtype=torch.float32)


class SigmoidOutputs:
    """The loss contract's output side for the sigmoid losses (K logits, one per class): their
    prior init and their scores; each loss adds its ``__call__``."""

    def num_logits(self, num_classes: int) -> int:
        return num_classes

    def init_bias(self, num_classes: int, prior: float) -> Tensor:
        return sigmoid_init_bias(num_classes, prior)

    def scores(self, logits: Tensor) -> Tensor:
        """Tensor[..., K] logits -> Tensor[..., K] float32 foreground probabilities."""
        return torch.sigmoid(logits.float())


class FocalLoss(SigmoidOutputs):
    """Sigmoid focal loss, K logits per anchor; the loss object of ``loss=focal``.

    Args:
        gamma: focusing parameter; 0 gives (alpha-balanced) binary cross-entropy.
        alpha: weight of the 1 targets (1 - alpha on the 0 targets); None disables it.
        fused: True computes with the fused Function above; False with the plain autograd
            version (``losses.reference``): the same numbers, more time and memory.
    """

    name = "focal"  # its configs/loss/ file: run names and reports name the loss by it

    def __init__(self, gamma: float = 2.0, alpha: float | None = 0.25, fused: bool = True):
        _check_gamma_alpha(gamma, alpha)
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)
        self.fused = bool(fused)

    def __call__(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Tensor[N, R, K] logits, Tensor[N, R] labels -> Tensor[N, R] float32 loss."""
        loss_fn = sigmoid_focal_loss if self.fused else reference.sigmoid_focal_loss
        return loss_fn(logits, labels, self.gamma, self.alpha)

    def __repr__(self) -> str:
        return f"FocalLoss(gamma={self.gamma}, alpha={self.alpha}{'' if self.fused else ', fused=False'})"
