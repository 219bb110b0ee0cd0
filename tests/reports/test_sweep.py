"""tools.report on a fake sweep with known numbers."""

import csv
import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from losses.focal import sigmoid_focal_loss
from reports.ablation import imbalance
from reports.cdf import cumulative_loss, hardest_share
from reports.plots import focal_loss_of_pt
from reports.runs import assign_groups, bg_per_fg, load_run, run_values
from reports.stats import mean_std
from reports.sweep import main as report_main
from reports.sweep import write_report
from tests.conftest import ROOT
from tests.sweep_fixtures import make_sweep, write_run

PNG = b"\x89PNG\r\n\x1a\n"


# Per-anchor losses as runs save them (anchor_losses.pt): fg, bg. softmax_bg's hardest 1% of
# background anchors (1 of 100) holds 50 / (99 + 50) of its background loss.
ANCHOR_LOSSES = {"softmax_bg": (torch.tensor([1.0, 3.0]), torch.cat([torch.ones(99), torch.tensor([50.0])])),
                 "bce_alpha": (torch.tensor([2.0]), torch.ones(10)),
                 "focal": (torch.tensor([1.0, 1.0, 2.0]), torch.arange(100.0))}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    sweep = make_sweep(tmp_path_factory.mktemp("report"), ANCHOR_LOSSES)
    md = write_report(sweep)
    with open(sweep / "report.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    return sweep, md.read_text(), rows


def num(text):
    return None if text == "" else float(text)


def test_groups_are_the_overrides_without_seed_or_shared_ones(report):
    _, _, rows = report
    assert list(rows) == ["loss=softmax_bg", "loss=bce_alpha", "loss=focal", "loss=bce_alpha, model.prior_init=false"]
    assert [rows[m]["seeds"] for m in rows] == ["0 1 2", "0 1", "0", "1"]


def test_means_and_sample_stds(report):
    _, _, rows = report
    sm, bce, focal, noprior = rows.values()
    assert (sm["n"], sm["runs"], sm["diverged"]) == ("3", "3", "0")
    assert num(sm["AP_mean"]) == pytest.approx(32.0, abs=1e-9) and num(sm["AP_std"]) == pytest.approx(2.0, abs=1e-9)
    assert num(sm["AP50_mean"]) == pytest.approx(52.0, abs=1e-9) and num(sm["AP75_mean"]) == pytest.approx(22.0, abs=1e-9)
    assert sm["APs_mean"] == sm["APs_std"] == "" and sm["APs_n"] == "0"  # COCOeval's -1: undefined
    assert num(sm["loss_cls_mean"]) == pytest.approx(0.7) and num(sm["loss_cls_std"]) == pytest.approx(0.2)
    assert num(sm["bg_share_mean"]) == pytest.approx(0.8) and num(sm["bg_share_std"]) == pytest.approx(0.1)
    assert num(sm["easy_bg_share_mean"]) == 0.5 and num(sm["easy_bg_share_std"]) == 0.0
    assert num(sm["loss_box_mean"]) == 0.25
    assert num(sm["num_fg_mean"]) == 25.0 and num(sm["num_fg_std"]) == 10.0  # per-run means 15, 25, 35
    # 1000 bg anchors per line over 10+20+15, 20+30+25, 30+40+35 fg: 3000/45, 3000/75, 3000/105
    ratios = [3000 / 45, 3000 / 75, 3000 / 105]
    assert num(sm["bg_per_fg_mean"]) == pytest.approx(sum(ratios) / 3)
    assert num(sm["bg_per_fg_std"]) == pytest.approx(mean_std(ratios)[1])
    assert num(sm["train_s_mean"]) == 110.0 and num(sm["train_s_std"]) == 10.0
    # medians of [1, 5, 6], [7, 5, 6], [4, 5, 9] are all 5 or 6: mean 16/3
    assert num(sm["images_per_s_mean"]) == pytest.approx(16 / 3)

    assert num(sm["AP_lo"]) == pytest.approx(32 - 4.302653 * 2 / math.sqrt(3), abs=1e-5)
    assert num(sm["AP_hi"]) == pytest.approx(32 + 4.302653 * 2 / math.sqrt(3), abs=1e-5)
    assert bce["n"] == "2" and num(bce["AP_mean"]) == pytest.approx(26.0)
    assert num(bce["AP_std"]) == pytest.approx(math.sqrt(2))  # sample std (n - 1), not population (1.0)
    assert bce["not_counted"] == "5_synthetic_bce_alpha: failed" and bce["diverged"] == "0"

    assert focal["n"] == "1" and num(focal["AP_mean"]) == pytest.approx(40.0) and focal["AP_std"] == ""
    assert focal["diverged"] == "1" and focal["not_counted"] == "8_synthetic_focal: running"

    assert noprior["n"] == "1" and noprior["AP_n"] == "0" and noprior["AP_mean"] == "" and noprior["diverged"] == "1"
    assert num(noprior["loss_cls_mean"]) == 9.0  # its finished run counts for training numbers


def test_markdown_flags_and_lists_every_run(report):
    sweep, md, _ = report
    assert "excluded from the AP means" in md
    # AP 95% CI: 32 ± t(.975, 2) 4.303 x 2 / sqrt(3) = 32 ± 4.97
    assert "| loss=softmax_bg | 3 | 32.0 ± 2.0 | 52.0 ± 2.0 | 22.0 ± 2.0 | – | 32.0 ± 2.0 | 32.0 ± 2.0 | [27.0, 37.0] | 0 |" in md
    assert "| loss=focal | 1 | 40.0 | 60.0 | 30.0 | – | 40.0 | 40.0 | – | **1/3** | 8_synthetic_focal: running |" in md
    training = md.split("## Training")[1].split("## Plots")[0]
    assert "| fg:bg anchors |" in training and "| 25.0 ± 10.0 | 1:45 ± 20 |" in training  # 45.1 ± 19.5
    assert "| 6.0 ± 1.4 | 1:171 ± 40 |" in training  # bce_alpha: 2000/10 and 2000/14
    runs_table = md.split("## Runs")[1]
    assert "| 0_synthetic_softmax_bg | loss=softmax_bg | 0 | finished | 30.0 | 1:67 |" in runs_table
    assert "| **failed** | – | – |" in runs_table  # no metrics: no ratio
    for d in sorted(p.name for p in sweep.iterdir() if p.is_dir() and p.name != "plots"):
        assert f"| {d} |" in runs_table, d
    assert "| **diverged** |" in runs_table and "non-finite loss at iteration 14" in runs_table
    assert "| **failed** |" in runs_table and "RuntimeError: out of memory" in runs_table
    assert "| **running** |" in runs_table and "metrics.jsonl: 1 unreadable line(s) skipped" in runs_table
    assert "no eval.json" in runs_table
    assert "11 runs in 4 methods: 7 finished, 1 failed, 2 diverged, 1 running." in md
    assert "Common to all runs: `experiment=bg_ablation`" in md


def test_every_plot_is_a_linked_png(report):
    sweep, md, _ = report
    for name in ("ap", "curves", "loss_cdf", "focal_loss"):
        assert f"](plots/{name}.png)" in md
        assert (sweep / "plots" / f"{name}.png").read_bytes()[:8] == PNG, name


def test_loss_cdf_table_reads_each_methods_saved_losses_or_says_why_not(report):
    _, md, _ = report
    section = md.split("### Loss over anchors")[1].split("###")[0]
    # method, run, #fg, #bg, hardest 10% fg, hardest 1% bg, hardest 10% bg
    assert f"| loss=softmax_bg | 0_synthetic_softmax_bg | 2 | 100 | 75.0% | {100 * 50 / 149:.1f}% |" in section
    assert "| loss=bce_alpha | 3_synthetic_bce_alpha | 1 | 10 | 100.0% | 10.0% | 10.0% |" in section
    assert "| loss=focal | 6_synthetic_focal | 3 | 100 |" in section
    assert "not drawn: loss=bce_alpha, model.prior_init=false: no finished run with anchor_losses.pt" in section


def test_cumulative_loss_and_hardest_share_by_hand():
    x, y = cumulative_loss(torch.tensor([3.0, 1.0, 0.0, 4.0]))
    assert x.tolist() == [0.25, 0.5, 0.75, 1.0] and y.tolist() == [0.0, 0.125, 0.5, 1.0]
    x, y = cumulative_loss(torch.arange(1000.0), max_points=11)
    assert len(x) == 11 and x[-1] == 1.0 and y[-1] == 1.0 and x[0] == 0.001
    assert len(cumulative_loss(torch.zeros(3))[0]) == 0 and len(cumulative_loss(torch.zeros(0))[0]) == 0
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0])
    assert hardest_share(losses, 0.2) == 0.5  # the one hardest anchor: 10 of 20
    assert hardest_share(losses, 0.01) == 0.5  # at least one anchor
    assert hardest_share(losses, 0.4) == 0.7 and hardest_share(torch.zeros(4), 0.1) is None


