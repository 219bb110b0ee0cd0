"""reports.stats on hand-computed numbers: t table values, closed forms, t intervals, verdicts."""

import csv
import doctest
import io
import math
from statistics import NormalDist

import pytest

import reports.stats
from reports.stats import (
    paired_difference,
    pairwise_verdicts,
    ranks,
    spearman,
    summary,
    t_quantile,
    verdict,
)

# The worked example of the module docstring: diffs 2.0, 1.5, 1.0, 3.0 on seeds 0-3.
SOFTMAX = {0: 40.0, 1: 41.0, 2: 39.5, 3: 42.0}
FOCAL = {0: 38.0, 1: 39.5, 2: 38.5, 3: 39.0, 4: 37.0}


@pytest.mark.parametrize("df, table", [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262),
                                       (29, 2.045), (120, 1.980)])
def test_t_quantile_matches_the_textbook_table(df, table):
    assert round(t_quantile(0.975, df), 3) == table


@pytest.mark.parametrize("p, df, table", [(0.95, 10, 1.812), (0.995, 5, 4.032), (0.9, 3, 1.638)])
def test_t_quantile_matches_the_table_at_other_levels(p, df, table):
    assert round(t_quantile(p, df), 3) == table


def _closed_form(p, df):
    """Exact quantiles for df = 1 (Cauchy), 2 and 4 (Hill 1970)."""
    if df == 1:
        return -1.0 / math.tan(math.pi * p)  # = tan(pi (p - 1/2)), without cancelling p - 1/2
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    alpha = 4 * p * (1 - p)
    q = math.cos(math.acos(math.sqrt(alpha)) / 3) / math.sqrt(alpha)
    return math.copysign(2 * math.sqrt(q - 1), p - 0.5)


@pytest.mark.parametrize("df", [1, 2, 4])
@pytest.mark.parametrize("p", [1e-6, 0.01, 0.3, 0.6, 0.9, 0.975, 0.999])
def test_t_quantile_equals_the_closed_forms(p, df):
    assert t_quantile(p, df) == pytest.approx(_closed_form(p, df), rel=1e-9)


def test_t_quantile_tends_to_the_normal_quantile():
    z = NormalDist().inv_cdf(0.975)
    # Cornish-Fisher expansion in 1/df (Abramowitz & Stegun 26.7.5); next term ~2.5e-9 at 1000.
    df = 1000
    expansion = (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
                 + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))
    assert t_quantile(0.975, df) == pytest.approx(expansion, abs=1e-8)
    assert round(t_quantile(0.975, 10**6), 3) == 1.960
    assert t_quantile(0.975, 10**6) == pytest.approx(z + (z**3 + z) / 4e6, abs=1e-9)


def test_t_quantile_is_odd_around_the_median():
    assert t_quantile(0.5, 7) == 0.0
    assert t_quantile(0.025, 9) == -t_quantile(0.975, 9)
    assert t_quantile(0.5 + 1e-9, 3) == pytest.approx(1e-9 / 0.36755259694786135, rel=1e-6)


@pytest.mark.parametrize("p, df", [(0.0, 5), (1.0, 5), (1.5, 5), (0.975, 0), (0.975, -2)])
def test_t_quantile_rejects_bad_arguments(p, df):
    with pytest.raises(ValueError, match="t_quantile"):
        t_quantile(p, df)


def test_summary_of_one_to_five():
    s = summary([1, 2, 3, 4, 5])
    std = math.sqrt(2.5)  # squared deviations 4+1+0+1+4 = 10, over n-1 = 4
    half = 2.776445 * std / math.sqrt(5)  # = 1.9632
    assert s["n"] == 5 and s["missing"] == 0 and s["mean"] == 3.0
    assert s["std"] == pytest.approx(1.5811388, abs=1e-7)
    assert s["half_width"] == pytest.approx(half, abs=1e-6)
    assert s["half_width"] == pytest.approx(1.96324, abs=1e-5)
    assert (s["lo"], s["hi"]) == pytest.approx((3 - 1.96324, 3 + 1.96324), abs=1e-5)


def test_summary_at_another_level():
    # t_{0.95, 4} = 2.131847: the 90% interval is narrower than the 95% one.
    s = summary([1, 2, 3, 4, 5], level=0.90)
    assert s["half_width"] == pytest.approx(2.131847 * math.sqrt(2.5) / math.sqrt(5), abs=1e-6)


def test_summary_ignores_none_and_nan_and_counts_them_missing():
    s = summary([None, 1, float("nan"), 2, 3, 4, 5, float("inf")])
    assert s == summary([1, 2, 3, 4, 5]) | {"missing": 3}


def test_summary_of_one_value_has_no_spread():
    assert summary([None, 7.5]) == {"n": 1, "missing": 1, "mean": 7.5, "std": None,
                                    "half_width": None, "lo": None, "hi": None}


