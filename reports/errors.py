"""The report's ``## Background errors`` section: where each method's false positives go.

Reads each run's ``analysis/`` (written when the run ended, ``analysis/callback.py``;
``python -m tools.analysis_callback RUN_DIR`` for older runs) and compares the methods on four
numbers, each as mean ± sample std [95% t interval] over the method's finished seeds
(``reports.stats.summary``, as AP in the accuracy table):

    Bkg dAP50        errors.json "Bkg": the AP50 gained by removing only the background false
                     positives (TIDE: IoU <= 0.1 with every box of any class), AP points
    FalsePos dAP50   errors.json "FalsePos": the AP50 gained by removing every false positive
    BG band          bands.json: the area of the COCO-analyze BG band (BG curve minus Oth curve;
                     IoU .1, class confusions forgiven): the AP lost to background, in points
    bkg FPs / image  errors.json counts["Bkg"] / "images": TIDE background errors per evaluated
                     image, among the detections the run kept (score >= model.score_thresh,
                     at most 100 per image)
    bkg FPs / image at recall .8
                     errors.json "bkg_vs_recall": the same count at the score threshold where
                     recall (IoU .5, classes pooled) first reaches RECALL (None: never reached)
    bkg FPs / image at recall r
                     where some analyzed run never reaches RECALL, the same at the highest of
                     .7, .6, ..., .1 that every one reaches (``common_recall``; coco_person's
                     runs stop at .45-.59), one level for every method
    bg anchors >= thresh / image
                     anchor_scores.json: background anchors whose highest foreground score is
                     >= model.score_thresh, per image (candidates for false positives before NMS)

and draws each method's mean overall precision-recall curve at IoU .5 (bands.json "pr" C50)
in ``plots/pr_overlay.png``, its mean background false positives per image against recall in
``plots/bkg_recall_overlay.png``, and its anchor score histograms (counts summed over seeds)
in ``plots/anchor_scores.png``. Diverged and unfinished runs are never averaged; finished runs
without an analysis are named. No run with an analysis: no section.

    md_lines = errors_section(groups, out / "plots")
"""

import json
import math
from pathlib import Path

from matplotlib.figure import Figure

from analysis.errors import MAIN_TYPES, SPECIAL_TYPES
from analysis.folder import analysis_dir
from analysis.markdown import markdown_table
from analysis.plots import method_axes, plot_bkg_vs_recall, plot_histograms, save_figure
from reports.runs import Run
from reports.stats import summary

PLOT = "pr_overlay.png"
BKG_RECALL_PLOT = "bkg_recall_overlay.png"
SCORES_PLOT = "anchor_scores.png"
RECALL = 0.8  # the recall at which background false positives per image are compared,
RECALL_LEVELS = (RECALL, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)  # or the highest of these every run reaches
# key -> column title; the CSV's columns are <key>_mean, _std, _lo, _hi, _n (and bkg_recall: the
# level of bkg_at_common, a column of the report only where it is below RECALL)
VALUES = {"bkg_dap50": "Bkg dAP50", "falsepos_dap50": "FalsePos dAP50", "bg_band": "BG band (AP)",
          "bkg_per_image": "bkg FPs / image", "bkg_at_recall": f"bkg FPs / image at recall {RECALL}",
          "bkg_at_common": "bkg FPs / image at recall", "bg_anchors_above": "bg anchors >= thresh / image"}


