"""Turns a sweep into a report: report.md (tables, linked plots), report.csv and plots/*.png.

    python -m tools.report SWEEP_DIR [--out DIR]

Reads the run folders only (detection/run_folder.py): it builds no model and loads no data.
Runs are grouped by their overrides except the seed (a "method"); each method gets mean ± sample std
and the 95% t interval over its finished seeds. Sweeps of the paper's Table 1a/1b settings get the
paper's AP beside ours with the rank correlation (reports/paper.py), sweeps of Table 1d's OHEM
settings likewise (reports/table1d.py); sweeps over datasets,
AP against their measured imbalance (reports/imbalance.py); sweeps with model.prior_init on and
off, the paired difference per loss (reports/prior.py); runs with an error analysis
(``<run>/analysis/``), a ``Background errors`` section (reports/errors.py). Diverged runs are flagged and
left out of the means; running, failed and incomplete runs are listed with their status. Also written when a sweep ends by
``reports.callback.ReportCallback``.
"""

import argparse
import csv
import sys
from pathlib import Path

import yaml

from analysis.markdown import markdown_table
from detection.run_folder import STOPPED
from reports.cdf import HARDEST, figure4_numbers
from reports.cost import cost_section
from reports.errors import CSV_FIELDS, csv_columns, errors_section, errors_summary
from reports.imbalance import imbalance_section
from reports.paper import paper_section
from reports.plots import plot_ap, plot_ap_curves, plot_curves, plot_focal_loss, plot_loss_cdf
from reports.prior import prior_section
from reports.runs import (
    CONVERGENCE_HEADER,
    STATS,
    Run,
    bg_per_fg,
    convergence,
    convergence_cells,
    convergence_note,
    groups_of,
    load_runs,
    run_values,
)
from reports.schedule import schedule_section
from reports.stats import mean_std, summary
from reports.table1d import table1d_section

TRAIN = ("loss_cls", "loss_box", "bg_share", "easy_bg_share", "num_fg", "bg_per_fg", "train_s", "images_per_s")
PLOTS = {"ap": "AP per method", "curves": "Training curves", "loss_cdf": "Loss over anchors (Figure 4)",
         "focal_loss": "Focal loss against p_t (Figure 1)"}


def summarize(groups: dict[str, list[Run]]) -> list[dict]:
    """One row per method: counts and, for every value of ``run_values``, mean / std / n over
    the method's finished runs (the AP values over those with an eval.json)."""
    rows = []
    for label, runs in groups.items():
        counted = [r for r in runs if r.status == "finished"]
        others = [r for r in runs if r.status not in ("finished", "diverged")]
        values = [run_values(r) for r in counted]
        row = {"method": label, "runs": len(runs), "n": len(counted),
               "seeds": " ".join(str(r.seed) for r in counted),
               "diverged": sum(r.status == "diverged" for r in runs),
               "not_counted": "; ".join(f"{r.name}: {r.status}" for r in others)}
        for k in STATS + TRAIN:
            row[f"{k}_mean"], row[f"{k}_std"], row[f"{k}_n"] = mean_std(v[k] for v in values)
        ap = summary(v["AP"] for v in values)  # the t interval of the mean AP over the seeds
        row["AP_lo"], row["AP_hi"] = ap["lo"], ap["hi"]
        rows.append(row)
    return rows


def mean_curves(groups: dict[str, list[Run]]) -> dict[str, tuple[list, list, list]]:
    """label -> (iters, classification loss, background share), each the mean over the
    method's finished runs at each logged iteration (over all its runs if none finished)."""
    curves = {}
    for label, runs in groups.items():
        used = [r for r in runs if r.status == "finished" and r.metrics]
        if not used:
            used, label = [r for r in runs if r.metrics], f"{label} (not finished)"
        points: dict[int, list[dict]] = {}
        for r in used:
            for m in r.metrics:
                points.setdefault(m["iter"], []).append(m)
        iters = sorted(points)
        if iters:
            curves[label] = (iters, *([mean_std(m.get(k) for m in points[i])[0] for i in iters]
                                      for k in ("loss_cls", "bg_share")))
    return curves


def convergence_section(groups: dict[str, list[Run]], plots: Path) -> list[str]:
    """``## Convergence``: the mean AP curve of each method's finished runs (plots/ap_curve.png)
    and what its last quarter added; [] when no method has two evaluations."""
    conv = {label: convergence([r for r in runs if r.status == "finished"]) for label, runs in groups.items()}
    conv = {label: c for label, c in conv.items() if c["gain"] is not None}
    if not conv:
        return []
    plot_ap_curves({label: c["curve"] for label, c in conv.items()}, plots / "ap_curve.png")
    md = ["## Convergence", "", "![AP against iteration](plots/ap_curve.png)", "",
          convergence_note("the Schedule length section, where a sweep holds such jobs"), ""]
    md += markdown_table(CONVERGENCE_HEADER,
                         [[label, *convergence_cells(c)] for label, c in conv.items()])
    return md + [""]


