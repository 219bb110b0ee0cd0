"""The report's Background errors section on a fake sweep whose analysis/ files are written by hand.

Per run (tests/sweep_fixtures.py's sweep; AP points unless said):
  loss=softmax_bg  seeds 0 1 2: Bkg 2 4 6, FalsePos 10 13 16, Bkg errors 30 60 90 on 30 images
                   (1 2 3 per image), BG band area .01 .02 .03 (1 2 3 points), C50 .6 .7 .8 flat
  loss=bce_alpha   seed 0: Bkg 5, FalsePos 8, 10 on 20 images; bands.json as tools.analyze writes
                   it (no "overall_area": BG .68 - Oth .60 = 8 points), no curve; seed 1: no analysis/
  loss=focal       seed 0: Bkg 1.5, FalsePos 3, 3 on 30 images, BG .005, C50 .9 flat;
                   seed 1 diverged WITH an analysis (Bkg 100): never averaged
  loss=bce_alpha, model.prior_init=false  seed 1 (finished): errors.json unreadable
"""

import csv
import json
import math
import shutil

import numpy as np
import pytest

from analysis.anchor_scores import EDGES
from reports.errors import errors_section, errors_summary, same_edges
from reports.runs import groups_of, load_runs
from reports.sweep import write_report
from tests.sweep_fixtures import make_sweep

T_975_2 = 4.302652729911275  # Student t, 97.5% quantile, 2 degrees of freedom
BANDS = ["C75", "C50", "Loc", "Oth", "BG", "FN"]  # no Sim: the synthetic classes share a supercategory


def bkg_curve(value, max_recall):
    """bkg_vs_recall: ``value`` background false positives per image at every recall level up to ``max_recall``."""
    recall = [i / 100 for i in range(101)]
    return {"recall": recall, "bkg_per_image": [0.0] + [value if r <= max_recall else None for r in recall[1:]]}


def write_analysis(run_dir, bkg, falsepos, bkg_count, images, bg_area=None, c50=None, overall=None, curve=None,
                   bg_above=None):
    folder = run_dir / "analysis"
    folder.mkdir()
    errors = {"AP50": 50.0, "Cls": 1.0, "Loc": 1.0, "Both": 0.0, "Dupe": 0.0, "Bkg": bkg, "Miss": 1.0,
              "FalsePos": falsepos, "FalseNeg": 2.0,
              "counts": {"Cls": 1, "Loc": 1, "Both": 0, "Dupe": 0, "Bkg": bkg_count, "Miss": 1}, "images": images}
    if curve is not None:
        errors["bkg_vs_recall"] = curve
    if bg_above is not None:  # anchor_scores.json: one fg and one bg anchor per bin, times bg_above
        (folder / "anchor_scores.json").write_text(json.dumps(
            {"edges": list(EDGES), "fg": [1] * 61, "bg": [bg_above] * 61, "score_thresh": 0.05,
             "bg_above_thresh_per_image": bg_above}))
    (folder / "errors.json").write_text(json.dumps(errors))
    bands = {"bands": BANDS, "skipped": {"Sim": "..."}, "classes": {},
             "overall": overall or {"C75": .3, "C50": .5, "Loc": .55, "Oth": .6, "BG": .6 + (bg_area or 0), "FN": 1.0}}
    if bg_area is not None:
        bands["overall_area"] = {"BG": bg_area}
    if c50 is not None:
        bands["pr"] = {"recall": [i / 100 for i in range(101)], "C50": [c50] * 101}
    (folder / "bands.json").write_text(json.dumps(bands))


@pytest.fixture
def sweep(tmp_path):
    sweep = make_sweep(tmp_path)
    for num, bkg, fp, count, area, c50, max_recall in ((0, 2, 10, 30, .01, .6, 1), (1, 4, 13, 60, .02, .7, 1),
                                                       (2, 6, 16, 90, .03, .8, .85)):
        write_analysis(sweep / f"{num}_synthetic_softmax_bg", bkg, fp, count, 30, area, c50,
                       curve=bkg_curve(num + 1, max_recall), bg_above=10 * (num + 1))
    write_analysis(sweep / "3_synthetic_bce_alpha", 5, 8, 10, 20,
                   overall={"C75": .3, "C50": .5, "Loc": .55, "Oth": .60, "BG": .68, "FN": 1.0})
    write_analysis(sweep / "6_synthetic_focal", 1.5, 3, 3, 30, .005, .9, curve=bkg_curve(0.5, 0.7), bg_above=4)
    write_analysis(sweep / "7_synthetic_focal", 100, 100, 3000, 30, .5, .1)  # diverged
    (sweep / "10_synthetic_bce_alpha" / "analysis").mkdir()
    (sweep / "10_synthetic_bce_alpha" / "analysis" / "errors.json").write_text("{not json")
    return sweep


