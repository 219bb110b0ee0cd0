"""A Hydra callback that writes the sweep's report (tools.report) when a multirun ends.

configs/config.yaml enables it for every sweep::

    hydra:
      callbacks:
        report:
          _target_: tools.report_callback.ReportCallback

Multiruns started with ``dry_run=true`` get no report: they trained nothing.
"""

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("anchorbg.report")


class ReportCallback(Callback):
    """Writes report.md, report.csv and plots/ into ``hydra.sweep.dir`` (or ``out``).

    A report that cannot be written is logged with its traceback and never raised: the
    sweep's results are already on disk, and ``python -m tools.report SWEEP_DIR`` can be run
    again once the cause is fixed.
    """

    def __init__(self, out: str | None = None):
        self.out = out

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = None
        try:
            if config.get("dry_run"):  # train.py trained nothing: there is nothing to report
                log.info("dry run: no sweep report")
                return
            sweep_dir = Path(config.hydra.sweep.dir)
            # Imported here so that even a broken import (matplotlib missing, say) is logged
            # rather than raised from the sweep.
            from tools.report import write_report

            path = write_report(sweep_dir, self.out)
            log.info("sweep report: %s", path)
        except Exception:
            log.exception("could not write the report of sweep %s; run `python -m tools.report %s` "
                          "to retry", sweep_dir, sweep_dir)
