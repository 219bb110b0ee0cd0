"""The table of valid config values: each rule refuses a value out of its range with one line
naming the key, and every shipped config passes."""

import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from detection.config_rules import RULES, ConfigError, check, violations
from tests.conftest import CONFIGS, ROOT, compose_config

# key -> (overrides that put a bad value there, the value as the message shows it)
BAD = {
    "device": (["device=gpu"], "gpu"),
    "amp": (["amp=fp8"], "fp8"),
    "num_workers": (["num_workers=-1"], "-1"),
    "cache_images_mb": (["cache_images_mb=-5"], "-5"),
    "eval_split": (["eval_split=test"], "test"),
    "tune_fraction": (["tune_fraction=1.0"], "1.0"),
    "loss_cdf_images": (["loss_cdf_images=-1"], "-1"),
    "optim.lr": (["optim.lr=-0.1"], "-0.1"),
    "optim.momentum": (["optim.momentum=1.0"], "1.0"),
    "optim.weight_decay": (["optim.weight_decay=-1e-4"], "-0.0001"),
    "optim.weight_decay_norm": (["optim.weight_decay_norm=-1"], "-1"),
    "optim.clip_grad_norm": (["optim.clip_grad_norm=0"], "0"),
    "schedule.max_iters": (["schedule.max_iters=0"], "0"),
    "schedule.batch_size": (["schedule.batch_size=0"], "0"),
    "schedule.eval_batch_size": (["schedule.eval_batch_size=0"], "0"),
    "schedule.warmup_iters": (["schedule.warmup_iters=-1"], "-1"),
    "schedule.warmup_factor": (["schedule.warmup_factor=0"], "0"),
    "schedule.decay": (["schedule.decay=linear"], "linear"),
    "schedule.steps": (["schedule.steps=[100,-5]"], "[100, -5]"),
    "schedule.gamma": (["schedule.gamma=0"], "0"),
    "schedule.min_lr_factor": (["schedule.min_lr_factor=1.5"], "1.5"),
    "schedule.log_every": (["schedule.log_every=0"], "0"),
    "schedule.checkpoint_every": (["schedule.checkpoint_every=0"], "0"),
    "schedule.eval_every": (["schedule.eval_every=0"], "0"),
    "schedule.stop_after": (["schedule.stop_after=0"], "0"),
    "dataset.min_size": (["dataset.min_size=0"], "0"),
    "dataset.max_size": (["dataset.max_size=100"], "100"),  # below min_size 192
    "dataset.size_divisible": (["dataset.size_divisible=0"], "0"),
    "dataset.min_box_size": (["dataset.min_box_size=-1"], "-1"),
    "dataset.on_bad_image": (["dataset.on_bad_image=ignore"], "ignore"),
    "dataset.others": (["dataset.others=keep"], "keep"),
    "dataset.generator.image_size": (["dataset.generator.image_size=0"], "0"),
    "dataset.generator.num_train": (["dataset.generator.num_train=0"], "0"),
    "dataset.generator.num_val": (["dataset.generator.num_val=0"], "0"),
    "dataset.generator.num_classes": (["dataset.generator.num_classes=0"], "0"),
    "dataset.generator.empty_fraction": (["dataset.generator.empty_fraction=2"], "2"),
    "dataset.generator.crowd_fraction": (["dataset.generator.crowd_fraction=-0.1"], "-0.1"),
    "model.prior_prob": (["model.prior_prob=0"], "0"),
    "model.score_thresh": (["model.score_thresh=1.5"], "1.5"),
    "model.nms_thresh": (["model.nms_thresh=-0.5"], "-0.5"),
    "model.topk_candidates": (["model.topk_candidates=0"], "0"),
    "model.detections_per_img": (["model.detections_per_img=0"], "0"),
    "model.head_convs": (["model.head_convs=-1"], "-1"),
    "model.head_width": (["model.head_width=0"], "0"),
    "model.backbone.fpn_channels": (["model.backbone.fpn_channels=0"], "0"),
    "model.box_loss.beta": (["model.box_loss.beta=-0.1"], "-0.1"),
    "model.normalizer.ema_momentum": (["model.normalizer.ema_momentum=1.0"], "1.0"),
    "assigner.fg_iou_thresh": (["assigner.fg_iou_thresh=1.2"], "1.2"),
    "assigner.bg_iou_thresh": (["assigner.bg_iou_thresh=0.7"], "0.7"),  # above fg 0.5
    "assigner.min_pos_iou": (["assigner.min_pos_iou=1.1"], "1.1"),
    "assigner.ignore_ioa_thresh": (["assigner.ignore_ioa_thresh=-1"], "-1"),
    "assigner.topk": (["assigner=atss", "assigner.topk=0"], "0"),
    "loss.alpha": (["loss=focal", "loss.alpha=1.5"], "1.5"),
    "loss.gamma": (["loss=focal", "loss.gamma=-1"], "-1"),
    "loss.beta": (["+loss.beta=-2"], "-2"),  # QFL's beta
    "loss.bg_weight": (["loss=softmax_bg", "loss.bg_weight=-1"], "-1"),
    "loss.batch_per_image": (["loss=ohem", "loss.batch_per_image=0"], "0"),
    "loss.positive_fraction": (["loss=sampling", "loss.positive_fraction=1.5"], "1.5"),
    "loss.nms_thresh": (["loss=ohem", "loss.nms_thresh=1.5"], "1.5"),
    "loss.bins": (["loss=ghmc", "loss.bins=0"], "0"),
    "loss.momentum": (["loss=ghmc", "loss.momentum=1"], "1"),
}


