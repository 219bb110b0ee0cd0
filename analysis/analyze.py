"""Error analysis of a COCO results file: where the detector's mistakes go.

    python -m tools.analyze RUN [--out DIR] [--per-class] [--score-thresh 0.3]
    python -m tools.analyze ANNOTATIONS.json DETECTIONS.json [--out DIR] [--per-class] [--score-thresh 0.3]

RUN: a run folder, analysed on the images and categories it was evaluated on (its data.json)
with its detections.json. DIR: by default a new folder beside the detections (under the run)
named by what was analysed, e.g. ``<run>/analyze_detections/``; never a run folder or a run's
analysis/ (the run's own record, written when its job ends). Writes into DIR:
- errors.json, printed as a table: TIDE's error breakdown (analysis/errors.py): {"AP50", "Cls",
  "Loc", "Both", "Dupe", "Bkg", "Miss", "FalsePos", "FalseNeg" (dAP50: the AP50 gained by fixing
  only that type), "counts": {main type: count}, "detections": {type: count}}, in AP points (0-100);
- bands.json and bands_overall.png (bands_<class>.png with --per-class): the COCO-analyze
  precision-recall bands C75, C50, Loc, Sim, Oth, BG, FN (analysis/bands.py): each
  band's AP overall and per class, the overall areas ("overall_area") and C50 curve ("pr");
- confusion.md and confusion.png: the (K+1) x (K+1) confusion matrix with a background row and
  column at IoU 0.5 and the score threshold (analysis/confusion.py).

Each analysis is one function ``(coco_gt, detections, out_dir, ...) -> dict`` called by ``analyze``.
``analyze_run`` does it for a finished run folder, into ``<run>/analysis/`` (analysis/callback.py
calls it when a run ends; ``python -m tools.analysis_callback RUN_DIR`` on demand).
"""

import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from analysis.bands import bands, write_band_plots
from analysis.coco_files import load_ground_truth, load_results, output_folder, tool_inputs
from analysis.confusion import confusion_matrix, confusion_table, plot_confusion
from analysis.errors import MAIN_TYPES, SPECIAL_TYPES, ErrorBreakdown, bkg_vs_recall, tide_errors
from analysis.folder import ANALYSIS, SOURCE, analysis_dir, detections_stamp
from analysis.plots import plot_bkg_vs_recall
from detection.run_folder import write_json_atomic

log = logging.getLogger("anchorbg.analysis")


def format_errors(r: ErrorBreakdown) -> str:
    lines = [f"TIDE errors: AP50 {r.ap50:.2f} (IoU foreground 0.5, background 0.1)",
             f"{'type':<9}{'count':>7}{'dAP50':>8}"]
    lines += [f"{t:<9}{r.counts[t]:>7}{r.dap[t]:>8.2f}" for t in MAIN_TYPES]
    lines += [f"{t:<9}{'-':>7}{r.dap[t]:>8.2f}" for t in SPECIAL_TYPES]
    return "\n".join(lines)


def errors(coco_gt, detections, out_dir) -> dict:
    """TIDE's breakdown: printed, and written to out_dir/errors.json with the background false
    positives per image against recall ("bkg_vs_recall", drawn in bkg_recall.png)."""
    r = tide_errors(coco_gt, detections)
    print(format_errors(r))
    num_gt = sum(not a["iscrowd"] for a in coco_gt.dataset["annotations"])
    curve = bkg_vs_recall(r.det_types, [d["score"] for d in detections], num_gt, len(coco_gt.getImgIds()))
    result = {**r.to_json(), "bkg_vs_recall": curve}
    write_json_atomic(os.path.join(out_dir, "errors.json"), result)
    plot_bkg_vs_recall({"": curve}, os.path.join(out_dir, "bkg_recall.png"))
    return result


def pr_bands(coco_gt, detections, out_dir, per_class: bool = False) -> dict:
    """The COCO-analyze bands: bands.json (each band's AP overall and per class) and the figures."""
    result = bands(coco_gt, detections)
    write_band_plots(result, out_dir, classes=None if per_class else ())
    overall = result["overall"]
    has_gt = bool(overall["precision"])  # no ground truth: every band -1, no curves
    summary = {"bands": result["bands"], "skipped": result["skipped"],
               "overall": overall["ap"], "classes": {k: v["ap"] for k, v in result["classes"].items()},
               # each band's area (the AP gained by forgiving that error type; BG: what background
               # false positives cost) and the overall C50 curve, for the sweep report
               "overall_area": overall["area"] if has_gt else None,
               "pr": {"recall": [round(r, 2) for r in result["recall"]],
                      "C50": [round(float(v), 6) for v in overall["precision"]["C50"]] if has_gt else None}}
    write_json_atomic(os.path.join(out_dir, "bands.json"), summary)
    print("PR bands (AP): " + "  ".join(f"{b} {a:.3f}" for b, a in summary["overall"].items()))
    for why in result["skipped"].values():
        print(why)
    return summary


def confusion(coco_gt, detections, out_dir, score_thresh: float = 0.3) -> dict:
    """The confusion matrix with a background row and column: confusion.md and confusion.png."""
    matrix, names = confusion_matrix(coco_gt, detections, score_thresh=score_thresh)
    title = f"IoU 0.5, score >= {score_thresh}"
    with open(os.path.join(out_dir, "confusion.md"), "w") as f:
        f.write("\n".join([f"Confusion matrix ({title}): rows ground truth, columns predicted", "",
                            *confusion_table(matrix, names), ""]))
    plot_confusion(matrix, names, os.path.join(out_dir, "confusion.png"), title=title)
    return {"score_thresh": score_thresh, "names": names, "matrix": matrix.tolist()}


def analyze(coco_gt, detections: list[dict], out_dir, per_class: bool = False, score_thresh: float = 0.3) -> dict:
    """Every analysis of checked COCO results (``analysis.coco_files.check_results``) into out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    return {"errors": errors(coco_gt, detections, out_dir),
            "bands": pr_bands(coco_gt, detections, out_dir, per_class),
            "confusion": confusion(coco_gt, detections, out_dir, score_thresh)}


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

    from analysis.anchor_scores import anchor_scores as write_anchor_scores
    from analysis.anchor_scores import format_summary
    from analysis.gallery import gallery as write_gallery
    from detection import build
    from detection.run_folder import RunFolder

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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", metavar="RUN | ANNOTATIONS.json DETECTIONS.json",
                        help="a run folder, or a COCO instances JSON and a COCO results JSON "
                             "(a list of {image_id, category_id, bbox, score})")
    parser.add_argument("--out", help="folder for the analysis (default: a new one under the run / beside the detections)")
    parser.add_argument("--per-class", action="store_true", help="also a bands figure per class")
    parser.add_argument("--score-thresh", type=float, default=0.3, help="the confusion matrix's score threshold")
    args = parser.parse_args(argv)
    try:
        inputs = tool_inputs(args.paths)
        out = output_folder(args.out, inputs, "analyze", None)
        coco_gt = load_ground_truth(inputs.annotations)
        if inputs.image_ids is not None:  # a run: what its evaluation scored
            coco_gt = evaluated_ground_truth(coco_gt, inputs.image_ids, inputs.cat_ids or coco_gt.getCatIds())
        detections = load_results(inputs.detections, coco_gt)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"tools.analyze: error: {e}")
    result = analyze(coco_gt, detections, out, args.per_class, args.score_thresh)
    print(f"wrote errors.json, bands.json, confusion.md and the figures to {out}")
    return result


if __name__ == "__main__":
    main()
