"""Issue 35: a run folder is never lost, overwritten or lied to. One test per row of the
issue's table, each doing what the user did and checking the records afterwards (the rows on
data, in tests/datasets/test_coco_errors.py; full disks, issue 34's tests)."""

import json
import os
import subprocess
import sys

import pytest

import train
from detection.run_folder import RUN_CONTROL, RunFolder, run_key
from tests.conftest import ROOT, compose_config, tiny_overrides

# train.py's entry point, SIGKILLed (no cleanup, no status written) right after it logs
# iteration 4, i.e. after its checkpoint of iteration 3: `kill -9` in the middle of a run.
KILLER = """
import os, signal, sys
import train
log_step = train.log_step
def killing_log_step(record, max_iters, writer):
    log_step(record, max_iters, writer)
    if record["iter"] == 4:
        os.kill(os.getpid(), signal.SIGKILL)
train.log_step = killing_log_step
sys.argv = ["train.py", *sys.argv[1:]]
train.main()
"""


def overrides(cache):
    return [o for o in tiny_overrides(cache) if not o.startswith("num_workers")] + ["num_workers=0",
                                                                                    "loss_cdf_images=2"]


def train_py(args, cwd=ROOT, killer=False, multirun=False):
    """``python train.py ARGS`` as a user types it, from ``cwd`` (its outputs/ go there)."""
    head = [sys.executable, "-c", KILLER, f"--config-path={ROOT / 'configs'}"] if killer else \
        [sys.executable, str(ROOT / "train.py")]
    cmd = [*head, *(["-m"] if multirun else []), *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=400,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)})


