"""reports/paper.py: the sections beside Lin et al. 2017, Table 1a/1b."""

from reports.paper import TABLE_1A, TABLE_1B, paper_section, table_points
from reports.runs import Run

BCE = "losses.bce_alpha.AlphaBCELoss"
FOCAL = "losses.focal.FocalLoss"


def run(tmp_path, name, loss, seed, ap=None, status="finished", **config):
    """A Run as load_run builds it: ``loss`` is the loss config, ``config`` the other keys."""
    return Run(dir=tmp_path / name, name=name, status=status, seed=seed,
               config={"seed": seed, "loss": loss, **config}, eval=None if ap is None else {"AP": ap})


# -- paper_section --------------------------------------------------------------------------------

def test_alpha_sweep_lines(tmp_path):
    """3 of Table 1a's settings, 2 seeds each (one more diverged at alpha .5), plus a softmax_bg
    group that matches no table."""
    aps = {0.25: (0.28, 0.30), 0.5: (0.26, 0.28), 0.75: (0.30, 0.32)}  # means 29, 27, 31 (%)
    groups = {}
    for alpha, (a0, a1) in aps.items():
        loss = {"_target_": BCE, "alpha": alpha, "fused": True}
        groups[f"loss.alpha={alpha}"] = [run(tmp_path, f"a{alpha}_{s}", loss, s, ap)
                                         for s, ap in ((0, a0), (1, a1))]
    groups["loss.alpha=0.5"].append(run(tmp_path, "a0.5_2", {"_target_": BCE, "alpha": 0.5}, 2, status="diverged"))
    groups["loss=softmax_bg"] = [run(tmp_path, "sm", {"_target_": "losses.softmax_bg.SoftmaxBgLoss"}, 0, 0.4)]
    # Each setting: mean ± std (std = sqrt 2 for two values 2 apart) and mean ± t_{.975,1} * std / sqrt 2
    # = mean ± 12.706. Paper order of the 3: .25 < .5 < .75 (10.8, 30.2, 31.1); ours ranks 2, 1, 3
    # -> rho = 1 - 6 (1 + 1 + 0) / (3 * 8) = +0.50.
    assert paper_section(groups) == [
        "## Against the paper (Table 1a)",
        "",
        "Lin et al. 2017 (Focal Loss), Table 1a: alpha-balanced CE (gamma = 0) over alpha. Paper AP beside ours "
        "per setting, in the paper's order; ours over the finished seeds (n), diverged and unfinished runs "
        "counted, not averaged.",
        "",
        "| alpha | paper AP | ours: AP (%) mean ± std [95% CI] | n |",
        "|---|---|---|---|",
        "| 0.1 | 0.0 | – | not in this sweep |",
        "| 0.25 | 10.8 | 29.0 ± 1.4 [16.3, 41.7] | 2 |",
        "| 0.5 | 30.2 | 27.0 ± 1.4 [14.3, 39.7] | 2, 1 diverged |",
        "| 0.75 | 31.1 | 31.0 ± 1.4 [18.3, 43.7] | 2 |",
        "| 0.9 | 30.8 | – | not in this sweep |",
        "| 0.99 | 28.7 | – | not in this sweep |",
        "| 0.999 | 25.1 | – | not in this sweep |",
        "",
        "Spearman rank correlation of the orders over the 3 settings both have: rho = +0.50",
        "",
        "Paper: COCO (trainval35k, evaluated on minival), ResNet-50-FPN at 600 px, ~100k anchors per image, "
        "90k iterations; ours: this sweep's runs. The AP values are not comparable across the two setups; "
        "the order of the settings is what is compared.",
        "",
    ]


def test_gamma_sweep(tmp_path):
    """Focal runs at the paper's (gamma, best alpha) pairs -> Table 1b; a run at the paper's gamma
    but another alpha is not its setting; the bce_alpha run at .75 is the gamma = 0 point."""
    groups = {
        "loss=bce_alpha": [run(tmp_path, "b", {"_target_": BCE, "alpha": 0.75}, 0, 0.20)],
        "loss.gamma=0.5": [run(tmp_path, "g05", {"_target_": FOCAL, "gamma": 0.5, "alpha": 0.5}, 0, 0.25)],
        "loss.gamma=2": [run(tmp_path, "g2", {"_target_": FOCAL, "gamma": 2, "alpha": 0.25}, 0, 0.30),
                         run(tmp_path, "g2b", {"_target_": FOCAL, "gamma": 2, "alpha": 0.25}, 1, status="running")],
        "loss.gamma=5, loss.alpha=0.5": [run(tmp_path, "g5", {"_target_": FOCAL, "gamma": 5, "alpha": 0.5}, 0, 0.1)],
    }
    for runs in groups.values():
        for r in runs:
            r.config.update(dataset={"name": "synthetic"}, schedule={"max_iters": 1500})
    md = paper_section(groups)
    assert md[0] == "## Against the paper (Table 1b)"  # Table 1a: only alpha .75 -> no section
    assert md[4:13] == [
        "| gamma | alpha | paper AP | ours: AP (%) mean ± std [95% CI] | n |",
        "|---|---|---|---|---|",
        "| 0 | 0.75 | 31.1 | 20.0 | 1 |",
        "| 0.1 | 0.75 | 31.4 | – | not in this sweep |",
        "| 0.2 | 0.75 | 31.9 | – | not in this sweep |",
        "| 0.5 | 0.5 | 32.9 | 25.0 | 1 |",
        "| 1 | 0.25 | 33.7 | – | not in this sweep |",
        "| 2 | 0.25 | 34.0 | 30.0 | 1, 1 running |",
        "| 5 | 0.25 | 32.2 | – | not in this sweep |",
    ]
    assert md[14] == "Spearman rank correlation of the orders over the 3 settings both have: rho = +1.00"
    assert "ours: this sweep's runs (dataset synthetic; 1500 iterations)." in md[16]