def test_summary_of_nothing_is_all_none():
    assert summary([]) == {"n": 0, "missing": 0, "mean": None, "std": None,
                           "half_width": None, "lo": None, "hi": None}
    assert summary([None, float("nan")])["missing"] == 2


def test_paired_difference_by_hand():
    d = paired_difference(SOFTMAX, FOCAL)
    # diffs 2.0 1.5 1.0 3.0: mean 1.875, squared deviations sum to 2.1875, var 2.1875/3,
    # half-width t_{0.975,3} * std / 2 = 3.182446 * 0.8539126 / 2 = 1.358765.
    assert d["seeds"] == [0, 1, 2, 3] and d["diffs"] == [2.0, 1.5, 1.0, 3.0]
    assert d["n"] == 4 and d["mean"] == 1.875
    assert d["std"] == pytest.approx(math.sqrt(2.1875 / 3), abs=1e-12)
    assert d["half_width"] == pytest.approx(1.358765, abs=1e-6)
    assert (d["lo"], d["hi"]) == pytest.approx((0.516235, 3.233765), abs=1e-6)
    assert d["missing_in_a"] == [4] and d["missing_in_b"] == []
    assert "missing" not in d


def test_paired_difference_lists_missing_seeds_and_skips_none_and_nan():
    a = {3: 1.0, 1: 2.0, 2: None, 5: 4.0, 7: 9.0}
    b = {1: 1.0, 2: 5.0, 3: float("nan"), 5: 2.0, 6: 0.0}
    d = paired_difference(a, b)
    assert d["seeds"] == [1, 5] and d["diffs"] == [1.0, 2.0]
    assert d["missing_in_a"] == [2, 6]  # None in a, absent from a
    assert d["missing_in_b"] == [3, 7]  # NaN in b, absent from b
    assert d["mean"] == 1.5 and d["std"] == pytest.approx(math.sqrt(0.5))
    assert d["half_width"] == pytest.approx(12.706205 * math.sqrt(0.5) / math.sqrt(2), abs=1e-5)


def test_paired_difference_with_no_common_seed():
    d = paired_difference({0: 1.0}, {1: 2.0})
    assert d["n"] == 0 and d["mean"] is None and d["lo"] is None and d["seeds"] == []
    assert verdict("a", "b", d) == "a - b = n/a, 0 paired seeds: not resolved (n < 2 paired seeds)"


def test_verdict_better():
    assert verdict("softmax_bg", "focal", paired_difference(SOFTMAX, FOCAL)) == (
        "softmax_bg - focal = +1.9 AP [+0.5, +3.2], 4 paired seeds: softmax_bg better")


def test_verdict_worse_names_the_second_method():
    assert verdict("focal", "softmax_bg", paired_difference(FOCAL, SOFTMAX)) == (
        "focal - softmax_bg = -1.9 AP [-3.2, -0.5], 4 paired seeds: softmax_bg better")


def test_verdict_unresolved_when_the_interval_contains_zero():
    # diffs -0.5, 1.0, -0.2: mean 0.1, std sqrt(0.63), half-width 4.302653 * 0.793725 / sqrt(3).
    d = paired_difference({0: 40.0, 1: 41.0, 2: 39.0}, {0: 40.5, 1: 40.0, 2: 39.2})
    assert (d["lo"], d["hi"]) == pytest.approx((0.1 - 1.971723, 0.1 + 1.971723), abs=1e-5)
    assert verdict("bce", "focal", d, unit="AP50") == (
        "bce - focal = +0.1 AP50 [-1.9, +2.1], 3 paired seeds: no difference resolved")


def test_verdict_with_one_paired_seed():
    d = paired_difference({0: 40.0, 1: 41.0}, {1: 40.5})
    assert verdict("bce", "focal", d) == (
        "bce - focal = +0.5 AP, 1 paired seed: not resolved (n < 2 paired seeds)")


@pytest.mark.parametrize("lo, hi, shown, outcome", [
    (0.0, 2.0, "[+0.0, +2.0]", "no difference resolved"),  # touching 0 is not excluding it
    (-2.0, 0.0, "[-2.0, +0.0]", "no difference resolved"),
    (-0.04, 2.04, "[-0.0, +2.0]", "no difference resolved"),
    (0.04, 1.96, "[+0.0, +2.0]", "a better"),  # the sign says which side of 0 the bound is
    (-1.96, -0.04, "[-2.0, -0.0]", "b better"),
])
def test_verdict_at_the_zero_boundary(lo, hi, shown, outcome):
    mean = (lo + hi) / 2
    line = verdict("a", "b", {"n": 6, "mean": mean, "lo": lo, "hi": hi})
    assert line == f"a - b = {mean:+.1f} AP {shown}, 6 paired seeds: {outcome}"


