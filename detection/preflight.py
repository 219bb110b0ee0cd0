"""Checks before a run does anything: the config's values (``detection.config_rules``) and
that the run folder can be written (``run_folder.probe_writable``). A failure is one line on
stderr and exit status 2; ``HYDRA_FULL_ERROR=1`` or ``debug=true`` raise it with its traceback.

``Preflight`` is a Hydra callback (configs/config.yaml, ``hydra.callbacks.preflight``): it runs
before Hydra creates the run folder and opens train.log in it, so an unwritable folder is
this module's one line rather than a logging traceback. train.py runs the same checks at the
start of every job (each job of a sweep has its own values and folder).
"""

import os
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from detection.config_rules import ConfigError, check
from detection.run_folder import WriteError, probe_writable

USAGE_ERROR = 2  # exit status of a run refused before it started


def debugging(cfg: DictConfig) -> bool:
    """Whether errors keep their traceback: ``debug=true`` or HYDRA_FULL_ERROR=1."""
    return bool(OmegaConf.select(cfg, "debug", default=False)) or os.environ.get("HYDRA_FULL_ERROR") == "1"


def exit_with(error: BaseException, cfg: DictConfig, status: int) -> None:
    """Prints ``error`` (one line per problem) to stderr and exits with ``status``; re-raises
    it instead when debugging."""
    if debugging(cfg):
        raise error
    print(str(error), file=sys.stderr, flush=True)
    sys.exit(status)


def check_or_exit(cfg: DictConfig, folder) -> None:
    """The config's values, then a write into ``folder`` (None: not checked)."""
    try:
        check(cfg)
        if folder is not None:
            probe_writable(folder)
    except (ConfigError, WriteError) as e:
        exit_with(e, cfg, USAGE_ERROR)


class Preflight(Callback):
    """``check_or_exit`` before Hydra makes the run folder (single run) or the sweep folder
    (multirun: the jobs' own values are checked as each starts, by train.py)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        check_or_exit(config, Path(str(config.hydra.run.dir)))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        check_or_exit(config, Path(str(config.hydra.sweep.dir)))
