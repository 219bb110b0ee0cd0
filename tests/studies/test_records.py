"""tools.records: a study's records without its bulk read as the study itself."""

import time
from pathlib import Path

import pytest

from detection.run_folder import STALE_AFTER, RunFolder, effective_status
from reports.runs import load_runs
from studies.records import copy_records, main
from tests.sweep_fixtures import make_sweep, write_run


def test_the_records_read_as_the_sweep_without_its_bulk(tmp_path):
    sweep = make_sweep(tmp_path / "src")
    run = sweep / "0_synthetic_softmax_bg"
    for bulk in ("checkpoints/last.pt", "checkpoints/previous.pt", "tb/events.out", "detections.json",
                 "anchor_losses.pt"):
        (run / bulk).parent.mkdir(parents=True, exist_ok=True)
        (run / bulk).write_bytes(b"x" * 1000)
    (sweep / "plots").mkdir()
    (sweep / "plots" / "ap.png").write_bytes(b"png")
    (run / "analysis").mkdir(exist_ok=True)
    for figure in ("bkg_recall.png", "gallery.png", "errors.json"):
        (run / "analysis" / figure).write_bytes(b"x")
    copied = copy_records(sweep, tmp_path / "dst")
    names = {p.name for p in copied}
    assert not names & {"last.pt", "previous.pt", "events.out", "detections.json", "anchor_losses.pt", "ap.png",
                        "bkg_recall.png"}
    assert {"gallery.png", "errors.json"} <= names  # the figure a report links, the numbers it reads
    assert {"status.json", "metrics.jsonl", "eval.json", "config.yaml", "overrides.yaml", "multirun.yaml"} <= names
    before, after = load_runs(sweep)[0], load_runs(tmp_path / "dst")[0]
    assert [(r.name, r.status, r.eval, r.metrics, r.seed) for r in before] == \
        [(r.name, r.status, r.eval, r.metrics, r.seed) for r in after]


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing: no such folder"):
        copy_records(tmp_path / "nothing", tmp_path / "dst")


def test_cli(tmp_path, capsys):
    make_sweep(tmp_path / "src")
    main([str(tmp_path / "src" / "sweep"), str(tmp_path / "dst")])
    assert capsys.readouterr().out.startswith("copied ")


def test_resumable_leaves_out_whole_the_runs_stopped_midway_without_a_checkpoint(tmp_path):
    sweep = make_sweep(tmp_path / "src")  # focal seed 2 is "running" on another host, no checkpoint
    runs = {r.name: r.status for r in load_runs(sweep)[0]}
    unended = {name for name, status in runs.items() if status not in ("finished", "diverged", "failed")}
    assert unended == {"8_synthetic_focal"}
    copied = copy_records(sweep, tmp_path / "dst", resumable=True)
    assert not any(p.parts[0] == "8_synthetic_focal" for p in copied)
    assert {p.parts[0] for p in copied} == set(runs) - unended | {"multirun.yaml"}
    after = {r.name: r.status for r in load_runs(tmp_path / "dst")[0]}
    assert after == {name: status for name, status in runs.items() if name not in unended}


def test_resumable_names_an_unreadable_status(tmp_path):
    make_sweep(tmp_path / "src")
    bad = tmp_path / "src" / "sweep" / "0_synthetic_softmax_bg" / "status.json"
    bad.write_text('{"time": 1}')
    with pytest.raises(ValueError, match="0_synthetic_softmax_bg/status.json: not a run status"):
        copy_records(tmp_path / "src", tmp_path / "dst", resumable=True)


@pytest.mark.parametrize("checkpoints, kept", [(("last.pt", "previous.pt"), "last.pt"), (("previous.pt",), "previous.pt")])
def test_resumable_keeps_a_midway_run_with_its_last_checkpoint_only(tmp_path, checkpoints, kept):
    """A run killed or interrupted midway, or still training, with a checkpoint: its records and
    one checkpoint (last.pt; previous.pt where a checkpoint write is between its renames), so the
    next machine resumes it; an ended run's checkpoints stay behind as before."""
    sweep = make_sweep(tmp_path / "src")
    write_run(sweep / "11_synthetic_focal", ["experiment=bg_ablation", "loss=focal", "seed=3"], 3, "interrupted",
              seconds=5)
    for run in ("8_synthetic_focal", "11_synthetic_focal", "0_synthetic_softmax_bg"):
        for name in checkpoints:
            (sweep / run / "checkpoints").mkdir(exist_ok=True)
            (sweep / run / "checkpoints" / name).write_bytes(name.encode())
    (sweep / "8_synthetic_focal" / ".status.json.x1y2.tmp").write_text("{")  # a status write in progress
    copied = copy_records(sweep, tmp_path / "dst", resumable=True)
    assert {p.name for p in copied if p.parts[0] == "8_synthetic_focal"} >= {"status.json", "metrics.jsonl"}
    assert not any(p.suffix == ".tmp" for p in copied)
    assert sorted(p for p in copied if "checkpoints" in p.parts) == [
        Path("11_synthetic_focal/checkpoints") / kept, Path("8_synthetic_focal/checkpoints") / kept]
    assert (tmp_path / "dst" / "8_synthetic_focal" / "checkpoints" / kept).read_bytes() == kept.encode()
    # 8 is still training on another host; on the next machine, its heartbeat older than
    # STALE_AFTER, it reads as interrupted: a rerun of its sweep resumes both
    later = time.time() + STALE_AFTER + 1
    assert {run: effective_status(RunFolder(tmp_path / "dst" / run).read_status(), now=later)
            for run in ("8_synthetic_focal", "11_synthetic_focal")} == {"8_synthetic_focal": "interrupted",
                                                                       "11_synthetic_focal": "interrupted"}
    assert not any("checkpoints" in p.parts for p in copy_records(sweep, tmp_path / "all"))  # without --resumable


def test_of_the_galleries_only_each_sweeps_first_ended_runs_is_kept(tmp_path):
    """The one a report links (each method's first final run's); the others are ~1 MB each."""
    study = tmp_path / "study"
    for method, seeds in (("focal", (10, 2, 1)), ("softmax_bg", (0,))):
        for s in seeds:
            run = write_run(study / "final" / method / f"seed{s}", [f"loss={method}", f"seed={s}"], s,
                            "running" if (method, s) == ("focal", 1) else "finished", ap=0.3)
            (run / "analysis").mkdir()
            (run / "analysis" / "gallery.png").write_bytes(b"png")
    kept = {p for p in copy_records(study, tmp_path / "all") if p.name == "gallery.png"}
    assert {p.parts[1:3] for p in kept} == {("focal", "seed1"), ("softmax_bg", "seed0")}  # seed1 before seed2, seed10
    kept = {p for p in copy_records(study, tmp_path / "ended", resumable=True) if p.name == "gallery.png"}
    assert {p.parts[1:3] for p in kept} == {("focal", "seed2"), ("softmax_bg", "seed0")}  # seed1 is still running
