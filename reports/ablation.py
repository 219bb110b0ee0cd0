"""The fair ablation's report (studies/ablation.py, stage ``report``): OUT/report.md and report.csv.

Sections: ``## Verdict`` (per method: AP mean, std, 95% CI over the paired seeds; every pair's
paired difference with its CI and a one-line verdict), the selection on the tuning split, the
convergence (AP against iteration, and whether the last quarter still added >= 1 AP), the
controls (how much each moves the answer), the measured imbalance, the runs and their cost.
Read from the run folders only.
"""

import csv
import statistics
from pathlib import Path

import yaml

from analysis.markdown import markdown_table
from reports.cost import cost_section
from reports.plots import plot_ap_curves
from reports.runs import (
    CONVERGENCE_HEADER,
    bg_per_fg,
    convergence,
    convergence_cells,
    convergence_note,
    load_runs,
    reused_from,
)
from reports.stats import pairwise_verdicts, summary


def _ci(s: dict) -> str:
    if s["mean"] is None:
        return "–"
    if s["half_width"] is None:
        return f"{s['mean']:.1f} (n=1)"
    return f"{s['mean']:.1f} ± {s['std']:.1f} [{s['lo']:.1f}, {s['hi']:.1f}]"


def ap_by_seed(sweep_dir: Path) -> tuple[dict, list]:
    """({seed: AP in %} of the finished runs, every run) of a sweep folder ({} if missing)."""
    if not sweep_dir.is_dir():
        return {}, []
    runs, _ = load_runs(sweep_dir)
    return {r.seed: 100 * r.eval["AP"] for r in runs if r.status == "finished" and r.eval}, runs


def imbalance(runs) -> float | None:
    """Measured background anchors per foreground anchor, over the runs' training logs."""
    return bg_per_fg([m for r in runs for m in r.metrics])


def clipped_share(runs) -> float | None:
    shares = [m["clipped_share"] for r in runs for m in r.metrics if "clipped_share" in m]
    return statistics.fmean(shares) if shares else None


def write_report(study) -> Path:
    out, methods = study.out, list(study.methods)
    final = {m: ap_by_seed(out / "final" / m) for m in methods}
    aps = {m: final[m][0] for m in methods}
    verdicts = pairwise_verdicts(aps)
    selection = yaml.safe_load(study.selection_file.read_text()) if study.selection_file.is_file() else {}
    chosen = selection.get("chosen", {})

    md = [f"# Background ablation: `{out}`", "", "## Verdict", ""]
    md += [f"COCO AP (%) on val of each method at the setting chosen on the tuning split, over paired seeds "
           f"{study.seeds} (same initial weights but the class output, same batches). Mean ± sample std "
           "[95% t confidence interval].", ""]
    rows = [[m, ", ".join(f"{k}={v}" for k, v in chosen.get(m, {}).items()) or "–", summary(aps[m].values())["n"],
             _ci(summary(aps[m].values()))] for m in methods]
    md += markdown_table(["method", "setting", "n", "AP"], rows) + [""]
    md += [f"Schedules: the tuning trained for {_iterations(study.tune_lr(methods[0]).fixed)} iterations, the "
           f"final runs and the controls for {_iterations(study.final_base(methods[0]))}.", ""]
    md += [f"- {v['verdict']}" for v in verdicts] + [""]
    md += ["A difference counts only where its paired 95% interval excludes 0; otherwise: no difference "
           "resolved at this number of seeds.", ""]

    md += ["## Selection on the tuning split", "",
           "Every candidate's AP on the tuning split (carved from the training images; val is never used "
           "to choose). **Bold**: chosen. The alpha pass runs at the learning rate chosen first.", ""]
    md += markdown_table(["method", "key", "value", "tuning AP (%)", "status"],
                 [[c["method"], c["key"], f"**{c['value']}**" if c.get("chosen") else c["value"],
                   "–" if c["AP"] is None else f"{100 * c['AP']:.1f}", c["status"]]
                  for c in selection.get("candidates", [])]) + [""]
    md += [f"- {line}" for line in edge_choices(selection.get("candidates", []))] + [""]

    conv = {m: convergence(final[m][1]) for m in methods}
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    plot_ap_curves({m: c["curve"] for m, c in conv.items()}, plots / "ap_curve.png")
    md += ["## Convergence", "", "![AP against iteration](plots/ap_curve.png)", "",
           convergence_note("`make followups ARGS=\"--study schedule_check\"`: its report's Schedule length section"),
           ""]
    md += markdown_table(CONVERGENCE_HEADER,
                 [[m, *convergence_cells(c)] for m, c in conv.items()]) + [""]

    md += controls_section(study, aps)
    md += ["## Imbalance and clipping", "",
           "Measured over each method's training logs: background anchors per foreground anchor, and the "
           "share of steps whose gradient norm was clipped (optim.clip_grad_norm).", ""]
    md += markdown_table(["method", "fg:bg anchors", "clipped steps"],
                 [[m, _ratio(imbalance(final[m][1])), _pct(clipped_share(final[m][1]))] for m in methods]) + [""]
    runs = study_runs(out)
    trained = [r for r in runs if reused_from(r.dir) is None]
    md += cost_section(trained)
    if len(trained) < len(runs):
        md += [f"{len(runs) - len(trained)} runs copied from another study (below) are not counted: their cost "
               "is in their source's report.", ""]
    md += ["## Final runs", ""]
    md += markdown_table(["method", "run", "seed", "status", "AP (%)", "copied from"],
                 [[m, r.name, r.seed, r.status, f"{100 * r.eval['AP']:.1f}" if r.eval else "–",
                   reused_from(r.dir) or "–"]
                  for m in methods for r in final[m][1]]) + [""]
    (out / "report.md").write_text("\n".join(md))
    write_csv(out / "report.csv", aps, verdicts)
    return out / "report.md"


