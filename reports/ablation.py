"""The fair ablation's report (studies/ablation.py, stage ``report``): OUT/report.md and report.csv.

Sections: ``## Verdict`` (per method: AP mean, std, 95% CI over the paired seeds; every pair's
paired difference with its CI and a one-line verdict), the selection on the tuning split, the
convergence (AP against iteration, and whether the last quarter still added >= 1 AP), the
controls (how much each moves the answer), the measured imbalance, the runs and their cost.
Read from the run folders (``from_folders``) or from the study's results tables
(``from_tables``, reports/table_io.py), to the same report.
"""

import csv
import dataclasses
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

import yaml

from analysis.markdown import markdown_table
from detection.run_folder import ENDED
from reports.cost import cost_section
from reports.errors import errors_section
from reports.factorial import factorial_section, levels_run
from reports.plots import plot_ap_curves
from reports.runs import (
    CONVERGENCE_HEADER,
    Run,
    ap_by_seed,
    bg_per_fg,
    convergence,
    convergence_cells,
    convergence_note,
    load_run,
    load_runs,
    natural_key,
    percent,
    run_values,
    trained_on,
    trained_on_by_seed,
)
from reports.stats import (
    difference_text,
    direction,
    holm_note,
    multiplicity,
    outcome_text,
    pairwise_verdicts,
    summary,
    summary_text,
)


@dataclass
class AblationRuns:
    """What the ablation's report reads: its protocol and runs, from the study's folders
    (``from_folders``) or its results tables (``from_tables``)."""

    title: str  # the study's name
    methods: list[str]
    seeds: list
    tune_iterations: str  # the schedule.max_iters of the tuning runs
    final_iterations: str  # of the final runs and the controls
    selection: dict  # selection.yaml: chosen (method -> {key: value}), candidates
    final: dict[str, list[Run]]  # method -> its final runs, named within final/<method>
    controls: dict[str, dict[str, list[Run]]]  # control -> {method -> its runs} of the methods it ran
    why_not: dict[str, str]  # control -> why it has no runs ("": not known)
    runs: list[Run]  # every run of the study (the cost)
    # method -> its gallery of top background false positives (a final run's analysis/gallery.png),
    # as a link relative to the report; {} when no final run drew one
    galleries: dict[str, str] = dataclasses.field(default_factory=dict)
    factors: dict[str, list] = dataclasses.field(default_factory=dict)  # the methods as cells of two factors
    # method -> the seeds of its final runs (``method_seeds``); {} in tables written before it was kept
    planned: dict[str, list] = dataclasses.field(default_factory=dict)
    # method -> why it has no final runs (tuned and selected, then left out: a budget's cut)
    left_out: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def ran(self) -> list[str]:
        """The methods given final runs: ``methods`` less those ``left_out``, in their order."""
        return [m for m in self.methods if m not in self.left_out]


def protocol(study) -> dict:
    """What the report needs of ``study`` (studies.ablation.Study) besides its runs, as its
    results' study.yaml keeps it (``ablation``): methods, seeds, the tuning's and the final
    runs' schedule.max_iters, the controls' names ({"eval": [...], "train": [...]}), each
    method's final seeds (``planned``, methods in the order the final stage runs them: its
    ``final_groups``), the selection (selection.yaml; before the select stage, the tuning runs
    so far, none chosen)."""
    methods = list(study.methods)
    return {"methods": methods, "seeds": study.all_seeds(),
            "tune_iterations": _iterations(study.tune_lr(methods[0]).fixed),
            "final_iterations": _iterations(study.final_base(methods[0])),
            "controls": {"eval": list(study.controls.get("eval") or {}), "train": list(study.controls.get("train") or {})},
            **({"factors": study.factors} if study.factors else {}),
            **({"left_out": study.left_out} if study.left_out else {}),
            "planned": {m: study.seeds_of(m) for group in study.final_groups for m in group},  # in the order they run
            "selection": yaml.safe_load(study.selection_file.read_text()) if study.selection_file.is_file()
            else {"candidates": study.tuning_so_far()}}


