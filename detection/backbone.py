"""Backbones with a RetinaNet feature pyramid: C3-C5 -> P3-P7 at strides 8, 16, 32, 64, 128.

Both backbones share one pyramid (``retinanet_fpn``): ``torchvision.ops.FeaturePyramidNetwork``
on C3-C5, then P6 = conv3x3/2(C5) and P7 = conv3x3/2(relu(P6)) as in torchvision's RetinaNet
v1 and the RetinaNet paper (P6 from C5, not from P5). ``ResNetFPN`` is a ``body`` returning
C3-C5 and that ``fpn``, so its parameter names are those of torchvision's ``BackboneWithFPN``
(``_resnet_fpn_extractor(..., returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(C5, 256))``)
and weights load into either.
"""

import os
from collections import OrderedDict

import torch
from torch import Tensor, nn
from torchvision.models import resnet18, resnet34, resnet50
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import Conv2dNormActivation

STRIDES = (8, 16, 32, 64, 128)
_RESNETS = {18: resnet18, 34: resnet34, 50: resnet50}


def retinanet_fpn(in_channels: list[int], out_channels: int) -> FeaturePyramidNetwork:
    """The pyramid shared by all backbones: dict of C3, C4, C5 -> dict of P3..P7.

    Args:
        in_channels: channels of C3, C4, C5.
        out_channels: channels of every P level.
    """
    extra = LastLevelP6P7(in_channels[-1], out_channels)
    # LastLevelP6P7 switches to P5 as input whenever C5 happens to have out_channels
    # channels; pin it to C5 so the architecture does not depend on the widths chosen.
    extra.use_P5 = False
    return FeaturePyramidNetwork(list(in_channels), out_channels, extra_blocks=extra)


