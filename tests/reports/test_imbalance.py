"""reports.imbalance on fake runs with known numbers."""

import pytest

from reports.imbalance import (
    imbalance_points,
    imbalance_section,
    order_flips,
    plot_ap_vs_imbalance,
)
from reports.runs import Run
from reports.stats import paired_difference

PNG = b"\x89PNG\r\n\x1a\n"
TARGETS = {"softmax_bg": "losses.softmax_bg.SoftmaxBgLoss", "bce_alpha": "losses.bce_alpha.AlphaBCELoss",
           "focal": "losses.focal.FocalLoss"}


def run(tmp_path, loss, dataset, seed, ap=None, status="finished", fg=10.0, bg=1540.0, metrics=None):
    name = f"{loss}_{dataset}_{seed}"
    return Run(dir=tmp_path / name, name=name, status=status, seed=seed,
               config={"dataset": {"name": dataset}, "loss": {"_target_": TARGETS[loss]}},
               eval=None if ap is None else {"AP": ap},
               metrics=metrics if metrics is not None else [{"iter": 10, "num_fg": fg, "num_bg": bg}])


def sweep(tmp_path, aps: dict, bg: dict) -> list[Run]:
    """``aps[(loss, dataset)]``: AP (fraction) per seed; ``bg[dataset]``: bg anchors per 10 fg."""
    return [run(tmp_path, loss, ds, seed, ap, bg=bg[ds]) for (loss, ds), per_seed in aps.items()
            for seed, ap in enumerate(per_seed)]


# Two levels, 3 seeds. focal beats softmax_bg by 2 AP +- 0.5 at 1:154 and loses by 2 AP +- 0.5 at
# 1:522 (consistent paired differences: a resolved flip); bce_alpha vs softmax_bg swap too, by
# differences of +1/-1/+2 then -1/+1/-2 (not resolved).
FLIP = {("softmax_bg", "synthetic"): [0.30, 0.31, 0.32], ("focal", "synthetic"): [0.32, 0.325, 0.345],
        ("bce_alpha", "synthetic"): [0.31, 0.30, 0.34],
        ("softmax_bg", "synthetic_fg1to540"): [0.28, 0.29, 0.30],
        ("focal", "synthetic_fg1to540"): [0.26, 0.265, 0.285],
        ("bce_alpha", "synthetic_fg1to540"): [0.27, 0.30, 0.28]}
BG = {"synthetic": 1540.0, "synthetic_fg1to540": 5220.0}


def test_points_ratios_means_and_counts(tmp_path):
    runs = [run(tmp_path, "focal", "synthetic", 0, 0.30, fg=10.0, bg=1500.0),
            run(tmp_path, "focal", "synthetic", 1, 0.34, fg=10.0, bg=1600.0),
            run(tmp_path, "focal", "synthetic", 2, status="diverged", fg=10.0, bg=1520.0),
            run(tmp_path, "focal", "synthetic", 3, status="running", metrics=[]),
            # two log lines: (1000 + 4000) / (10 + 10) = 250, the other run 300: mean 275
            run(tmp_path, "focal", "synthetic_fg1to540", 0, 0.20,
                metrics=[{"iter": 10, "num_fg": 10.0, "num_bg": 1000.0}, {"iter": 20, "num_fg": 10.0, "num_bg": 4000.0}]),
            run(tmp_path, "focal", "synthetic_fg1to540", 1, 0.25, fg=10.0, bg=3000.0),
            run(tmp_path, "softmax_bg", "synthetic", 0, 0.28)]
    tuning = run(tmp_path, "focal", "synthetic", 0, 0.90)  # lr tuning: on other images, not a point's run
    tuning.config["eval_split"] = "tune"
    points = imbalance_points([*runs, tuning])
    assert list(points) == ["focal", "softmax_bg"]
    low, high = points["focal"]
    assert low["dataset"] == "synthetic" and high["dataset"] == "synthetic_fg1to540"
    # ratio over every run that logged (the diverged one too): (150 + 160 + 152) / 3 = 154
    assert low["ratio"] == pytest.approx(154.0)
    assert high["ratio"] == pytest.approx(275.0)
    assert low["n"] == 2 and low["mean"] == pytest.approx(32.0) and low["seeds"] == [0, 1]
    assert low["std"] == pytest.approx(2 ** 0.5 * 2)  # sample std of 30, 34
    assert low["lo"] < 32.0 < low["hi"]
    assert low["diverged"] == 1 and low["not_counted"] == 1 and low["runs"] == 4
    assert low["ap"] == {0: pytest.approx(30.0), 1: pytest.approx(34.0)}
    assert high["mean"] == pytest.approx(22.5) and high["diverged"] == 0
    only = points["softmax_bg"][0]
    assert only["n"] == 1 and only["mean"] == pytest.approx(28.0) and only["lo"] is None


