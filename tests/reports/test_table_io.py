"""A study's results tables (reports/table_io.py): written from run folders, read back to the
same runs, and a report made from them equal to the one made from the folders.

The sweep is tests/sweep_fixtures.py's (finished, failed, diverged, running runs, an
unreadable metrics line, per-anchor losses for two methods) with hand-written analyses
(tests/reports/test_errors.py's, every case of the Background errors section).
"""

import gzip
import json
import math
import re

import pytest
import torch

from reports import ablation, sweep
from reports.cdf import figure4_numbers
from reports.errors import read_analysis
from reports.runs import assign_groups, load_runs
from reports.table_io import (
    RUNS,
    TRAINING,
    Tables,
    decode,
    encode,
    read_csv,
    relative,
    unflatten,
    write_csv,
    write_tables,
)
from tests.conftest import plots_drawn_not_encoded
from tests.reports.test_errors import bkg_curve, write_analysis
from tests.sweep_fixtures import make_sweep, write_run
from tools.results import check, regenerate


def test_cells_read_back_to_the_values_written():
    for column, value in (("AP", 0.1 + 0.2), ("AP", 1e-300), ("AP", -1.0), ("seconds", 1148.4), ("seed", 3),
                          ("last_iter", 0), ("overrides", ["loss=focal", "seed=0"]),
                          ("config", {"loss.alpha": 0.25, "model.prior_init": True, "dataset.name": None}),
                          ("notes", ["metrics.jsonl: 1 unreadable line(s)"]), ("run", "final/focal/seed0"),
                          ("code", "0123"), ("device", "cpu (2 threads)")):
        got = decode(column, encode(value))
        assert got == value and type(got) is type(value), (column, value, got)
    assert encode(None) == "" and decode("AP", "") is None
    assert encode(0.1 + 0.2) == "0.30000000000000004"  # repr: every digit the float needs
    with pytest.raises(ValueError, match="bool"):
        encode(True)  # a bool in a number column would read back as a number


def test_a_short_row_is_an_error_that_names_the_file_and_the_line(tmp_path):
    path = tmp_path / RUNS
    write_csv(path, ["run", "AP"], [{"run": "a", "AP": 0.5}])
    assert read_csv(path) == [{"run": "a", "AP": 0.5}]
    path.write_text(path.read_text() + "b\n")
    with pytest.raises(ValueError, match=r"runs\.csv, line 3: 1 cells, expected 2"):
        read_csv(path)
    with pytest.raises(ValueError, match=r"columns \['x'\] that runs\.csv does not have"):
        write_csv(path, ["run", "AP"], [{"run": "a", "x": 1}])