def _load_resnet_weights(model: nn.Module, path: str, name: str) -> None:
    """Loads a torchvision-format resnet state_dict from a local file, with errors naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone weights: no such file {path!r} (expected a local torchvision resnet state_dict)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and weights_only errors all mean the same to a user
        raise ValueError(f"backbone weights {path!r}: cannot be read by torch.load ({e})") from e
    if not isinstance(state, dict):
        raise ValueError(f"backbone weights {path!r}: expected a state_dict (dict of tensors), got {type(state).__name__}")
    # fc.* is not used by the detector; accept files saved without it.
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state and not k.startswith("fc.") and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own and not k.endswith("num_batches_tracked"))
    wrong = sorted(k for k in state if k in own and state[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(
            f"backbone weights {path!r} do not fit {name}: missing keys {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''}, unexpected keys {unexpected[:8]}"
            f"{' ...' if len(unexpected) > 8 else ''}, shape mismatches {wrong[:8]}"
            " (expected a torchvision resnet state_dict of the same depth)"
        )
    model.load_state_dict(state, strict=False)


class ResNetFPN(nn.Module):
    """torchvision ResNet-18/34/50 with the RetinaNet pyramid P3-P7.

    Args:
        depth: 18, 34 or 50.
        weights: None (random init, nothing is downloaded) or the path of a local file holding
            a torchvision-format resnet state_dict (e.g. ``resnet50(weights=...).state_dict()``).
        frozen_bn: use ``FrozenBatchNorm2d`` (statistics and affine fixed) instead of BatchNorm.
            None (the default) freezes exactly when ``weights`` are given: frozen statistics are
            what pretrained ResNets were trained with, but a network trained from scratch needs
            BatchNorm to learn its statistics (frozen without weights is an error).
        trainable_layers: how many of layer4, layer3, layer2, layer1, conv1 (counted from
            layer4) are trained, as in torchvision; the rest have requires_grad=False. 5 trains all.
            torchvision trains all 5 when there are no pretrained weights; freezing random
            layers is only sensible for throughput measurements.
        fpn_channels: channels of P3-P7.

    ``forward(images Tensor[N, 3, H, W]) -> [P3, ..., P7]``, each Tensor[N, fpn_channels, h, w]
    with h = ceil(H / stride) for strides ``self.strides``.
    """

    def __init__(self, depth: int = 50, weights: str | None = None, frozen_bn: bool | None = None,
                 trainable_layers: int = 5, fpn_channels: int = 256):
        super().__init__()
        if depth not in _RESNETS:
            raise ValueError(f"ResNetFPN depth={depth!r} (model.backbone.depth): expected one of {sorted(_RESNETS)}")
        if not 0 <= trainable_layers <= 5:
            raise ValueError(f"ResNetFPN trainable_layers={trainable_layers!r} (model.backbone.trainable_layers): "
                             "expected 0..5")
        frozen = weights is not None if frozen_bn is None else bool(frozen_bn)
        if frozen and weights is None:
            raise ValueError(
                f"resnet{depth} with frozen BatchNorm (model.backbone.frozen_bn=true) needs pretrained weights: "
                "frozen statistics of a random network normalize nothing. Give model.backbone.weights="
                "<local path to a torchvision resnet state_dict>, or set model.backbone.frozen_bn=null"
            )
        norm = FrozenBatchNorm2d if frozen else nn.BatchNorm2d
        resnet = _RESNETS[depth](weights=None, norm_layer=norm)
        if weights is not None:
            _load_resnet_weights(resnet, os.fspath(weights), f"resnet{depth}")
        train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
        if trainable_layers == 5:
            train.append("bn1")
        for name, p in resnet.named_parameters():
            if not any(name.startswith(layer) for layer in train):
                p.requires_grad_(False)

        c5 = resnet.fc.in_features  # 512 for BasicBlock resnets, 2048 for Bottleneck
        self.body = IntermediateLayerGetter(resnet, {"layer2": "c3", "layer3": "c4", "layer4": "c5"})
        self.fpn = retinanet_fpn([c5 // 4, c5 // 2, c5], fpn_channels)
        self.out_channels = fpn_channels
        self.strides = STRIDES

    def forward(self, images: Tensor) -> list[Tensor]:
        return list(self.fpn(self.body(images)).values())


class TinyBackbone(nn.Module):
    """A small conv-BN-ReLU net for CPU training on small images, with the RetinaNet pyramid.

    Layout (each conv 3x3 + BatchNorm + ReLU; "/2" has stride 2)::

        stem:  3 -> stem_width /2,  stem_width -> widths[0] /2           (stride 4)
        C3:    widths[0] -> widths[0] /2, then `depth` x widths[0]       (stride 8)
        C4:    widths[0] -> widths[1] /2, then `depth` x widths[1]       (stride 16)
        C5:    widths[1] -> widths[2] /2, then `depth` x widths[2]       (stride 32)

    The stem is two strided convs so that almost no work is spent at full resolution, where
    the detector needs no features (the finest pyramid level is stride 8).

    Args:
        widths: channels of C3, C4, C5.
        fpn_channels: channels of P3-P7.
        stem_width: channels after the first conv.
        depth: extra stride-1 convs per stage.

    ``forward(images Tensor[N, 3, H, W]) -> [P3, ..., P7]`` like ``ResNetFPN``.
    """

    def __init__(self, widths=(32, 64, 128), fpn_channels: int = 64, stem_width: int = 16, depth: int = 1):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"TinyBackbone widths={widths!r}: expected three positive channel counts for C3, C4, C5")
        if depth < 0:
            raise ValueError(f"TinyBackbone depth={depth!r}: expected >= 0")

        def stage(cin: int, cout: int) -> nn.Sequential:
            layers = [Conv2dNormActivation(cin, cout, 3, stride=2)]
            layers += [Conv2dNormActivation(cout, cout, 3) for _ in range(depth)]
            return nn.Sequential(*layers)

        self.stem = nn.Sequential(
            Conv2dNormActivation(3, stem_width, 3, stride=2),
            Conv2dNormActivation(stem_width, widths[0], 3, stride=2),
        )
        self.c3 = stage(widths[0], widths[0])
        self.c4 = stage(widths[0], widths[1])
        self.c5 = stage(widths[1], widths[2])
        self.fpn = retinanet_fpn(list(widths), fpn_channels)
        self.out_channels = fpn_channels
        self.strides = STRIDES

    def forward(self, images: Tensor) -> list[Tensor]:
        c3 = self.c3(self.stem(images))
        c4 = self.c4(c3)
        c5 = self.c5(c4)
        return list(self.fpn(OrderedDict(c3=c3, c4=c4, c5=c5)).values())