def read_analysis(run: Run) -> tuple[dict | None, str | None]:
    """(the run's values of VALUES plus "tide" (errors.json's dAP50 of every TIDE error type),
    "c50" (101 precisions or None), "bkg_curve" (the bkg_vs_recall dict or None) and "hist"
    (anchor_scores.json or None), None), or (None, why not): no analysis/, or a file unreadable. A value the files do not hold is None. A run read from results tables
    (``run.analysis`` set) has them from there."""
    if run.analysis is not None:
        return run.analysis
    if run.dir is None:
        return None, "no analysis recorded"
    folder = analysis_dir(run.dir)
    if not (folder / "errors.json").is_file():
        return None, "no analysis/"
    try:
        errors = json.loads((folder / "errors.json").read_text())
        bands_path = folder / "bands.json"
        bands = json.loads(bands_path.read_text()) if bands_path.is_file() else {}
        scores_path = folder / "anchor_scores.json"
        hist = json.loads(scores_path.read_text()) if scores_path.is_file() else None
        images, bkg = errors.get("images"), (errors.get("counts") or {}).get("Bkg")
        curve = errors.get("bkg_vs_recall")
        values = {"tide": {k: errors.get(k) for k in (*MAIN_TYPES, *SPECIAL_TYPES)},
                  "bkg_dap50": errors.get("Bkg"), "falsepos_dap50": errors.get("FalsePos"),
                  "bg_band": _bg_area(bands),
                  "bkg_per_image": bkg / images if images and bkg is not None else None,
                  "bkg_at_recall": _at_recall(curve, RECALL),
                  "bg_anchors_above": (hist or {}).get("bg_above_thresh_per_image"),
                  "c50": (bands.get("pr") or {}).get("C50"), "bkg_curve": curve, "hist": hist}
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as e:
        return None, f"analysis/ unreadable ({type(e).__name__}: {str(e)[:80]})"
    return values, None


def _at_recall(curve: dict | None, recall: float) -> float | None:
    """bkg_vs_recall's background false positives per image at ``recall`` (a level it holds)."""
    if not curve:
        return None
    levels = curve["recall"]
    i = min(range(len(levels)), key=lambda j: abs(levels[j] - recall))
    return curve["bkg_per_image"][i] if abs(levels[i] - recall) < 1e-6 else None


def _recall_why(recall: float) -> str:
    """The note on the column at ``common_recall``'s level, where it is below RECALL."""
    if recall >= RECALL:
        return ""
    return (f"; **at recall {recall}**: the same where some run stops short of {RECALL}, at the highest of .7, .6, ..."
            " that every run here reaches: one recall for every method")


def _bg_area(bands: dict) -> float | None:
    """The BG band's area in AP points: bands.json's "overall_area", else (a bands.json written
    before it had one) BG's AP minus the AP of the band before it."""
    area = (bands.get("overall_area") or {}).get("BG")
    if area is None:
        order, ap = bands.get("bands") or [], bands.get("overall") or {}
        if "BG" not in order or order.index("BG") == 0:
            return None
        before, bg = ap.get(order[order.index("BG") - 1]), ap.get("BG")
        if before is None or bg is None or before < 0 or bg < 0:  # -1: no ground truth
            return None
        area = bg - before
    return 100.0 * area


def common_recall(curves: list[dict]) -> float:
    """The recall level of RECALL_LEVELS at which ``curves`` (bkg_vs_recall dicts) are compared:
    RECALL when every curve reaches it, else the highest level every one reaches (RECALL when
    none reaches any: its column is empty).

    >>> up_to = lambda top: {"recall": [i / 10 for i in range(11)], "bkg_per_image": [1.0 if i <= top else None for i in range(11)]}
    >>> common_recall([up_to(9), up_to(8)]), common_recall([up_to(9), up_to(4)]), common_recall([up_to(0)]), common_recall([])
    (0.8, 0.4, 0.8, 0.8)
    """
    reached = [level for level in RECALL_LEVELS if all(_at_recall(c, level) is not None for c in curves)]
    return reached[0] if reached else RECALL