def controls_section(study, aps: dict) -> list[str]:
    """Per control and method: AP, the paired change against the final runs, and the
    verdicts under the control (does it change the answer?)."""
    md = ["## Controls", "",
          "Each control changes one thing; `change` is the paired difference control - final over the same "
          "seeds. The verdicts under the control show whether it moves the answer.", ""]
    names = list(study.controls["eval"]) + list(study.controls["train"])
    for name in names:
        folder = study.out / "controls" / name
        under = {m: ap_by_seed(folder / m)[0] for m in study.methods if (folder / m).is_dir()}
        if not under:
            md += [f"### {name}", "", f"not run{why_not_run(study, name)}", ""]
            continue
        changes = {m: pairwise_verdicts({"control": under[m], "final": aps[m]})[0] for m in under}
        md += [f"### {name}", ""]
        md += markdown_table(["method", "AP", "change vs final"],
                     [[m, _ci(summary(under[m].values())),
                       "–" if c["mean"] is None else f"{c['mean']:+.1f}" +
                       ("" if c["lo"] is None else f" [{c['lo']:+.1f}, {c['hi']:+.1f}]")] for m, c in changes.items()])
        if len(under) > 1:
            md += [""] + [f"- {v['verdict']}" for v in pairwise_verdicts(under)]
        md += [""]
    return md


def _iterations(overrides: list[str]) -> str:
    """The ``schedule.max_iters`` these overrides set (the last one wins), else the default's."""
    values = [o.split("=", 1)[1] for o in overrides if o.startswith("schedule.max_iters=")]
    return values[-1] if values else "the default schedule's"


def edge_choices(candidates: list[dict]) -> list[str]:
    """A sentence for every choice at an end of its grid (a wider grid might do better)."""
    grids: dict[tuple, list[dict]] = {}
    for c in candidates:
        grids.setdefault((c["method"], c["key"]), []).append(c)
    lines = []
    for (method, key), rows in grids.items():
        values = sorted(r["value"] for r in rows)
        chosen = [r["value"] for r in rows if r.get("chosen")]
        if len(values) > 2 and chosen and chosen[0] in (values[0], values[-1]):
            lines.append(f"{method}: {key}={chosen[0]} is at the {'top' if chosen[0] == values[-1] else 'bottom'} "
                         f"of its grid ({values[0]} … {values[-1]}): a wider grid might do better")
    return lines


def why_not_run(study, control: str) -> str:
    """Why a control has no runs, where the study can tell: a re-evaluation whose final
    checkpoints are missing (the controls stage skips it); else ""."""
    if control not in study.controls["eval"]:
        return ""
    missing = [p for m in study.methods for p in study.final_checkpoints(m) if not p.is_file()]
    return (f": it re-evaluates the final runs' checkpoints, and {len(missing)} of them are not here (the final "
            "runs have not run yet, or were copied as records without them)" if missing else "")


def study_runs(out: Path) -> list:
    """Every run of the study (every stage's sweeps) under ``out``."""
    return [r for folder in sorted(out.rglob("status.json")) for r in load_runs(folder.parent)[0]]


def write_csv(path: Path, aps: dict, verdicts: list[dict]) -> None:
    fields = ["kind", "method", "a", "b", "n", "mean", "std", "half_width", "lo", "hi", "seeds", "verdict"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        for m, by_seed in aps.items():
            w.writerow({"kind": "method", "method": m, **summary(by_seed.values()),
                        "seeds": " ".join(map(str, sorted(by_seed)))})
        for v in verdicts:
            w.writerow({"kind": "pair", **v})


def _ratio(x):
    return "–" if x is None else f"1:{x:.0f}"


def _pct(x):
    return "–" if x is None else f"{100 * x:.1f}%"