def test_every_rule_has_a_case():
    assert sorted(BAD) == sorted(r.key for r in RULES)


@pytest.mark.parametrize("key", sorted(BAD))
def test_a_value_out_of_range_is_one_line_naming_the_key(key):
    overrides, shown = BAD[key]
    cfg = compose_config(overrides)
    rule = next(r for r in RULES if r.key == key)
    assert violations(cfg) == [f"{key}={shown}: expected {rule.expected}"]
    with pytest.raises(ConfigError, match=f"^{key}="):
        check(cfg)


def _configs(group):
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize("overrides", [[]] + [[f"experiment={e}"] for e in _configs("experiment")]
                         + [[f"loss={x}"] for x in _configs("loss")] + [[f"dataset={d}"] for d in _configs("dataset")]
                         + [[f"model/backbone={b}"] for b in _configs("model/backbone")])
def test_every_shipped_config_is_valid(overrides):
    assert violations(compose_config(overrides)) == []


def test_null_means_off_only_where_the_rule_says_so():
    cfg = compose_config(["optim.clip_grad_norm=null", "schedule.checkpoint_every=null", "schedule.eval_every=null",
                          "loss.alpha=null", "model.normalizer.ema_momentum=null"])
    assert violations(cfg) == []
    assert violations(compose_config(["optim.lr=null"])) == ["optim.lr=null: expected a number > 0"]


def test_a_rule_for_a_key_the_config_lacks_does_not_apply():
    cfg = OmegaConf.create({"optim": {"lr": 0.1}, "assigner": {"topk": 9}})  # no schedule, no loss
    assert violations(cfg) == []
    assert violations(OmegaConf.create({"assigner": {"topk": 0.5}})) == ["assigner.topk=0.5: expected an integer >= 1"]


def test_the_batch_must_split_over_the_processes(monkeypatch):
    cfg = compose_config(["schedule.batch_size=8"])
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert violations(cfg) == ["schedule.batch_size=8: expected an integer >= 1 divisible by the number of "
                               "processes (WORLD_SIZE)"]
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert violations(cfg) == []


def test_a_boolean_is_not_a_number():
    assert violations(compose_config(["schedule.max_iters=true"])) == [
        "schedule.max_iters=True: expected an integer >= 1"]


def _train(*args, env=None):
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_the_command_line_says_one_line_per_bad_value_and_exits_2(tmp_path):
    run_dir = tmp_path / "run"
    out = _train("optim.lr=-0.1", "schedule.batch_size=0", f"hydra.run.dir={run_dir}")
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "optim.lr=-0.1: expected a number > 0",
        "schedule.batch_size=0: expected an integer >= 1 divisible by the number of processes (WORLD_SIZE)"]
    assert not run_dir.exists()  # refused before Hydra made the folder
    # in a dry run too, and in each job of a sweep
    assert _train("optim.lr=0", "dry_run=true", f"hydra.run.dir={run_dir}").returncode == 2
    sweep = _train("-m", "optim.lr=-0.1,-0.2", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert sweep.returncode == 2 and "optim.lr=-0.1: expected a number > 0" in sweep.stderr
    assert "Traceback" not in sweep.stderr
    # a value valid alone but not on this device
    cpu16 = _train("device=cpu", "amp=fp16", f"hydra.run.dir={run_dir}")
    assert cpu16.returncode == 2 and cpu16.stderr.startswith("amp=fp16: fp16 needs a CUDA device")


@pytest.mark.parametrize("debug", [["debug=true"], ["HYDRA_FULL_ERROR=1"]])
def test_debug_keeps_the_traceback(tmp_path, debug):
    args, env = (debug, None) if debug[0].startswith("debug") else ([], dict([debug[0].split("=")]))
    out = _train("optim.lr=-0.1", *args, f"hydra.run.dir={tmp_path / 'run'}", env=env)
    assert out.returncode != 0 and "Traceback" in out.stderr and "ConfigError: optim.lr=-0.1" in out.stderr