def from_folders(study) -> AblationRuns:
    """The runs under ``study.out`` (studies.ablation.Study), read from their folders."""
    out, spec = study.out, protocol(study)
    methods, names = spec["methods"], spec["controls"]["eval"] + spec["controls"]["train"]
    controls = {name: {m: load_runs(out / "controls" / name / m)[0] for m in methods
                       if (out / "controls" / name / m).is_dir()} for name in names}
    return AblationRuns(
        title=out.name, methods=methods, seeds=spec["seeds"], tune_iterations=spec["tune_iterations"],
        final_iterations=spec["final_iterations"], selection=spec["selection"],
        final={m: load_runs(out / "final" / m)[0] if (out / "final" / m).is_dir() else [] for m in methods},
        controls=controls, why_not={name: why_not_run(study, name) for name in names}, runs=study_runs(out),
        galleries={m: gallery_link(m) for m in final_galleries(out, methods)}, factors=spec.get("factors") or {},
        planned=spec["planned"], left_out=spec.get("left_out") or {})


def from_tables(tables, study: str) -> AblationRuns:
    """The runs of ``study`` read from its results tables (reports.table_io.Tables); its
    study.yaml's ``ablation`` holds the protocol. The tables keep no checkpoints: an eval
    control without runs had all its final checkpoints missing."""
    spec = tables.study(study)["meta"]["ablation"]
    runs = tables.runs(study)
    methods, seeds = list(spec["methods"]), list(spec["seeds"])
    planned = spec.get("planned") or {}  # method -> its final runs' seeds (tables before it kept: all seeds)

    def within(prefix: str) -> list[Run]:
        return [dataclasses.replace(r, name=r.name[len(prefix):]) for r in runs if r.name.startswith(prefix)]

    controls = {name: {m: rs for m in methods if (rs := within(f"controls/{name}/{m}/"))}
                for name in [*spec["controls"]["eval"], *spec["controls"]["train"]]}
    return AblationRuns(
        title=study, methods=methods, seeds=seeds, tune_iterations=str(spec["tune_iterations"]),
        final_iterations=str(spec["final_iterations"]), selection=spec.get("selection") or {},
        final={m: within(f"final/{m}/") for m in methods}, controls=controls,
        why_not={name: _missing_checkpoints(sum(len(planned.get(m, seeds)) for m in methods))
                 if name in spec["controls"]["eval"] else ""
                 for name in controls},
        runs=sorted(runs, key=lambda r: Path(r.name) / "status.json"),  # as study_runs finds them
        galleries=dict(tables.study(study)["meta"].get("galleries") or {}), factors=spec.get("factors") or {},
        planned=planned, left_out=spec.get("left_out") or {})


def final_galleries(out: Path, methods) -> dict[str, Path]:
    """method -> the gallery.png of its first final run (in seed order) that drew one
    (``hydra.callbacks.analysis.gallery=N``)."""
    found = {}
    for m in methods:
        drawn = sorted((out / "final" / m).glob("*/analysis/gallery.png"), key=lambda p: natural_key(p.parts[-3]))
        if drawn:
            found[m] = drawn[0]
    return found


def gallery_link(method: str) -> str:
    """Where a report links ``method``'s gallery, a copy of its ``final_galleries`` file beside it."""
    return f"plots/gallery_{method}.png"


def copy_galleries(out: Path, dest: Path, methods) -> dict[str, str]:
    """Copies each method's ``final_galleries`` (of the study folder ``out``) to ``dest`` /
    ``gallery_link``; returns {method: link}."""
    links = {}
    for m, path in final_galleries(out, methods).items():
        links[m] = gallery_link(m)
        (dest / links[m]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / links[m])
    return links


def imbalance(runs) -> float | None:
    """Measured background anchors per foreground anchor, over the runs' training logs."""
    return bg_per_fg([m for r in runs for m in r.metrics])


def clipped_share(runs) -> float | None:
    shares = [m["clipped_share"] for r in runs for m in r.metrics if "clipped_share" in m]
    return statistics.fmean(shares) if shares else None


