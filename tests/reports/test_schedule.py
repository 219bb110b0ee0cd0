"""reports/schedule.py: a setting at two schedules, and the losses' order at each."""

import pytest

from reports.runs import Run
from reports.schedule import doubling_verdict, schedule_pairs, schedule_section

FOCAL = {"_target_": "losses.focal.FocalLoss", "gamma": 2.0, "alpha": 0.25}
SOFTMAX = {"_target_": "losses.softmax_bg.SoftmaxBgLoss"}


def run(tmp_path, name, loss, iters, seed, ap=None, status="finished", **config):
    return Run(dir=tmp_path / name, name=name, status=status, seed=seed,
               config={"seed": seed, "loss": loss, "schedule": {"max_iters": iters, "eval_every": 300},
                       "resume": False, **config},
               eval=None if ap is None else {"AP": ap})


def arm(tmp_path, tag, loss, iters, aps, **config):
    return [run(tmp_path, f"{tag}{s}", loss, iters, s, ap, **config) for s, ap in enumerate(aps)]


def test_pairs_are_one_setting_at_consecutive_schedules(tmp_path):
    groups = {
        "focal 3000": arm(tmp_path, "a", FOCAL, 3000, (0.5,)),
        "focal 6000": arm(tmp_path, "b", FOCAL, 6000, (0.5,), resume=True),  # resume: how, not what
        "focal 12000": arm(tmp_path, "c", FOCAL, 12000, (0.5,)),
        "softmax 3000": arm(tmp_path, "d", SOFTMAX, 3000, (0.5,)),  # one schedule only
        "focal lr 6000": arm(tmp_path, "e", FOCAL, 6000, (0.5,), optim={"lr": 1.0}),  # another setting
    }
    assert schedule_pairs(groups) == [(3000, "focal 3000", 6000, "focal 6000"), (6000, "focal 6000", 12000, "focal 12000")]
    assert schedule_section({k: groups[k] for k in ("softmax 3000", "focal lr 6000")}) == []


@pytest.mark.parametrize("lo, hi, said", [(-0.5, 0.99, "long enough (< +1.0 AP)"), (1.0, 3.0, "too short (>= +1.0 AP)"),
                                          (0.2, 1.0, "not resolved"), (None, None, "not resolved (n < 2 paired seeds)")])
def test_the_short_schedule_is_judged_by_the_whole_interval_against_one_ap(lo, hi, said):
    assert doubling_verdict({"n": 3, "mean": 0.5, "lo": lo, "hi": hi}) == said


def test_section_numbers_the_gain_of_the_longer_schedule_and_the_order_at_each(tmp_path):
    groups = {
        "focal 3000": arm(tmp_path, "f", FOCAL, 3000, (0.50, 0.52, 0.51)),
        "focal 6000": arm(tmp_path, "g", FOCAL, 6000, (0.55, 0.58, 0.54)),
        "softmax 3000": arm(tmp_path, "s", SOFTMAX, 3000, (0.49, 0.50, 0.51)),
        "softmax 6000": arm(tmp_path, "t", SOFTMAX, 6000, (0.494, 0.503, 0.513)),
    }
    md = "\n".join(schedule_section(groups))
    lines = md.splitlines()
    focal = next(line for line in lines if line.startswith("| `focal 3000` "))
    # long - short: 5, 6, 3: mean 4.67, std 1.53, t(2) 4.303 * 1.53 / sqrt 3 = 3.79 -> [+0.9, +8.5]
    assert "| focal | 3000 → 6000 | 51.0 ± 1.0 [48.5, 53.5] | 3 | 55.7 ± 2.1 [" in focal
    assert "| +4.7 [+0.9, +8.5] (n=3) | not resolved |" in focal
    softmax = next(line for line in lines if line.startswith("| `softmax 3000` "))
    # differences 0.4, 0.3, 0.3 AP: mean 0.33, std 0.058 -> [+0.19, +0.48], all below +1
    assert "| +0.3 [+0.2, +0.5] (n=3) | long enough (< +1.0 AP) |" in softmax
    # the losses at each schedule: at 3000 focal - softmax = 1, 2, 0 -> +1.0 [-1.5, +3.5]
    at3000 = md.index("at 3000 iterations")
    at6000 = md.index("at 6000 iterations")
    assert "focal - softmax_bg = +1.0 AP [-1.5, +3.5], 3 paired seeds: no difference resolved" in md[at3000:at6000]
    # at 6000: 5.6, 7.7, 2.7 -> mean 5.33 [-0.9, 11.6]
    assert "focal - softmax_bg = +5.3 AP [" in md[at6000:]