def test_resolved_and_unresolved_flip(tmp_path):
    points = imbalance_points(sweep(tmp_path, FLIP, BG))
    # the constructed differences, by hand
    at = {loss: {p["dataset"]: p["ap"] for p in pts} for loss, pts in points.items()}
    d_low = paired_difference(at["focal"]["synthetic"], at["softmax_bg"]["synthetic"])
    d_high = paired_difference(at["focal"]["synthetic_fg1to540"], at["softmax_bg"]["synthetic_fg1to540"])
    assert d_low["diffs"] == pytest.approx([2.0, 1.5, 2.5]) and d_low["lo"] > 0
    assert d_high["diffs"] == pytest.approx([-2.0, -2.5, -1.5]) and d_high["hi"] < 0

    [sentence] = order_flips(points)
    assert sentence.startswith("between 1:154 (`synthetic`) and 1:522 (`synthetic_fg1to540`) the order changes "
                               "from focal (33.0) > bce_alpha (31.7) > softmax_bg (31.0) to "
                               "softmax_bg (29.0) > bce_alpha (28.3) > focal (27.0)")
    assert "softmax_bg vs focal: resolved flip (at 1:154: softmax_bg - focal = -2.0 AP [" in sentence
    assert "softmax_bg vs bce_alpha: the order changes but the flip is not resolved at this number of seeds" in sentence
    assert "focal vs bce_alpha: the order changes but the flip is not resolved at this number of seeds" in sentence


def test_order_stays(tmp_path):
    aps = {("focal", "synthetic"): [0.4, 0.41], ("softmax_bg", "synthetic"): [0.3, 0.31],
           ("focal", "synthetic_fg1to540"): [0.35, 0.36], ("softmax_bg", "synthetic_fg1to540"): [0.2, 0.21]}
    assert order_flips(imbalance_points(sweep(tmp_path, aps, BG))) == [
        "between 1:154 (`synthetic`) and 1:522 (`synthetic_fg1to540`) the order stays: "
        "focal (40.5) > softmax_bg (30.5), then focal (35.5) > softmax_bg (20.5)."]


def test_plot_is_png(tmp_path):
    points = imbalance_points(sweep(tmp_path, FLIP, BG))
    plot_ap_vs_imbalance(points, tmp_path / "ap_vs_imbalance.png")
    assert (tmp_path / "ap_vs_imbalance.png").read_bytes().startswith(PNG)


def test_section(tmp_path):
    runs = sweep(tmp_path, FLIP, BG) + [run(tmp_path, "focal", "synthetic_fg1to540", 3, status="diverged", bg=5220.0)]
    md = imbalance_section(runs, tmp_path / "out" / "plots")
    assert md[0] == "## AP against measured imbalance"
    assert (tmp_path / "out" / "plots" / "ap_vs_imbalance.png").read_bytes().startswith(PNG)
    text = "\n".join(md)
    assert "![AP against imbalance](plots/ap_vs_imbalance.png)" in text
    assert "| 1 | `synthetic` | 1:154 | 9 |" in text and "| 2 | `synthetic_fg1to540` | 1:522 | 10 |" in text
    assert "| focal | 33.0 [" in text and "n=3, **1 diverged** |" in text
    assert "resolved flip" in text and "not resolved at this number of seeds" in text


def test_not_an_imbalance_sweep(tmp_path):
    runs = [run(tmp_path, loss, "synthetic", s, 0.3) for loss in TARGETS for s in range(2)]
    assert imbalance_points(runs) == {}
    assert imbalance_section(runs, tmp_path / "plots") == []
    assert not (tmp_path / "plots").exists()
    assert imbalance_section([Run(dir=tmp_path, name=".")], tmp_path / "plots") == []
