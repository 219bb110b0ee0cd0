"""Softmax focal loss with an explicit background class (Detectron's SoftmaxFocalLoss).

K + 1 logits per anchor, background last (as ``losses.softmax_bg``). Per anchor with label
y in 0..K (K = background) and p = softmax(x)::

    loss = -w_y (1 - p_y)^gamma log p_y,   w_y = alpha if y < K, 1 - alpha if y == K

(w = 1 for every label when alpha is None). Ignored anchors (y = -1) give 0 loss and 0
gradient. gamma = 0 with alpha None is ``F.cross_entropy``. Plain PyTorch, differentiated by
autograd, in log space so that loss and gradient stay finite for logits of any size:

- log p_y = x_y - logsumexp(x), never log(softmax);
- log(1 - p_y) = logsumexp(x without x_y) - logsumexp(x), never log1p(-p_y): p_y rounds to
  1 once the anchor is confidently right (float32: a margin of ~17), log1p(-1) is -inf, and
  for gamma < 1 the derivative of (1 - p)^gamma there is inf * 0 = NaN;
- (1 - p_y)^gamma = exp(gamma log(1 - p_y)), whose derivative is finite everywhere.
"""

import math

import torch
from torch import Tensor

from losses._fused import check_inputs
from losses.softmax_bg import SoftmaxBgLoss


def softmax_focal_loss(logits: Tensor, labels: Tensor, gamma: float = 2.0,
                       alpha: float | None = 0.25) -> Tensor:
    """Tensor[N, R, K+1] logits (background last) and Tensor[N, R] integer labels ->
    Tensor[N, R] float loss, 0 where ignored.

    Any leading shape works. fp16/bf16 logits are computed in float32, float64 in float64.
    """
    k = check_inputs("softmax_focal_loss", logits, labels, extra_columns=1)
    _check_gamma_alpha(gamma, alpha)
    x = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    labels = labels.long()
    idx = labels.clamp(min=0).unsqueeze(-1)  # (N, R, 1); ignored anchors read column 0, weight 0
    lse = torch.logsumexp(x, dim=-1)  # (N, R)
    log_p = x.gather(-1, idx).squeeze(-1) - lse  # (N, R) log p_y
    # The other columns' share: C >= 2, so at least one stays finite and so does log_q.
    others = x.scatter(-1, idx, float("-inf"))  # (N, R, K+1)
    log_q = torch.logsumexp(others, dim=-1) - lse  # (N, R) log(1 - p_y)
    modulation = torch.exp(gamma * log_q)  # (1 - p_y)^gamma; 1 at gamma = 0
    weight = _label_weight(labels, k, alpha, x.dtype)  # (N, R)
    return weight * modulation * -log_p


def _label_weight(labels: Tensor, k: int, alpha: float | None, dtype: torch.dtype) -> Tensor:
    """Tensor[N, R] labels -> Tensor[N, R] of dtype: w_y per anchor, 0 where ignored."""
    valid = (labels >= 0).to(dtype)
    if alpha is None:
        return valid
    # Built in dtype: a float32 alpha of 0.1 would be off by 1e-9 in a float64 loss.
    weight = torch.full(labels.shape, alpha, dtype=dtype, device=labels.device)
    return weight.masked_fill_(labels == k, 1.0 - alpha).mul_(valid)


def _check_gamma_alpha(gamma, alpha) -> None:
    if not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma < 0:
        raise ValueError(f"softmax_focal loss: gamma must be a finite number >= 0, got {gamma!r}")
    if alpha is not None and (not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1):
        raise ValueError(f"softmax_focal loss: alpha must be in [0, 1] or None (no weighting), "
                         f"got {alpha!r}")


# init_bias and scores are softmax_bg's with prior="total": the same K + 1 logits, read the
# same way. One instance does it, so the two losses cannot drift apart.
_SOFTMAX_BG = SoftmaxBgLoss(prior="total")


class SoftmaxFocalLoss:
    """Focal modulation on the K + 1 softmax, background a class; ``loss=softmax_focal``.

    Args:
        gamma: focusing parameter; 0 gives (alpha-weighted) softmax cross-entropy.
        alpha: weight of the foreground anchors (1 - alpha on background anchors); None
            weighs every anchor 1.
    """

    name = "softmax_focal"  # its configs/loss/ file: run names and reports name the loss by it

    def __init__(self, gamma: float = 2.0, alpha: float | None = 0.25):
        _check_gamma_alpha(gamma, alpha)
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)

    def num_logits(self, num_classes: int) -> int:
        return num_classes + 1

    def init_bias(self, num_classes: int, prior: float) -> Tensor:
        """Tensor[K+1] float32: 0 for the K classes, log(K (1 - prior) / prior) for background,
        so that all classes together start at the prior (softmax_bg, prior="total")."""
        return _SOFTMAX_BG.init_bias(num_classes, prior)

    def scores(self, logits: Tensor) -> Tensor:
        """Tensor[..., K+1] logits -> Tensor[..., K] float32: softmax, background column dropped."""
        return _SOFTMAX_BG.scores(logits)

    def __call__(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Tensor[N, R, K+1] logits, Tensor[N, R] labels -> Tensor[N, R] float32 loss."""
        return softmax_focal_loss(logits, labels, self.gamma, self.alpha)

    def __repr__(self) -> str:
        return f"SoftmaxFocalLoss(gamma={self.gamma}, alpha={self.alpha})"
