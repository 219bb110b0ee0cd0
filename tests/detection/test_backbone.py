import math

import pytest
import torch
from torch import nn
from torchvision.models import resnet18, resnet34, resnet50
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from detection.backbone import ResNetFPN, TinyBackbone

STRIDES = (8, 16, 32, 64, 128)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """depth -> a local file of torchvision resnet weights (random: nothing is downloaded)."""
    root = tmp_path_factory.mktemp("weights")

    def path(depth):
        file = root / f"resnet{depth}.pth"
        if not file.exists():
            torch.manual_seed(depth)
            torch.save({18: resnet18, 34: resnet34, 50: resnet50}[depth]().state_dict(), file)
        return file

    return path


def _check_pyramid(maps, n, channels, h, w):
    assert len(maps) == 5
    for p, s in zip(maps, STRIDES):
        assert p.shape == (n, channels, math.ceil(h / s), math.ceil(w / s))


@pytest.mark.parametrize("depth,c5", [(18, 512), (50, 2048)])
def test_resnet_fpn_shapes_strides_and_equality_with_torchvision(depth, c5, weights):
    torch.manual_seed(0)
    # with weights, BatchNorm is frozen by default, as in torchvision's pretrained detectors
    ours = ResNetFPN(depth=depth, weights=weights(depth), trainable_layers=3).eval()
    assert isinstance(ours.body.bn1, FrozenBatchNorm2d)
    assert ours.strides == STRIDES and ours.out_channels == 256
    x = torch.randn(1, 3, 256, 320)
    with torch.no_grad():
        maps = ours(x)
    _check_pyramid(maps, 1, 256, 256, 320)  # 32x40, 16x20, 8x10, 4x5, 2x3

    # torchvision's RetinaNet v1 backbone: same modules, same names, same frozen layers.
    make = {18: resnet18, 50: resnet50}[depth]
    ref = _resnet_fpn_extractor(make(norm_layer=FrozenBatchNorm2d), 3, returned_layers=[2, 3, 4],
                                extra_blocks=LastLevelP6P7(c5, 256)).eval()
    ref.load_state_dict(ours.state_dict())  # strict: identical parameter names and shapes
    with torch.no_grad():
        expected = list(ref(x).values())
    for a, b in zip(maps, expected):
        torch.testing.assert_close(a, b)
    trainable = {k for k, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {k for k, p in ref.named_parameters() if p.requires_grad}
    assert not any(k.startswith(("body.conv1", "body.layer1")) for k in trainable)
    assert any(k.startswith("body.layer2") for k in trainable)


def test_trainable_layers_counts_from_layer4(weights):
    def frozen_prefixes(n):
        m = ResNetFPN(depth=18, weights=weights(18), trainable_layers=n)
        return {k.split(".")[1] for k, p in m.named_parameters() if k.startswith("body.") and not p.requires_grad}

    assert frozen_prefixes(0) == {"conv1", "layer1", "layer2", "layer3", "layer4"}
    assert frozen_prefixes(1) == {"conv1", "layer1", "layer2", "layer3"}
    assert frozen_prefixes(5) == set()
    with pytest.raises(ValueError, match="trainable_layers=6"):
        ResNetFPN(depth=18, trainable_layers=6)
    with pytest.raises(ValueError, match="depth=101"):
        ResNetFPN(depth=101)


def _randomize_bn_buffers(module):
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)