def test_a_gz_table_is_the_same_csv_compressed_with_no_timestamp_and_an_old_plain_one_is_named(tmp_path):
    rows = [{"run": "final/focal/seed0", "iter": 20 * i, "loss": 1 / (i + 1)} for i in range(300)]
    write_csv(tmp_path / "t.csv", ["run", "iter", "loss"], rows)
    write_csv(tmp_path / "t.csv.gz", ["run", "iter", "loss"], rows)
    data = (tmp_path / "t.csv.gz").read_bytes()
    assert gzip.decompress(data) == (tmp_path / "t.csv").read_bytes()
    assert data[4:8] == b"\0\0\0\0" and len(data) < (tmp_path / "t.csv").stat().st_size / 3  # mtime 0; smaller
    write_csv(tmp_path / "t.csv.gz", ["run", "iter", "loss"], rows)
    assert (tmp_path / "t.csv.gz").read_bytes() == data  # same rows, same bytes (git sees no change)
    assert read_csv(tmp_path / "t.csv.gz") == rows
    flipped = bytearray(data)
    flipped[30] ^= 0xFF  # a byte inside the compressed stream
    for broken in (data[: len(data) // 2], bytes(flipped)):  # cut short; corrupt inside (zlib's error)
        (tmp_path / "t.csv.gz").write_bytes(broken)
        with pytest.raises(ValueError, match=r"t\.csv\.gz: not a readable gzip file"):
            read_csv(tmp_path / "t.csv.gz")
    study = tmp_path / "results" / "old"
    study.mkdir(parents=True)
    (study / "study.yaml").write_text("study: old\nkind: sweep\n")
    (study / "training.csv").write_text("run,iter\n")
    with pytest.raises(ValueError, match=r"old/training\.csv: written uncompressed .* `gzip -n "):
        Tables(tmp_path / "results").study("old")


def test_unflatten_undoes_flatten_and_relative_cuts_the_study_folder():
    from detection.run_folder import flatten

    config = {"loss": {"_target_": "losses.focal.FocalLoss", "alpha": 0.25}, "seed": 0, "model": {"widths": [8, 16]}}
    assert unflatten(flatten(config)) == config
    root = "/somewhere/multirun/ablation"
    row = {"overrides": [f"checkpoint={root}/final/focal/seed${{seed}}/checkpoints/last.pt", "seed=0"],
           "config": {"checkpoint": f"{root}/final/focal/seed0/checkpoints/last.pt"}, "seed": 0}
    assert relative(row, (root,)) == {"overrides": ["checkpoint=final/focal/seed${seed}/checkpoints/last.pt", "seed=0"],
                                      "config": {"checkpoint": "final/focal/seed0/checkpoints/last.pt"}, "seed": 0}


@pytest.fixture
def study(tmp_path):
    """The fake sweep with analyses and per-anchor losses, and its tables under results/sweep/."""
    losses = {"softmax_bg": (torch.tensor([3.0, 1.0, 0.0, 4.0]), torch.arange(200.0)),
              "focal": (torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.0, 5.0]))}
    folder = make_sweep(tmp_path, anchor_losses=losses)
    for num, bkg, fp, count, area, c50, max_recall in ((0, 2, 10, 30, .01, .6, 1), (1, 4, 13, 60, .02, .7, 1)):
        write_analysis(folder / f"{num}_synthetic_softmax_bg", bkg, fp, count, 30, area, c50,
                       curve=bkg_curve(num + 1, max_recall), bg_above=10 * (num + 1))
    write_analysis(folder / "3_synthetic_bce_alpha", 5, 8, 10, 20,
                   overall={"C75": .3, "C50": .5, "Loc": .55, "Oth": .60, "BG": .68, "FN": 1.0})
    (folder / "10_synthetic_bce_alpha" / "analysis").mkdir()
    (folder / "10_synthetic_bce_alpha" / "analysis" / "errors.json").write_text("{not json")
    runs, _ = load_runs(folder)
    cdf = {r.name: figure4_numbers(*r.folder.load_anchor_losses().values()) for r in runs
           if r.folder.anchor_losses.is_file()}
    write_tables(runs, "sweep", tmp_path / "results" / "sweep", {r.name: read_analysis(r) for r in runs}, loss_cdf=cdf,
                 meta={"kind": "sweep", "sweep_overrides": ["experiment=bg_ablation"]}, roots=[folder])
    return folder, tmp_path / "results"


def test_the_runs_read_back_from_the_tables_are_the_runs_of_the_folders(study):
    folder, results = study
    from_folders, _ = load_runs(folder)
    from_tables = Tables(results).runs("sweep")
    assign_groups(from_tables)
    assert [r.name for r in from_tables] == [r.name for r in from_folders]
    for a, b in zip(from_folders, from_tables):
        assert b.dir is None
        for field in ("status", "seconds", "device", "message", "seed", "overrides", "config", "metrics", "curve",
                      "notes", "group", "code", "reused_from", "last_iter"):
            assert getattr(a, field) == getattr(b, field), (a.name, field)
        assert (a.eval is None) == (b.eval is None) and all(a.eval[k] == b.eval[k] for k in b.eval or {})
        va, why_a = read_analysis(a)
        vb, why_b = read_analysis(b)
        assert why_a == why_b
        if va is not None:
            assert {k: va[k] for k in vb if k != "hist"} == {k: vb[k] for k in vb if k != "hist"}
            assert (va["hist"] is None) == (vb["hist"] is None)
            if va["hist"]:
                assert all(va["hist"][k] == vb["hist"][k] for k in ("edges", "fg", "bg", "score_thresh"))
    first = from_tables[0]
    assert first.loss_cdf == {"fg_anchors": 4, "bg_anchors": 200, "hardest_10_fg": 0.5,
                              "hardest_1_bg": pytest.approx((199 + 198) / 19900), "hardest_10_bg": pytest.approx(
                                  sum(range(180, 200)) / 19900)}  # 10% of 4 fg anchors: the 1 hardest, 4 of 8