def in_value_order(candidates: list[dict]) -> list[dict]:
    """The tuning candidates (selection.yaml's, in the order they were tried: the grid, then
    the values the edge rule added) with each method's values of each key in ascending order;
    methods and keys keep their first appearance's order.

    >>> [c["value"] for c in in_value_order([{"method": "m", "key": "lr", "value": v} for v in (0.025, 0.1, 0.003125)])]
    [0.003125, 0.025, 0.1]
    """
    first: dict = {}
    for i, c in enumerate(candidates):
        first.setdefault(c["method"], i)
        first.setdefault((c["method"], c["key"]), i)

    def value(v):
        return (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v))

    return sorted(candidates, key=lambda c: (first[c["method"]], first[(c["method"], c["key"])], value(c["value"])))


def seeds_text(planned: dict[str, list], seeds: list) -> str:
    """The final runs' seeds as the Verdict states them: ``seeds``, or where the methods were
    planned different seeds (``method_seeds``), each group of methods with its own.

    >>> seeds_text({"a": [0, 1, 2], "b": [0, 1, 2], "c": [0, 1]}, [0, 1])
    'a, b: [0, 1, 2]; c: [0, 1]'
    >>> seeds_text({}, [0, 1])
    '[0, 1]'
    """
    groups: dict[tuple, list[str]] = {}
    for m, s in planned.items():
        groups.setdefault(tuple(s), []).append(m)
    if len(groups) < 2:
        return str(list(seeds))
    return "; ".join(f"{', '.join(ms)}: {list(s)}" for s, ms in groups.items())


def write_report(study) -> Path:
    """OUT/report.md, report.csv and plots/ of ``study`` (studies.ablation.Study) from its folders."""
    copy_galleries(study.out, study.out, study.methods)
    return write(from_folders(study), study.out)


