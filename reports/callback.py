"""A Hydra callback that writes the sweep's report (tools.report) when a multirun ends.

configs/config.yaml enables it for every sweep::

    hydra:
      callbacks:
        report:
          _target_: reports.callback.ReportCallback

Multiruns started with ``dry_run=true`` get no report (they trained nothing) but the sum of
their jobs' estimated times.
"""

import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
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
        self.estimates: list[float] = []  # dry run: each job's estimated seconds

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.get("dry_run") and job_return.status == JobStatus.COMPLETED:
            self.estimates.append(float(job_return.return_value))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = None
        try:
            if config.get("dry_run"):  # train.py trained nothing: there is nothing to report
                from detection.build import duration

                log.info("dry run: %d jobs, ~%s in all on this machine (training, start-up, evaluations, "
                         "analysis), one after another; no sweep report",
                         len(self.estimates), duration(sum(self.estimates)))
                return
            sweep_dir = Path(config.hydra.sweep.dir)
            # Imported here so that even a broken import (matplotlib missing, say) is logged
            # rather than raised from the sweep.
            from reports.sweep import write_report

            path = write_report(sweep_dir, self.out)
            log.info("sweep report: %s", path)
        except Exception:
            log.exception("could not write the report of sweep %s; run `python -m tools.report %s` "
                          "to retry", sweep_dir, sweep_dir)
