"""Every finished run's error analysis (analysis/analyze.py's ``analyze_run``) in ``<run>/analysis/``.

A Hydra callback, so train.py does not change: when a job ends, a run that finished with a
final evaluation gets the analysis of its ``detections.json`` against the ground truth of the
images it was evaluated on (the val set, or the tuning split with ``eval_split=tune``), exactly
the images and categories ``detection.evaluation.coco_evaluate`` scored, so errors.json's AP50
is the run's eval.json AP50 (in points). configs/config.yaml enables it for every run, single
and multirun::

    hydra:
      callbacks:
        analysis:
          _target_: analysis.callback.AnalysisCallback
          per_class: false     # true: also a bands figure per class (~0.1 s each)
          score_thresh: 0.3    # the confusion matrix's score threshold
          anchor_scores: true  # the score histograms of background and foreground anchors
          gallery: 0           # N > 0: the N top background false positives drawn (gallery.png)

The settings live under ``hydra.callbacks`` rather than in the run's config: they do not
change what a run computes, and a key added to the run config would make every earlier run
folder "another configuration" to a rerun sweep. On the command line:
``hydra.callbacks.analysis.per_class=true``.

``<run>/analysis/`` holds what ``analysis.analyze.analyze`` writes (errors.json with
"bkg_vs_recall", bkg_recall.png, bands.json, bands_overall.png, confusion.md, confusion.png;
bands.json with the overall band areas and the C50 curve the report overlays), and in
errors.json ``"images"``, the number of evaluated images (background false positives per
image = ``counts["Bkg"] / images``), and ``"split"`` (val | tune). With ``anchor_scores``
(the default) also anchor_scores.json and .png (analysis/anchor_scores.py: the final weights run
once more over the evaluated images, about the cost of one evaluation); with ``gallery=N``
gallery.png (analysis/gallery.py).

The folder is written whole (a temporary folder renamed into place): a reader sees the old
analysis or the new one. Skipped: dry runs, failed or diverged jobs, runs without a final
evaluation (``eval_at_end=false``, ``schedule.stop_after``), ranks other than 0, and runs whose
analysis was made from their current detections.json (analysis/source.txt: a rerun sweep keeps
it; it also fills in the analysis of finished runs that have none). Any error is logged with its traceback, never
raised: the run's results are on disk, and

    python -m tools.analysis_callback RUN_DIR [RUN_DIR ...] [--per-class] [--score-thresh 0.3]
                                      [--no-anchor-scores] [--gallery N]

(re)writes the analysis of finished run folders, e.g. those from before this callback.
"""

import logging
import time
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("anchorbg.analysis")


class AnalysisCallback(Callback):
    """Writes ``<run>/analysis/`` when a job ends (see the module docstring).

    Args:
        per_class: also a bands figure per class (bands_<class>.png).
        score_thresh: the confusion matrix's score threshold.
        anchor_scores: also the anchor score histograms (anchor_scores.json, .png).
        gallery: N > 0 also draws the N top background false positives (gallery.png).
    """

    def __init__(self, per_class: bool = False, score_thresh: float = 0.3, anchor_scores: bool = True,
                 gallery: int = 0):
        if not (isinstance(gallery, int) and gallery >= 0):
            raise ValueError(f"hydra.callbacks.analysis.gallery={gallery!r}: expected a number of images >= 0")
        self.per_class, self.score_thresh = bool(per_class), float(score_thresh)
        self.anchor_scores, self.gallery = bool(anchor_scores), gallery

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        run_dir = None
        try:
            if config.get("dry_run"):
                return
            from detection.distributed import env_rank

            if env_rank() > 0:  # torchrun: rank 0 wrote the run folder
                return
            run_dir = Path(config.hydra.runtime.output_dir)
            if job_return.status != JobStatus.COMPLETED:  # its error is logged already
                return
            from analysis.analyze import analyze_run  # matplotlib, pycocotools: only when used
            from analysis.folder import skip_reason

            why = skip_reason(run_dir)
            if why is not None:
                log.info("no error analysis of %s: %s", run_dir, why)
                return
            t0 = time.perf_counter()
            out = analyze_run(run_dir, self.per_class, self.score_thresh, self.anchor_scores, self.gallery)
            log.info("error analysis: %s (%.1f s)", out, time.perf_counter() - t0)
        except Exception:
            log.exception("could not write the error analysis of run %s; `python -m tools.analysis_callback %s` "
                          "retries it", run_dir, run_dir)