def write(a: AblationRuns, out, plots=None) -> Path:
    """report.md and report.csv of ``a`` into ``out``, the plot into ``plots`` (default:
    ``out``/plots, where report.md links it); returns the path of report.md."""
    out = Path(out)
    methods = a.ran
    aps = {m: ap_by_seed(a.final[m]) for m in methods}
    # a pair of runs is one kind of device and precision, start to end (runs before devices were recorded: paired)
    kinds = {m: trained_on_by_seed(a.final[m]) for m in methods}
    verdicts = pairwise_verdicts(aps, kinds=kinds)
    chosen = a.selection.get("chosen", {})

    md = [f"# Background ablation: `{a.title}`", "", "## Verdict", ""]
    planned = {m: s for m, s in a.planned.items() if m in methods}
    md += [f"COCO AP (%) on val of each method at the setting chosen on the tuning split, over paired seeds "
           f"{seeds_text(planned, a.seeds)} (same initial weights but the class output, same batches). Mean ± sample std "
           "[95% t confidence interval].", ""]
    rows = [[m, ", ".join(f"{k}={v}" for k, v in chosen.get(m, {}).items()) or "–", summary(aps[m].values())["n"],
             summary_text(summary(aps[m].values()), n=False)] for m in methods]
    md += markdown_table(["method", "setting", "n", "AP"], rows) + [""]
    md += left_out_lines(a.left_out, chosen)
    md += progress_lines(a)
    md += [f"Schedules: the tuning trained for {a.tune_iterations} iterations, the "
           f"final runs and the controls for {a.final_iterations}.", ""]
    factorial_rows = []
    if a.factors:  # the methods are the cells of two factors: their effects, orders and interaction
        section, factorial_rows = factorial_section(aps, kinds, levels_run(a.factors, a.left_out))
        md += section
        md += [f"Every pair of the {len(methods)} cells is in report.csv ({len(verdicts)} paired differences).", ""]
    else:
        holm_lines = multiplicity(verdicts)
        md += [f"- {v['verdict']}{holm_note(v)}" for v in verdicts] + [""]
        md += ["A difference counts only where its paired 95% interval excludes 0; otherwise: no difference "
               "resolved at this number of seeds.", ""]
        md += [*holm_lines, ""] if holm_lines else []

    md += ["## Selection on the tuning split", "",
           "Every candidate's AP on the tuning split (carved from the training images; val is never used "
           "to choose). **Bold**: chosen. A method's own hyperparameters (alpha, beta, ...) are tuned "
           "after its learning rate, at the learning rate chosen.", ""]
    md += markdown_table(["method", "key", "value", "tuning AP (%)", "status"],
                 [[c["method"], c["key"], f"**{c['value']}**" if c.get("chosen") else c["value"],
                   "–" if c["AP"] is None else f"{100 * c['AP']:.1f}", c["status"]]
                  for c in in_value_order(a.selection.get("candidates", []))]) + [""]
    if not a.selection.get("chosen"):
        md += ["**In progress**: the tuning has not ended and nothing is chosen yet (the select stage chooses "
               "once every tuning run has ended); `missing`: not trained yet.", ""]
    md += [f"- {line}" for line in edge_choices(a.selection.get("candidates", []))] + [""]

    conv = {m: convergence(a.final[m]) for m in methods}
    plots = Path(plots) if plots is not None else out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    plot_ap_curves({m: c["curve"] for m, c in conv.items()}, plots / "ap_curve.png")
    md += ["## Convergence", "", "![AP against iteration](plots/ap_curve.png)", "",
           convergence_note("`make followups ARGS=\"--study schedule_check\"`: its report's Schedule length section"),
           ""]
    md += markdown_table(CONVERGENCE_HEADER,
                 [[m, *convergence_cells(c)] for m, c in conv.items()]) + [""]

    md += breakdown_section(a)
    # the final runs' background errors (where they have an analysis)
    md += errors_section({m: a.final[m] for m in methods}, plots)
    if a.galleries:
        md += ["### The top background false positives", "",
               "Per method, one final run's highest-scoring detections on background (TIDE's Bkg: IoU <= 0.1 with "
               "every box), drawn on their images (`analysis/gallery.py`):", ""]
        md += [line for m, link in a.galleries.items() for line in (f"**{m}** (`{link}`)", "", f"![{m}]({link})", "")]
    section, control_rows = controls_section(a, aps, verdicts, kinds)
    md += section
    md += ["## Imbalance and clipping", "",
           "Measured over each method's training logs: background anchors per foreground anchor, and the "
           "share of steps whose gradient norm was clipped (optim.clip_grad_norm).", ""]
    md += markdown_table(["method", "fg:bg anchors", "clipped steps"],
                 [[m, _ratio(imbalance(a.final[m])), _pct(clipped_share(a.final[m]))] for m in methods]) + [""]
    trained = [r for r in a.runs if r.reused_from is None]
    md += cost_section(trained, a.methods)  # the left-out methods' tuning too
    if len(trained) < len(a.runs):
        n = len(a.runs) - len(trained)
        md += [f"{n} run{'s' * (n != 1)} copied from another run of the same configuration (a tuning run the lr "
               f"pass trained, or another study's final run, named below) {'are' if n != 1 else 'is'} not counted: "
               f"{'their' if n != 1 else 'its'} cost is the source's.", ""]
    md += ["## Final runs", ""]
    recorded = any(k is not None for by_seed in kinds.values() for k in by_seed.values())  # a column for them
    if recorded:
        md += ["`trained on`: the kind of device and precision of every iteration; a **mixed** run is paired "
               "with no other (the Verdict's pairs are one kind each).", ""]
    md += markdown_table(["method", "run", "seed", "status", "AP (%)", "copied from", *(["trained on"] if recorded else [])],
                 [[m, r.name, r.seed, r.status, f"{100 * r.eval['AP']:.1f}" if r.eval else "–",
                   r.reused_from or "–", *([_trained_on_cell(r)] if recorded else [])]
                  for m in methods for r in a.final[m]]) + [""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join(md))
    write_csv(out / "report.csv", aps, verdicts, [*factorial_rows, *control_rows])
    return out / "report.md"


BREAKDOWN = ("AP50", "AP75", "APs", "APm", "APl")