def test_figure1_curve_is_the_projects_focal_loss():
    p_t = np.array([0.01, 0.1, 0.5, 0.9, 0.99])
    logits = torch.tensor(np.log(p_t / (1 - p_t)), dtype=torch.float64).unsqueeze(1)  # one class, target 1
    for gamma in (0, 0.5, 1, 2, 5):
        ref = sigmoid_focal_loss(logits, torch.zeros(5, dtype=torch.long), gamma=gamma, alpha=None)
        np.testing.assert_allclose(focal_loss_of_pt(p_t, gamma), ref.numpy(), rtol=1e-9)
    assert focal_loss_of_pt(np.array([0.5]), 0)[0] == pytest.approx(math.log(2))


def test_bg_per_fg_by_hand():
    lines = [{"iter": 10, "num_fg": 10.0, "num_bg": 1000.0}, {"iter": 20, "num_fg": 30.0, "num_bg": 2000.0}]
    assert bg_per_fg(lines) == 3000 / 40 == 75.0  # totals, not the mean of 100 and 66.7
    # a step without foreground still counts its background; a line without num_bg (an older
    # log) or an evaluation line is left out
    more = [*lines, {"iter": 30, "num_fg": 0.0, "num_bg": 500.0}, {"iter": 40, "num_fg": 5.0},
            {"iter": 40, "eval": {"AP": 0.3}}]
    assert bg_per_fg(more) == 3500 / 40
    assert bg_per_fg([]) is None and bg_per_fg([{"num_fg": 0.0, "num_bg": 9.0}]) is None
    assert bg_per_fg([{"iter": 1, "loss": 1.0}]) is None
    # the fair ablation's report pools its runs' lines through the same helper
    runs = [SimpleNamespace(metrics=lines[:1]), SimpleNamespace(metrics=lines[1:])]
    assert imbalance(runs) == 75.0 and imbalance([]) is None


