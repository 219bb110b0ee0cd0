"""What a job costs beyond its training steps, measured once on this machine for the dry
runs' estimates (``detection.build.job_seconds``): writes benchmarks/job_overheads.json.

    python -m benchmarks.bench_job_overheads [--out benchmarks/job_overheads.json]

Runs ONE job of the miniature ablation (``make ablation QUICK=1``'s first tuning job, with its
error analysis) as ``python train.py`` and times it. Its training steps are what
``build.speed`` predicts; the rest is split with train.log's timestamps:
- ``per_evaluation_s``: one evaluation of the miniature's evaluation images (forward passes,
  COCOeval, the AP curve): the median gap before an intermediate "COCO AP" line;
- ``per_job_s``: everything else, once per job: process start-up and imports, data and model
  building, checkpoints, the final evaluation's extras (detections.json, per-anchor losses) and
  the error analysis.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from detection import build

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "job_overheads.json"


def quick_job() -> list[str]:
    """The overrides of the miniature ablation's first tuning job."""
    from tools.ablation import Study, stage_sweeps

    sweep = stage_sweeps(Study(tempfile.mkdtemp(), quick=True), "tune", dry=True)[0]
    return [o.replace("${seed}", "0") for o in sweep.jobs()[0]]


def log_times(log: Path) -> list[tuple[float, str]]:
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("[20"):
            stamp = datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((stamp, line[25:]))
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    job = quick_job()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "train.py", *job, f"dataset.cache_dir={tmp}/cache", f"hydra.run.dir={tmp}/run"]
        # the dataset generated first, as a study's earlier jobs leave it
        subprocess.run([*cmd[:-1], f"hydra.run.dir={tmp}/warm", "schedule.max_iters=1", "eval_at_end=false"],
                       cwd=ROOT, check=True, capture_output=True)
        t0 = time.time()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        wall = time.time() - t0
        lines = log_times(Path(tmp) / "run" / "train.log")
    cfg = build.config(job)
    speed = build.speed(cfg)
    est = build.estimate(cfg, speed)
    evals = [i for i, (_, text) in enumerate(lines) if text.startswith("[INFO] COCO AP")]
    gaps = [lines[i][0] - lines[i - 1][0] for i in evals[:-1] if i]  # the intermediate ones
    per_eval = statistics.median(gaps) if gaps else 0.0
    per_job = max(0.0, wall - est.seconds - est.evaluations * per_eval)
    result = {"per_job_s": round(per_job, 2), "per_evaluation_s": round(per_eval, 2),
              "measured": {"wall_s": round(wall, 2), "training_s": round(est.seconds, 2),
                           "evaluations": est.evaluations,
                           "device": build.device_name(build.pick_device(cfg.device)),
                           "date": time.strftime("%Y-%m-%d"), "job": job},
              "command": "python -m benchmarks.bench_job_overheads"}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
