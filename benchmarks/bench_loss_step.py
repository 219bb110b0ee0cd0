"""Training-step time of every classification loss against focal's, on the default config.

    python -m benchmarks.bench_loss_step [--repeats 7] [--steps 4] [--losses ohem sampling ...] [OVERRIDE ...]

For each configs/loss/*.yaml (or --losses), the default model (``python train.py``'s: tiny
backbone, 192 px synthetic images, batch 8) is built from the same seed and trained on the
same real batches of the embedded dataset: one step = forward, matching, loss, backward, SGD
step, as train.py's loop. The losses are timed interleaved (focal, ohem, ..., focal, ...),
``--steps`` steps each per repeat, and the table gives the median ms per step and its ratio
to focal's (issue 15: a new loss must stay <= 1.5x; issue 31: qfl and vfl <= 1.3x). OVERRIDEs
are train.py's (e.g. ``loss.batch_per_image=512`` applies to the losses that have the key).
sampling_free steps without its measured prior (train.py measures it once before a run, a
pass over the training labels that is not a step's cost), which changes no step's work.
"""

import argparse
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from detection import build
from detection.engine import to_device

LOSSES = sorted(p.stem for p in (build.CONFIGS / "loss").glob("*.yaml"))


def models(names, overrides):
    """name -> (model, optimizer), every one from seed 0."""
    out = {}
    for name in names:
        keys = set(OmegaConf.load(Path(build.CONFIGS / "loss" / f"{name}.yaml")))
        own = [o for o in overrides if not o.startswith("loss.") or o.split("=")[0].split(".", 1)[1] in keys]
        cfg = build.config([f"loss={name}", *own])
        torch.manual_seed(0)
        net = build.model(cfg, cfg.dataset.generator.num_classes).train()
        if cfg.channels_last:
            net = net.to(memory_format=torch.channels_last)
        out[name] = (net, build.optimizer(cfg, net), cfg)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--steps", type=int, default=4, help="steps per loss per repeat")
    p.add_argument("--losses", nargs="+", default=LOSSES)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    names = ["focal"] + [n for n in args.losses if n != "focal"]
    nets = models(names, args.overrides)
    cfg = nets["focal"][2]
    ds = build.dataset(cfg, "train", augment=True)
    loader = iter(build.train_loader(cfg, ds, 0, build.runtime(cfg)))
    batches = [to_device(*next(loader), torch.device("cpu"), cfg.channels_last) for _ in range(args.steps)]

    def step(net, opt, images, targets):
        loss = net(images, targets)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for net, opt, _ in nets.values():  # warm-up
        step(net, opt, *batches[0])
    times = {n: [] for n in names}
    for _ in range(args.repeats):
        for n in names:
            net, opt, _ = nets[n]
            t0 = time.perf_counter()
            for images, targets in batches:
                step(net, opt, images, targets)
            times[n].append((time.perf_counter() - t0) / len(batches))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {cfg.schedule.batch_size}, "
          f"{args.repeats} interleaved repeats of {args.steps} steps, median ms per training step")
    ref = statistics.median(times["focal"])
    print(f"{'loss':>14} | {'ms/step':>8} {'x focal':>8} | {'C':>2}  config")
    for n in names:
        net = nets[n][0]
        med = statistics.median(times[n])
        print(f"{n:>14} | {1000 * med:8.1f} {med / ref:8.2f} | {net.cls_loss.num_logits(net.num_classes):>2}  "
              f"{net.cls_loss!r}", flush=True)


if __name__ == "__main__":
    main()
