"""Sampling-free training (Chen et al., "Is Heuristic Sampling Necessary in Training Deep
Object Detectors?", IEEE TIP 2021; arXiv 1909.04868): plain sigmoid binary cross-entropy on
every anchor, no alpha, no gamma, no sampling; the control for "does background need special
treatment at all?". The paper's three ingredients, as its released code does them
(github.com/ChenJoya/sampling-free, maskrcnn-benchmark version: ``AdaptiveInitializer``,
``GuidedLossWeighter``, ``ImbalancedDecider``):

1. Optimal bias initialization. With every logit at the bias b, a class column's initial
   BCE summed over the n non-ignored anchors of the training set, n_k of them of that class,
   is -n_k log(p) - (n - n_k) log(1 - p), p = sigmoid(b); it is smallest at p = n_k / n.
   The code measures the matcher's labels over one pass of the training set and sets every
   class to the mean of these, pi = (n_fg / n) / K, b = -log((1 - pi) / pi) (``prior:
   mean``, the default): the minimiser of the K columns' initial BCE summed, with one bias
   shared by all. ``prior: per_class`` gives each class its own minimiser
   pi_k = n_k / n (a class without a single anchor counts as one, so that b stays finite).
   The model counts (``RetinaNet.fit_label_counts``: train.py calls it once before a fresh
   run, all-reduced under DDP) and hands the counts to ``fit_label_counts``; they are kept
   in the checkpoint (``state_dict``), so a resumed or evaluated run has the same pi.
2. Guided loss scaling. The classification loss is multiplied by the detached ratio
   r = L_box / L_cls of this batch's reduced losses (``cls_weight``, which the model applies:
   loss = r L_cls + L_box), so that it always weighs what the box loss weighs and its
   gradient is rescaled, not its direction. Under DDP the two losses are all-reduced first:
   r is the global batch's, the same on every rank, what one process would compute on that
   batch (the official code takes each GPU's own ratio). Both losses are divided by the same
   normalizer, so r does not depend on it.
3. Class-adaptive threshold. At inference a detection of class k must score above pi_k
   instead of the fixed 0.05 (``score_thresholds``): the score an anchor starts from is the
   score below which it says nothing. The released code uses the same pi for every class
   ("do not use class information is also okay"): ``prior: mean``; ``per_class`` gives each
   class its own.

Departures and normalization. The later version of the official repository replaces (2) by
the ratio for the first 100 iterations followed by learned uncertainty weights (Kendall et
al. 2018); this implements the paper's per-iteration guided scaling. The official RetinaNet
divides the classification loss by the number of positives and takes L_reg as the smooth L1
*mean* over the 4P coordinates; here L_box is the project's, summed over the 4 coordinates
and divided by the foreground normalizer, so r and the whole loss are ~4x the official's (the
same balance between the two, the total scaled as a learning rate 4x larger would: the lr
tuned for this loss absorbs it). A batch without foreground has L_box = 0 and so r = 0: its
background teaches nothing, as the official code returns zero losses for it.
"""

import torch
import torch.distributed as dist
from torch import Tensor

from losses.focal import SigmoidOutputs, sigmoid_focal_loss, sigmoid_init_bias

PRIORS = ("mean", "per_class")


def optimal_prior(counts: Tensor, per_class: bool = False) -> Tensor:
    """Tensor[K + 2] label counts (index 0 ignored, 1..K the classes, K + 1 background) ->
    Tensor[K] float64 pi: the initial probability that minimises the initial BCE (module
    docstring), n_k / n per class, or the classes' mean (n_fg / n) / K for each.

    Example: counts [5, 2, 8, 990] (K = 2, 1000 non-ignored anchors): mean: pi = 0.005 for
    both; per_class: [0.002, 0.008]."""
    counts = counts.double()
    k = len(counts) - 2
    n = counts[1:].sum()
    if per_class:
        return counts[1:k + 1].clamp(min=1) / n
    return (counts[1:k + 1].sum() / n / k).expand(k).clone()


def guided_weight(loss_cls: Tensor, loss_box: Tensor) -> Tensor:
    """The guided loss scale r = L_box / L_cls (detached scalars; 0 where L_cls = 0),
    from the global batch under torch.distributed."""
    pair = torch.stack([loss_cls.detach(), loss_box.detach()]).float()  # (2,)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(pair)  # sums over the ranks: both are divided by the same normalizer
    return torch.where(pair[0] > 0, pair[1] / pair[0], 0.0)