def breakdown_section(a: AblationRuns) -> list[str]:
    """Where each method's AP comes from: AP50, AP75, AP by object size and, with more than
    one class, AP per class (eval.json's ``per_category``), as mean ± sample std over its
    finished final runs; "–" where COCOeval had nothing to measure (no object of that size)."""
    finished = {m: [r for r in a.final[m] if r.status == "finished" and r.eval] for m in a.ran}
    classes = list(dict.fromkeys(c for rs in finished.values() for r in rs for c in r.eval.get("per_category") or {}))
    classes = classes if len(classes) > 1 else []

    def cell(values) -> str:
        s = summary(values)
        return "–" if s["mean"] is None else f"{s['mean']:.1f}" + ("" if s["std"] is None else f" ± {s['std']:.1f}")

    rows = [[m, len(rs), *(cell(run_values(r)[k] for r in rs) for k in BREAKDOWN),
             *(cell(percent((r.eval.get("per_category") or {}).get(c)) for r in rs) for c in classes)]
            for m, rs in finished.items()]
    md = ["## AP by IoU, object size and class", "",
          "COCO's AP50 and AP75, AP of small / medium / large objects (area < 32², < 96², larger)"
          + (", and AP per class" if classes else "") + " (%), mean ± sample std over each method's finished "
          "final runs (n).", ""]
    return md + markdown_table(["method", "n", *BREAKDOWN, *classes], rows) + [""]


def left_out_lines(left_out: dict[str, str], chosen: dict) -> list[str]:
    """The methods a budget cut left without final runs, each with its selection, and why (one
    sentence per reason); [] when none is.

    >>> left_out_lines({"a": "the budget", "b": "the budget", "c": "diverged"}, {"a": {"optim.lr": 0.2}})[0][-63:]
    'no final runs): a (optim.lr=0.2), b — the budget; c — diverged.'
    """
    if not left_out:
        return []
    by_why: dict[str, list[str]] = {}
    for m, why in left_out.items():
        setting = ", ".join(f"{k}={v}" for k, v in chosen.get(m, {}).items())
        by_why.setdefault(why, []).append(f"{m} ({setting})" if setting else m)
    return ["**Left out** of the final stage (tuned and selected, no final runs): "
            + "; ".join(f"{', '.join(ms)} — {why.rstrip('.')}" for why, ms in by_why.items()) + ".", ""]


def progress_lines(a: AblationRuns) -> list[str]:
    """A study still running: how many of its final runs (``a.planned``) have ended, and the
    seeds each method still lacks; [] once all have (or when the tables kept no plan)."""
    ended = {m: {r.seed for r in runs if r.status in ENDED} for m, runs in a.final.items()}
    waiting = {m: [s for s in seeds if s not in ended.get(m, set())] for m, seeds in a.planned.items()}
    left = sum(map(len, waiting.values()))
    if not left:
        return []
    total = sum(map(len, a.planned.values()))
    return [f"**In progress**: {total - left} of {total} final runs have ended; the numbers here are those "
            "of the finished ones (a rerun of the study's command continues). Still to run: "
            + "; ".join(f"{m} seed{'s' * (len(s) > 1)} {', '.join(map(str, s))}" for m, s in waiting.items() if s)
            + ".", ""]


def _trained_on_cell(run: Run) -> str:
    kind = trained_on(run)
    return "–" if kind is None else f"**{kind}**" if kind.startswith("mixed") else kind


def controls_section(a: AblationRuns, aps: dict, verdicts: list[dict], kinds: dict) -> tuple[list[str], list[dict]]:
    """Per control and method: AP, the paired change against the final runs, and the
    verdicts under the control (does it change the answer?); nothing for a study without
    controls. Returns the markdown lines and the comparisons as report.csv rows (kind
    ``control``: a method's change, b ``final``; ``control_pair``: a pair under the control;
    the control's name as ``level``). A study of cells (``factors``, 91 pairs) lists only the
    pairs whose verdict the control changes; all are in the rows. ``verdicts``: the final
    runs' ``pairwise_verdicts`` (over ``aps``, with their devices ``kinds``: method -> {seed:
    ``trained_on``}); the pairs under a control are checked with what the control runs' models
    trained on (``control_kinds``: a re-evaluation's is its final run's)."""
    if not a.controls:
        return [], []
    md = ["## Controls", "",
          "Each control changes one thing; `change` is the paired difference control - final over the same "
          "seeds. The verdicts under the control show whether it moves the answer.", ""]
    rows = []
    for name, by_method in a.controls.items():
        under = {m: ap_by_seed(by_method[m]) for m in aps if m in by_method}
        if not under:
            md += [f"### {name}", "", f"not run{a.why_not.get(name, '')}", ""]
            continue
        # control - final: a re-evaluation (no devices) is of the final run's own checkpoint, always a
        # pair; a retrained control pairs where it trained on the final run's kind
        changes = {m: pairwise_verdicts({m: under[m], "final": aps[m]},
                                        kinds={m: trained_on_by_seed(by_method[m]), "final": kinds.get(m, {})})[0]
                   for m in under}
        pairs = pairwise_verdicts(under, kinds={m: control_kinds(by_method[m], kinds.get(m, {})) for m in under})
        rows += [{**c, "kind": "control", "level": name} for c in changes.values()]
        rows += [{**v, "kind": "control_pair", "level": name} for v in pairs]
        md += [f"### {name}", ""]
        md += markdown_table(["method", "AP", "change vs final"],
                     [[m, summary_text(summary(under[m].values()), n=False),
                       difference_text(c)] for m, c in changes.items()])
        if len(under) > 1 and a.factors:
            final = {(v["a"], v["b"]): v for v in verdicts}
            moved = [v for v in pairs if direction(v) != direction(final[v["a"], v["b"]])]
            md += ["", f"Of the {len(pairs)} pairs of cells, the control changes the verdict of {len(moved)} "
                   f"(every pair under it is in report.csv){':' if moved else '.'}"]
            md += [f"- {v['verdict']} (final runs: {outcome_text(v['a'], v['b'], final[v['a'], v['b']])})" for v in moved]
        elif len(under) > 1:
            md += [""] + [f"- {v['verdict']}" for v in pairs]
        md += [""]
    return md, rows