def test_means_std_and_t_intervals_over_finished_seeds(sweep):
    summaries = errors_summary(groups_of(load_runs(sweep)[0]))
    sm, bce, focal, noprior = summaries.values()
    half = T_975_2 / math.sqrt(3)  # times the std: the 95% half width of a mean of 3
    assert sm["n"] == 3 and sm["missing"] == []
    for key, mean, std in (("bkg_dap50", 4, 2), ("falsepos_dap50", 13, 3), ("bkg_per_image", 2, 1), ("bg_band", 2, 1)):
        s = sm[key]
        assert (s["n"], s["mean"], s["std"]) == (3, pytest.approx(mean), pytest.approx(std)), key
        assert (s["lo"], s["hi"]) == (pytest.approx(mean - half * std), pytest.approx(mean + half * std)), key
    assert sm["bkg_dap50"]["lo"] == pytest.approx(-0.968, abs=1e-3) and sm["bkg_dap50"]["hi"] == pytest.approx(8.968, abs=1e-3)
    assert sm["c50"] == pytest.approx([0.7] * 101) and sm["c50_n"] == 3
    for key, mean, std in (("bkg_at_recall", 2, 1), ("bg_anchors_above", 20, 10)):
        assert (sm[key]["n"], sm[key]["mean"], sm[key]["std"]) == (3, pytest.approx(mean), pytest.approx(std)), key
    # the mean curve stops where one seed stops (recall .85): the others alone would flatter it
    assert sm["bkg_curve_n"] == 3 and sm["bkg_curve"]["bkg_per_image"] == pytest.approx([0.0] + [2.0] * 85 + [None] * 15)
    assert sm["hist"]["n"] == 3 and sm["hist"]["bg"] == [60] * 61 and sm["hist"]["fg"] == [3] * 61
    assert bce["bkg_at_recall"]["mean"] is None and bce["hist"] is None and bce["bkg_curve"] is None
    assert focal["bkg_at_recall"]["n"] == 0 and focal["bg_anchors_above"]["mean"] == 4  # recall .8 never reached
    # focal's run stops at recall .7: every method's cost is also read there (softmax_bg's: 2 ± 1 there too)
    assert {r["recall"] for r in summaries.values()} == {0.7}
    assert (focal["bkg_at_common"]["n"], focal["bkg_at_common"]["mean"]) == (1, 0.5)
    assert (sm["bkg_at_common"]["n"], sm["bkg_at_common"]["mean"]) == (3, pytest.approx(2))

    assert bce["n"] == 1 and bce["missing"] == [("4_synthetic_bce_alpha", "no analysis/")]
    assert bce["bg_band"]["mean"] == pytest.approx(8.0)  # .68 - .60, from the bands' APs
    assert bce["bkg_per_image"]["mean"] == pytest.approx(0.5) and bce["bkg_dap50"]["std"] is None
    assert bce["c50"] is None
    assert focal["n"] == 1 and focal["bkg_dap50"]["mean"] == 1.5  # the diverged seed's 100 is not averaged
    assert focal["bkg_per_image"]["mean"] == pytest.approx(0.1) and focal["c50"] == pytest.approx([0.9] * 101)
    assert noprior["n"] == 0 and noprior["bkg_dap50"]["mean"] is None
    (name, why), = noprior["missing"]
    assert name == "10_synthetic_bce_alpha" and why.startswith("analysis/ unreadable (JSONDecodeError")