def test_a_report_from_the_tables_equals_the_report_from_the_folders(study, tmp_path, monkeypatch):
    folder, results = study
    plots_drawn_not_encoded(monkeypatch)  # the reports' text is compared
    live = sweep.write_report(folder, tmp_path / "live")
    made = regenerate(results, "sweep", tmp_path / "made")
    assert made.read_text() == live.read_text()
    assert (tmp_path / "made" / "report.csv").read_bytes() == (tmp_path / "live" / "report.csv").read_bytes()
    md = made.read_text()
    assert md.startswith("# Report: `sweep`\n\nSweep command overrides: `experiment=bg_ablation`.")
    assert "| loss=softmax_bg | 0_synthetic_softmax_bg | 4 | 200 | 50.0% | 2.0% | 19.0% |" in md  # Figure 4's numbers
    assert "## Background errors" in md and "plots/pr_overlay.png" in md and "plots/anchor_scores.png" in md
    assert str(tmp_path) not in (results / "sweep" / RUNS).read_text()
    (results / "sweep" / "report.md").write_text(md)
    (results / "sweep" / "report.csv").write_bytes((tmp_path / "made" / "report.csv").read_bytes())
    assert check(results, "sweep") == []
    (results / "sweep" / "report.md").write_text(md.replace("50.0%", "50.1%"))
    assert check(results, "sweep") == ["sweep/report.md"]


def test_a_reused_row_names_its_source_and_reads_its_numbers_there(tmp_path):
    source = tmp_path / "a"
    write_run(source / "seed0", ["loss=focal", "seed=0"], 0, "finished", ap=0.5, seconds=10.0,
              metrics=[{"iter": 10, "loss_cls": 0.5, "num_fg": 2.0, "num_bg": 300.0}])
    copy = tmp_path / "b"
    write_run(copy / "final" / "focal" / "seed0", ["seed=0", "loss=focal"], 0, "finished", ap=0.5, seconds=10.0)
    results = tmp_path / "results"
    runs_a, _ = load_runs(source)
    write_tables(runs_a, "a", results / "a", {r.name: read_analysis(r) for r in runs_a}, meta={"kind": "sweep"})
    runs_b, _ = load_runs(copy)
    write_tables(runs_b, "b", results / "b", {}, reused={"final/focal/seed0": "a/seed0"}, meta={"kind": "sweep"})
    row, = read_csv(results / "b" / RUNS)
    assert row["reused_from"] == "a/seed0" and "AP" not in row and "status" not in row  # a row, not a copy
    assert read_csv(results / "b" / TRAINING) == [] and (results / "b" / TRAINING).is_file()  # its header only
    run, = Tables(results).runs("b")
    assert (run.name, run.reused_from, run.status, run.eval["AP"], run.seconds) == (
        "final/focal/seed0", "a/seed0", "finished", 0.5, 10.0)
    assert run.metrics == [{"iter": 10, "loss_cls": 0.5, "num_fg": 2.0, "num_bg": 300.0}]
    assert run.overrides == ["seed=0", "loss=focal"]  # its own, as its job ran them
    write_tables(runs_b, "b", results / "b", {}, reused={"final/focal/seed0": "a/seed9"}, meta={"kind": "sweep"})
    with pytest.raises(ValueError, match=r"a/runs\.csv: no run 'seed9'"):
        Tables(results).runs("b")


