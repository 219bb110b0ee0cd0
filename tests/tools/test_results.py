"""``python -m tools.results``: a finished study written to results/ from its run folders (runs
copied from another study as rows naming it), and ``regenerate --check`` failing on a report
that is not its tables' report."""

import yaml

from reports.table_io import RECORDS, RUNS, read_csv, read_meta
from studies.ablation import Study
from tests.conftest import ROOT, plots_drawn_not_encoded
from tests.sweep_fixtures import write_run
from tools import results


def test_an_ablation_and_a_study_copying_its_runs_are_written_and_regenerate(tmp_path, capsys, monkeypatch):
    study = Study(tmp_path / "ablation")
    study.selection_file.parent.mkdir(parents=True)
    study.selection_file.write_text(yaml.safe_dump({"chosen": {m: {"optim.lr": 0.1} for m in study.methods}}))
    for i, m in enumerate(study.methods):
        for s in study.seeds:
            write_run(study.out / "final" / m / f"seed{s}", [f"loss={m}", f"seed={s}"], s, "finished",
                      ap=0.5 + 0.01 * i + 0.002 * s, seconds=100.0)
    lr_run = write_run(study.out / "tune" / "lr" / "focal" / "lr0.1", ["loss=focal", "optim.lr=0.1"], 0, "finished",
                       ap=0.4, seconds=30.0)
    own = write_run(study.out / "tune" / "alpha" / "focal" / "alpha0.25",
                    ["loss=focal", "optim.lr=0.1", "loss.alpha=0.25"], 0, "finished", ap=0.4, seconds=30.0)
    (own / "reused_from.txt").write_text(f"{lr_run}\n")  # the own pass's copy of the lr pass's run
    followup = tmp_path / "followups" / "alpha_sweep"
    copy = write_run(followup / "bce_alpha" / "alpha0.25_seed0", ["loss=bce_alpha", "loss.alpha=0.25", "seed=0"], 0,
                     "finished", ap=0.55, seconds=50.0)
    (copy / "reused_from.txt").write_text(f"{study.out / 'final' / 'bce_alpha' / 'seed0'}\n")
    out = tmp_path / "results"

    assert results.main(["write", str(study.out), "--study", "bg_ablation", "--kind", "ablation",
                         "--results", str(out)]) == 0
    assert results.main(["write", str(followup), "--study", "alpha_sweep", "--results", str(out),
                         f"--source={study.out}=bg_ablation"]) == 0
    meta = read_meta(out / "bg_ablation")
    assert meta["kind"] == "ablation" and meta["ablation"]["seeds"] == [0, 1, 2, 3, 4]
    md = (out / "bg_ablation" / "report.md").read_text()
    assert md.startswith("# Background ablation: `bg_ablation`") and "| focal | seed4 | 4 | finished | 52.8 | – |" in md
    copied = {r["run"]: r.get("reused_from") for r in read_csv(out / "bg_ablation" / RUNS)}
    assert copied["tune/alpha/focal/alpha0.25"] == "bg_ablation/tune/lr/focal/lr0.1"  # a row naming its source
    assert copied["tune/lr/focal/lr0.1"] is None
    assert "1 run copied from another run of the same configuration" in md  # its cost counted once
    row, = read_csv(out / "alpha_sweep" / RUNS)
    assert row["reused_from"] == "bg_ablation/final/bce_alpha/seed0" and "AP" not in row
    assert "| bce_alpha/alpha0.25_seed0 | loss=bce_alpha, loss.alpha=0.25 | 0 | finished | 51.0 |" in (
        out / "alpha_sweep" / "report.md").read_text()  # the source's AP, not the copy's 55.0
    assert (out / "alpha_sweep" / "plots" / "ap.png").is_file() and (out / "bg_ablation" / "plots" / "ap_curve.png").is_file()

    capsys.readouterr()
    plots_drawn_not_encoded(monkeypatch)  # from here on the reports' text is compared
    assert results.main(["regenerate", "--check", "--results", str(out)]) == 0
    assert "2 studies: every report is its tables' report" in capsys.readouterr().out
    report = out / "alpha_sweep" / "report.md"
    report.write_text(report.read_text().replace("51.0", "51.1"))
    assert results.main(["regenerate", "--check", "--results", str(out)]) == 1
    assert "differs: alpha_sweep/report.md" in capsys.readouterr().out
    assert results.main(["regenerate", "alpha_sweep", "--results", str(out)]) == 0
    assert results.main(["regenerate", "--check", "--results", str(out)]) == 0


def test_rewriting_a_studys_results_keeps_its_records_archive_and_nothing_else_old(tmp_path):
    """A study still running is written to results/ more than once (an in-progress report each
    session); the archive `make study-keep` put beside its tables, which a fresh machine resumes
    from, survives the rewrite; every other old file goes."""
    study = Study(tmp_path / "ablation")
    study.seeds = [0]
    for m in study.methods:
        write_run(study.out / "final" / m / "seed0", [f"loss={m}", "seed=0"], 0, "finished", ap=0.5, seconds=10.0)
    out = tmp_path / "results" / "bg_ablation"
    out.mkdir(parents=True)
    (out / RECORDS).write_bytes(b"\x1f\x8b the ended runs")
    (out / "stale.csv").write_text("a file of an older write\n")
    assert results.main(["write", str(study.out), "--study", "bg_ablation", "--kind", "ablation",
                         "--results", str(tmp_path / "results")]) == 0
    assert (out / RECORDS).read_bytes() == b"\x1f\x8b the ended runs"
    assert not (out / "stale.csv").exists() and (out / "report.md").is_file()
    assert f"results/$(SPEC)/{RECORDS}" in (ROOT / "Makefile").read_text()  # where make study-keep writes it
