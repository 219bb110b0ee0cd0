"""Training-loop throughput against the bare model step, run from the repository root:

    python -m benchmarks.bench_loop [--iters 40] [--warmup 5] [--rounds 5] [OVERRIDE ...]

OVERRIDEs are train.py's (``num_workers=2``, ``dataset=coco_sample``, ...); no override: the
default config. Both sides run train.py's ``step`` (forward, loss, backward, clip, SGD step)
on the same model:

- loop: the real data path, ``build.train_loader`` from ``build.datasets`` (decoding,
  augmentation, collation, worker processes if any), batches moved with ``detection.engine.to_device``;
- step: the first batches of that loader held in memory, cycled.

Rounds alternate which side goes first. Each loop round starts a fresh loader further along
the sample stream and leaves its first ``--warmup`` iterations untimed (worker start-up, the
prefetch filling), so it measures the steady state of a long run. Medians over rounds; the
last line is ``loop/step ratio <R>``, the median of the per-round ratios (1.0: the data path
costs the model nothing).
"""

import argparse
import statistics
import time
import warnings

import torch

from detection import build
from detection.engine import step, to_device


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=40, help="timed iterations per round and side")
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations before each round's clock starts")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("overrides", nargs="*", help="config overrides, as for train.py")
    args = p.parse_args()
    if args.iters < 1 or args.rounds < 1 or args.warmup < 0:
        p.error("--iters and --rounds must be >= 1, --warmup >= 0")
    warnings.simplefilter("ignore", DeprecationWarning)  # torchvision.io's decoders (0.29)

    cfg = build.config(args.overrides)
    rt = build.runtime(cfg)
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    train_ds, _ = build.datasets(cfg)
    built_s = time.perf_counter() - t0
    model = build.model(cfg, train_ds.num_classes).to(rt.device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build.optimizer(cfg, model)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.amp_dtype == torch.float16)
    params = [q for q in model.parameters() if q.requires_grad]
    lr_at = build.lr_schedule(cfg)
    s = cfg.schedule
    model.train()

    def run_step(it, images, targets):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(it)
        with_stats = (it + 1) % s.log_every == 0
        step(model, optimizer, scaler, images, targets, params, cfg.optim.clip_grad_norm, rt, with_stats)

    def sync():
        if rt.device.type == "cuda":
            torch.cuda.synchronize(rt.device)

    position = 0  # the sample stream position, in iterations: every loop round sees new data

    def loop_round():
        nonlocal position
        batches = iter(build.train_loader(cfg, train_ds, position, rt))
        n = 0
        for i in range(args.warmup + args.iters):
            if i == args.warmup:
                sync()
                start, n = time.perf_counter(), 0
            batch = next(batches)
            while batch is None:  # every image unreadable (on_bad_image=skip)
                batch = next(batches)
            images, targets = to_device(*batch, rt.device, cfg.channels_last)
            run_step(position + i, images, targets)
            n += len(images)
        sync()
        seconds = time.perf_counter() - start
        del batches  # ends the workers (outside the clock)
        position += args.warmup + args.iters
        return n / seconds

    held = []
    first = iter(build.train_loader(cfg, train_ds, 0, rt))
    while len(held) < min(8, args.iters):
        batch = next(first)
        if batch is not None:
            held.append(to_device(*batch, rt.device, cfg.channels_last))
    del first

    def step_round():
        for i in range(args.warmup):
            run_step(i, *held[i % len(held)])
        sync()
        start, n = time.perf_counter(), 0
        for i in range(args.iters):
            images, targets = held[i % len(held)]
            run_step(args.warmup + i, images, targets)
            n += len(images)
        sync()
        return n / (time.perf_counter() - start)

    images = held[0][0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {rt.device}; "
          f"dataset {cfg.dataset.name} ({len(train_ds)} train images, built in {built_s:.1f} s), batch "
          f"{tuple(images.shape)}, num_workers={cfg.num_workers}, images held in memory "
          f"{getattr(train_ds, 'cached_mb', 0.0):.0f} MiB, channels_last={cfg.channels_last}, "
          f"overrides {args.overrides or 'none'}; {args.rounds} rounds x {args.iters} timed iterations "
          f"(+{args.warmup} untimed) per side", flush=True)
    rates = {"loop": [], "step": []}
    for r in range(args.rounds):
        order = ("loop", "step") if r % 2 == 0 else ("step", "loop")
        for side in order:
            rates[side].append(loop_round() if side == "loop" else step_round())
        print(f"round {r + 1}: loop {rates['loop'][-1]:.1f} img/s, step {rates['step'][-1]:.1f} img/s, "
              f"ratio {rates['loop'][-1] / rates['step'][-1]:.3f}", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"median images/s: loop {med['loop']:.1f} (min {min(rates['loop']):.1f}, max {max(rates['loop']):.1f}), "
          f"step {med['step']:.1f} (min {min(rates['step']):.1f}, max {max(rates['step']):.1f}); "
          f"ratio of the medians {med['loop'] / med['step']:.3f}")
    # The median of the per-round ratios: each pair ran side by side, so drifting load cancels.
    print(f"loop/step ratio {statistics.median(a / b for a, b in zip(rates['loop'], rates['step'])):.3f}")


if __name__ == "__main__":
    main()
