"""One train.py multirun of a study (``Sweep``) and the override lists it is made of."""

import itertools
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from analysis.folder import skip_reason
from detection import build
from detection.build import CONFIGS
from detection.run_folder import (
    ENDED,
    RunFolder,
    effective_status,
    flatten,
    identity_differences,
    is_run_control,
)

GROUPS = {p.name for p in CONFIGS.iterdir() if p.is_dir()}  # config groups: dataset, loss, model, ...


@dataclass(frozen=True)
class Later:
    """A swept value known only once a tuning has run (a dry run's), shown as what it will be:
    ``Later("chosen x 0.5")`` prints ``<chosen x 0.5>``."""

    what: str

    def __str__(self) -> str:
        return f"<{self.what}>"


@dataclass
class Sweep:
    """One train.py multirun: ``fixed`` overrides for every job; ``key`` swept over ``values``
    (within every combination of ``grid``, more keys swept). Its jobs' folders inside ``dir``
    are named by the swept values: ``<key's last part><value>`` (``lr0.05``, ``seed3``), a
    config group by its choice (``synthetic_fg1to540``), joined by ``_``."""

    dir: Path
    fixed: list[str]
    key: str
    values: list
    label: str = field(default="")
    grid: dict = field(default_factory=dict)
    reads: list[Path] = field(default_factory=list)  # files its jobs need (an eval control: the final checkpoints)
    # keys a tuning chooses that it has not chosen yet (a dry run's): left at the config's
    # default in ``composable``, a ``Later`` where they are swept
    pending: list[str] = field(default_factory=list)

    def composable(self, job: list[str]) -> list[str]:
        """``job`` without the overrides of ``pending`` keys: a config train.py can compose now."""
        return [o for o in job if o.split("=", 1)[0] not in self.pending]

    def pending_note(self) -> str:
        """`` (+ optim.lr: chosen by the tuning)`` for a dry run's listing; "" when nothing is pending."""
        return f" (+ {', '.join(self.pending)}: chosen by the tuning)" if self.pending else ""

    def missing(self) -> list[Path]:
        """The files of ``reads`` that are not there."""
        return [p for p in self.reads if not p.is_file()]

    def swept(self) -> dict:
        return {**self.grid, self.key: self.values}

    def jobs(self) -> list[list[str]]:
        keys, lists = zip(*self.swept().items())
        return [[*self.fixed, *(f"{k}={v}" for k, v in zip(keys, combo))] for combo in itertools.product(*lists)]

    def command(self) -> list[str]:
        subdir = "_".join(f"${{hydra:runtime.choices.{k}}}" if "." not in k and k in GROUPS
                          else f"{k.split('.')[-1]}${{{k}}}" for k in self.swept())
        return [sys.executable, "train.py", "-m", *self.fixed,
                *(f"{k}={','.join(map(str, vs))}" for k, vs in self.swept().items()),
                f"hydra.sweep.dir={self.dir}", f"hydra.sweep.subdir={subdir}"]

    def job_name(self, job: list[str], cfg) -> str:
        """The folder (inside ``dir``) of ``job``, one of ``jobs()``, with ``cfg`` its composed
        config: ``command()``'s hydra.sweep.subdir, worked out here."""
        values = dict(o.split("=", 1) for o in job)
        return "_".join(values[k] if "." not in k and k in GROUPS else f"{k.split('.')[-1]}{OmegaConf.select(cfg, k)}"
                        for k in self.swept())

    def ended(self, job: list[str], cfg) -> str | None:
        """The status of ``job``'s run (``cfg`` its composed config) when it ended (``ENDED``:
        a rerun skips it), else None (not started, stopped midway, running, or named by a value
        not known yet: a dry run's ``pending`` swept key)."""
        if any(k in self.pending for k in self.swept()):
            return None
        state = effective_status(RunFolder(self.dir / self.job_name(job, cfg)).read_status())
        return state if state in ENDED else None

    def same_runs(self, runs: dict[str, Path]):
        """Yields (job, its folder name, the run of ``runs`` (``finished_runs``: canonical config
        -> folder) whose config the job composes, or None) for each job, in order."""
        for job in self.jobs():
            cfg = build.config(job)
            yield job, self.job_name(job, cfg), runs.get(canonical(OmegaConf.to_container(cfg, resolve=True)))

    def settled(self) -> bool:
        """Whether running the sweep again would change nothing: every job's run finished with
        the config the job composes now (no ``start_over``), its analysis is up to date, and the
        sweep's report.md was written after every file of its runs. train.py (``run_action``)
        and the analysis and report callbacks decide the same, job by job, in a process whose
        start-up costs seconds per sweep: most of a resumed study's time before its first new job.
        Anything else (a run not over, diverged or failed, another config, a stale report) is
        left to train.py, which resumes it, retries it, or refuses it with its reason."""
        report = self.dir / "report.md"
        if self.pending or not report.is_file():
            return False
        newest = 0.0
        for job in self.jobs():
            cfg = build.config(job)
            folder = RunFolder(self.dir / self.job_name(job, cfg))
            try:
                status, recorded = folder.read_status(), folder.read_config()
            except ValueError:  # unreadable: train.py says so
                return False
            if cfg.start_over or effective_status(status) != "finished" or skip_reason(folder.path) is None:
                return False
            if recorded is None or identity_differences(recorded, OmegaConf.to_container(cfg, resolve=True)):
                return False
            newest = max([newest, *(p.stat().st_mtime for p in folder.path.rglob("*") if p.is_file())])
        return report.stat().st_mtime >= newest

    def run(self) -> None:
        if self.settled():
            n = len(self.jobs())
            print(f"== {self.label or self.dir}: {n} job{'s' * (n != 1)}, finished, analyzed and reported: nothing to "
                  "run (start_over=true trains again)", flush=True)
            return
        print(f"== {self.label or self.dir}: {len(self.jobs())} jobs", flush=True)
        subprocess.run(self.command(), check=True)


