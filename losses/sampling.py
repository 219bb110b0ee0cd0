"""Random sampling at a fixed foreground fraction (Faster R-CNN's RPN and ROI heads): the
background handling of two-stage detectors, on a one-stage head.

Per image, ``batch_per_image`` anchors are drawn uniformly without replacement: up to
``int(batch_per_image * positive_fraction)`` foreground anchors, and background anchors for
the rest of the batch (more when there are fewer foreground anchors): detectron2's
``subsample_labels`` and torchvision's ``BalancedPositiveNegativeSampler``. The base loss
(softmax with a background class, or sigmoid binary cross-entropy) is kept on the drawn
anchors, 0 elsewhere; the project's normalizer divides by the foreground count as for every
loss.

The draws come from the loss's own generator (seeded by ``seed``, or by the run's seed,
``torch.initial_seed()``, when null), not from torch's global one: the losses compared in a
study then see the same batches and start from the same weights, whatever this one draws.
Its state is part of the checkpoint (``state_dict``), so a resumed run draws what the
uninterrupted one would have.
"""

import torch
from torch import Tensor

from losses._selection import Selecting, base_loss, check_count, check_enough_anchors


def random_sample(labels: Tensor, num_classes: int, batch: int, positive_fraction: float,
                  generator: torch.Generator) -> Tensor:
    """Tensor[N, R] labels -> Tensor[N, R] bool, the drawn anchors (ignored ones never)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    for i in range(labels.shape[0]):
        fg = ((labels[i] >= 0) & (labels[i] < num_classes)).nonzero().squeeze(1)
        bg = (labels[i] == num_classes).nonzero().squeeze(1)
        n_fg = min(len(fg), int(batch * positive_fraction))
        n_bg = min(len(bg), batch - n_fg)
        # randperm on the CPU generator, then to the labels' device: the same draws on any device
        keep[i, fg[torch.randperm(len(fg), generator=generator)[:n_fg].to(fg.device)]] = True
        keep[i, bg[torch.randperm(len(bg), generator=generator)[:n_bg].to(bg.device)]] = True
    return keep


class RandomSamplingLoss(Selecting):
    """A random fixed-ratio sample of anchors per image; ``loss=sampling``.

    Args:
        base: "softmax" (K + 1 logits, background a class, as Faster R-CNN's ROI head) or
            "sigmoid" (K logits, binary cross-entropy, as its RPN).
        batch_per_image: anchors drawn per image (Faster R-CNN: 256 for the RPN).
        positive_fraction: the largest share of foreground anchors in the draw (0.5); must
            leave room for background (< 1).
        seed: the generator's seed; null: the run's seed (torch.initial_seed()).
    """

    name = "sampling"  # its configs/loss/ file: run names and reports name the loss by it

    def __init__(self, base: str = "sigmoid", batch_per_image: int = 256, positive_fraction: float = 0.5,
                 seed: int | None = None):
        self.base, self.base_fn = base, base_loss("sampling", base)
        self.batch_per_image = check_count("sampling", "batch_per_image", batch_per_image)
        if isinstance(positive_fraction, bool) or not isinstance(positive_fraction, (int, float)) \
                or not 0 < positive_fraction < 1:
            raise ValueError(f"sampling: positive_fraction must be in (0, 1) (1 leaves no negatives, 0 no "
                             f"positives), got {positive_fraction!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"sampling: seed must be an int or null (the run's seed), got {seed!r}")
        self.positive_fraction = float(positive_fraction)
        self.seed = seed
        self.generator: torch.Generator | None = None  # made at the first call (after train.py seeds torch)

    def _generator(self) -> torch.Generator:
        if self.generator is None:
            self.generator = torch.Generator().manual_seed(torch.initial_seed() if self.seed is None else self.seed)
        return self.generator

    def __call__(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Tensor[N, R, C] logits, Tensor[N, R] labels -> Tensor[N, R] float32: the base loss
        on the drawn anchors, 0 elsewhere."""
        check_enough_anchors("sampling", "loss.batch_per_image", self.batch_per_image, labels)
        num_classes = logits.shape[-1] - (self.base == "softmax")
        return self.masked(logits, labels, lambda loss, labels: random_sample(
            labels, num_classes, self.batch_per_image, self.positive_fraction, self._generator()))

    def state_dict(self) -> dict:
        return {"generator": self._generator().get_state()}

    def load_state_dict(self, state: dict) -> None:
        rng = state.get("generator") if isinstance(state, dict) else None
        if not isinstance(rng, Tensor) or rng.dtype != torch.uint8:
            raise ValueError(f"RandomSamplingLoss.load_state_dict: expected {{'generator': uint8 Tensor}} "
                             f"(a torch.Generator state), got {state!r:.80}")
        self._generator().set_state(rng)

    def __repr__(self) -> str:
        return (f"RandomSamplingLoss(base={self.base!r}, batch_per_image={self.batch_per_image}, "
                f"positive_fraction={self.positive_fraction}, seed={self.seed})")