def test_pairwise_verdicts_every_pair_in_order_and_csv_ready():
    per_method = {"softmax_bg": SOFTMAX, "bce": {0: 39.0, 1: 40.0, 2: 39.0}, "focal": FOCAL}
    rows = pairwise_verdicts(per_method)
    assert [(r["a"], r["b"]) for r in rows] == [("softmax_bg", "bce"), ("softmax_bg", "focal"),
                                                ("bce", "focal")]
    # softmax_bg - bce: diffs 1.0, 1.0, 0.5 on seeds 0-2; seed 3 only in softmax_bg.
    # bce - focal: diffs 1.0, 0.5, 0.5, half-width 4.302653 * sqrt(1/12) / sqrt(3) = 0.717109.
    first = rows[0]
    assert first["n"] == 3 and first["mean"] == pytest.approx(2.5 / 3)
    assert first["seeds"] == "0 1 2" and first["diffs"] == "1.0 1.0 0.5"
    assert first["missing_in_a"] == "" and first["missing_in_b"] == "3"
    assert rows[1]["verdict"] == verdict("softmax_bg", "focal", paired_difference(SOFTMAX, FOCAL))
    assert rows[2]["verdict"] == (
        "bce - focal = +0.7 AP [-0.1, +1.4], 3 paired seeds: no difference resolved")

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(first))
    writer.writeheader()
    writer.writerows(rows)
    back = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(back[0]) == ["a", "b", "n", "mean", "std", "half_width", "lo", "hi", "seeds",
                             "diffs", "missing_in_a", "missing_in_b", "verdict", "p"]
    assert back[2]["verdict"] == rows[2]["verdict"] and back[1]["missing_in_a"] == "4"


def test_pairwise_verdicts_of_one_method_is_empty():
    assert pairwise_verdicts({"focal": FOCAL}) == []


def test_docstring_examples_hold():
    result = doctest.testmod(reports.stats)
    assert result.attempted >= 10 and result.failed == 0


# -- spearman -----------------------------------------------------------------------------------


def test_spearman_perfect_orders():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 4, 9]) == pytest.approx(1.0)  # ranks only: any increasing map


def test_spearman_ties_use_average_ranks():
    # x = [1, 2, 2, 3] -> ranks [1, 2.5, 2.5, 4]; y = [1, 3, 2, 4] -> ranks [1, 3, 2, 4]; both mean 2.5.
    # deviations dx = [-1.5, 0, 0, 1.5], dy = [-1.5, 0.5, -0.5, 1.5]
    # sum dx dy = 2.25 + 2.25 = 4.5; sum dx^2 = 4.5; sum dy^2 = 2.25 + .25 + .25 + 2.25 = 5
    # rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9) = 0.948683...
    assert ranks([1, 2, 2, 3]) == [1.0, 2.5, 2.5, 4.0]
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    # No ties: 1 - 6 sum d^2 / (n (n^2 - 1)); ranks [1, 2, 3] vs [2, 1, 3]: d^2 = 1 + 1 -> 1 - 12/24
    assert spearman([1, 2, 3], [29, 27, 31]) == pytest.approx(0.5)


def test_spearman_undefined():
    assert spearman([], []) is None
    assert spearman([1], [2]) is None
    assert spearman([1, 2, 3], [5, 5, 5]) is None  # no spread on one side
    with pytest.raises(ValueError, match="3 x values but 2 y values"):
        spearman([1, 2, 3], [1, 2])


def test_the_p_value_is_below_5_percent_exactly_where_the_95_interval_excludes_0():
    """The duality of the paired t test and its interval, on random paired differences."""
    import random

    from reports.stats import p_value

    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(2, 8)
        a = {s: rng.gauss(0, 1) for s in range(n)}
        b = {s: a[s] + rng.gauss(rng.uniform(-1.5, 1.5), rng.uniform(0.1, 2)) for s in range(n)}
        d = paired_difference(a, b)
        excludes = d["lo"] > 0 or d["hi"] < 0
        assert (p_value(d) < 0.05) == excludes, (d, p_value(d))


def test_multiplicity_counts_what_chance_gives_and_marks_what_survives_holm():
    from reports.stats import multiplicity

    rows = [{"a": "x", "b": "y", "p": 0.001}, {"a": "x", "b": "z", "p": 0.03},
            {"a": "y", "b": "z", "p": 0.04}, {"a": "x", "b": "w", "p": None}]
    lines = multiplicity(rows)
    # sorted p: .001 <= .05/3 kept; .03 > .05/2 stops: .03 and .04 resolved alone, not after the correction
    assert [r["holm"] for r in rows] == [True, False, False, None]
    assert lines == ["Multiplicity: 3 paired comparisons; were there no difference at all, chance alone would call "
                     "~0.2 of them resolved at 95%. 3 are resolved; after Holm's correction 1 remains.",
                     "Resolved, but not after the correction: x - z; y - z."]
    assert multiplicity([{"a": "x", "b": "y", "p": 0.03}, {"a": "x", "b": "z", "p": 0.5}])[0].endswith(
        "1 is resolved; after Holm's correction 0 remain.")
