"""Alpha-balanced sigmoid binary cross-entropy (the focal-loss paper's gamma = 0 baseline).

Per anchor with label y and class logits x[0..K-1]::

    loss = sum_k  w_t BCE(x_k, t_k),   t_k = [k == y],   w_1 = alpha, w_0 = 1 - alpha

Background anchors (y = K) have all-zero targets; ignored anchors (y = -1) give 0.
It is the focal loss at gamma = 0, so it runs through the same fused Function
(``losses.focal``), whose gamma = 0 path skips the modulating factor.
"""

from losses.focal import FocalLoss


class AlphaBCELoss(FocalLoss):
    """Sigmoid BCE with weight alpha on 1 targets and 1 - alpha on 0 targets; ``loss=bce_alpha``.

    Args:
        alpha: weight of the positive targets. 0.75 is the paper's best at gamma = 0
            (Lin et al. 2017, Table 1a). None gives unweighted BCE.
        fused: False computes with the plain autograd version (``losses.reference``).
    """

    name = "bce_alpha"  # its configs/loss/ file: run names and reports name the loss by it

    def __init__(self, alpha: float | None = 0.75, fused: bool = True):
        super().__init__(gamma=0.0, alpha=alpha, fused=fused)

    def __repr__(self) -> str:
        return f"AlphaBCELoss(alpha={self.alpha}{'' if self.fused else ', fused=False'})"
