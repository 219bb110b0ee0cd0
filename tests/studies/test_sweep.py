"""studies.sweep: which jobs of a sweep a rerun skips, and the dry runs' busy-CPU note."""

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
