"""detection/build.py: the estimate of a run's time, the tuning split, duration formatting."""

import pytest

from detection import build
from tests.conftest import compose_config


@pytest.mark.parametrize("start, images, evaluations", [(0, 24000, 10), (1500, 12000, 5), (3000, 0, 1)])
def test_estimate_by_hand(start, images, evaluations):
    cfg = compose_config(["schedule.max_iters=3000", "schedule.batch_size=8", "schedule.eval_every=300"])
    est = build.estimate(cfg, build.Speed(train=80.0, eval=100.0), start_iter=start)
    # evaluations at 300, 600, ..., 2700 still ahead of `start`, and the final one
    assert est[:3] == (images, evaluations, images / 80.0)
    per_job, per_eval = build.job_overheads()  # benchmarks/job_overheads.json: measured on this machine
    assert per_job > 0 and per_eval > 0
    assert est.job_seconds == pytest.approx(images / 80.0 + per_job + evaluations * per_eval)


def test_estimate_of_an_evaluation_only_run():
    cfg = compose_config(["eval_only=true", "schedule.eval_every=300"])
    assert build.estimate(cfg, build.Speed(80.0, 100.0))[:3] == (0, 1, 0.0)


def test_speed_measures_the_configs_model_once_per_process():
    small = ["model.backbone.widths=[8,16,16]", "model.backbone.fpn_channels=16", "model.head_width=16",
             "model.head_convs=1", "dataset.min_size=64", "dataset.max_size=64", "schedule.batch_size=2",
             "schedule.eval_batch_size=2"]
    first = build.speed(compose_config(small))
    assert first.train > 0 and first.eval > 0
    assert build.speed(compose_config([*small, "optim.lr=0.3"])) is first  # the learning rate does not set the speed: not measured again


@pytest.mark.parametrize("seconds, text", [(40, "40 s"), (720, "12 min"), (3725, "1 h 02 min"), (36000, "10 h 00 min")])
def test_duration(seconds, text):
    assert build.duration(seconds) == text