def test_mean_std():
    assert mean_std([]) == (None, None, 0) and mean_std([None, float("nan")]) == (None, None, 0)
    assert mean_std([3.0, None]) == (3.0, None, 1)
    mean, std, n = mean_std([1.0, 2.0, 4.0])
    assert (mean, n) == (7 / 3, 3) and std == pytest.approx(math.sqrt(7 / 3))


def test_groups_fall_back_to_a_config_diff(tmp_path):
    """Without .hydra/overrides.yaml, the config keys that differ (seed aside) name the group."""
    runs = []
    for i, (loss, gamma, seed) in enumerate([("focal", 2.0, 0), ("focal", 2.0, 1), ("focal", 0.5, 0)]):
        d = tmp_path / str(i)
        d.mkdir()
        (d / "config.yaml").write_text(f"seed: {seed}\nrun_name: r{seed}\nloss:\n  _target_: losses.{loss}.FocalLoss\n"
                                       f"  gamma: {gamma}\nmodel:\n  prior_init: true\n")
        runs.append(load_run(d, tmp_path))
    shared = assign_groups(runs)
    assert [r.group for r in runs] == ["loss.gamma=2.0", "loss.gamma=2.0", "loss.gamma=0.5"]
    assert [r.seed for r in runs] == [0, 1, 0]
    assert shared == []  # only what varies is compared


def test_unreadable_files_become_notes(tmp_path):
    run = write_run(tmp_path / "r", ["loss=focal", "seed=3"], 3, "finished", ap=0.5, seconds=1)
    (run / "eval.json").write_text("{")
    (run / "status.json").write_text('{"status": "exploded"}')
    loaded = load_run(run, tmp_path)
    assert loaded.status == "unknown" and loaded.eval is None and loaded.seed == 3
    notes = " ".join(loaded.notes)
    assert "eval.json unreadable" in notes and "status.json unreadable" in notes and "exploded" in notes
    assert run_values(loaded)["AP"] is None


