"""The RetinaNet head: a class subnet and a box subnet, each shared across pyramid levels."""

import math

import torch
from torch import Tensor, nn


def _tower(in_channels: int, width: int, num_convs: int, norm: str | None) -> list[nn.Module]:
    """num_convs x (conv3x3 [+ GroupNorm] + ReLU)."""
    layers: list[nn.Module] = []
    for i in range(num_convs):
        # A conv followed by GroupNorm needs no bias: the norm's shift replaces it.
        layers.append(_conv(in_channels if i == 0 else width, width, bias=norm is None))
        if norm == "gn":
            # 32 groups as in the paper's GN variant; narrow heads use the largest divisor of 32.
            layers.append(nn.GroupNorm(math.gcd(32, width), width))
        layers.append(nn.ReLU(inplace=True))
    return layers


def _conv(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    """conv3x3 initialized as the RetinaNet paper's new layers (section 4.1): N(0, 0.01), bias 0."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)
    nn.init.normal_(conv.weight, std=0.01)
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def _flatten(x: Tensor, per_anchor: int) -> Tensor:
    """Tensor[N, A*D, H, W] with channel a*D + d -> Tensor[N, H*W*A, D] (row-major, then anchor)."""
    n, _, h, w = x.shape
    # Channels last makes memory run over (y, x, a, d) in C order, which is the flat anchor
    # order; reshaping [N, A*D, H, W] directly would instead put the anchor type outermost.
    return x.permute(0, 2, 3, 1).reshape(n, h * w * (x.shape[1] // per_anchor), per_anchor)


class RetinaHead(nn.Module):
    """Class and box subnets applied to every pyramid level with the same weights.

    Args:
        in_channels: channels of the pyramid maps.
        num_anchors: A, anchors per location.
        num_logits: C, logits per anchor (``loss.num_logits(K)``: K for sigmoid losses, K+1
            for softmax with a background class).
        num_convs: 3x3 convs before each subnet's output conv.
        width: channels of those convs.
        norm: None or "gn" (GroupNorm after each of those convs).
        init_bias: Tensor[C], the class output's bias per anchor (``loss.init_bias(K, prior)``),
            so that the initial scores follow the prior whatever the loss. None means zeros.
        prior_init: if False, the class output's bias starts at 0 (an ablation of the prior).

    ``forward(features) -> (cls_logits Tensor[N, R, C], box_deltas Tensor[N, R, 4])``.

    Flat anchor order (it is the anchor generator's order): level-major (P3 first), then
    location row-major, then anchor type. On a level with an [h, w] map whose first flat
    index is ``offset``, anchor type a at location (y, x) is at ``offset + (y * w + x) * A + a``,
    and its logit c comes from output channel ``a * C + c`` of the class conv (box delta j from
    channel ``a * 4 + j`` of the box conv).
    """

    def __init__(self, in_channels: int, num_anchors: int, num_logits: int, num_convs: int = 4,
                 width: int = 256, norm: str | None = None, init_bias: Tensor | None = None,
                 prior_init: bool = True):
        super().__init__()
        if norm not in (None, "gn"):
            raise ValueError(f"RetinaHead norm={norm!r}: expected None or 'gn'")
        if num_anchors < 1 or num_logits < 1 or num_convs < 0 or width < 1:
            raise ValueError(
                f"RetinaHead: expected num_anchors >= 1, num_logits >= 1, num_convs >= 0, width >= 1; got "
                f"num_anchors={num_anchors}, num_logits={num_logits}, num_convs={num_convs}, width={width}"
            )
        self.num_anchors = num_anchors
        self.num_logits = num_logits
        out_width = width if num_convs else in_channels
        # Paired runs: the class output conv, whose size depends on the loss (K or K+1 logits),
        # draws its random weights last, so under one seed every loss starts from the same
        # weights everywhere else (backbone, both towers, box output).
        cls_tower = _tower(in_channels, width, num_convs, norm)
        box_layers = _tower(in_channels, width, num_convs, norm) + [_conv(out_width, num_anchors * 4)]
        self.cls_subnet = nn.Sequential(*cls_tower, _conv(out_width, num_anchors * num_logits))
        self.box_subnet = nn.Sequential(*box_layers)
        if prior_init and init_bias is not None:
            self.set_class_bias(init_bias)

    def set_class_bias(self, bias: Tensor) -> None:
        """Sets the class output's bias to Tensor[C] ``bias`` for every anchor type."""
        bias = torch.as_tensor(bias, dtype=torch.float32)
        if bias.shape != (self.num_logits,):
            raise ValueError(
                f"RetinaHead init_bias has shape {tuple(bias.shape)}: expected ({self.num_logits},) = (num_logits,)"
            )
        with torch.no_grad():
            # channel a*C + c gets bias[c]: the bias vector repeated once per anchor type
            out = self.cls_subnet[-1].bias
            out.copy_(bias.to(out.device).repeat(self.num_anchors))

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """features: [Tensor[N, in_channels, h_l, w_l]] per level -> Tensor[N, R, C], Tensor[N, R, 4]."""
        cls = [_flatten(self.cls_subnet(f), self.num_logits) for f in features]
        box = [_flatten(self.box_subnet(f), 4) for f in features]
        return torch.cat(cls, dim=1), torch.cat(box, dim=1)
