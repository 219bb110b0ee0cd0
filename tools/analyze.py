"""Error analysis of a COCO results file: where the detector's mistakes go.

    python -m tools.analyze RUN [--out DIR] [--per-class] [--score-thresh 0.3]
    python -m tools.analyze ANNOTATIONS.json DETECTIONS.json [--out DIR] [--per-class] [--score-thresh 0.3]

RUN: a run folder, analysed on the images and categories it was evaluated on (its data.json)
with its detections.json. DIR: by default a new folder beside the detections (under the run)
named by what was analysed, e.g. ``<run>/analyze_detections/``; never a run folder or a run's
analysis/ (the run's own record, written when its job ends). Writes into DIR:
- errors.json, printed as a table: TIDE's error breakdown (tools/errors.py): {"AP50", "Cls",
  "Loc", "Both", "Dupe", "Bkg", "Miss", "FalsePos", "FalseNeg" (dAP50: the AP50 gained by fixing
  only that type), "counts": {main type: count}, "detections": {type: count}}, in AP points (0-100);
- bands.json and bands_overall.png (bands_<class>.png with --per-class): the COCO-analyze
  precision-recall bands C75, C50, Loc, Sim, Oth, BG, FN (tools/analysis_bands.py): each
  band's AP overall and per class, the overall areas ("overall_area") and C50 curve ("pr");
- confusion.md and confusion.png: the (K+1) x (K+1) confusion matrix with a background row and
  column at IoU 0.5 and the score threshold (tools/confusion.py).

Each analysis is one function ``(coco_gt, detections, out_dir, ...) -> dict`` called by ``analyze``.
"""

import argparse
import os
import sys

from matplotlib.figure import Figure

from detection.run_folder import write_json_atomic
from tools.analysis_bands import bands, write_band_plots
from tools.coco_files import load_ground_truth, load_results, output_folder, tool_inputs
from tools.confusion import confusion_matrix, confusion_table, plot_confusion
from tools.errors import MAIN_TYPES, SPECIAL_TYPES, ErrorBreakdown, bkg_vs_recall, tide_errors
from tools.report_plots import method_axes, save_figure


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


def plot_bkg_vs_recall(curves: dict[str, dict], path, title: str | None = None) -> None:
    """Background false positives per image against recall: ``label -> bkg_vs_recall dict``."""
    fig = Figure(figsize=(6, 4.2))
    ax = method_axes(fig)
    for label, c in curves.items():
        pts = [(r, b) for r, b in zip(c["recall"], c["bkg_per_image"]) if b is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label or None)
    ax.set(xlabel="recall (IoU .5, all classes pooled)", ylabel="background false positives / image",
           xlim=(0, 1), title=title or "Background false positives paid for recall")
    ax.set_yscale("symlog", linthresh=0.1)  # the low-recall end (hundredths) and the tail (tens) both readable
    save_figure(fig, path, legend_axes=[ax], loc="upper left")


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
    """Every analysis of checked COCO results (``tools.coco_files.check_results``) into out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    return {"errors": errors(coco_gt, detections, out_dir),
            "bands": pr_bands(coco_gt, detections, out_dir, per_class),
            "confusion": confusion(coco_gt, detections, out_dir, score_thresh)}


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
            from tools.analysis_callback import evaluated_ground_truth

            coco_gt = evaluated_ground_truth(coco_gt, inputs.image_ids, inputs.cat_ids or coco_gt.getCatIds())
        detections = load_results(inputs.detections, coco_gt)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"tools.analyze: error: {e}")
    result = analyze(coco_gt, detections, out, args.per_class, args.score_thresh)
    print(f"wrote errors.json, bands.json, confusion.md and the figures to {out}")
    return result


if __name__ == "__main__":
    main()
