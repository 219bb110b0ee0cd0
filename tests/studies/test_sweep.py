"""studies.sweep: which jobs of a sweep a rerun skips, when a sweep needs no train.py at all,
and the dry runs' busy-CPU note."""

import os
import shutil
import subprocess
import time

from omegaconf import OmegaConf

from detection import build
from studies.sweep import Later, Sweep, busy_note
from tests.sweep_fixtures import write_run


def test_ended_names_the_status_of_the_runs_a_rerun_skips_and_nothing_else(tmp_path):
    sweep = Sweep(tmp_path / "final" / "focal", ["loss=focal"], "seed", [0, 1, 2, 3])
    for seed, status in [(0, "finished"), (1, "interrupted"), (2, "diverged")]:  # seed 3: not started
        write_run(sweep.dir / f"seed{seed}", ["loss=focal"], seed, status)
    jobs = sweep.jobs()
    assert [sweep.ended(j, build.config(j)) for j in jobs] == ["finished", None, "diverged", None]


def test_a_swept_value_not_known_yet_is_never_taken_for_an_ended_run(tmp_path):
    """A dry run composes a ``pending`` key at its default; the folder of that default is another run."""
    sweep = Sweep(tmp_path / "tune", ["loss=focal"], "optim.lr", [Later("chosen x 0.5")], pending=["optim.lr"])
    job = sweep.composable(sweep.jobs()[0])
    cfg = build.config(job)
    write_run(sweep.dir / f"lr{cfg.optim.lr}", ["loss=focal"], 0, "finished")
    assert sweep.ended(job, cfg) is None


def test_the_busy_note_from_half_the_cores_loaded():
    assert busy_note(0.9, 2) == []
    assert busy_note(1.0, 2) == [
        "note: the CPU was busy as this began (load average 1.0 on 2 cores): the images/s measured here, and so "
        "the time, are those of a shared CPU, not of the study running alone"]


def settled_sweep(tmp_path, fixed=("loss=focal",)):
    """A sweep of two seeds whose runs finished with the configs its jobs compose (no final
    evaluation: nothing for the analysis to do), and its report written after them."""
    sweep = Sweep(tmp_path / "final" / "focal", list(fixed), "seed", [0, 1])
    for job in sweep.jobs():
        cfg = build.config(job)
        folder = sweep.dir / sweep.job_name(job, cfg)
        write_run(folder, list(fixed), cfg.seed, "finished")
        (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (sweep.dir / "report.md").write_text("# Report\n")
    os.utime(sweep.dir / "report.md", (time.time() + 10,) * 2)  # written after every file of its runs
    return sweep


def test_a_sweep_whose_runs_finished_analyzed_and_reported_starts_no_train_py(tmp_path, monkeypatch, capsys):
    sweep = settled_sweep(tmp_path)
    assert sweep.settled()
    launched = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: launched.append(a))
    sweep.run()
    assert launched == [] and f"== {sweep.dir}: 2 jobs, finished, analyzed and reported: nothing to run" in capsys.readouterr().out


def test_anything_a_rerun_would_do_leaves_the_sweep_to_train_py(tmp_path):
    """A run not there or not finished, another config, an analysis to write, a report older
    than a run's files, start_over=true: train.py and the callbacks decide, in a subprocess."""
    def case(name, change, fixed=("loss=focal",)):
        sweep = settled_sweep(tmp_path / name, fixed)
        change(sweep.dir / "seed1")
        return sweep.settled()

    assert case("untouched", lambda run: None)
    assert not case("missing", shutil.rmtree)
    assert not case("killed", lambda run: (run / "status.json").write_text('{"status": "killed"}'))
    assert not case("other_config", lambda run: (run / "config.yaml").write_text(
        (run / "config.yaml").read_text().replace("seed: 1", "seed: 7")))
    assert not case("to_analyze", lambda run: ((run / "status.json").write_text('{"status": "finished", "AP": 0.5}'),
                                              (run / "detections.json").write_text("[]")))
    assert not case("stale_report", lambda run: os.utime(run / "status.json", (time.time() + 60,) * 2))
    assert not case("start_over", lambda run: None, fixed=("loss=focal", "start_over=true"))
