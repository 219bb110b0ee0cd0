"""reports/runs.py: a run's loss named by its class, as the run names and the config group name it."""

import pytest

from reports.runs import Run, config_loss_name, loss_name


@pytest.mark.parametrize("target, name", [("losses.focal.FocalLoss", "focal"),
                                          ("losses.bce_alpha.AlphaBCELoss", "bce_alpha"),  # not its parent's "focal"
                                          ("losses.sampling.RandomSamplingLoss", "sampling"),
                                          ("losses.softmax_focal.SoftmaxFocalLoss", "softmax_focal")])
def test_the_loss_is_named_by_its_class(tmp_path, target, name):
    config = {"loss": {"_target_": target}}
    assert config_loss_name(config) == name
    assert loss_name(Run(tmp_path, "r", config=config)) == name


@pytest.mark.parametrize("config", [None, {}, {"loss": None}, {"loss": {"gamma": 2.0}},
                                    {"loss": {"_target_": "losses.gone.GoneLoss"}},  # a loss removed since the run
                                    {"loss": {"_target_": "losses.focal.NoSuchLoss"}}])
def test_no_name_without_a_loss_class_in_this_checkout(config):
    assert config_loss_name(config) is None
