"""Studies that finish: a sweep killed mid-job and rerun ends as if never interrupted; damaged
checkpoints are worked around, not fatal."""

import json
import os
import subprocess
import sys

import pytest
import torch

import train
from detection.run_folder import RunFolder
from tests.conftest import ROOT, compose_config, tiny_overrides

# Runs train.py's entry point, SIGKILLing the process (no cleanup, no status written) right
# after job 1 logs iteration 4, i.e. after its checkpoint of iteration 3.
KILLER = """
import os, signal, sys
import train
from hydra.core.hydra_config import HydraConfig
log_step = train.log_step
def killing_log_step(record, max_iters, writer):
    log_step(record, max_iters, writer)
    if HydraConfig.get().job.num == 1 and record["iter"] == 4:
        os.kill(os.getpid(), signal.SIGKILL)
train.log_step = killing_log_step
sys.argv = ["train.py", *sys.argv[1:]]
train.main()
"""


def sweep_command(cache, sweep_dir, extra=()):
    overrides = [o for o in tiny_overrides(cache) if not o.startswith("num_workers")]
    return [*overrides, "num_workers=0", "loss=focal,softmax_bg", f"hydra.sweep.dir={sweep_dir}", "loss_cdf_images=2",
            *extra]


def run(args, killer=False):
    cmd = [sys.executable, "-c", KILLER, *args] if killer else [sys.executable, "train.py", "-m", *args]
    if killer:  # Hydra finds configs/ beside the main script; here there is none
        cmd[3:3] = ["-m", f"--config-path={ROOT / 'configs'}"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def job_dirs(sweep):
    return sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())


def test_a_killed_sweep_rerun_skips_finished_jobs_and_matches_an_uninterrupted_one(tmp_path, synthetic_cache):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    proc = run(sweep_command(synthetic_cache, whole))
    assert proc.returncode == 0, proc.stderr[-3000:]

    proc = run(sweep_command(synthetic_cache, killed), killer=True)
    assert proc.returncode == -9, proc.stderr[-3000:]  # SIGKILL: nothing ran after it
    first, second = job_dirs(killed)
    assert RunFolder(second).read_status()["status"] == "running"  # as the kill left it...
    from reports.runs import load_run

    assert load_run(second, killed).status == "killed"  # ...and as the report reads it
    assert torch.load(RunFolder(second).checkpoint, weights_only=False)["iter"] == 3
    finished_at = RunFolder(first).status.stat().st_mtime_ns, RunFolder(first).checkpoint.stat().st_mtime_ns

    proc = run(sweep_command(synthetic_cache, killed))  # the same command again
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert f"{first}: finished, skipped" in log and f"{second}: killed, resumed from its checkpoint" in log
    assert (RunFolder(first).status.stat().st_mtime_ns, RunFolder(first).checkpoint.stat().st_mtime_ns) == finished_at
    assert "resumed from" in RunFolder(second).log.read_text()

    for a, b in zip(job_dirs(whole), job_dirs(killed), strict=True):
        fa, fb = RunFolder(a), RunFolder(b)
        assert fa.read_eval() == fb.read_eval(), a.name
        strip = [{k: v for k, v in r.items() if k != "images_per_s"} for r in fa.read_metrics()[0]]
        assert strip == [{k: v for k, v in r.items() if k != "images_per_s"} for r in fb.read_metrics()[0]]
        assert fb.read_status()["status"] == "finished"
    # the reports agree on every number but time and speed
    def numbers(sweep):
        rows = (sweep / "report.csv").read_text().splitlines()
        header = rows[0].split(",")
        keep = [i for i, h in enumerate(header) if not h.startswith(("train_s", "images_per_s"))]
        return [[row.split(",")[i] for i in keep] for row in rows]

    assert numbers(whole) == numbers(killed)

    # a sweep rerun with another setting refuses the folders it would mix up, naming the change
    proc = run(sweep_command(synthetic_cache, killed, ["optim.lr=0.02"]))
    assert proc.returncode != 0 and "optim.lr: 0.05 -> 0.02" in proc.stderr and "force=true" in proc.stderr


def test_a_diverged_job_is_skipped_unless_retried(tmp_path, synthetic_cache):
    cfg = compose_config(tiny_overrides(synthetic_cache))
    folder = RunFolder(tmp_path / "job")
    folder.write_config(train.OmegaConf.to_yaml(cfg, resolve=True))
    folder.write_status("diverged", message="non-finite loss")
    assert train.run_action(cfg, folder) == "skip"
    cfg.retry_diverged = True
    # again from iteration 0 (resuming would diverge again), its records moved aside
    assert train.run_action(cfg, folder) == "start_over"



def test_another_code_version_stops_a_resume_not_a_finished_run(tmp_path, synthetic_cache, caplog):
    cfg = compose_config(tiny_overrides(synthetic_cache))
    folder = RunFolder(tmp_path / "job")
    folder.write_config(train.OmegaConf.to_yaml(cfg, resolve=True))
    folder.write_status("finished", code="0ld0ld0ld0ld0ld0")
    with caplog.at_level("INFO"):
        assert train.run_action(cfg, folder) == "skip"
    assert "made by code version 0ld0ld0ld0ld0ld0" in caplog.text
    folder.write_status("failed", code="0ld0ld0ld0ld0ld0")
    assert train.run_action(cfg, folder) == "start_over"  # nothing to continue: it starts over, on this code
    folder.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    folder.checkpoint.write_bytes(b"x")
    with pytest.raises(train.RunRefused, match="code version: 0ld0ld0ld0ld0ld0 ->"):
        train.run_action(cfg, folder)
    cfg.force = True
    assert train.run_action(cfg, folder) == "resume"

def _last_weights(run_dir):
    return torch.load(RunFolder(run_dir).checkpoint, weights_only=False)["model"]


@pytest.mark.parametrize("damaged", [["last"], ["last", "previous"]])
def test_a_truncated_checkpoint_resumes_from_the_previous_one_or_from_zero(tmp_path, synthetic_cache, caplog,
                                                                           damaged):
    base = tiny_overrides(synthetic_cache) + ["eval_at_end=false", "schedule.checkpoint_every=2"]
    train.run(compose_config(base), tmp_path / "full")
    train.run(compose_config(base + ["schedule.stop_after=4"]), tmp_path / "part")  # checkpoints at 2 and 4
    folder = RunFolder(tmp_path / "part")
    for name in damaged:
        path = folder.checkpoint if name == "last" else folder.previous_checkpoint
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with caplog.at_level("INFO", logger="anchorbg"):
        train.run(compose_config(base + ["resume=true"]), tmp_path / "part")
    assert f"checkpoint {folder.checkpoint} could not be read" in caplog.text
    if damaged == ["last"]:
        assert f"resumed from {folder.previous_checkpoint} at iteration 2" in caplog.text
    else:
        assert "no readable checkpoint" in caplog.text and "starts again from iteration 0" in caplog.text
    a, b = _last_weights(tmp_path / "full"), _last_weights(tmp_path / "part")
    assert all(torch.equal(v, b[k]) for k, v in a.items() if torch.is_tensor(v))
    assert [json.loads(x)["iter"] for x in folder.metrics.read_text().splitlines()] == [2, 4, 6]


def test_an_explicit_damaged_checkpoint_is_an_error_naming_it(tmp_path, synthetic_cache):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80truncated")
    with pytest.raises(RuntimeError, match="bad.pt could not be read"):
        train.run(compose_config(tiny_overrides(synthetic_cache) + [f"resume={bad}"]), tmp_path / "x")