def test_unrelated_runs_give_nothing(tmp_path):
    softmax = {"_target_": "losses.softmax_bg.SoftmaxBgLoss", "bg_weight": 1.0}
    groups = {
        "loss=softmax_bg": [run(tmp_path, "s", softmax, 0, 0.3)],
        "loss=focal": [run(tmp_path, "f", {"_target_": FOCAL, "gamma": 2.0, "alpha": 0.25}, 0, 0.3)],  # 1 setting
        "loss.alpha=0.3": [run(tmp_path, "b", {"_target_": BCE, "alpha": 0.3}, 0, 0.3)],  # not a paper alpha
        "no config": [Run(dir=tmp_path / "x", name="x", status="failed")],
    }
    assert paper_section(groups) == []
    assert paper_section({}) == []


def test_contexts_and_duplicates(tmp_path):
    """Groups differing in the lr are separate tables; a second group at the same setting and
    context (focal at gamma 0 = bce_alpha) is noted, not pooled; all-diverged settings have no mean."""
    def bce(alpha, lr, seed, ap, status="finished"):
        return run(tmp_path, f"{alpha}_{lr}_{seed}", {"_target_": BCE, "alpha": alpha}, seed, ap, status,
                   optim={"lr": lr})
    groups = {f"lr={lr}, alpha={a}": [bce(a, lr, 0, ap)]
              for lr, a, ap in ((0.01, 0.25, 0.05), (0.01, 0.5, 0.2), (0.01, 0.9, 0.1), (0.02, 0.5, 0.3),
                                (0.02, 0.9, 0.35))}
    groups["lr=0.02, alpha=0.1"] = [bce(0.1, 0.02, 0, None, "diverged")]
    groups["focal gamma 0"] = [run(tmp_path, "fg0", {"_target_": FOCAL, "gamma": 0, "alpha": 0.5}, 0, 0.9,
                                   optim={"lr": 0.02})]
    points = table_points(groups, TABLE_1A)
    assert list(points) == ["optim.lr=0.01", "optim.lr=0.02"]
    assert list(points["optim.lr=0.02"]) == [0.1, 0.5, 0.9]
    assert points["optim.lr=0.02"][0.5]["also"] == ["focal gamma 0"]
    assert points["optim.lr=0.02"][0.1]["counts"] == {"diverged": 1}
    md = paper_section(groups)
    assert "### optim.lr=0.01" in md and "### optim.lr=0.02" in md
    assert "| 0.1 | 0.0 | – | 0, 1 diverged |" in md
    # lr 0.01: ranks ours (.05, .2, .1) 1 3 2 against the paper's 1 2 3: rho = 1 - 6 * 2 / (3 * 8) = 0.5
    assert md.count("Spearman rank correlation of the orders over the 3 settings both have: rho = +0.50") == 1
    # lr 0.02: alpha .1 diverged (3 settings in the sweep, 2 with a mean)
    assert md.count("Spearman rank correlation of the orders over the 2 settings both have: rho = +1.00") == 1
    assert ("- note: alpha 0.5: also group `focal gamma 0` (one group per setting is shown: "
            "`lr=0.02, alpha=0.5`)") in md
    assert table_points(groups, TABLE_1B) == {}  # the gamma-0 point of 1b needs alpha .75


def test_tables_match_the_configs():
    """Table 1b's alphas are the ones experiment=gamma_sweep pairs with each gamma."""
    from detection.build import FOCAL_PAPER_ALPHA

    assert {g: f["loss.alpha"] for g, f in TABLE_1B.fixed.items()} == FOCAL_PAPER_ALPHA
    assert list(TABLE_1A.ap) == [0.10, 0.25, 0.50, 0.75, 0.90, 0.99, 0.999]
