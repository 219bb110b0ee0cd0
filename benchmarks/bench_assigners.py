"""Assigner speed and memory: atss vs max_iou on the same scene (one image).

    python -m benchmarks.bench_assigners [--repeats 5]

Real RetinaNet anchors for a 512x512 (49k) and an 800x1216 (182k) input, M gt boxes in
{5, 50, 500} drawn at random (seeded) over the image (benchmarks/bench_matcher.py's scenes).
The two assigners are timed interleaved (max_iou, atss, max_iou, ...) so machine noise hits
both alike; the table gives median milliseconds and the ratio atss / max_iou (the target:
<= 2 at 182k x 500).

Peak extra memory is the rise of the process's resident-set high-water mark (VmHWM, reset
through /proc/self/clear_refs; Linux only) over the resident set once the inputs exist,
measured in a fresh subprocess per (assigner, size, M) so earlier runs cannot hide a peak (the
target: <= 128 MiB at 182k x 500). Both work in bounded chunks: no R x M matrix.
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.bench_matcher import SIZES, make_inputs
from detection.anchors import AnchorGenerator
from detection.atss import ATSS
from detection.matcher import Matcher

NUM_GT = (5, 50, 500)
ASSIGNERS = {"max_iou": Matcher(), "atss": ATSS()}


def levels(image_hw) -> list[int]:
    """Anchors per level of the default AnchorGenerator on an image of ``image_hw``."""
    gen = AnchorGenerator()
    h, w = image_hw
    return gen.num_anchors_per_level([(-(-h // s), -(-w // s)) for s in gen.strides])


def run(name, anchors, boxes, labels, per_level):
    return ASSIGNERS[name](anchors, boxes, labels, num_classes=80, num_anchors_per_level=per_level)


def peak_memory_child(name, size, m):
    """Runs in a fresh process: prints the peak extra RSS in MiB of one call."""
    inputs = make_inputs(SIZES[size], m)
    run(name, *make_inputs((64, 64), 3), levels((64, 64)))  # lazy init outside the measurement
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    base = rss_kib("VmRSS")
    run(name, *inputs, levels(SIZES[size]))
    print((rss_kib("VmHWM") - base) / 1024)


def rss_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")


def peak_memory(name, size, m):
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_assigners", "--child", name, size, str(m)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        name, size, m = args.child
        return peak_memory_child(name, size, int(m))

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} repeats, median ms")
    print(f"{'input':>9} {'anchors':>8} {'M':>4} | {'max_iou':>8} {'atss':>8} {'ratio':>6} | "
          f"{'max_iou MiB':>11} {'atss MiB':>8}")
    for size, hw in SIZES.items():
        per_level = levels(hw)
        for m in NUM_GT:
            inputs = make_inputs(hw, m)
            times = {k: [] for k in ASSIGNERS}
            for name in ASSIGNERS:  # warm-up
                run(name, *inputs, per_level)
            for _ in range(args.repeats):
                for name in ASSIGNERS:
                    t0 = time.perf_counter()
                    run(name, *inputs, per_level)
                    times[name].append((time.perf_counter() - t0) * 1e3)
            base, atss = statistics.median(times["max_iou"]), statistics.median(times["atss"])
            mem = {k: peak_memory(k, size, m) for k in ASSIGNERS}
            print(f"{size:>9} {len(inputs[0]):>8} {m:>4} | {base:8.1f} {atss:8.1f} {atss / base:6.2f} | "
                  f"{mem['max_iou']:11.1f} {mem['atss']:8.1f}", flush=True)


if __name__ == "__main__":
    main()