def errors_summary(groups: dict[str, list[Run]]) -> dict[str, dict]:
    """Per method: {"n": finished runs with an analysis, "missing": [(run name, why)] of its
    finished runs without one, key of VALUES: ``reports.stats.summary`` of the values
    ("bkg_at_common" at "recall", the same ``common_recall`` level for every method), "c50":
    the mean curve over its runs with one (None if none)}."""
    read = {}
    for label, runs in groups.items():
        read[label] = [(run, *read_analysis(run)) for run in runs if run.status == "finished"]
    recall = common_recall([v["bkg_curve"] for runs in read.values() for _, v, _ in runs if v and v["bkg_curve"]])
    out = {}
    for label, runs in read.items():
        values = [{**v, "bkg_at_common": _at_recall(v["bkg_curve"], recall) if v["bkg_curve"] else None}
                  for _, v, _ in runs if v is not None]
        missing = [(run.name, why) for run, v, why in runs if v is None]
        row = {"n": len(values), "missing": missing, "recall": recall}
        for k in VALUES:
            row[k] = summary(v[k] for v in values)
        # every TIDE error type's dAP50, mean over the runs (Cls, Loc, Both, Dupe, Bkg, Miss)
        row["tide"] = {t: summary((v.get("tide") or {}).get(t) for v in values)["mean"] for t in MAIN_TYPES}
        curves = [v["c50"] for v in values if isinstance(v["c50"], list) and len(v["c50"]) == 101]
        row["c50"] = [math.fsum(c[i] for c in curves) / len(curves) for i in range(101)] if curves else None
        row["c50_n"] = len(curves)
        row["bkg_curve"], row["bkg_curve_n"] = _mean_bkg_curve([v["bkg_curve"] for v in values if v["bkg_curve"]])
        hists = [v["hist"] for v in values if v["hist"]]
        row["hist"] = ({"edges": hists[0]["edges"], "fg": [sum(c) for c in zip(*(h["fg"] for h in hists))],
                        "bg": [sum(c) for c in zip(*(h["bg"] for h in hists))], "n": len(hists),
                        "score_thresh": hists[0]["score_thresh"]}
                       if hists and all(same_edges(h["edges"], hists[0]["edges"]) for h in hists) else None)
        out[label] = row
    return out


def same_edges(a: list[float], b: list[float]) -> bool:
    """Whether two histograms' bin edges are the same bins. Compared to 1e-9, not exactly: the
    edges (``np.logspace``) differ in the last bit between CPUs (1e-05 on one, 9.999999999999999e-06
    on another), and a study's runs come from several machines."""
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(a, b))


def _mean_bkg_curve(curves: list[dict]) -> tuple[dict | None, int]:
    """The mean background false positives per image at each recall level that every run
    reached (a level some run never reached is left out: averaging only the runs that got
    there would flatter the method), and the number of runs."""
    curves = [c for c in curves if c["recall"] == curves[0]["recall"]] if curves else []
    if not curves:
        return None, 0
    mean = [math.fsum(c["bkg_per_image"][i] for c in curves) / len(curves)
            if all(c["bkg_per_image"][i] is not None for c in curves) else None
            for i in range(len(curves[0]["recall"]))]
    return {"recall": curves[0]["recall"], "bkg_per_image": mean}, len(curves)


def csv_columns(row: dict | None) -> dict:
    """A method's summary as report.csv's columns (<key>_mean, _std, _lo, _hi, _n, and
    bkg_recall: the recall of bkg_at_common); empty values without an analysis."""
    cols = {}
    for k in VALUES:
        s = (row or {}).get(k) or {}
        cols.update({f"{k}_{f}": s.get(f) for f in ("mean", "std", "lo", "hi")})
        cols[f"{k}_n"] = s.get("n", 0)
    cols["bkg_recall"] = (row or {}).get("recall")  # the level of bkg_at_common
    return cols


CSV_FIELDS = [f"{k}_{f}" for k in VALUES for f in ("mean", "std", "lo", "hi", "n")] + ["bkg_recall"]


def _cell(s: dict, n: int, fmt: str) -> str:
    if s["mean"] is None:
        return "–"
    text = f"{s['mean']:{fmt}}"
    if s["std"] is not None:
        text += f" ± {s['std']:{fmt}} [{s['lo']:{fmt}}, {s['hi']:{fmt}}]"
    return text + ("" if s["n"] == n else f" (n={s['n']})")


