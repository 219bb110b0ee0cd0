"""torchrun with 2 gloo processes on the CPU behaves like one process with the same global batch."""

import json
import os
import subprocess
import sys

import torch
from torchvision.models import resnet18

from tests.conftest import ROOT, tiny_overrides


def _train(run_dir, cache, nproc, weights):
    overrides = [o for o in tiny_overrides(cache)
                 if not o.startswith(("schedule.max_iters", "schedule.log_every", "model.backbone."))]
    # Frozen BN (per-sample arithmetic) so the two ranks' half batches compute exactly what one
    # process computes on the whole batch; trainable BatchNorm would differ by batch statistics.
    overrides += ["model/backbone=resnet18", f"model.backbone.weights={weights}", "model.backbone.frozen_bn=true",
                  "model.backbone.fpn_channels=16",
                  "model.score_thresh=0.0",  # detections on every image, to check the gathering
                  "schedule.max_iters=2", "schedule.log_every=1", f"hydra.run.dir={run_dir}",
                  "~hydra.callbacks.analysis"]  # rank 0's analysis is a single run's (tests/analysis)
    launcher = [sys.executable, "train.py"] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "train.py"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(launcher + overrides, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_process_gloo_run_matches_one_process(tmp_path, synthetic_cache):
    weights = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), weights)
    single = _train(tmp_path / "single", synthetic_cache, 1, weights)
    ddp = _train(tmp_path / "ddp", synthetic_cache, 2, weights)
    for key in ("loss", "loss_cls", "loss_box", "num_fg", "num_bg"):
        assert abs(single[0][key] - ddp[0][key]) <= 1e-5 * max(1.0, abs(single[0][key])), key
    # artifacts written once, by rank 0: one line per logged step, one checkpoint, one eval
    assert [r["iter"] for r in ddp if "eval" not in r] == [1, 2]
    assert [r["iter"] for r in ddp if "eval" in r] == [2]  # the AP curve's final point
    run = tmp_path / "ddp"
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "eval.json").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]  # one save, by rank 0
    dets = json.loads((run / "detections.json").read_text())
    single_dets = json.loads((tmp_path / "single" / "detections.json").read_text())
    # evaluation gathered every rank's images: the same images as the single process
    assert len(dets) > 0 and {d["image_id"] for d in dets} == {d["image_id"] for d in single_dets}
    log = (run / "train.log").read_text()
    assert log.count("run folder:") == 1 and "2 process(es)" in log