def finished(folder) -> bool:
    """Whether ``folder`` holds a finished run."""
    try:
        return (RunFolder(folder).read_status() or {}).get("status") == "finished"
    except ValueError:
        return False


def canonical(config: dict) -> str:
    """A resolved run config as one string, without the keys that do not change what a run
    computes (RUN_CONTROL, as train.py's check_same_run ignores them): two runs whose strings
    are equal are the same run."""
    return json.dumps({k: v for k, v in flatten(config).items() if not is_run_control(k)}, sort_keys=True, default=str)


def finished_runs(folders) -> dict[str, Path]:
    """``canonical`` recorded config -> folder of every finished run in ``folders`` (sweep
    folders; the first of equal configs)."""
    runs: dict[str, Path] = {}
    for sweep_dir in folders:
        for status in sorted(Path(sweep_dir).glob("*/status.json")):
            folder = RunFolder(status.parent)
            if finished(folder.path) and folder.config.is_file():
                runs.setdefault(canonical(folder.read_config()), folder.path)
    return runs


def merge(overrides: list[str]) -> list[str]:
    """Overrides with one entry per key: a later ``key=value`` replaces an earlier one in place."""
    merged: dict[str, str] = {}
    for o in overrides:
        merged[o.split("=", 1)[0]] = o
    return list(merged.values())


class DryRun:
    """A study's dry run, job by job: each job's line (its estimated time at the images/s
    ``build.speed`` measures here, or that its run ended and a rerun skips it) and the totals
    of what is left, with ``busy_note`` on the CPU's load as the dry run began."""

    def __init__(self):
        self.load, self.cores = os.getloadavg()[0], os.cpu_count() or 1  # before any measuring
        self.jobs = self.ended = self.evaluations = 0
        self.seconds = 0.0

    def job(self, sweep: Sweep, job: list[str], cfg, name: str) -> str:
        """The line of ``job`` (of ``sweep``; ``cfg`` its composed config, ``name`` how it is shown)."""
        self.jobs += 1
        if state := sweep.ended(job, cfg):
            self.ended += 1
            return f"    job: {name}  ({state}: a rerun skips it)"
        est = build.estimate(cfg, build.speed(cfg))
        self.seconds, self.evaluations = self.seconds + est.job_seconds, self.evaluations + est.evaluations
        return (f"    job: {name}  (~{build.duration(est.job_seconds)}: ~{build.duration(est.seconds)} of training, "
                f"{est.evaluations} evaluations, start-up, analysis)")

    @staticmethod
    def extend_note(extend: int) -> str:
        """Under an lr tuning's job lines: the edge rule (studies.ablation.extend_edge) may add more."""
        return f"    (+ up to {extend} more lrs if the best is at an end of these)"

    def summary(self) -> list[str]:
        return [f"{self.jobs} training/evaluation jobs, {self.ended} of them ended: ~{build.duration(self.seconds)} "
                "left on this machine, one job after another (training at the images/s build.speed measures here; "
                f"start-up, {self.evaluations} evaluations and the analyses as benchmarks/job_overheads.json "
                "measured them)", *busy_note(self.load, self.cores)]


def busy_note(load: float, cores: int) -> list[str]:
    """A dry run's warning, when the 1-minute ``load`` average on ``cores`` cores, read before
    it measured anything, says the CPU was shared: its images/s, so its times, are inflated."""
    if load < cores / 2:
        return []
    return [f"note: the CPU was busy as this began (load average {load:.1f} on {cores} cores): the images/s "
            "measured here, and so the time, are those of a shared CPU, not of the study running alone"]
