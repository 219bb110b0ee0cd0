"""Matcher speed and memory: ours vs torchvision's box_iou + Matcher (one image).

    python -m benchmarks.bench_matcher [--repeats 15]

Real RetinaNet anchors for a 512x512 (49k) and an 800x1216 (182k) input, M gt boxes in
{5, 50, 500} drawn at random (seeded) over the image. The two implementations are timed
interleaved (ours, theirs, ours, ...) so machine noise hits both alike; the table gives
median milliseconds and the ratio ours / torchvision (< 1: ours is faster).

Peak extra memory is the rise of the process's resident-set high-water mark (VmHWM, reset
through /proc/self/clear_refs; Linux only) over the resident set once the inputs exist, measured in a fresh subprocess per
(implementation, size) so earlier runs cannot hide a peak. torchvision materialises the
(M, R) IoU matrix and its temporaries; ours works in bounded anchor chunks.
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torchvision.models.detection import _utils as tv_utils
from torchvision.ops import box_iou

from detection.anchors import AnchorGenerator
from detection.matcher import Matcher

SIZES = {"512x512": (512, 512), "800x1216": (800, 1216)}
NUM_GT = (5, 50, 500)


def make_inputs(image_hw, m, seed=0):
    h, w = image_hw
    gen = AnchorGenerator()
    feats = [(-(-h // s), -(-w // s)) for s in gen.strides]
    anchors = gen.grid_anchors(feats)
    g = torch.Generator().manual_seed(seed)
    wh = torch.rand(m, 2, generator=g) * torch.tensor([w / 3, h / 3]) + 8
    xy = torch.rand(m, 2, generator=g) * torch.tensor([w, h]) - wh / 2
    boxes = torch.cat([xy, xy + wh], dim=1)
    labels = torch.randint(0, 80, (m,), generator=g)
    return anchors, boxes, labels


OURS = Matcher()
TORCHVISION = tv_utils.Matcher(0.5, 0.4, True)


def run_ours(anchors, boxes, labels):
    return OURS(anchors, boxes, labels, num_classes=80)


def run_torchvision(anchors, boxes, labels):
    return TORCHVISION(box_iou(boxes, anchors))


IMPLS = {"ours": run_ours, "torchvision": run_torchvision}


def peak_memory_child(impl, size, m):
    """Runs in a fresh process: prints the peak extra RSS in MiB of one call."""
    inputs = make_inputs(SIZES[size], m)
    IMPLS[impl](*make_inputs((64, 64), 3))  # warm up lazy init outside the measurement
    # Reset the kernel's high-water mark (VmHWM) to the current RSS, so the import of torch
    # and the input construction do not count.
    Path("/proc/self/clear_refs").write_text("5")
    base = _rss_kib("VmRSS")
    IMPLS[impl](*inputs)
    print((_rss_kib("VmHWM") - base) / 1024)


def _rss_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")


def peak_memory(impl, size, m):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_matcher", "--child", impl, size, str(m)],
        capture_output=True, text=True, check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        impl, size, m = args.child
        return peak_memory_child(impl, size, int(m))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} repeats, median ms")
    print(f"{'input':>9} {'anchors':>8} {'M':>4} | {'ours ms':>8} {'tv ms':>8} {'ratio':>6} | "
          f"{'ours MiB':>8} {'tv MiB':>8}")
    for size, hw in SIZES.items():
        for m in NUM_GT:
            inputs = make_inputs(hw, m)
            times = {k: [] for k in IMPLS}
            for impl in IMPLS.values():  # warm-up
                impl(*inputs)
            for _ in range(args.repeats):
                for name, impl in IMPLS.items():
                    t0 = time.perf_counter()
                    impl(*inputs)
                    times[name].append((time.perf_counter() - t0) * 1e3)
            ours, tv = statistics.median(times["ours"]), statistics.median(times["torchvision"])
            mem = {k: peak_memory(k, size, m) for k in IMPLS}
            print(f"{size:>9} {len(inputs[0]):>8} {m:>4} | {ours:8.1f} {tv:8.1f} {ours / tv:6.2f} | "
                  f"{mem['ours']:8.1f} {mem['torchvision']:8.1f}", flush=True)


if __name__ == "__main__":
    main()
