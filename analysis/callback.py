"""Every finished run's error analysis (analysis/analyze.py) in ``<run>/analysis/``.

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

import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("anchorbg.analysis")
SOURCE = "source.txt"  # in analysis/: the stamp of the detections.json it was made from

ANALYSIS = "analysis"  # the folder inside a run folder


def analysis_dir(run_dir) -> Path:
    return Path(run_dir) / ANALYSIS


def skip_reason(run_dir, force: bool = False) -> str | None:
    """Why the run folder gets no (new) analysis, or None when it should get one."""
    from detection.run_folder import RunFolder

    folder = RunFolder(run_dir)
    try:
        status = folder.read_status()
    except ValueError as e:
        return f"status.json unreadable ({e})"
    if status is None:
        return "no status.json"
    if status["status"] != "finished":
        return f"the run is {status['status']}"
    if status.get("AP") is None:
        return "no final evaluation (eval_at_end=false or a stop_after slice)"
    if not folder.detections.is_file():
        return "no detections.json"
    if not force:
        made_from, errors = analyzed_detections(run_dir), analysis_dir(run_dir) / "errors.json"
        if made_from == detections_stamp(folder.detections) or (  # an analysis from before source.txt:
                made_from is None and errors.is_file() and errors.stat().st_mtime >= folder.detections.stat().st_mtime):
            return "analysis/ is up to date"
    return None


def detections_stamp(path: Path) -> str:
    """What tells one detections.json from a rewritten one: its size and mtime in ns. Kept in
    analysis/source.txt, so a detections.json written again within the file system's clock
    tick after an analysis is still seen as new (comparing the two files' mtimes is not)."""
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def analyzed_detections(run_dir) -> str | None:
    """The stamp of the detections.json the current analysis/ was made from (None: none)."""
    try:
        return (analysis_dir(run_dir) / SOURCE).read_text().strip()
    except OSError:
        return None


def evaluated_ground_truth(coco, image_ids, cat_ids):
    """A pycocotools COCO holding only ``image_ids``, ``cat_ids`` and their annotations: what
    COCOeval scores with ``params.imgIds = image_ids`` and ``params.catIds = cat_ids``
    (``detection.evaluation.coco_evaluate``). Annotations of other categories are left out
    there as here: a detection on such an object is a false positive (TIDE: Bkg)."""
    from pycocotools.coco import COCO

    images, cats = set(image_ids), set(cat_ids)
    d = coco.dataset
    subset = COCO()
    subset.dataset = {"images": [im for im in d["images"] if im["id"] in images],
                      "categories": [c for c in d["categories"] if c["id"] in cats],
                      "annotations": [a for a in d["annotations"] if a["image_id"] in images and a["category_id"] in cats]}
    with contextlib.redirect_stdout(io.StringIO()):  # "creating index..."
        subset.createIndex()
    return subset


def _update_json(path: Path, **extra) -> None:
    from detection.run_folder import write_json_atomic

    write_json_atomic(path, {**json.loads(path.read_text()), **extra})


def analyze_run(run_dir, per_class: bool = False, score_thresh: float = 0.3, anchor_scores: bool = True,
                gallery: int = 0) -> Path:
    """Writes ``<run_dir>/analysis/`` for a finished run folder; returns its path.

    The evaluated images come from the run's own resolved config (config.yaml) through
    ``detection.build.datasets``, as train.py built them; what the analysis prints goes to
    the log.
    """
    from omegaconf import OmegaConf

    from detection import build
    from detection.run_folder import RunFolder
    from analysis.analyze import analyze
    from analysis.anchor_scores import anchor_scores as write_anchor_scores
    from analysis.anchor_scores import format_summary
    from analysis.coco_files import load_results
    from analysis.gallery import gallery as write_gallery

    folder = RunFolder(run_dir)
    if not folder.config.is_file():
        raise FileNotFoundError(f"{folder.config} not found: the analysis needs the run's resolved config")
    cfg = OmegaConf.load(folder.config)
    eval_ds = build.datasets(cfg)[1]
    coco_gt = evaluated_ground_truth(eval_ds.coco, eval_ds.image_ids, eval_ds.cat_ids)
    stamp = detections_stamp(folder.detections)  # before reading: a later rewrite makes it stale
    detections = load_results(folder.detections, coco_gt)

    out = analysis_dir(run_dir)
    tmp = out.with_name(f".{ANALYSIS}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            analyze(coco_gt, detections, tmp, per_class=per_class, score_thresh=score_thresh)
            if anchor_scores and folder.checkpoint.is_file():
                print(format_summary(write_anchor_scores(cfg, eval_ds, folder.checkpoint, tmp)))
            elif anchor_scores:  # e.g. a records copy (studies/records.py leaves checkpoints out)
                print(f"no anchor scores: {folder.checkpoint} not found (they need the run's final weights)")
            if gallery:
                write_gallery(coco_gt, detections, eval_ds.images_dir, tmp / "gallery.png", gallery)
        _update_json(tmp / "errors.json", images=len(eval_ds.image_ids), split=str(cfg.eval_split))
        (tmp / SOURCE).write_text(stamp + "\n")
        old = out.with_name(f".{ANALYSIS}.old{os.getpid()}")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for line in printed.getvalue().splitlines():
        log.info("%s", line)
    return out


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


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(prog="python -m tools.analysis_callback",
                                     description="(Re)write the error analysis (analysis/) of finished run folders.")
    parser.add_argument("run_dirs", nargs="+", help="run folders written by train.py")
    parser.add_argument("--per-class", action="store_true", help="also a bands figure per class")
    parser.add_argument("--score-thresh", type=float, default=0.3, help="the confusion matrix's score threshold")
    parser.add_argument("--no-anchor-scores", action="store_true", help="skip the anchor score histograms")
    parser.add_argument("--gallery", type=int, default=0, metavar="N", help="draw the N top background false positives")
    args = parser.parse_args(argv)
    if args.gallery < 0:
        parser.error(f"--gallery {args.gallery}: expected a number of images >= 0")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    written, failed = [], []
    for run_dir in args.run_dirs:
        why = skip_reason(run_dir, force=True)
        if why is not None:
            print(f"{run_dir}: skipped: {why}")
            continue
        try:
            written.append(analyze_run(run_dir, args.per_class, args.score_thresh, not args.no_anchor_scores,
                                       args.gallery))
            print(f"wrote {written[-1]}")
        except (FileNotFoundError, ValueError) as e:
            failed.append(run_dir)
            print(f"{run_dir}: error: {e}", file=sys.stderr)
    if failed:
        sys.exit(f"tools.analysis_callback: {len(failed)} run(s) not analyzed")
    return written


if __name__ == "__main__":
    main()