def test_frozen_bn_is_frozen_in_training(weights):
    torch.manual_seed(0)
    model = ResNetFPN(depth=18, weights=weights(18), frozen_bn=True, trainable_layers=5)
    _randomize_bn_buffers(model)
    norms = [m for m in model.body.modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert norms and all(isinstance(m, FrozenBatchNorm2d) for m in norms)
    before = {k: v.clone() for k, v in model.state_dict().items() if "bn" in k or "downsample.1" in k}
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        eval_out = model(x)
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    out = model(x)
    for a, b in zip(out, eval_out):  # train mode normalizes with the stored statistics
        torch.testing.assert_close(a, b)
    sum(o.square().mean() for o in out).backward()
    opt.step()
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    # the convs did train, so the check above could have seen a change
    assert model.body.conv1.weight.grad is not None


def test_frozen_bn_follows_the_weights_and_needs_them():
    assert isinstance(ResNetFPN(depth=18).body.bn1, nn.BatchNorm2d)  # random init: BN learns
    with pytest.raises(ValueError, match="model.backbone.frozen_bn=true.*needs pretrained weights"):
        ResNetFPN(depth=18, frozen_bn=True)


def test_unfrozen_bn_updates_statistics():
    model = ResNetFPN(depth=18, frozen_bn=False).train()
    assert isinstance(model.body.bn1, nn.BatchNorm2d)
    mean = model.body.layer2[0].bn1.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert not torch.equal(model.body.layer2[0].bn1.running_mean, mean)


def test_loads_local_state_dict(tmp_path):
    torch.manual_seed(1)
    resnet = resnet18()
    _randomize_bn_buffers(resnet)
    path = tmp_path / "r18.pth"
    torch.save(resnet.state_dict(), path)
    model = ResNetFPN(depth=18, weights=str(path))
    torch.testing.assert_close(model.body.layer3[1].conv2.weight, resnet.layer3[1].conv2.weight, rtol=0, atol=0)
    torch.testing.assert_close(model.body.layer1[0].bn1.running_mean, resnet.layer1[0].bn1.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(model.body.bn1.weight, resnet.bn1.weight, rtol=0, atol=0)

    # a file saved without the classifier still fits
    no_fc = {k: v for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    torch.save(no_fc, tmp_path / "no_fc.pth")
    ResNetFPN(depth=18, weights=tmp_path / "no_fc.pth")


def test_bad_weights_files_name_the_path_and_keys(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        ResNetFPN(depth=18, weights=str(tmp_path / "nope.pth"))
    r34 = tmp_path / "r34.pth"
    torch.save(resnet34().state_dict(), r34)
    with pytest.raises(ValueError, match=r"r34\.pth.*unexpected keys \['layer1\.2\."):
        ResNetFPN(depth=18, weights=str(r34))
    r50 = tmp_path / "r50.pth"
    torch.save(resnet50().state_dict(), r50)
    with pytest.raises(ValueError, match=r"r50\.pth.* fit resnet18.*shape mismatches \['fc\.weight', 'layer1\.0\.conv1\.weight"):
        ResNetFPN(depth=18, weights=str(r50))
    partial = {k: v for k, v in resnet18().state_dict().items() if not k.startswith("layer4.")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"partial\.pth.*missing keys \['layer4\."):
        ResNetFPN(depth=18, weights=str(tmp_path / "partial.pth"))
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        ResNetFPN(depth=18, weights=str(tmp_path / "junk.pth"))


@pytest.mark.parametrize("h,w", [(192, 192), (256, 320)])
def test_tiny_backbone_shapes(h, w):
    model = TinyBackbone(widths=(32, 64, 128), fpn_channels=64)
    assert model.strides == STRIDES and model.out_channels == 64
    _check_pyramid(model(torch.randn(2, 3, h, w)), 2, 64, h, w)


def test_p6_comes_from_c5_even_when_widths_match():
    # LastLevelP6P7 alone would switch to P5 when C5 has fpn_channels channels.
    torch.manual_seed(0)
    model = TinyBackbone(widths=(16, 32, 64), fpn_channels=64).eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        p = model(x)
        c5 = model.c5(model.c4(model.c3(model.stem(x))))
        extra = model.fpn.extra_blocks
        p6 = extra.p6(c5)
    torch.testing.assert_close(p[3], p6)
    torch.testing.assert_close(p[4], extra.p7(torch.relu(p6)))
    assert not torch.allclose(p6, extra.p6(p[2]))