def test_an_ablation_from_its_tables_equals_its_report_from_the_folders(tmp_path, monkeypatch):
    import yaml

    from studies.ablation import Study

    study = Study(tmp_path / "ablation")
    study.seeds = [0, 1]
    study.selection_file.parent.mkdir(parents=True)
    study.selection_file.write_text(yaml.safe_dump({"chosen": {m: {"optim.lr": 0.1} for m in study.methods},
                                                    "candidates": [{"method": "focal", "key": "optim.lr", "value": 0.1,
                                                                    "AP": 0.6, "status": "finished", "chosen": True}]}))
    metrics = [{"iter": i, "num_fg": 2.0, "num_bg": 300.0 + i, "clipped_share": 0.5 / i} for i in (10, 20)]
    for i, m in enumerate(study.methods):
        for s in study.seeds:
            run = write_run(study.out / "final" / m / f"seed{s}", [f"loss={m}", f"seed={s}"], s, "finished",
                            ap=0.5 + 0.01 * i + 0.003 * s, seconds=900.0 + s, metrics=metrics)
            (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text()
                                               + f'{{"iter": 20, "eval": {{"AP": {0.4 + 0.01 * s}}}}}\n')
            ev = json.loads((run / "eval.json").read_text())  # two classes, one never detected (-1: undefined)
            (run / "eval.json").write_text(json.dumps({**ev, "per_category": {"circle": 0.6 + 0.1 * s, "square": -1.0}}))
    write_run(study.out / "controls" / "softmax_prior_per_class" / "softmax_bg" / "seed0",
              ["loss=softmax_bg", "seed=0"], 0, "finished", ap=0.52, seconds=800.0)
    live = ablation.write(ablation.from_folders(study), tmp_path / "live")
    runs, _ = load_runs(study.out)
    write_tables(runs, "ablation", tmp_path / "results" / "ablation", {r.name: read_analysis(r) for r in runs},
                 meta={"kind": "ablation", "ablation": ablation.protocol(study)}, roots=[study.out])
    made = regenerate(tmp_path / "results", "ablation", tmp_path / "made")
    assert made.read_text() == live.read_text()
    assert "### one_class_per_anchor\n\nnot run: it re-evaluates the final runs' checkpoints, and 6 of them" in made.read_text()
    breakdown = made.read_text().split("## AP by IoU, object size and class")[1].split("\n## ")[0]
    assert "| method | n | AP50 | AP75 | APs | APm | APl | circle | square |" in breakdown
    assert re.search(r"^\| focal \| 2 \| [\d.]+ ± 0\.2 \| [\d.]+ ± 0\.2 \| – \| .* \| 65\.0 ± 7\.1 \| – \|$", breakdown, re.M)
    assert (tmp_path / "made" / "report.csv").read_bytes() == (tmp_path / "live" / "report.csv").read_bytes()
    assert math.isclose(ablation.clipped_share(ablation.from_tables(Tables(tmp_path / "results"), "ablation")
                                               .final["focal"]), (0.05 + 0.025) / 2)


def test_an_ablations_galleries_are_copied_beside_its_report_and_linked_from_the_tables(tmp_path):
    """A final run's analysis/gallery.png (hydra.callbacks.analysis.gallery=N) is an image no
    table can redraw: tools.results write copies the first one per method (in seed order) to
    plots/gallery_<method>.png, study.yaml names it, and the report made from the tables links it."""
    import yaml

    from studies.ablation import Study
    from tools.results import write

    study = Study(tmp_path / "ablation")
    study.seeds = [0, 1]
    study.selection_file.parent.mkdir(parents=True)
    study.selection_file.write_text(yaml.safe_dump({"chosen": {m: {"optim.lr": 0.1} for m in study.methods},
                                                    "candidates": []}))
    for m in study.methods:
        for s in study.seeds:
            write_run(study.out / "final" / m / f"seed{s}", [f"loss={m}", f"seed={s}"], s, "finished", ap=0.5,
                      seconds=10.0)
    for s in (1, 10):  # seed10 sorts after seed1 by number, not by text
        (study.out / "final" / "focal" / f"seed{s}" / "analysis").mkdir(parents=True, exist_ok=True)
        (study.out / "final" / "focal" / f"seed{s}" / "analysis" / "gallery.png").write_bytes(b"png of seed %d" % s)
    md = write(study.out, tmp_path / "results", "ablation", "ablation", {"ablation": ablation.protocol(study)})
    out = tmp_path / "results" / "ablation"
    assert (out / "plots" / "gallery_focal.png").read_bytes() == b"png of seed 1"
    assert yaml.safe_load((out / "study.yaml").read_text())["galleries"] == {"focal": "plots/gallery_focal.png"}
    text = md.read_text()
    assert "### The top background false positives" in text and "![focal](plots/gallery_focal.png)" in text
    assert "![softmax_bg]" not in text and check(tmp_path / "results", "ablation") == []
    live = ablation.from_folders(study)
    assert live.galleries == {"focal": "plots/gallery_focal.png"}
