"""A run stopped by a signal: SIGTERM and SIGINT sent to a real training process at a known
iteration end in a checkpoint there, status ``interrupted`` and exit 143 / 130; running the
same command again ends with the weights of an uninterrupted run. Also a cluster's
preemption under submitit (checkpoint, requeue, resume), without SLURM."""

import os
import signal
import subprocess
import sys

import pytest
import torch

from detection.run_folder import RunFolder
from tests.conftest import ROOT, tiny_overrides

# Runs train.py's entry point; when the run logs iteration AT, it prints "at AT" and waits
# until the test (which then sends the signals) creates the file GO.
RUNNER = """
import os, sys, time
from pathlib import Path
import train
AT, GO = int(os.environ["STOP_AT"]), Path(os.environ["STOP_GO"])
log_step = train.log_step
def waiting_log_step(record, max_iters, writer):
    log_step(record, max_iters, writer)
    if record["iter"] == AT and not GO.exists():
        print(f"at {AT}", flush=True)
        while not GO.exists():
            time.sleep(0.01)
train.log_step = waiting_log_step
sys.argv = ["train.py", *sys.argv[1:]]
train.main()
"""


def command(cache, run_dir, extra=()):
    return [*tiny_overrides(cache), "eval_at_end=false", "schedule.log_every=1", f"hydra.run.dir={run_dir}", *extra]


def start(args, tmp_path, at):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "STOP_AT": str(at), "STOP_GO": str(tmp_path / "go")}
    cmd = [sys.executable, "-c", RUNNER, f"--config-path={ROOT / 'configs'}", *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def interrupt(proc, tmp_path, at, signals):
    """Waits for the run to reach iteration ``at``, sends ``signals`` (each after the run said
    it received the one before: signals of one kind do not queue), lets it go on."""
    for line in proc.stdout:
        if line.strip() == f"at {at}":
            break
    else:
        raise AssertionError(f"the run never reached iteration {at}: {proc.stderr.read()[-3000:]}")
    err = ""
    for i, s in enumerate(signals):
        proc.send_signal(s)
        if i + 1 < len(signals):
            err += next(line for line in proc.stderr if "received: stopping after this step" in line)
    (tmp_path / "go").touch()
    out, rest = proc.communicate(timeout=300)
    return proc.returncode, out, err + rest


def weights(run_dir):
    return torch.load(RunFolder(run_dir).checkpoint, weights_only=False)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, synthetic_cache):
    """The final checkpoint of the run the interrupted ones are compared with."""
    run_dir = tmp_path_factory.mktemp("signals") / "full"
    out = subprocess.run([sys.executable, "train.py", *command(synthetic_cache, run_dir)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return weights(run_dir)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_the_run_resumes_exactly(tmp_path, synthetic_cache,
                                                                                      uninterrupted, signum, code):
    part = tmp_path / "part"
    rc, out, err = interrupt(start(command(synthetic_cache, part), tmp_path, at=4), tmp_path, 4, [signum])
    name = signal.Signals(signum).name
    assert rc == code, err[-3000:]
    assert f"stopped at iteration 4 by {name}; run the same command to resume" in out
    assert "Traceback" not in err
    status = RunFolder(part).read_status()
    assert (status["status"], status["iteration"], status["signal"]) == ("interrupted", 4, name)
    assert weights(part)["iter"] == 4  # between the periodic checkpoints (every 3)

    # the same command again (resume=true until resuming is the default for single runs)
    again = subprocess.run([sys.executable, "train.py", *command(synthetic_cache, part, ["resume=true"])], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert RunFolder(part).read_status()["status"] == "finished"
    a, b = uninterrupted, weights(part)
    assert b["iter"] == 6
    for k, v in a["model"].items():
        if torch.is_tensor(v):
            assert torch.equal(v, b["model"][k]), k
    assert a["model"]["_extra_state"] == b["model"]["_extra_state"]


def test_a_second_sigint_stops_at_once_from_the_last_checkpoint(tmp_path, synthetic_cache):
    run_dir = tmp_path / "run"
    rc, out, err = interrupt(start(command(synthetic_cache, run_dir), tmp_path, at=4), tmp_path, 4,
                             [signal.SIGINT, signal.SIGINT])
    assert rc == 130, err[-3000:]
    assert "Traceback" not in err
    status = RunFolder(run_dir).read_status()
    assert (status["status"], status["iteration"]) == ("interrupted", 3)  # the periodic checkpoint at 3
    assert "second SIGINT" in status["message"] and "iteration 3" in out
    assert weights(run_dir)["iter"] == 3  # no checkpoint at 4: it did not wait for the step
