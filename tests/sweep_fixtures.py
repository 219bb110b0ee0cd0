"""A fake sweep folder with known numbers, for the report tests.

Methods (overrides besides the shared ``experiment=bg_ablation``) and their runs:
  loss=softmax_bg                       seeds 0 1 2 finished, AP 30 32 34
  loss=bce_alpha                        seeds 0 1 finished (AP 25 27), seed 2 failed
  loss=focal                            seed 0 finished (AP 40), seed 1 diverged, seed 2 running
  loss=bce_alpha, model.prior_init=false  seed 0 diverged, seed 1 finished without eval.json
"""

import json
import time
from pathlib import Path

from omegaconf import OmegaConf

from detection.run_folder import RunFolder

STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def write_run(run_dir: Path, overrides: list[str], seed: int, status: str, ap=None, seconds=None,
              message=None, metrics=(), extra_lines=()) -> Path:
    """A run folder as train.py and Hydra write it. ``ap``: AP as a fraction; the other stats
    are derived from it (AP50 = AP + .2, AP75 = AP - .1, APs undefined: -1, APm = APl = AP)."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(overrides)))
    loss = next(o.split("=")[1] for o in overrides if o.startswith("loss="))
    (run_dir / "config.yaml").write_text(f"seed: {seed}\nloss:\n  _target_: losses.{loss}.X\nrun_name: s_{loss}\n")
    info = {"status": status, "time": 1.7e9}
    if status == "running":  # alive: a fresh heartbeat from a process on another machine
        info.update(host="another-host", pid=1, heartbeat=time.time())
    if seconds is not None:
        info["seconds"] = seconds
    if message is not None:
        info["message"] = message
    (run_dir / "status.json").write_text(json.dumps(info))
    if ap is not None:
        ev = {k: ap for k in STATS}
        ev.update(AP50=ap + 0.2, AP75=ap - 0.1, APs=-1.0, per_category={"circle": ap})
        (run_dir / "eval.json").write_text(json.dumps(ev))
    lines = [json.dumps(m) for m in metrics] + list(extra_lines)
    (run_dir / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    return run_dir


def metrics(cls_losses, bg_shares, num_fg, speeds, easy=0.5, box=0.25):
    """Metric lines logged at iterations 10, 20, ...; the last line holds the 'final' values."""
    return [{"iter": 10 * (i + 1), "lr": 0.01, "loss": c + box, "loss_cls": c, "loss_box": box,
             "normalizer": 5.0, "num_fg": f, "num_bg": 1000.0, "num_ignore": 10.0, "fg_share": 1 - b,
             "bg_share": b, "easy_bg_share": easy, "grad_norm": 1.0, "images_per_s": s}
            for i, (c, b, f, s) in enumerate(zip(cls_losses, bg_shares, num_fg, speeds))]


def make_sweep(root: Path, anchor_losses: dict[str, tuple] | None = None) -> Path:
    """The fake sweep of the module docstring under ``root``; ``anchor_losses[loss]`` (if given,
    a pair of fg and bg loss tensors) is saved as anchor_losses.pt by the first seed of that
    loss's plain method."""
    exp = "experiment=bg_ablation"
    sweep = root / "sweep"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    task:\n    - experiment=bg_ablation\n")
    m, no_prior, nan_msg = metrics, ["model.prior_init=false"], "non-finite loss at iteration "
    jobs = [  # loss, more overrides, seed, status, write_run's arguments
        ("softmax_bg", [], 0, "finished",
         dict(ap=0.30, seconds=100, metrics=m([2.0, 1.0, 0.5], [0.95, 0.9, 0.9], [10, 20, 15], [1, 5, 6]))),
        ("softmax_bg", [], 1, "finished",
         dict(ap=0.32, seconds=110, metrics=m([2.0, 1.0, 0.7], [0.95, 0.9, 0.8], [20, 30, 25], [7, 5, 6]))),
        ("softmax_bg", [], 2, "finished",
         dict(ap=0.34, seconds=120, metrics=m([2.0, 1.0, 0.9], [0.95, 0.9, 0.7], [30, 40, 35], [4, 5, 9]))),
        ("bce_alpha", [], 0, "finished", dict(ap=0.25, seconds=50, metrics=m([1.0, 0.4], [0.5, 0.6], [5, 5], [2, 2]))),
        ("bce_alpha", [], 1, "finished", dict(ap=0.27, seconds=70, metrics=m([1.0, 0.6], [0.5, 0.4], [7, 7], [4, 4]))),
        ("bce_alpha", [], 2, "failed", dict(seconds=3, message="RuntimeError: out of memory")),
        ("focal", [], 0, "finished", dict(ap=0.40, seconds=90, metrics=m([0.3, 0.2], [0.5, 0.3], [9, 11], [3, 3]))),
        ("focal", [], 1, "diverged", dict(seconds=20, message=nan_msg + "14", metrics=m([0.3], [0.5], [9], [3]))),
        ("focal", [], 2, "running", dict(metrics=m([0.3], [0.5], [9], [3]), extra_lines=['{"iter": 20, "lo'])),
        ("bce_alpha", no_prior, 0, "diverged", dict(seconds=5, message=nan_msg + "2")),
        ("bce_alpha", no_prior, 1, "finished", dict(seconds=60, metrics=m([9.0], [0.99], [8], [2]))),
    ]
    for num, (loss, extra, seed, status, kw) in enumerate(jobs):
        overrides = [exp, f"loss={loss}", *extra, f"seed={seed}"]
        run = write_run(sweep / f"{num}_synthetic_{loss}", overrides, seed, status, **kw)
        if anchor_losses and loss in anchor_losses and seed == 0 and not extra:
            RunFolder(run).save_anchor_losses(*anchor_losses[loss])
    return sweep