def control_kinds(runs: list[Run], final: dict) -> dict:
    """{seed: what the model of each control run of ``runs`` trained on}: the run's own devices
    where it trained (a retrained control), else ``final``'s at its seed ({seed: ``trained_on``}
    of the method's final runs): a re-evaluation trains nothing, its checkpoint is that final
    run's, so a mixed final run's re-evaluation is mixed too and pairs with no unmixed run.

    >>> reeval = Run(None, "seed0", seed=0, devices=[])
    >>> control_kinds([reeval], {0: "mixed: cuda bf16 x40, cpu fp32 x20"})
    {0: 'mixed: cuda bf16 x40, cpu fp32 x20'}
    >>> retrained = Run(None, "seed1", seed=1, devices=[{"kind": "cpu", "precision": "fp32", "iterations": 60}])
    >>> control_kinds([retrained], {1: "cuda bf16"})
    {1: 'cpu fp32'}
    """
    return {seed: final.get(seed) if kind is None else kind for seed, kind in trained_on_by_seed(runs).items()}


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
    checkpoints are missing (the final stage skips its re-evaluation of those); else ""."""
    if control not in (study.controls.get("eval") or {}):
        return ""
    missing = [p for m in study.methods for p in study.final_checkpoints(m) if not p.is_file()]
    return _missing_checkpoints(len(missing)) if missing else ""


def _missing_checkpoints(n: int) -> str:
    return (f": it re-evaluates the final runs' checkpoints, and {n} of them are not here (the final "
            "runs have not run yet, or were copied as records without them)")


def study_runs(out: Path) -> list:
    """Every run of the study (every stage's sweeps) under ``out``."""
    return [load_run(folder.parent, out) for folder in sorted(out.rglob("status.json"))]  # named from ``out``


def write_csv(path: Path, aps: dict, verdicts: list[dict], more: list[dict] = ()) -> None:
    """report.csv: a row per method (kind ``method``), per pair (``pair``), then ``more``:
    the factorial section's (``effect``, ``order``, ``interaction``) and the controls'
    (``control``, ``control_pair``), each with its ``level`` in ``method``."""
    fields = ["kind", "method", "a", "b", "n", "mean", "std", "half_width", "lo", "hi", "seeds", "verdict", "p", "holm"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields, extrasaction="ignore")
        w.writeheader()
        for m, by_seed in aps.items():
            w.writerow({"kind": "method", "method": m, **summary(by_seed.values()),
                        "seeds": " ".join(map(str, sorted(by_seed)))})
        for v in verdicts:
            w.writerow({"kind": "pair", **v})
        for v in more:  # the level: a factor's level, a pair of them, or a control's name
            w.writerow({**v, "method": v["level"]})


def _ratio(x):
    return "–" if x is None else f"1:{x:.0f}"


def _pct(x):
    return "–" if x is None else f"{100 * x:.1f}%"
