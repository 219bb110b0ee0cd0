"""The one loss normalizer: divide the summed loss by the number of foreground anchors.

Every variant's classification loss and the box loss are summed over non-ignored anchors
and divided by this denominator, so the variants differ only in how they treat background.
"""

import math

import torch
import torch.distributed as dist
from torch import Tensor


class FgNormalizer:
    """Foreground count of the batch -> scalar denominator, optionally EMA-smoothed.

    Each call: ``count = max(sum over ranks of num_fg, 1) / W`` for W ranks (W = 1 without
    torch.distributed); with a momentum m, ``ema = m * ema + (1 - m) * count`` and the EMA
    is returned, else the count.

    Under torch.distributed the count is all-reduced, so every rank divides by the same
    number and the EMA state is identical on every rank (detectron2 keeps a per-GPU count,
    so a rank with few foreground anchors weighs its loss up). The division by W is there
    because DDP *averages* gradients over the ranks: each rank's loss is its sum over
    anchors / (global count / W), and the average of those gradients is exactly the
    gradient of (sum over all anchors) / (global count) — the single-process loss on the
    same global batch.

    Start of the EMA: detectron2 (``RetinaNet.losses``) starts it at 100, tuned for 16
    COCO images per batch; with 2 images on a subset that biases the first tens of
    iterations by up to ~5x. By default (``initial=None``) the first count is the start,
    so the first denominator is exactly that batch's count, at any batch size;
    ``initial=100`` reproduces detectron2.

    Worked example, m = 0.9, initial None, counts 10, 20, 0:
    10 -> 10;  20 -> 0.9 * 10 + 0.1 * 20 = 11;  0 (clamped to 1) -> 0.9 * 11 + 0.1 = 10.
    With initial=100 the first call already gives 0.9 * 100 + 0.1 * 10 = 91.

    Args:
        ema_momentum: m in [0, 1); None returns the plain per-batch count.
        initial: value the EMA starts from; None starts from the first count.
    """

    def __init__(self, ema_momentum: float | None = 0.9, initial: float | None = None):
        if ema_momentum is not None and not (isinstance(ema_momentum, (int, float))
                                             and 0 <= ema_momentum < 1):
            raise ValueError(f"FgNormalizer: ema_momentum must be in [0, 1) or None, got {ema_momentum!r}")
        if initial is not None and not (isinstance(initial, (int, float)) and math.isfinite(initial)
                                        and initial >= 1):
            raise ValueError(f"FgNormalizer: initial must be a number >= 1 or None, got {initial!r}")
        self.ema_momentum = None if ema_momentum is None else float(ema_momentum)
        self.initial = None if initial is None else float(initial)
        self.ema: Tensor | None = None  # float32 scalar, on the device of the counts

    def __call__(self, num_fg: Tensor | int) -> Tensor:
        """Foreground anchors in this rank's batch (int or 1-element Tensor) -> float32 scalar."""
        count = _as_count(num_fg)
        if dist.is_available() and dist.is_initialized():
            if dist.get_backend() == "nccl" and count.device.type == "cpu":
                count = count.cuda()
            dist.all_reduce(count, op=dist.ReduceOp.SUM)
            count = count.clamp(min=1) / dist.get_world_size()
        else:
            count = count.clamp(min=1)
        if self.ema_momentum is None:
            return count
        m = self.ema_momentum
        if self.ema is None:
            prev = count if self.initial is None else torch.full_like(count, self.initial)
        else:
            prev = self.ema.to(count.device)
        self.ema = m * prev + (1 - m) * count
        return self.ema.clone()

    def state_dict(self) -> dict:
        """The running EMA (a Python float, exact for float32; None before the first call)."""
        return {"ema": None if self.ema is None else self.ema.item()}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or "ema" not in state:
            raise ValueError(f"FgNormalizer.load_state_dict: expected a dict with key 'ema', got {state!r}")
        ema = state["ema"]
        if ema is not None and not (isinstance(ema, (int, float)) and math.isfinite(ema) and ema >= 1):
            raise ValueError(f"FgNormalizer.load_state_dict: 'ema' must be None or a number >= 1, got {ema!r}")
        self.ema = None if ema is None else torch.tensor(float(ema), dtype=torch.float32)

    def __repr__(self) -> str:
        return f"FgNormalizer(ema_momentum={self.ema_momentum}, initial={self.initial})"


def _as_count(num_fg) -> Tensor:
    """int or 1-element Tensor -> a fresh float32 scalar Tensor (all-reduce works in place)."""
    if isinstance(num_fg, Tensor):
        if num_fg.numel() != 1:
            raise ValueError(f"FgNormalizer: num_fg must be a number or a 1-element Tensor, got "
                             f"shape {tuple(num_fg.shape)}")
        count = num_fg.detach().reshape(()).to(torch.float32, copy=True)
        if count.device.type == "cpu" and not count >= 0:  # no check (and no sync) on GPU
            raise ValueError(f"FgNormalizer: num_fg must be >= 0, got {num_fg.item()}")
        return count
    if isinstance(num_fg, bool) or not isinstance(num_fg, (int, float)) or not num_fg >= 0:
        raise ValueError(f"FgNormalizer: num_fg must be a count >= 0 (int or Tensor), got {num_fg!r}")
    return torch.tensor(float(num_fg), dtype=torch.float32)
