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
    """The run in a session of its own: a signal to its process group reaches its DataLoader
    workers too, as Ctrl-C in a terminal and a scheduler's signal do."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "STOP_AT": str(at), "STOP_GO": str(tmp_path / "go")}
    cmd = [sys.executable, "-c", RUNNER, f"--config-path={ROOT / 'configs'}", *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


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
        os.killpg(proc.pid, s)
        if i + 1 < len(signals):
            err += next(line for line in proc.stderr if "received: stopping after this step" in line)
    (tmp_path / "go").touch()
    out, rest = proc.communicate(timeout=300)
    return proc.returncode, out, err + rest


def weights(run_dir):
    return torch.load(RunFolder(run_dir).checkpoint, weights_only=False)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, synthetic_cache):
    """The final checkpoint of the run the interrupted ones are compared with (in process:
    the same computation as the command line's)."""
    import train
    from tests.conftest import compose_config

    run_dir = tmp_path_factory.mktemp("signals") / "full"
    train.run(compose_config(command(synthetic_cache, run_dir)), run_dir)
    return weights(run_dir)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_the_run_resumes_exactly(tmp_path, synthetic_cache,
                                                                                      uninterrupted, signum, code):
    part = tmp_path / "part"
    # DataLoader workers (num_workers=2): they leave the signal to the main process
    args = command(synthetic_cache, part, ["num_workers=2"] if signum == signal.SIGINT else [])
    rc, out, err = interrupt(start(args, tmp_path, at=4), tmp_path, 4, [signum])
    name = signal.Signals(signum).name
    assert rc == code, err[-3000:]
    assert f"stopped at iteration 4 by {name}; run the same command to resume" in out
    assert "Traceback" not in err
    status = RunFolder(part).read_status()
    assert (status["status"], status["iteration"], status["signal"]) == ("interrupted", 4, name)
    assert weights(part)["iter"] == 4  # between the periodic checkpoints (every 3)

    if signum == signal.SIGINT:  # resuming is the same after either signal: checked once
        return
    # the same command again
    again = subprocess.run([sys.executable, "train.py", *command(synthetic_cache, part)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    status = RunFolder(part).read_status()
    assert status["status"] == "finished"
    # both sessions on this CPU in fp32: one entry of 6 iterations
    assert [{k: v for k, v in d.items() if k != "device"} for d in status["devices"]] == [
        {"kind": "cpu", "precision": "fp32", "iterations": 6}]
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


def test_a_sweep_resumes_an_interrupted_job(tmp_path, synthetic_cache):
    import train
    from tests.conftest import compose_config

    cfg = compose_config(tiny_overrides(synthetic_cache))
    folder = RunFolder(tmp_path / "job")
    folder.write_config(train.OmegaConf.to_yaml(cfg, resolve=True))
    folder.write_status("interrupted", iteration=4, signal="SIGTERM")
    assert train.run_action(cfg, folder) == "start_over"  # stopped before its first checkpoint: nothing to resume
    folder.save_checkpoint({"model": {}, "iter": 4})
    assert train.run_action(cfg, folder) == "resume"


# A job of a sweep as submitit runs it on SLURM: submitit's own signal handler for the
# preemption signal (USR2) is installed before the job starts, with the job environment's
# requeue (scontrol on a cluster) writing a file instead. The job preempts itself at
# iteration 4.
SUBMITIT_JOB = """
import os, signal, sys
from pathlib import Path
from types import SimpleNamespace
from submitit.core.job_environment import SignalHandler
from submitit.helpers import DelayedSubmission
import train

REQUEUED = Path(os.environ["REQUEUED"])

class SlurmEnvironment:
    global_rank = 0
    def _requeue(self, countdown):
        REQUEUED.write_text(str(countdown))

class Job:  # what submitit runs (Hydra's launcher): checkpoint() resubmits the same job
    def __call__(self):
        pass
    def checkpoint(self):
        return DelayedSubmission(self)

delayed = DelayedSubmission(Job())
delayed.set_timeout(60, 3)
handler = SignalHandler(SlurmEnvironment(), SimpleNamespace(submitted_pickle=REQUEUED.with_suffix(".pkl")), delayed)
signal.signal(signal.SIGUSR2, handler.checkpoint_and_try_requeue)

log_step = train.log_step
def preempting_log_step(record, max_iters, writer):
    log_step(record, max_iters, writer)
    if record["iter"] == 4:
        os.kill(os.getpid(), signal.SIGUSR2)
train.log_step = preempting_log_step
sys.argv = ["train.py", *sys.argv[1:]]
train.main()
"""


def test_a_preempted_submitit_job_checkpoints_requeues_and_resumes(tmp_path, synthetic_cache, uninterrupted):
    sweep = tmp_path / "sweep"
    args = ["-m", *command(synthetic_cache, tmp_path / "unused"), f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SUBMITIT_EXECUTOR": "slurm", "REQUEUED": str(tmp_path / "requeued")}
    out = subprocess.run([sys.executable, "-c", SUBMITIT_JOB, f"--config-path={ROOT / 'configs'}", *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 255, out.stderr[-3000:]  # submitit's exit after requeueing: sys.exit(-1)
    job = RunFolder(next(p for p in sweep.iterdir() if p.name.startswith("0_")))
    status = job.read_status()
    assert (status["status"], status["iteration"], status["signal"]) == ("interrupted", 4, "SIGUSR2")
    assert weights(job.path)["iter"] == 4
    assert (tmp_path / "requeued").read_text() == "3"  # requeued (a preemption, not a time-out: no retry used)
    from submitit.helpers import DelayedSubmission

    resubmitted = DelayedSubmission.load(tmp_path / "requeued.pkl")
    assert type(resubmitted.function).__name__ == "Job"  # the same job, as Hydra's launcher's checkpoint() gives

    # the requeued job runs the same sweep job again: it resumes the interrupted run
    again = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{job.path}: interrupted, resumed from its checkpoint" in again.stdout + again.stderr
    assert job.read_status()["status"] == "finished"
    b = weights(job.path)
    assert b["iter"] == 6
    assert all(torch.equal(v, b["model"][k]) for k, v in uninterrupted["model"].items() if torch.is_tensor(v))


def test_hydras_submitit_launcher_resubmits_the_same_job():
    """What the requeue relies on: the launcher's checkpoint() is a DelayedSubmission of itself
    with the job's own arguments (its overrides and number, hence its run folder)."""
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    launcher = SlurmLauncher(timeout_min=10)
    args = (["loss=focal", "seed=1"], "hydra.sweep.dir", 3, "job_id_for_3", {})
    delayed = launcher.checkpoint(*args)
    assert delayed.function is launcher and delayed.args == args and delayed.kwargs == {}


def test_under_torchrun_every_rank_stops_at_the_iteration_one_rank_was_signalled(tmp_path, synthetic_cache):
    """SIGTERM reaches rank 1 only (a scheduler's signals need not arrive together): the stop
    flag is all-reduced after every step, so rank 0 stops after the same step and saves there."""
    script = tmp_path / "run.py"
    script.write_text(f"""
import os, signal, sys
sys.path.insert(0, {str(ROOT)!r})
import train
log_step = train.log_step
def signalling_log_step(record, max_iters, writer):
    log_step(record, max_iters, writer)
    if os.environ["RANK"] == "1" and record["iter"] == 4:
        os.kill(os.getpid(), signal.SIGTERM)
train.log_step = signalling_log_step
sys.argv = ["train.py", "--config-path={ROOT / 'configs'}", *sys.argv[1:]]
train.main()
""")
    run_dir = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           *command(synthetic_cache, run_dir)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    assert out.returncode != 0  # torchrun reports its workers' exit (143)
    status = RunFolder(run_dir).read_status()
    assert (status["status"], status["iteration"], status["signal"]) == ("interrupted", 4, "SIGTERM"), \
        out.stderr[-3000:]
    assert weights(run_dir)["iter"] == 4
    log = RunFolder(run_dir).log.read_text()
    assert "stopped at iteration 4 by SIGTERM" in log and "iter 5/" not in log


def test_a_resume_on_another_kind_of_device_is_refused_unless_allowed(tmp_path, synthetic_cache):
    """A run that started on a GPU in bf16 (its status says so) is not continued on this CPU
    in fp32 unless allow_device_change=true; then status.json lists both devices."""
    import train
    from tests.conftest import compose_config

    run_dir = tmp_path / "run"
    train.run(compose_config([*command(synthetic_cache, run_dir), "schedule.stop_after=4"]), run_dir)
    h200 = {"device": "NVIDIA H200", "kind": "cuda", "precision": "bf16", "iterations": 4}
    RunFolder(run_dir).write_status("interrupted", iteration=4, signal="SIGTERM", devices=[h200])

    def resume(*extra):
        return subprocess.run([sys.executable, "train.py", *command(synthetic_cache, run_dir, list(extra))],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)

    out = resume()
    assert out.returncode == 2
    assert out.stderr.strip().startswith(f"{run_dir}: it started on cuda bf16 (NVIDIA H200), this session would "
                                         "train on cpu fp32 (cpu (")
    assert "allow_device_change=true" in out.stderr and "Traceback" not in out.stderr
    assert RunFolder(run_dir).read_status()["status"] == "interrupted" and weights(run_dir)["iter"] == 4

    out = resume("allow_device_change=true")
    assert out.returncode == 0, out.stderr[-3000:]
    devices = RunFolder(run_dir).read_status()["devices"]
    assert devices[0] == h200 and len(devices) == 2
    assert {k: devices[1][k] for k in ("kind", "precision", "iterations")} == {"kind": "cpu", "precision": "fp32",
                                                                              "iterations": 2}
