"""The Hydra callback: the report when a multirun ends, errors logged and never raised. A real
`train.py -m` ending in its report: the tune multirun of tests/analysis/test_callback.py."""

import logging

from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import OmegaConf

from reports.callback import ReportCallback
from tests.sweep_fixtures import make_sweep

TARGET = "reports.callback.ReportCallback"


def sweep_config(sweep_dir):
    return OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}, "seed": 0})


def test_writes_the_report_of_the_sweep(tmp_path, caplog):
    sweep = make_sweep(tmp_path)
    callback = instantiate({"_target_": TARGET})  # as Hydra builds it
    assert isinstance(callback, Callback)
    with caplog.at_level(logging.INFO, logger="anchorbg.report"):
        callback.on_multirun_end(sweep_config(sweep))
    md = (sweep / "report.md").read_text()
    assert "| loss=softmax_bg | 3 | 32.0 ± 2.0 |" in md and (sweep / "report.csv").is_file()
    assert (sweep / "plots" / "ap.png").is_file()
    assert f"sweep report: {sweep / 'report.md'}" in caplog.text


def test_out_folder(tmp_path):
    sweep = make_sweep(tmp_path)
    ReportCallback(out=str(tmp_path / "out")).on_multirun_end(sweep_config(sweep))
    assert (tmp_path / "out" / "report.md").is_file() and not (sweep / "report.md").exists()


def test_errors_are_logged_not_raised(tmp_path, caplog):
    missing = tmp_path / "no_such_sweep"
    with caplog.at_level(logging.ERROR, logger="anchorbg.report"):
        ReportCallback().on_multirun_end(sweep_config(missing))
    assert "could not write the report of sweep" in caplog.text and str(missing) in caplog.text
    assert "does not exist" in caplog.text  # the traceback names the cause

    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="anchorbg.report"):
        ReportCallback().on_multirun_end(OmegaConf.create({"seed": 0}))  # no hydra.sweep.dir at all
    assert "could not write the report" in caplog.text


def test_a_dry_run_sweep_gets_no_report(tmp_path, caplog):
    sweep = make_sweep(tmp_path)
    config = OmegaConf.merge(sweep_config(sweep), {"dry_run": True})
    with caplog.at_level(logging.INFO, logger="anchorbg.report"):
        ReportCallback().on_multirun_end(config)
    assert not (sweep / "report.md").exists() and "dry run" in caplog.text