class SamplingFreeLoss(SigmoidOutputs):
    """Plain sigmoid BCE with the sampling-free recipe; ``loss=sampling_free``.

    Args:
        prior: "mean" (the official code: one pi = (n_fg / n) / K for every class, for the
            bias and the threshold) or "per_class" (pi_k = n_k / n).
        guided: scale the classification loss by L_box / L_cls (the guided loss); false
            leaves it at 1 (an ablation).
        adaptive_threshold: score thresholds pi at inference; false keeps the model's
            ``score_thresh`` (an ablation).

    Until ``fit_label_counts`` is called (a model built outside train.py, e.g. in a
    benchmark) it is plain BCE from the model's ``prior_prob``, at the model's threshold.
    """

    name = "sampling_free"

    def __init__(self, prior: str = "mean", guided: bool = True, adaptive_threshold: bool = True):
        if prior not in PRIORS:
            raise ValueError(f"sampling_free: prior must be one of {', '.join(PRIORS)}, got {prior!r}")
        for key, value in (("guided", guided), ("adaptive_threshold", adaptive_threshold)):
            if not isinstance(value, bool):
                raise ValueError(f"sampling_free: {key} must be true or false, got {value!r}")
        self.prior, self.guided, self.adaptive_threshold = prior, guided, adaptive_threshold
        self.label_counts: Tensor | None = None  # Tensor[K + 2] int64 once measured

    def fit_label_counts(self, counts: Tensor) -> None:
        """Takes the training set's label counts Tensor[K + 2] (index 0 ignored anchors, 1..K
        each class's, K + 1 background; ``RetinaNet.fit_label_counts``)."""
        if not isinstance(counts, Tensor) or counts.dim() != 1 or len(counts) < 3 \
                or counts.is_floating_point() or bool((counts < 0).any()):
            raise ValueError(f"sampling_free: label counts must be an integer Tensor[K + 2] >= 0 (ignored, "
                             f"each class, background), got {counts!r:.120}")
        if int(counts[1:].sum()) == 0:
            raise ValueError("sampling_free: the training set gave no foreground or background anchor to "
                             f"measure the prior on (counts {counts.tolist()})")
        self.label_counts = counts.detach().to("cpu", torch.int64).clone()

    def priors(self) -> Tensor | None:
        """Tensor[K] float64 pi, or None before the counts are measured."""
        if self.label_counts is None:
            return None
        return optimal_prior(self.label_counts, self.prior == "per_class")

    def init_bias(self, num_classes: int, prior: float) -> Tensor:
        """Tensor[K] float32 b = -log((1 - pi) / pi) from the measured counts; before they
        are measured, from the model's ``prior``."""
        pi = self.priors()
        if pi is None:
            return sigmoid_init_bias(num_classes, prior)
        if len(pi) != num_classes:
            raise ValueError(f"sampling_free: the label counts are of {len(pi)} classes, the model has "
                             f"{num_classes}")
        return (-torch.log((1 - pi) / pi)).float()

    def score_thresholds(self) -> Tensor | None:
        """Tensor[K] float32 pi, the class-adaptive inference thresholds; None (the model's
        own threshold) before the counts are measured or with ``adaptive_threshold`` off."""
        pi = self.priors()
        return None if pi is None or not self.adaptive_threshold else pi.float()

    def cls_weight(self, loss_cls: Tensor, loss_box: Tensor) -> Tensor:
        """The detached weight of the reduced classification loss: ``guided_weight``, or 1."""
        return guided_weight(loss_cls, loss_box) if self.guided else torch.ones((), device=loss_cls.device)

    def __call__(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Tensor[N, R, K] logits, Tensor[N, R] labels -> Tensor[N, R] float32 plain BCE
        summed over the classes (the fused focal loss at gamma = 0, no alpha)."""
        return sigmoid_focal_loss(logits, labels, gamma=0.0, alpha=None)

    def state_dict(self) -> dict:
        return {"label_counts": self.label_counts}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or "label_counts" not in state:
            raise ValueError(f"SamplingFreeLoss.load_state_dict: expected {{'label_counts': Tensor or None}}, "
                             f"got {state!r:.120}")
        if state["label_counts"] is None:
            self.label_counts = None
        else:
            self.fit_label_counts(state["label_counts"])

    def __repr__(self) -> str:
        return (f"SamplingFreeLoss(prior={self.prior!r}, guided={self.guided}, "
                f"adaptive_threshold={self.adaptive_threshold})")