def loss_samples(groups):
    """Figure 4's data: per method, its first finished seed with per-anchor losses: the losses
    it saved at evaluation (``anchor_losses.pt``), or a run read from results tables with its
    numbers (``run.loss_cdf``).

    Returns ({label: (figure4_numbers, run, (fg losses, bg losses) or None from tables)},
    [problems]). A method without them is left out of the figure with its reason, so one
    missing file costs one curve.
    """
    samples, problems = {}, []
    for label, runs in groups.items():
        finished = [r for r in runs if r.status == "finished"]
        run = next((r for r in finished if r.loss_cdf is not None
                    or (r.dir is not None and r.folder.anchor_losses.is_file())), None)
        if run is None:
            problems.append(f"{label}: no finished run with anchor_losses.pt" if finished else
                            f"{label}: no finished run")
            continue
        if run.loss_cdf is not None:
            samples[label] = (run.loss_cdf, run, None)
            continue
        try:
            losses = run.folder.load_anchor_losses()
            samples[label] = (figure4_numbers(losses["fg"], losses["bg"]), run, (losses["fg"], losses["bg"]))
        except Exception as e:  # noqa: BLE001 - reported in report.md, the rest still gets written
            problems.append(f"{label}: {run.name}/anchor_losses.pt: {type(e).__name__}: {e}")
    return samples, problems


def _cell(row: dict, k: str, fmt: str, scale: float = 1.0, prefix: str = "") -> str:
    mean, std, n = row[f"{k}_mean"], row[f"{k}_std"], row[f"{k}_n"]
    if mean is None:
        return "–"
    text = f"{prefix}{mean * scale:{fmt}}" + ("" if std is None else f" ± {std * scale:{fmt}}")
    return text + ("" if n == row["n"] else f" (n={n})")


def sweep_overrides(sweep_dir: Path) -> list[str] | None:
    """The overrides of the sweep's command line (its multirun.yaml), None without one."""
    try:
        return list(yaml.safe_load((Path(sweep_dir) / "multirun.yaml").read_text())["hydra"]["overrides"]["task"])
    except Exception:  # noqa: BLE001 - optional context for the header
        return None


def render_markdown(title, runs, shared, rows, samples, problems, studies=(), swept=None) -> str:
    """``title``: what the report is of (a study's or sweep folder's name, never a machine's
    path); ``studies``: the lines of the sections a study's runs call for (the paper's
    tables, AP against imbalance), placed after the accuracy table; ``swept``: the sweep's
    command overrides (``sweep_overrides``)."""
    counts = {s: sum(r.status == s for r in runs) for s in dict.fromkeys(r.status for r in runs)}
    md = [f"# Report: `{title}`", ""]
    if swept is not None:
        md.append(f"Sweep command overrides: `{' '.join(swept) or '(none)'}`.")
    if shared:
        md.append(f"Common to all runs: `{', '.join(shared)}`.")
    md += [f"{len(runs)} runs in {len(rows)} methods: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ".",
           "A method is the runs' overrides except the seed; each number is the mean ± sample std over the "
           "method's **finished** seeds (n; n=1 shows no std, \"(n=k)\" where fewer runs had the value); "
           "AP 95% CI: the t interval of the mean AP (n >= 2).",
           "**Diverged runs are flagged and excluded from the AP means (and all other means)**; running, "
           "failed and incomplete runs are not counted either and are listed under Runs.", ""]
    stopped = [r for r in runs if r.status in STOPPED]
    if stopped:
        md[-1:-1] = [f"{len(stopped)} run(s) stopped before their end ({', '.join(sorted({r.status for r in stopped}))}):"
                     " not results; running the sweep's command again resumes them from their checkpoints."]
    md += ["## Accuracy (COCO AP, %)", ""]
    md += markdown_table(["method", "n", *STATS, "AP 95% CI", "diverged", "not counted"],
                 [[r["method"], r["n"], *(_cell(r, k, ".1f") for k in STATS),
                   "–" if r["AP_lo"] is None else f"[{r['AP_lo']:.1f}, {r['AP_hi']:.1f}]",
                   f"**{r['diverged']}/{r['runs']}**" if r["diverged"] else "0", r["not_counted"] or "–"]
                  for r in rows])
    md += ["", *studies]
    md += ["", "## Training", "",
           "Losses and loss shares of the last logged iteration; background share: the part of the "
           "classification loss from background anchors, easy background: from background anchors "
           "already scored < 0.5; fg anchors per image averaged over training; fg:bg anchors: the measured "
           "imbalance, 1 foreground anchor per that many background ones over each run's log (mean over "
           "seeds); images/s: median of the log.", ""]
    md += markdown_table(["method", "n", "cls loss", "box loss", "bg share (%)", "easy bg share (%)", "fg anchors / img",
                  "fg:bg anchors", "train time (s)", "images/s"],
                 [[r["method"], r["n"], _cell(r, "loss_cls", ".4g"), _cell(r, "loss_box", ".4g"),
                   _cell(r, "bg_share", ".1f", 100), _cell(r, "easy_bg_share", ".1f", 100), _cell(r, "num_fg", ".1f"),
                   _cell(r, "bg_per_fg", ".0f", prefix="1:"), _cell(r, "train_s", ".0f"),
                   _cell(r, "images_per_s", ".1f")] for r in rows])
    md += ["", "## Plots", ""]
    for name, title in PLOTS.items():
        md += [f"### {title}", "", f"![{title}](plots/{name}.png)", ""]
        if name == "loss_cdf":
            md += ["Per method, the first finished seed's model at the end of training on its first validation "
                   "images (config `loss_cdf_images`): anchors sorted "
                   "by classification loss, cumulative loss normalized to 1. Share of the loss held by the "
                   "hardest anchors:", ""]
            md += markdown_table(["method", "run", "fg anchors", "bg anchors", "hardest 10% fg", "hardest 1% bg",
                          "hardest 10% bg"],
                         [[label, run.name, numbers["fg_anchors"], numbers["bg_anchors"],
                           *(_pct(numbers.get(k)) for k in HARDEST)]
                          for label, (numbers, run, _) in samples.items()])
            md += [""] + [f"- not drawn: {p}" for p in problems] + [""] * bool(problems)
    md += ["## Runs", ""]
    md += markdown_table(["run", "method", "seed", "status", "AP (%)", "fg:bg anchors", "last iter", "time (s)", "notes"],
                 [[r.name, r.group, "–" if r.seed is None else r.seed,
                   r.status if r.status == "finished" else f"**{r.status}**",
                   f"{100 * r.eval['AP']:.1f}" if r.eval else "–", _ratio(bg_per_fg(r.metrics)), r.last_iter or "–",
                   "–" if r.seconds is None else f"{r.seconds:.0f}",
                   "; ".join(([r.message[:160]] if r.message else []) + r.notes) or ""] for r in runs])
    md += [""] + cost_section(runs)
    md += ["_Written by `python -m tools.report`._", ""]
    return "\n".join(md)