def test_cli(tmp_path):
    sweep = tmp_path / "s"
    write_run(sweep / "0_a", ["loss=focal", "seed=0"], 0, "finished", ap=0.5, seconds=2)
    out = tmp_path / "elsewhere"
    # as the README runs it, from the repository root; relative paths are the caller's
    proc = subprocess.run([sys.executable, "-m", "tools.report", str(tmp_path / "s"), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.md").is_file() and (out / "report.csv").is_file() and not (sweep / "report.md").exists()
    assert "| loss=focal | 1 | 50.0 |" in (out / "report.md").read_text()

    # errors, in process (a second interpreter start costs seconds): exit with the cause named
    with pytest.raises(SystemExit, match=r"tools.report: error: .*missing.* does not exist"):
        report_main([str(tmp_path / "missing")])
    (tmp_path / "empty" / "plots").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"no run folders in .*empty"):
        report_main([str(tmp_path / "empty")])


def test_cost_sums_each_devices_time_and_images(tmp_path):
    from reports.cost import cost, cost_section
    from reports.runs import Run

    def run(name, seconds, device, iters, batch=8):
        return Run(dir=tmp_path / name, name=name, seconds=seconds, device=device,
                   config={"schedule": {"batch_size": batch}}, metrics=[{"iter": iters}])

    runs = [run("a", 100.0, "cpu (2 threads)", 1000), run("b", 300.0, "cpu (2 threads)", 3000, batch=4),
            run("c", 36.0, "NVIDIA H200", 1800, batch=16), Run(dir=tmp_path / "d", name="d")]  # d: no status
    assert cost(runs) == [
        {"device": "cpu (2 threads)", "runs": 2, "seconds": 400.0, "images": 8000 + 12000, "images_per_s": 50.0},
        {"device": "NVIDIA H200", "runs": 1, "seconds": 36.0, "images": 28800, "images_per_s": 800.0}]
    md = "\n".join(cost_section(runs))
    assert "| cpu (2 threads) | 2 | 0.11 h | 20000 | 50.0 |" in md and "| NVIDIA H200 | 1 | 0.01 h | 28800 | 800.0 |" in md


def test_the_ap_plot_holds_labels_wider_than_the_figure(tmp_path):
    import matplotlib.image

    from reports.plots import plot_ap
    short, long = tmp_path / "short.png", tmp_path / "long.png"
    plot_ap(["a", "b"], [[50.0, 51.0], [40.0]], short)
    plot_ap(["a" * 150, "b"], [[50.0, 51.0], [40.0]], long)
    w_short, w_long = (matplotlib.image.imread(p).shape[1] for p in (short, long))
    # 149 more characters at 8 pt are > 5 inches (110 dpi) more: the saved area grew to hold them
    assert w_long > w_short + 5 * 110


def test_convergence_section_gives_each_methods_last_quarter_gain(tmp_path):
    from reports.runs import Run
    from reports.sweep import convergence_section

    def run(name, status, aps):
        curve = [{"iter": 300 * (i + 1), "eval": {"AP": ap}} for i, ap in enumerate(aps)]
        return Run(dir=tmp_path / name, name=name, status=status, seed=0, curve=curve)

    groups = {"rising": [run("a", "finished", (0.1, 0.2, 0.30, 0.32)), run("b", "finished", (0.1, 0.2, 0.34, 0.36)),
                         run("c", "diverged", (0.1, 0.0, 0.0, 0.0))],  # diverged: not in the mean
              "flat": [run("d", "finished", (0.3, 0.4, 0.50, 0.505))],
              "low": [run("g", "finished", (0.02, 0.04, 0.05, 0.058))],  # +0.8 to 5.8 AP: 14%, not flat
              "running": [run("e", "running", (0.1, 0.2))],  # no finished run: no row
              "one point": [run("f", "finished", (0.5,))]}  # no curve to judge
    md = convergence_section(groups, tmp_path)
    table = [line for line in md if line.startswith("| ")]
    # 3/4 of 1200 iterations: the evaluation at 900; rising: mean 32.0 -> 34.0
    assert table[1:] == ["| rising | 32.0 (iter 900) | 34.0 (iter 1200) | +2.0 | **no** |",
                         "| flat | 50.0 (iter 900) | 50.5 (iter 1200) | +0.5 | yes |",
                         "| low | 5.0 (iter 900) | 5.8 (iter 1200) | +0.8 | **no** |"]
    assert (tmp_path / "ap_curve.png").read_bytes()[:8] == PNG
    assert convergence_section({"one point": groups["one point"]}, tmp_path) == []


def test_an_interrupted_run_is_listed_as_resumable_never_counted(tmp_path):
    sweep = tmp_path / "s"
    write_run(sweep / "0_a", ["loss=focal", "seed=0"], 0, "finished", ap=0.5, seconds=2)
    write_run(sweep / "1_a", ["loss=focal", "seed=1"], 1, "interrupted", ap=0.9, seconds=1,
              message="stopped at iteration 4 by SIGTERM; run the same command to resume")
    md = write_report(sweep).read_text()
    assert "| loss=focal | 1 | 50.0 |" in md  # the interrupted run's AP (an eval.json left over) is no result
    assert "1 run(s) stopped before their end (interrupted): not results; running the sweep's command again " \
           "resumes them" in md
    assert "| **interrupted** |" in md.split("## Runs")[1]
