"""reports/prior.py: each loss with and without the prior-probability bias init."""

from reports.prior import prior_pairs, prior_section
from reports.runs import Run

FOCAL = {"_target_": "losses.focal.FocalLoss", "gamma": 2.0, "alpha": 0.25}
SOFTMAX = {"_target_": "losses.softmax_bg.SoftmaxBgLoss"}


def run(tmp_path, name, loss, prior, seed, ap=None, status="finished", **config):
    return Run(dir=tmp_path / name, name=name, status=status, seed=seed,
               config={"seed": seed, "loss": loss, "model": {"prior_init": prior}, "resume": False, **config},
               eval=None if ap is None else {"AP": ap})


def test_pairs_differ_in_prior_init_only(tmp_path):
    groups = {
        "focal on": [run(tmp_path, "a", FOCAL, True, 0, 0.5), run(tmp_path, "b", FOCAL, True, 1, 0.5, resume=True)],
        "focal off": [run(tmp_path, "c", FOCAL, False, 0, 0.4)],
        "softmax off": [run(tmp_path, "d", SOFTMAX, False, 0, 0.4)],  # no "on" arm
        "focal off lr": [run(tmp_path, "e", FOCAL, False, 0, 0.4, optim={"lr": 1.0})],  # another setting
    }
    # resume (how a run was started) and the seed do not make a setting; the lr does
    assert prior_pairs(groups) == [("focal on", "focal off")]
    assert prior_section({k: groups[k] for k in ("softmax off", "focal off lr")}) == []


def test_section_numbers_paired_differences_and_divergence(tmp_path):
    groups = {
        "focal on": [run(tmp_path, f"f{s}", FOCAL, True, s, ap) for s, ap in enumerate((0.50, 0.52, 0.51))],
        "focal off": [run(tmp_path, f"g{s}", FOCAL, False, s, ap) for s, ap in enumerate((0.45, 0.46, 0.47))],
        "softmax on": [run(tmp_path, f"s{s}", SOFTMAX, True, s, ap) for s, ap in enumerate((0.40, 0.41, 0.42))],
        "softmax off": [run(tmp_path, "t0", SOFTMAX, False, 0, 0.41), run(tmp_path, "t1", SOFTMAX, False, 1, 0.39),
                        run(tmp_path, "t2", SOFTMAX, False, 2, status="diverged")],
    }
    md = "\n".join(prior_section(groups))
    lines = md.splitlines()
    focal = next(line for line in lines if line.startswith("| `focal on` "))
    # on 51.0 ± 1.0; off 46.0 ± 1.0; paired differences 5, 6, 4: mean 5.0, std 1.0, t(2) 4.303 -> [2.5, 7.5]
    assert "| focal | 51.0 ± 1.0 [48.5, 53.5] | 3 | 46.0 ± 1.0 [43.5, 48.5] | 3 |" in focal
    assert "+5.0 AP [+2.5, +7.5], 3 paired seeds: on better" in focal
    softmax = next(line for line in lines if line.startswith("| `softmax on` "))
    # the diverged seed is counted, not averaged or paired: differences -1, +2 over seeds 0, 1
    assert "| 40.0 ± 1.4 [" in softmax and "| 2, 1 diverged |" in softmax
    assert "+0.5 AP [" in softmax and "2 paired seeds: no difference resolved" in softmax
    assert "Without the prior: 1 of 6 runs diverged." in md
