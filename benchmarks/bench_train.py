"""Training-step throughput: ours vs torchvision's RetinaNet, same backbone, size, batch, anchors.

    python -m benchmarks.bench_train [--repeats 5] [--batch 2] [--sizes 320 512] [--depths 18 50]

Both models: torchvision ResNet-{18,50} (random init, BatchNorm trained, all stages trainable)
with FPN P3-P7, a 4-conv 256-wide head, 9 anchors per location (32..512, 3 scales, 3 ratios),
K = 80 classes, focal loss (gamma 2, alpha 0.25), box regression, SGD step. Inputs are the
same tensors (square images of the given size, 6 random boxes each); torchvision's transform
is set to that size so it does not resize. One step = forward + loss + backward + SGD step.
The two are timed interleaved (ours, torchvision, ours, ...) and the table gives median
images/s and the ratio ours / torchvision (> 1: ours is faster).
"""

import argparse
import statistics
import time

import torch
from torchvision.models import resnet18, resnet50
from torchvision.models.detection import RetinaNet as TVRetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from detection.backbone import ResNetFPN
from detection.retinanet import RetinaNet
from losses.focal import FocalLoss

K = 80


def ours(depth):
    backbone = ResNetFPN(depth=depth, frozen_bn=False, trainable_layers=5, fpn_channels=256)
    return RetinaNet(K, FocalLoss(), backbone=backbone, head_convs=4, head_width=256)


def torchvision_model(depth, size):
    body = {18: resnet18, 50: resnet50}[depth](weights=None)
    c5 = body.fc.in_features
    backbone = _resnet_fpn_extractor(body, 5, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(c5, 256))
    sizes = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in [32, 64, 128, 256, 512])
    anchors = TVAnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 5)
    return TVRetinaNet(backbone, K, min_size=size, max_size=size, anchor_generator=anchors)


def make_batch(n, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=g)
    targets = []
    for _ in range(n):
        xy = torch.rand(6, 2, generator=g) * size * 0.6
        wh = torch.rand(6, 2, generator=g) * size * 0.35 + 12
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(0, K, (6,), generator=g),
                        "ignore_boxes": torch.zeros(0, 4), "size": (size, size), "orig_size": (size, size)})
    return images, targets


def step_ours(model, opt, images, targets):
    loss = model(images, targets)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def step_torchvision(model, opt, images, targets):
    tv_targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
    losses = model(list(images), tv_targets)
    loss = sum(losses.values())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--sizes", type=int, nargs="+", default=[320, 512])
    p.add_argument("--depths", type=int, nargs="+", default=[18, 50])
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.repeats} interleaved repeats, median images/s")
    print(f"{'backbone':>9} {'size':>5} | {'ours img/s':>10} {'tv img/s':>9} {'ratio':>6}")
    for depth in args.depths:
        for size in args.sizes:
            torch.manual_seed(0)
            models = {"ours": ours(depth).train(), "tv": torchvision_model(depth, size).train()}
            opts = {k: torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9) for k, m in models.items()}
            steps = {"ours": step_ours, "tv": step_torchvision}
            images, targets = make_batch(args.batch, size)
            for k in models:  # warm-up
                steps[k](models[k], opts[k], images, targets)
            times = {k: [] for k in models}
            for _ in range(args.repeats):
                for k in models:
                    t0 = time.perf_counter()
                    steps[k](models[k], opts[k], images, targets)
                    times[k].append(time.perf_counter() - t0)
            ips = {k: args.batch / statistics.median(v) for k, v in times.items()}
            print(f"{'resnet' + str(depth):>9} {size:>5} | {ips['ours']:10.2f} {ips['tv']:9.2f} "
                  f"{ips['ours'] / ips['tv']:6.2f}", flush=True)


if __name__ == "__main__":
    main()
