"""Multi-level anchors for a RetinaNet-style FPN head.

Order of the anchors (and of the head's flattened outputs, which must agree):

    level-major (P3, P4, ...), then location row-major (y, then x), then anchor type,
    where the A = len(aspect_ratios) * len(scales) types are aspect-ratio-major, scale-minor.

So anchor ``r`` of level ``l`` at grid cell ``(y, x)`` with type ``a`` sits at
``r = offset_l + (y * W_l + x) * A + a`` with ``offset_l`` the number of anchors of the levels
before ``l``. A head output ``Tensor[N, A*C, H, W]`` whose channel ``a*C + c`` is logit ``c`` of
type ``a`` is flattened to this order by ``permute(0, 2, 3, 1).reshape(N, H*W*A, C)``.
The same order (and the same rounded base anchors) as torchvision's ``AnchorGenerator`` for
its RetinaNet configuration, so results can be compared anchor for anchor.
"""

import torch
from torch import Tensor


class AnchorGenerator:
    """Anchors for feature maps of given sizes.

    Args:
        sizes: base anchor side per level, in input pixels (RetinaNet: 32 .. 512 on P3 .. P7).
        strides: feature stride per level, in input pixels.
        scales: multipliers of the base size (RetinaNet: 3 octave scales).
        aspect_ratios: height / width ratios.
        offset: where in a stride cell an anchor is centred, in cells: 0.0 puts the centre on
            the cell's top-left corner (torchvision, detectron2), 0.5 on its centre.

    Example::

        >>> gen = AnchorGenerator(sizes=(32,), strides=(8,), scales=(1.0,), aspect_ratios=(1.0,))
        >>> gen.grid_anchors([(1, 2)])
        tensor([[-16., -16., 16., 16.],
                [ -8., -16., 24., 16.]])
    """

    def __init__(
        self,
        sizes=(32, 64, 128, 256, 512),
        strides=(8, 16, 32, 64, 128),
        scales=(1.0, 2 ** (1 / 3), 2 ** (2 / 3)),
        aspect_ratios=(0.5, 1.0, 2.0),
        offset: float = 0.0,
    ):
        if len(sizes) != len(strides):
            raise ValueError(
                f"AnchorGenerator: sizes {tuple(sizes)} and strides {tuple(strides)} must have "
                "one entry per pyramid level"
            )
        self.sizes = tuple(float(s) for s in sizes)
        self.strides = tuple(int(s) for s in strides)
        self.scales = tuple(float(s) for s in scales)
        self.aspect_ratios = tuple(float(a) for a in aspect_ratios)
        self.offset = float(offset)
        self._cache: dict = {}

    @property
    def num_anchors_per_location(self) -> int:
        return len(self.scales) * len(self.aspect_ratios)

    def base_anchors(self, size: float) -> Tensor:
        """Tensor[A, 4] anchors of one level centred on (0, 0).

        Rounded to whole pixels like torchvision's, so both generators give equal anchors.
        """
        ratios = torch.tensor(self.aspect_ratios, dtype=torch.float32)
        scales = torch.tensor(self.scales, dtype=torch.float32) * size
        h_ratios = torch.sqrt(ratios)
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)  # (A,) ratio-major
        hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
        return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()

    def grid_anchors(self, feature_sizes, device=None) -> Tensor:
        """Anchors for all levels.

        Args:
            feature_sizes: ``[(H_l, W_l), ...]`` one per level, in level order.
            device: where the anchors live (cached per device).

        Returns:
            Tensor[R, 4] xyxy anchors in input pixels, R = sum_l H_l * W_l * A, in the order
            documented at the top of this module.
        """
        sizes = tuple((int(h), int(w)) for h, w in feature_sizes)
        if len(sizes) != len(self.strides):
            raise ValueError(
                f"AnchorGenerator.grid_anchors: got {len(sizes)} feature maps {list(sizes)}, expected "
                f"{len(self.strides)} (one per stride {self.strides})"
            )
        device = torch.device(device) if device is not None else torch.device("cpu")
        key = (sizes, device)
        if key not in self._cache:
            levels = []
            for (h, w), size, stride in zip(sizes, self.sizes, self.strides):
                ys = (torch.arange(h, dtype=torch.float32) + self.offset) * stride
                xs = (torch.arange(w, dtype=torch.float32) + self.offset) * stride
                cy, cx = torch.meshgrid(ys, xs, indexing="ij")
                centres = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)  # (H*W, 1, 4)
                levels.append((centres + self.base_anchors(size)[None]).reshape(-1, 4))
            self._cache[key] = torch.cat(levels).to(device)
        return self._cache[key]

    def num_anchors_per_level(self, feature_sizes) -> list[int]:
        return [int(h) * int(w) * self.num_anchors_per_location for h, w in feature_sizes]

    def __repr__(self) -> str:
        return (
            f"AnchorGenerator(sizes={self.sizes}, strides={self.strides}, scales="
            f"{tuple(round(s, 4) for s in self.scales)}, aspect_ratios={self.aspect_ratios}, "
            f"offset={self.offset})"
        )
