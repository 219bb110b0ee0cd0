"""The factorial section (reports/factorial.py) of a study whose methods are assigner x loss
cells: the assigner's effect per loss, the losses' order per assigner, the interaction as a
paired difference of differences, and the ablation report that carries it."""

import math

import pytest

from reports import ablation
from reports.factorial import factorial_section, interactions
from reports.runs import Run

FACTORS = {"assigner": ["max_iou", "atss"], "loss": ["focal", "qfl"]}
# seeds 0-2; atss adds 1, 2, 3 to focal and 0, 0, 0 to qfl: the interaction per seed is 1, 2, 3
APS = {"max_iou_focal": {0: 50.0, 1: 51.0, 2: 52.0}, "atss_focal": {0: 51.0, 1: 53.0, 2: 55.0},
       "max_iou_qfl": {0: 40.0, 1: 41.0, 2: 39.0}, "atss_qfl": {0: 40.0, 1: 41.0, 2: 39.0}}
T2 = 4.302652729911275  # t_.975 with 2 degrees of freedom


def test_the_interaction_is_the_paired_difference_of_the_assigners_effects():
    [row] = interactions(APS, {c: {} for c in APS}, FACTORS["assigner"], FACTORS["loss"])
    assert row["seeds"] == "0 1 2" and row["diffs"] == "1.0 2.0 3.0" and row["mean"] == 2.0
    assert row["lo"] == pytest.approx(2.0 - T2 * 1.0 / math.sqrt(3))  # std of 1, 2, 3 is 1
    assert row["level"] == "focal vs qfl" and row["kind"] == "interaction"


def test_the_section_gives_effects_orders_and_the_interaction_with_holm():
    md, rows = factorial_section(APS, {}, FACTORS)
    text = "\n".join(md)
    assert text.startswith("## Assigner x loss")
    # focal: atss - max_iou = 1, 2, 3: +2.0 [2 -/+ 4.30 / sqrt 3 = 2.48]
    assert "| focal | 51.0 ± 1.0 (n=3) | 53.0 ± 2.0 (n=3) | +2.0 [-0.5, +4.5] (n=3) | not resolved |" in text
    assert "| qfl | 40.0 ± 1.0 (n=3) | 40.0 ± 1.0 (n=3) | +0.0 [+0.0, +0.0] (n=3) | not resolved |" in text
    assert "**assigner max_iou**: the loss settings by mean AP: focal > qfl; resolved pairs:" in text
    assert "| focal | qfl | +2.0 [-0.5, +4.5] (n=3) | not resolved |" in text
    assert [r["kind"] for r in rows] == ["effect", "effect", "order", "order", "interaction"]
    # 5 comparisons (qfl's effect, all differences 0, has p = 1); Holm: p .0082 <= .05/5 stays,
    # .0135 > .05/4 stops there: atss's focal - qfl is resolved alone, not after the correction
    assert "Multiplicity: 5 paired comparisons" in text and "after Holm's correction 1 remain" in text
    assert "- max_iou_focal - max_iou_qfl = +11.0 AP [+6.7, +15.3], 3 paired seeds: max_iou_focal better\n" in text
    assert "- atss_focal - atss_qfl = +13.0 AP [+6.4, +19.6], 3 paired seeds: atss_focal better (**not after Holm**)" in text
    assert rows[-1]["verdict"].startswith("(atss_focal - max_iou_focal) - (atss_qfl - max_iou_qfl) = +2.0 AP")


def test_a_cell_trained_on_another_device_is_not_paired_in_the_interaction():
    kinds = {c: {s: "cpu fp32" for s in range(3)} for c in APS}
    kinds["atss_qfl"][2] = "mixed: cuda bf16 x10, cpu fp32 x5"
    [row] = interactions(APS, kinds, FACTORS["assigner"], FACTORS["loss"])
    assert row["seeds"] == "0 1" and row["diffs"] == "1.0 2.0"


def test_an_ablation_report_with_factors_leads_with_the_section_and_keeps_every_pair_in_its_csv(tmp_path):
    def runs(cell):
        return [Run(None, f"seed{s}", status="finished", seed=s, eval={"AP": ap / 100}) for s, ap in APS[cell].items()]

    methods = list(APS)
    a = ablation.AblationRuns(title="lxa", methods=methods, seeds=[0, 1, 2], tune_iterations="1", final_iterations="1",
                              selection={}, final={m: runs(m) for m in methods}, controls={}, why_not={},
                              runs=[r for m in methods for r in runs(m)], factors=FACTORS)
    md = ablation.write(a, tmp_path).read_text()
    assert "## Assigner x loss" in md and "Every pair of the 4 cells is in report.csv (6 paired differences)." in md
    assert "- max_iou_focal - atss_focal" not in md  # the all-pairs list is the CSV's
    csv = (tmp_path / "report.csv").read_text().splitlines()
    assert sum(line.startswith("pair,") for line in csv) == 6
    assert sum(line.startswith("interaction,") for line in csv) == 1