def plot_pr_overlay(curves: dict[str, tuple[list[float], int]], path) -> None:
    """Each method's mean precision at IoU .5 against recall: ``label -> (101 precisions, n runs)``."""
    recall = [i / 100 for i in range(101)]
    fig = Figure(figsize=(6.5, 4.8))
    ax = method_axes(fig)
    for label, (curve, n) in curves.items():
        ap = math.fsum(curve) / len(curve)
        ax.plot(recall, curve, label=f"{label} (AP50 {100 * ap:.1f}, n={n})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title="Precision-recall at IoU .5, all classes (mean over seeds)")
    save_figure(fig, path, legend_axes=[ax], loc="lower left")


def errors_section(groups: dict[str, list[Run]], plots_dir, summaries: dict | None = None) -> list[str]:
    """``## Background errors`` as markdown lines, and ``plots_dir/pr_overlay.png`` (linked as
    ``plots/pr_overlay.png``: the report sits beside plots/). [] when no finished run has an
    analysis; then no plot is written. ``summaries``: ``errors_summary(groups)`` if already made."""
    rows = errors_summary(groups) if summaries is None else summaries
    if not any(r["n"] for r in rows.values()):
        return []
    recall = next(iter(rows.values()))["recall"]
    md = ["## Background errors", "",
          "From each run's `analysis/` (its detections against the ground truth of the images it was "
          "evaluated on; `analysis/analyze.py`). Per method, mean ± std [95% t interval] over its finished seeds "
          "with an analysis (n): **Bkg dAP50**, the AP50 gained by removing only the background false positives "
          "(TIDE: IoU <= 0.1 with every box of any class); **FalsePos dAP50**, by removing every false positive; "
          "**BG band**, the area of the COCO-analyze BG band (IoU .1, class confusions forgiven): the AP lost to "
          "background; all three in AP points. **bkg FPs / image**: background errors per evaluated image among the "
          f"detections the run kept (score >= `model.score_thresh`, at most 100 per image); **at recall {RECALL}**: the "
          f"same at the score threshold where the run's recall (IoU .5, classes pooled) first reaches {RECALL} (– if it "
          f"never does){_recall_why(recall)}. **bg anchors >= thresh / image**: background anchors (matcher label K) "
          "whose highest foreground score is at least `model.score_thresh`, per image, before NMS.", ""]
    shown = {k: f"{title} {recall}" if k == "bkg_at_common" else title for k, title in VALUES.items()
             if k != "bkg_at_common" or recall < RECALL}
    md += markdown_table(["method", "n", *shown.values()],
                         [[label, r["n"], *(_cell(r[k], r["n"], ".2f") for k in shown)] for label, r in rows.items()])
    if any(v is not None for r in rows.values() for v in r["tide"].values()):
        md += ["", "Where the AP50 goes, per TIDE error type (dAP50: the AP50 gained by fixing only that type; mean "
               "over the same runs): Cls, a right box with the wrong class; Loc, the right class poorly placed; Both; "
               "Dupe, a duplicate; Bkg, a detection on background; Miss, a ground-truth box never detected.", ""]
        md += markdown_table(["method", "n", *MAIN_TYPES],
                             [[label, r["n"], *("–" if r["tide"][t] is None else f"{r['tide'][t]:.2f}"
                                                for t in MAIN_TYPES)] for label, r in rows.items()])
    curves = {label: (r["c50"], r["c50_n"]) for label, r in rows.items() if r["c50"] is not None}
    if curves:
        plots_dir = Path(plots_dir)
        plots_dir.mkdir(parents=True, exist_ok=True)
        plot_pr_overlay(curves, plots_dir / PLOT)
        md += ["", f"![Precision-recall at IoU .5](plots/{PLOT})"]
    bkg_curves = {f"{label} (n={r['bkg_curve_n']})": r["bkg_curve"] for label, r in rows.items() if r["bkg_curve"]}
    if bkg_curves:
        Path(plots_dir).mkdir(parents=True, exist_ok=True)
        plot_bkg_vs_recall(bkg_curves, Path(plots_dir) / BKG_RECALL_PLOT,
                           title="Background false positives per image against recall (mean over seeds)")
        md += ["", f"![Background false positives against recall](plots/{BKG_RECALL_PLOT})"]
    hists = {f"{label} (n={r['hist']['n']})": r["hist"] for label, r in rows.items() if r["hist"]}
    if hists:
        Path(plots_dir).mkdir(parents=True, exist_ok=True)
        plot_histograms(hists, Path(plots_dir) / SCORES_PLOT, next(iter(hists.values()))["score_thresh"])
        md += ["", "Each method's anchors by their highest foreground score on the evaluated images, foreground "
               "and background as shares of their own totals (summed over seeds; `analysis/anchor_scores.py`):", "",
               f"![Anchor scores](plots/{SCORES_PLOT})"]
    missing = [f"{name} ({why})" for r in rows.values() for name, why in r["missing"]]
    if missing:
        md += ["", "Finished runs not in these numbers: " + "; ".join(missing) +
               " (`python -m tools.analysis_callback RUN_DIR` writes a run's analysis)."]
    return md + [""]
