"""The report across studies (reports/across.py): does a reference study's verdict hold in
others? Read from the committed tables of the three headline schedules (results/bg_ablation*)."""

import pytest

from reports import across
from reports.runs import RESULTS
from reports.table_io import Tables


@pytest.mark.parametrize("ref, here, expected", [
    ((1, 2), (0.5, 3), "holds"), ((1, 2), (-3, -1), "flips"), ((1, 2), (-1, 2), "not resolved here"),
    ((-1, 2), (-3, -1), "resolved here only"), ((-1, 2), (-2, 0.0), "neither"), ((None, None), (1, 2), "resolved here only"),
])
def test_the_outcome_of_a_verdict_in_another_study(ref, here, expected):
    row = lambda lo_hi: {"lo": lo_hi[0], "hi": lo_hi[1]}  # noqa: E731
    assert across.outcome(row(ref), row(here)) == expected


def test_the_headline_at_12000_against_its_shorter_schedules(tmp_path):
    meta = {"reference": "bg_ablation", "studies": ["bg_ablation_6000", "bg_ablation_3000"],
            "labels": {"bg_ablation": "12000", "bg_ablation_6000": "6000", "bg_ablation_3000": "3000"}}
    md = across.write(Tables(RESULTS), "schedules", meta, tmp_path).read_text()
    assert md.startswith("# Across studies: `schedules`\n")
    # results/bg_ablation*/report.md: softmax_bg - focal -6.1 [-8.1, -4.1] at 12000, -3.9 [-4.9, -3.0] at 6000
    assert ("| softmax_bg - focal | -6.1 [-8.1, -4.1] (n=5) | -3.9 [-4.9, -3.0] (n=5): holds | "
            "-1.9 [-3.0, -0.9] (n=5): holds |") in md
    assert "| bce_alpha - focal | -3.9 [-5.9, -1.9] (n=5) | -1.8 [-2.7, -0.8] (n=5): holds | " \
           "-0.6 [-1.5, +0.4] (n=5): not resolved here |" in md
    assert ("- **3000**: of 12000's 2 resolved differences, 1 holds (softmax_bg - focal), 0 flip, 1 is not resolved "
            "here (bce_alpha - focal); of the 1 it left open, 1 is resolved here (softmax_bg - bce_alpha), 0 in "
            "neither.") in md
    assert "6 paired comparisons" in md and "after Holm's correction 4 remain" in md
    assert "| focal | 66.6 ± 1.2 [65.0, 68.1] (n=5) |" in md
    # relative to b's AP per seed: at 12000 focal's mean AP is 66.6, so -6.1 AP is about -9%
    assert "| softmax_bg - focal | -9.1% [-12.0, -6.3] | -6.2% [-7.6, -4.7] | -3.3% [-5.0, -1.5] |" in md
    rows = (tmp_path / "report.csv").read_text().splitlines()
    assert rows[0] == "study,a,b,n,mean,lo,hi,p,holm,outcome,rel_mean,rel_lo,rel_hi" and len(rows) == 1 + 3 * 3


def test_a_relative_difference_is_per_seed_over_the_seeds_paired():
    from reports.stats import relative_difference

    # seed 1 trained on another device kind in b: left out like in the paired difference
    d = relative_difference({0: 6.0, 1: 5.0, 2: 5.5}, {0: 5.0, 1: 4.0, 2: 5.0},
                            kinds=({0: "cpu fp32", 1: "cpu fp32", 2: "cpu fp32"}, {0: "cpu fp32", 1: "cuda bf16", 2: "cpu fp32"}))
    assert d["n"] == 2 and d["mean"] == pytest.approx((20.0 + 10.0) / 2)
    assert relative_difference({0: 1.0}, {0: 0.0})["n"] == 0  # b's AP 0: no share of it


def test_only_ablation_kind_studies_can_be_compared(tmp_path):
    with pytest.raises(ValueError, match="alpha_sweep: an across report compares ablation-kind studies"):
        across.write(Tables(RESULTS), "x", {"reference": "bg_ablation", "studies": ["alpha_sweep"]}, tmp_path)