def test_the_report_shows_the_section_the_plot_and_the_csv_columns(sweep):
    md = write_report(sweep).read_text()
    section = md.split("## Background errors")[1].split("\n## ")[0]
    assert ("| loss=softmax_bg | 3 | 4.00 ± 2.00 [-0.97, 8.97] | 13.00 ± 3.00 [5.55, 20.45] | 2.00 ± 1.00 [-0.48, 4.48] "
            "| 2.00 ± 1.00 [-0.48, 4.48] |") in section
    assert "| loss=bce_alpha | 1 | 5.00 | 8.00 | 8.00 | 0.50 |" in section
    assert "| loss=focal | 1 | 1.50 | 3.00 | 0.50 | 0.10 |" in section
    assert "| loss=bce_alpha, model.prior_init=false | 0 | – | – | – | – |" in section
    assert "4_synthetic_bce_alpha (no analysis/)" in section and "10_synthetic_bce_alpha (analysis/ unreadable" in section
    assert "7_synthetic_focal" not in section  # diverged: neither averaged nor "missing"
    assert "![Precision-recall at IoU .5](plots/pr_overlay.png)" in section
    assert ("| loss=softmax_bg | 3 | 4.00 ± 2.00 [-0.97, 8.97] | 13.00 ± 3.00 [5.55, 20.45] | 2.00 ± 1.00 [-0.48, 4.48] "
            "| 2.00 ± 1.00 [-0.48, 4.48] | 2.00 ± 1.00 [-0.48, 4.48] | 2.00 ± 1.00 [-0.48, 4.48] "
            "| 20.00 ± 10.00 [-4.84, 44.84] |") in section
    assert "| loss=focal | 1 | 1.50 | 3.00 | 0.50 | 0.10 | – | 0.50 | 4.00 |" in section  # recall .8 never reached,
    assert "| bkg FPs / image at recall 0.8 | bkg FPs / image at recall 0.7 |" in section  # .7 by every run
    for plot in ("bkg_recall_overlay.png", "anchor_scores.png"):
        assert f"(plots/{plot})" in section and (sweep / "plots" / plot).read_bytes().startswith(b"\x89PNG")
    assert (sweep / "plots" / "pr_overlay.png").read_bytes().startswith(b"\x89PNG")
    assert md.index("## Accuracy") < md.index("## Background errors") < md.index("## Training")

    with open(sweep / "report.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    sm, focal, noprior = rows["loss=softmax_bg"], rows["loss=focal"], rows["loss=bce_alpha, model.prior_init=false"]
    assert float(sm["bkg_dap50_mean"]) == pytest.approx(4) and float(sm["bkg_dap50_std"]) == pytest.approx(2)
    assert float(sm["bkg_dap50_lo"]) == pytest.approx(4 - 2 * T_975_2 / math.sqrt(3)) and sm["bkg_dap50_n"] == "3"
    assert float(sm["bg_band_hi"]) == pytest.approx(2 + T_975_2 / math.sqrt(3))
    assert float(focal["bkg_per_image_mean"]) == pytest.approx(0.1) and focal["bkg_per_image_std"] == ""
    assert noprior["falsepos_dap50_mean"] == "" and noprior["falsepos_dap50_n"] == "0"
    assert sm["bkg_recall"] == focal["bkg_recall"] == "0.7" and float(focal["bkg_at_common_mean"]) == 0.5
    assert focal["bkg_at_recall_mean"] == "" and focal["bkg_at_recall_n"] == "0"


def test_no_analysis_no_section(tmp_path):
    sweep = make_sweep(tmp_path)
    md = write_report(sweep).read_text()
    assert "Background errors" not in md and not (sweep / "plots" / "pr_overlay.png").exists()
    with open(sweep / "report.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["bkg_dap50_mean"] == "" and row["bkg_dap50_n"] == "0"
    assert errors_section(groups_of(load_runs(sweep)[0]), tmp_path / "plots") == []


def test_a_band_without_ground_truth_has_no_area(tmp_path):
    sweep = make_sweep(tmp_path)
    write_analysis(sweep / "6_synthetic_focal", 0.0, 0.0, 0, 30, overall=dict.fromkeys(BANDS, -1.0))
    focal = errors_summary(groups_of(load_runs(sweep)[0]))["loss=focal"]
    assert focal["n"] == 1 and focal["bg_band"]["mean"] is None and focal["bkg_per_image"]["mean"] == 0.0



def test_where_every_run_reaches_recall_08_the_cost_is_read_there_alone(sweep, tmp_path):
    shutil.rmtree(sweep / "6_synthetic_focal" / "analysis")
    write_analysis(sweep / "6_synthetic_focal", 1.5, 3, 3, 30, .005, .9, curve=bkg_curve(0.5, 0.9), bg_above=4)
    groups = groups_of(load_runs(sweep)[0])
    section = "\n".join(errors_section(groups, tmp_path / "plots"))
    header = next(line for line in section.splitlines() if line.startswith("| method |"))
    assert header.count("at recall") == 1 and "at recall 0.8 |" in header and "stops short" not in section
    assert "| loss=focal | 1 | 1.50 | 3.00 | 0.50 | 0.10 | 0.50 | 4.00 |" in section
    assert {r["recall"] for r in errors_summary(groups).values()} == {0.8}


def test_histograms_from_two_cpus_are_summed_though_their_edges_differ_in_the_last_bit(sweep):
    """np.logspace's edges differ in the last bit between CPUs (found: 1e-05 on one AMD EPYC,
    9.999999999999999e-06 on another machine): a cell whose seeds ran on both lost its plot."""
    scores = sweep / "1_synthetic_softmax_bg" / "analysis" / "anchor_scores.json"
    other = [float(np.nextafter(e, 1.0)) for e in EDGES]
    scores.write_text(json.dumps({**json.loads(scores.read_text()), "edges": other}))
    sm = next(iter(errors_summary(groups_of(load_runs(sweep)[0])).values()))
    assert sm["hist"]["n"] == 3 and sm["hist"]["bg"] == [60] * 61
    assert other != list(EDGES) and same_edges(other, list(EDGES))
    assert not same_edges(list(EDGES[:-1]), list(EDGES)) and not same_edges([2 * e for e in EDGES], list(EDGES))
