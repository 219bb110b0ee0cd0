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