def test_the_order_ranks_only_cells_with_runs_and_names_the_others():
    """A study still running: a cell without runs has no place in the order (it was listed as if
    ranked last), and with no runs at all there is no order."""
    md, _ = factorial_section({c: aps for c, aps in APS.items() if c != "max_iou_focal"}, {}, FACTORS)
    text = "\n".join(md)
    assert "**assigner max_iou**: the loss settings by mean AP: qfl (no runs yet: focal); resolved pairs:" in text
    assert "**assigner atss**: the loss settings by mean AP: focal > qfl; resolved pairs:" in text
    md, _ = factorial_section({}, {}, FACTORS)
    assert "**assigner atss**: the loss settings by mean AP: – (no runs yet: focal, qfl); resolved pairs:" in md


def test_the_order_says_equal_for_equal_means():
    """Three losses, two with one mean (qfl = vfl = 40.0): "=" between them, ">" elsewhere
    (it printed ">" between equal means)."""
    factors = {"assigner": ["max_iou", "atss"], "loss": ["focal", "qfl", "vfl"]}
    aps = {**APS, "max_iou_vfl": {0: 41.0, 1: 39.0, 2: 40.0}, "atss_vfl": {0: 45.0, 1: 44.0, 2: 43.0}}
    text = "\n".join(factorial_section(aps, {}, factors)[0])
    assert "**assigner max_iou**: the loss settings by mean AP: focal > qfl = vfl; resolved pairs:" in text
    assert "**assigner atss**: the loss settings by mean AP: focal > vfl > qfl; resolved pairs:" in text
    assert "| qfl | vfl |" in text and "| focal | vfl |" in text  # the interaction table's two settings


def test_under_a_control_a_study_of_cells_lists_only_the_pairs_whose_verdict_it_changes(tmp_path):
    """A control moving max_iou_qfl up to max_iou_focal's level (the other cells as in the
    final runs) changes the verdict of the 3 pairs with max_iou_qfl whose outcome differs: the
    report names those, report.csv has every pair under the control and each change vs final."""
    def runs(aps):
        return [Run(None, f"seed{s}", status="finished", seed=s, eval={"AP": ap / 100}) for s, ap in aps.items()]

    methods = list(APS)
    control = {**APS, "max_iou_qfl": {0: 50.5, 1: 51.5, 2: 51.0}}
    a = ablation.AblationRuns(title="lxa", methods=methods, seeds=[0, 1, 2], tune_iterations="1", final_iterations="1",
                              selection={}, final={m: runs(APS[m]) for m in methods},
                              controls={"one_class_per_anchor": {m: runs(control[m]) for m in methods}}, why_not={},
                              runs=[], factors=FACTORS)
    md = ablation.write(a, tmp_path).read_text()
    section = md.split("### one_class_per_anchor")[1].split("\n## ")[0]
    assert "Of the 6 pairs of cells, the control changes the verdict of 3 (every pair under it is in report.csv):" \
        in section
    # focal - qfl under it: -0.5, -0.5, +1.0: mean 0, std sqrt(0.75), half width 4.30 * 0.866 / sqrt 3 = 2.15
    assert ("- max_iou_focal - max_iou_qfl = +0.0 AP [-2.2, +2.2], 3 paired seeds: no difference resolved "
            "(final runs: max_iou_focal better)") in section
    assert "(final runs: no difference resolved)" in section  # max_iou_qfl - atss_qfl: 0 in the final runs
    assert section.count("\n- ") == 3 and "atss_focal - atss_qfl" not in section  # unchanged pairs: in the CSV only
    rows = (tmp_path / "report.csv").read_text().splitlines()
    assert sum(r.startswith("control_pair,one_class_per_anchor,") for r in rows) == 6
    changes = [r for r in rows if r.startswith("control,one_class_per_anchor,")]
    assert len(changes) == 4
    # max_iou_qfl's change: +10.5, +10.5, +12.0: mean 11.0
    assert [r for r in changes if ",max_iou_qfl,final,3,11.0," in r]


def test_a_loss_left_out_under_both_assigners_leaves_the_section_not_unresolved_in_it(tmp_path):
    """A budget cut of both qfl cells (``left_out``): the section is focal's alone, with no qfl
    row, order or interaction; the cells that ran are paired as before."""
    def runs(cell):
        return [Run(None, f"seed{s}", status="finished", seed=s, eval={"AP": ap / 100}) for s, ap in APS[cell].items()]

    methods = list(APS)
    left = {"max_iou_qfl": "the budget", "atss_qfl": "the budget"}
    a = ablation.AblationRuns(title="lxa", methods=methods, seeds=[0, 1, 2], tune_iterations="1", final_iterations="1",
                              selection={}, final={m: runs(m) if m not in left else [] for m in methods}, controls={},
                              why_not={}, runs=[], factors=FACTORS, left_out=left)
    md = ablation.write(a, tmp_path).read_text()
    section = md.split("## Assigner x loss")[1].split("\n## ")[0]
    assert "| focal | 51.0 ± 1.0 (n=3) | 53.0 ± 2.0 (n=3) | +2.0 [-0.5, +4.5] (n=3) | not resolved |" in section
    assert "qfl" not in section and "Every pair of the 2 cells is in report.csv (1 paired differences)." in md
    assert "**Left out** of the final stage (tuned and selected, no final runs): max_iou_qfl, atss_qfl — the budget." in md
    csv = (tmp_path / "report.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in csv[1:]] == ["method", "method", "pair", "effect"]  # one loss: no order