def _pct(x):
    return "–" if x is None else f"{100 * x:.1f}%"


def _ratio(x):
    return "–" if x is None else f"1:{x:.0f}"


def write_csv(rows: list[dict], path) -> None:
    fields = ["method", "runs", "n", "seeds", "diverged", "not_counted"]
    for k in STATS + TRAIN:
        fields += [f"{k}_mean", f"{k}_std"] + ([f"{k}_n"] if k in STATS else []) + (["AP_lo", "AP_hi"] if k == "AP" else [])
    fields += CSV_FIELDS  # the background errors (reports/errors.py), empty without analysis/
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: "" if v is None else v for k, v in row.items()})


def write_report(sweep_dir, out=None) -> Path:
    """Writes report.md, report.csv and plots/ for ``sweep_dir`` into ``out`` (default: the
    sweep folder); returns the path of report.md."""
    runs, shared = load_runs(sweep_dir)
    out = Path(out) if out is not None else Path(sweep_dir)
    return write(runs, shared, out, Path(sweep_dir).resolve().name, sweep_overrides(sweep_dir))


def write(runs: list[Run], shared: list[str], out, title: str, swept: list[str] | None = None,
          plots=None) -> Path:
    """report.md and report.csv of ``runs`` (groups assigned, ``shared`` their common
    overrides: ``load_runs``) into ``out``, the plots into ``plots`` (default: ``out``/plots,
    where report.md links them); returns the path of report.md."""
    groups = groups_of(runs)
    runs = [r for rs in groups.values() for r in rs]  # grouped, in job order, for the runs table
    rows = summarize(groups)
    errors = errors_summary(groups)
    for row in rows:
        row.update(csv_columns(errors.get(row["method"])))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = Path(plots) if plots is not None else out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    plot_ap([r["method"] for r in rows],
            [[v for v in (run_values(r)["AP"] for r in rs if r.status == "finished") if v is not None]
             for rs in groups.values()], plots / "ap.png")
    plot_curves(mean_curves(groups), plots / "curves.png")
    samples, problems = loss_samples(groups)
    plot_loss_cdf({label: losses for label, (_, _, losses) in samples.items() if losses is not None},
                  plots / "loss_cdf.png")
    plot_focal_loss(plots / "focal_loss.png")
    write_csv(rows, out / "report.csv")
    md = out / "report.md"
    studies = (convergence_section(groups, plots) + paper_section(groups) + table1d_section(groups)
               + imbalance_section(runs, plots) + prior_section(groups) + schedule_section(groups)
               + errors_section(groups, plots, errors))
    md.write_text(render_markdown(title, runs, shared, rows, samples, problems, studies, swept))
    return md


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m tools.report", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", help="a Hydra multirun folder (or any folder of train.py run folders)")
    parser.add_argument("--out", help="where to write report.md, report.csv and plots/ (default: SWEEP_DIR)")
    args = parser.parse_args(argv)
    try:
        path = write_report(Path(args.sweep_dir), args.out)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"tools.report: error: {e}")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