def snapshot(folder: RunFolder) -> dict:
    """The bytes of a run's records that a refused start must leave alone."""
    paths = [folder.config, folder.status, folder.metrics, folder.eval, folder.checkpoint,
             *sorted(folder.overrides.parent.glob("*"))]
    return {str(p): p.read_bytes() for p in paths if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, synthetic_cache):
    """A finished focal run made by the command line: (its folder, its command's overrides)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    args = overrides(synthetic_cache)
    proc = train_py([*args, f"hydra.run.dir={run_dir}", "hydra.callbacks.analysis.anchor_scores=false"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return RunFolder(run_dir), args


def test_killed_run_resumes_with_the_same_command(tmp_path, synthetic_cache):
    """Row 1: kill -9 at iteration 4, the same command again: resumed at 3, nothing truncated."""
    args = [*overrides(synthetic_cache), "~hydra.callbacks.analysis"]  # the records, not their analysis
    proc = train_py(args, cwd=tmp_path, killer=True)
    assert proc.returncode == -9, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "synthetic_focal").iterdir()  # named by the command line
    folder = RunFolder(run_dir)
    assert folder.read_status()["status"] == "running"  # as the kill left it
    before = folder.read_metrics()[0]
    assert [r["iter"] for r in before] == [2, 4]

    proc = train_py(args, cwd=tmp_path)  # the same command, same folder
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert f"{run_dir}: killed, resumed from its checkpoint" in log
    assert f"resumed from {folder.checkpoint} at iteration 3" in log
    rows = [r for r in folder.read_metrics()[0] if "eval" not in r]
    assert [r["iter"] for r in rows] == [2, 4, 6] and rows[0] == before[0]  # iteration 2 kept as logged
    assert folder.read_status()["status"] == "finished"
    assert [p.name for p in (tmp_path / "outputs" / "synthetic_focal").iterdir()] == [run_dir.name]

    # once more would skip it ("finished, skipped": tests/test_sweeps.py's killed sweep)
    proc = train_py([*args, "start_over=true"], cwd=tmp_path)  # starting over is explicit and keeps the old records
    assert proc.returncode == 0, proc.stderr[-3000:]
    (moved,) = folder.replaced.iterdir()
    assert [r["iter"] for r in RunFolder(moved).read_metrics()[0] if "eval" not in r] == [2, 4, 6]
    assert "resumed from" in (moved / "train.log").read_text() and "resumed from" not in folder.log.read_text()


def test_the_run_folder_name_is_the_command_line_without_run_control():
    assert run_key("") == "defaults"
    assert run_key("optim.lr=0.5,seed=7") == "optim.lr-0.5_seed-7"
    long = run_key("dataset.cache_dir=cache/a," + ",".join(f"k{i}={i}" for i in range(40)))
    assert len(long) == 80 and "/" not in long
    hydra = __import__("yaml").safe_load((ROOT / "configs" / "config.yaml").read_text())["hydra"]
    assert tuple(hydra["job"]["config"]["override_dirname"]["exclude_keys"]) == RUN_CONTROL


@pytest.mark.parametrize("changed, lines", [
    (["loss=softmax_bg"], ["loss._target_: 'losses.focal.FocalLoss' -> 'losses.softmax_bg.SoftmaxBgLoss'"]),  # row 2
    (["optim.lr=0.5", "seed=7"], ["optim.lr: 0.05 -> 0.5", "seed: 0 -> 7"]),  # row 3
])
def test_resume_with_another_config_is_refused_and_writes_nothing(finished_run, changed, lines):
    """Rows 2 and 3: `resume=true loss=softmax_bg` / `resume=true optim.lr=0.5 seed=7` on a focal
    run: refused, one line per key (recorded -> given), exit 2, the records byte for byte."""
    folder, args = finished_run
    before = snapshot(folder)
    proc = train_py([*args, f"hydra.run.dir={folder.path}", "resume=true", *changed])
    assert proc.returncode == 2, proc.stderr[-3000:]
    err = proc.stderr.splitlines()
    assert err[0].startswith(f"train.py: {folder.path} holds a run of another configuration (recorded -> given)")
    for line in lines:
        assert f"  {line}" in err
    assert all(e.startswith("  ") and " -> " in e for e in err[1:])  # one line per key, nothing else
    assert changed[0] == "loss=softmax_bg" or len(err) == 1 + len(lines)
    assert "Traceback" not in proc.stderr
    assert snapshot(folder) == before


def test_a_slice_is_paused_and_the_same_sweep_command_completes_it(tmp_path, synthetic_cache):
    """Row 4: `stop_after` in a sweep: the job is paused at its iteration, not finished; the same
    command continues it slice by slice to the end."""
    sweep = tmp_path / "sweep"
    args = [*overrides(synthetic_cache), "schedule.stop_after=4", f"hydra.sweep.dir={sweep}", "~hydra.callbacks.analysis"]
    proc = train_py(args, multirun=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (job,) = [p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit()]
    status = RunFolder(job).read_status()
    assert (status["status"], status["iteration"], status["max_iters"]) == ("paused", 4, 6)
    proc = train_py(args, multirun=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{job}: paused, resumed from its checkpoint" in proc.stdout + proc.stderr
    status = RunFolder(job).read_status()
    assert status["status"] == "finished" and status["AP"] == RunFolder(job).read_eval()["AP"]
    assert [r["iter"] for r in RunFolder(job).read_metrics()[0] if "eval" not in r] == [2, 4, 6]
    # once more skips it: tests/test_sweeps.py's killed sweep ("finished, skipped")


def test_a_paused_run_is_resumed_by_the_decision_every_caller_uses(tmp_path, synthetic_cache):
    cfg = compose_config(tiny_overrides(synthetic_cache) + ["eval_at_end=false"])
    folder = RunFolder(tmp_path / "job")
    train.run(cfg.copy(), folder.path)
    folder.write_status("paused", iteration=6, max_iters=12)
    assert train.run_action(cfg, folder) == "resume"
    folder.write_status("finished")
    assert train.run_action(cfg, folder) == "skip"
    cfg.start_over = True
    assert train.run_action(cfg, folder) == "start_over"


def test_tools_evaluate_never_overwrites_a_runs_eval_json(finished_run, capsys):
    """Row 5: `tools.evaluate <run>/detections.json ... --image-ids 1 2 3` overwrote eval.json."""
    from tools import evaluate

    folder, _ = finished_run
    before = folder.eval.read_bytes()
    ids = json.loads(folder.data.read_text())["image_ids"][:3]
    result = evaluate.main([str(folder.path), "--image-ids", *map(str, ids)])
    assert folder.eval.read_bytes() == before
    (out,) = folder.path.glob("evaluate_detections_3images-*")
    assert json.loads((out / "eval.json").read_text()) == result
    with pytest.raises(SystemExit, match=r"holds the records of run .*never replaced"):
        evaluate.main([str(folder.path), "--out", str(folder.path)])
    assert folder.eval.read_bytes() == before


def test_tools_run_from_the_run_folder_alone(finished_run):
    """Row 11: the annotation files a run was evaluated on are recorded (and logged), so
    `python -m tools.analyze <run>` and `python -m tools.evaluate <run>` need nothing else."""
    folder, _ = finished_run
    data = json.loads(folder.data.read_text())
    assert data["annotations"].endswith("instances_val.json") and len(data["image_ids"]) == 6
    assert f"evaluation annotations: {data['annotations']}" in folder.log.read_text()
    proc = subprocess.run([sys.executable, "-m", "tools.evaluate", str(folder.path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((folder.path / "evaluate_detections" / "eval.json").read_text()) == folder.read_eval()
    proc = subprocess.run([sys.executable, "-m", "tools.analyze", str(folder.path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (folder.path / "analyze_detections" / "errors.json").is_file()
    analysis = {p: p.stat().st_mtime_ns for p in (folder.path / "analysis").iterdir()}  # the run's own (its job's end)
    proc = subprocess.run([sys.executable, "-m", "tools.analyze", str(folder.path), "--out",
                           str(folder.path / "analysis")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "never replaced" in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in (folder.path / "analysis").iterdir()} == analysis


def test_a_second_process_on_a_run_folder_is_refused_naming_the_pid(finished_run, tmp_path):
    """Row 6: two processes on one run folder: the second one is refused in one line."""
    folder = RunFolder(tmp_path / "busy")
    lock = folder.lock()  # this process writes the run
    try:
        proc = train_py([*finished_run[1], f"hydra.run.dir={folder.path}"])
    finally:
        lock.close()
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"train.py: {folder.path} is being written by process {os.getpid()} on "
                                   f"{os.uname().nodename}: one process per run folder (wait for it to end or stop it)")
    assert not folder.holds_run() and not folder.metrics.exists()
    lock = folder.lock()  # released when the holder closes it (or exits)
    lock.close()


def test_dataset_generation_into_a_pipe_has_no_carriage_returns(tmp_path):
    """Row 12: ~148 carriage-return progress updates in a piped log."""
    code = ("from datasets.synthetic import ensure_synthetic; "
            f"ensure_synthetic(root={str(tmp_path)!r}, num_train=40, num_val=10, image_size=64, object_size=[4, 30])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert any(tmp_path.glob("shapes-*/instances_val.json"))
    assert "\r" not in proc.stderr + proc.stdout
