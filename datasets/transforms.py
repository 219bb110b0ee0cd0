"""Detection transforms: callables ``(image, target) -> (image, target)``, and ``collate``.

``image`` is a float Tensor[3, H, W]; ``target`` the dict of ``datasets.coco.CocoDetection``.
Boxes and ignore boxes move with the image. Targets are copied, never changed in place, so a
transform cannot corrupt the dataset's cached arrays.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def remove_degenerate(target: dict) -> dict:
    """Drops boxes and ignore boxes with width or height <= 0.

    Adds their number to ``target["dropped_boxes"]`` (an int), so they are counted, not lost.
    """
    target = dict(target)
    dropped = 0
    for key in ("boxes", "ignore_boxes"):
        b = target[key]
        keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        if not bool(keep.all()):
            dropped += int((~keep).sum())
            target[key] = b[keep]
            if key == "boxes":
                target["labels"] = target["labels"][keep]
    target["dropped_boxes"] = target.get("dropped_boxes", 0) + dropped
    return target


class Resize:
    """Scales the image so its shorter side is ``min_size`` unless its longer side would
    exceed ``max_size`` (then the longer side is ``max_size``); sets ``target["size"]``.

    Bilinear with antialiasing, so downscaled images do not alias. Each axis's box scale is
    the exact ratio of the rounded new size to the old one.
    """

    def __init__(self, min_size: int, max_size: int):
        if not (
            isinstance(min_size, int) and isinstance(max_size, int) and 0 < min_size <= max_size
        ):
            raise ValueError(
                f"Resize(min_size={min_size!r}, max_size={max_size!r}): expected ints 0 < min_size <= max_size"
            )
        self.min_size, self.max_size = min_size, max_size

    def __call__(self, image: Tensor, target: dict):
        h, w = image.shape[-2:]
        scale = min(self.min_size / min(h, w), self.max_size / max(h, w))
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        if (nh, nw) != (h, w):
            image = F.interpolate(
                image[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True
            )[0]
        factor = torch.tensor([nw / w, nh / h, nw / w, nh / h])
        limit = torch.tensor([nw, nh, nw, nh], dtype=torch.float32)
        target = dict(target)
        for key in ("boxes", "ignore_boxes"):
            # Clamp: float rounding may put x2 a hair beyond the new border.
            target[key] = torch.minimum(target[key] * factor, limit).clamp_(min=0)
        target["size"] = (nh, nw)
        return image, remove_degenerate(target)


class RandomHorizontalFlip:
    """Mirrors image and boxes left-right with probability ``p`` (torch's RNG, so DataLoader
    workers draw different flips)."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip(p={p!r}): expected 0 <= p <= 1")
        self.p = p

    def __call__(self, image: Tensor, target: dict):
        if torch.rand(()) >= self.p:
            return image, target
        w = image.shape[-1]
        target = dict(target)
        for key in ("boxes", "ignore_boxes"):
            b = target[key]
            # x1' = w - x2 and x2' = w - x1 keep x1 <= x2.
            target[key] = torch.stack((w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]), dim=1)
        return image.flip(-1), target


class Normalize:
    """(image - mean) / std per channel; boxes untouched."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, image: Tensor, target: dict):
        # One new tensor, divided in place: the same values as (image - mean) / std.
        return image.sub(self.mean).div_(self.std), target


class Compose:
    """Applies transforms in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, target: dict):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target


def build_transforms(train: bool, min_size: int, max_size: int, flip_prob: float = 0.5) -> Compose:
    """Resize, a horizontal flip when training, ImageNet normalization."""
    steps = [Resize(min_size, max_size)]
    if train and flip_prob > 0:
        steps.append(RandomHorizontalFlip(flip_prob))
    steps.append(Normalize())
    return Compose(steps)


def collate(batch, size_divisible: int = 128, channels_last: bool = False):
    """list of (image Tensor[3, H, W], target) -> (images Tensor[N, 3, Hp, Wp], targets).

    Images are zero-padded at the bottom and right to the batch's largest height and width,
    rounded up to a multiple of ``size_divisible`` (so every FPN level has whole cells);
    each target gets ``size`` = (h, w) of its unpadded image. ``None`` items (images skipped
    as bad) are dropped; a batch with none left gives ``None``. ``channels_last``: the batch
    is laid out NHWC (the same values), so a channels-last model needs no copy to convert it.
    Use as a DataLoader ``collate_fn`` through ``functools.partial(collate, size_divisible=...)``.
    """
    if not (isinstance(size_divisible, int) and size_divisible >= 1):
        raise ValueError(f"collate(size_divisible={size_divisible!r}): expected an int >= 1")
    batch = [item for item in batch if item is not None]
    if not batch:
        return None
    d = size_divisible
    hp = -(-max(img.shape[-2] for img, _ in batch) // d) * d
    wp = -(-max(img.shape[-1] for img, _ in batch) // d) * d
    layout = torch.channels_last if channels_last else torch.contiguous_format
    first = batch[0][0]
    images = torch.empty(
        (len(batch), first.shape[0], hp, wp), dtype=first.dtype, device=first.device, memory_format=layout
    ).zero_()
    targets = []
    for i, (img, target) in enumerate(batch):
        h, w = img.shape[-2:]
        images[i, :, :h, :w].copy_(img)
        targets.append({**target, "size": (h, w)})
    return images, targets
