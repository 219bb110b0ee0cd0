"""tools.records: a study's records without its bulk read as the study itself."""

import pytest

from tests.tools.sweep_fixtures import make_sweep
from tools.records import copy_records, main
from tools.report_runs import load_runs


def test_the_records_read_as_the_sweep_without_its_bulk(tmp_path):
    sweep = make_sweep(tmp_path / "src")
    run = sweep / "0_synthetic_softmax_bg"
    for bulk in ("checkpoints/last.pt", "checkpoints/previous.pt", "tb/events.out", "detections.json",
                 "anchor_losses.pt"):
        (run / bulk).parent.mkdir(parents=True, exist_ok=True)
        (run / bulk).write_bytes(b"x" * 1000)
    (sweep / "plots").mkdir()
    (sweep / "plots" / "ap.png").write_bytes(b"png")
    copied = copy_records(sweep, tmp_path / "dst")
    names = {p.name for p in copied}
    assert not names & {"last.pt", "previous.pt", "events.out", "detections.json", "anchor_losses.pt", "ap.png"}
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
