"""The fair background ablation, from nothing to its report: ``make ablation``.

    python -m tools.ablation --out OUT [--quick] [--dry-run] [--stage STAGE] [--study YAML] [OVERRIDE ...]

OVERRIDEs (train.py's, e.g. ``dataset=coco_sample``) apply to every job of every stage, after
the study's own (``final_overrides`` included).

Stages (studies/specs/bg_ablation.yaml says what each runs), each a set of train.py
multiruns with a sweep folder of their own under OUT:

1. ``tune``: every method's learning rate at its loss's defaults, then its own hyperparameters
   (``tune.own``: bce_alpha's and focal's alpha, ...) at the best learning rate, trained without
   and evaluated on a tuning split carved from the training images (``eval_split=tune``): val
   is never looked at.
2. ``select``: the best tuning AP of each method -> OUT/selection.yaml (what the final sweep
   reads, as a ``Setting`` per method) and the selection table of the report.
3. ``final``: every method at its selection over the same seeds (``method_seeds``: more for
   some; none for those ``left_out``, a budget's cut the report names), evaluated on val, with
   an AP curve; at the study's ``final_overrides`` (a longer schedule than the tuning's). Seed
   by seed (seed 0 of every method, then seed 1, ...; group by group where the spec sets
   ``final_groups``: the headline's methods first, say), each
   final run followed at once by its eval controls (``controls.eval``: its checkpoint
   re-evaluated with one class per anchor, at score threshold 0.001): no checkpoint has to
   outlive the session that wrote it. A re-evaluation whose checkpoint is not here (a final
   run copied as records, without it) is skipped with a warning, and the report says so.
4. ``controls``: the retrained variants (``controls.train``: the softmax prior per class), at
   the final's schedule.
5. ``report``: OUT/report.md and report.csv (reports/ablation.py), ``## Verdict`` first; then
   the study's tables and the report made from them in results/<study>/ (tools/ablation.py).

This module runs stages 1-4 (``run_stage``); tools/ablation.py, the command, runs them in order
and then the report.

Rerunning the command continues where it stopped: finished jobs are skipped, killed ones
resumed (train.py's sweep resumption). ``--quick`` runs the whole protocol in miniature.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from detection.run_folder import ENDED
from reports.runs import load_runs
from studies.sweep import DryRun, Sweep, finished, finished_runs, merge

STUDY = Path(__file__).parent / "specs" / "bg_ablation.yaml"
STAGES = ("tune", "select", "final", "controls", "report")


@dataclass(frozen=True)
class Setting:
    """What the tuning chose for one method: config key -> value, typed as selection.yaml holds
    them (``{"optim.lr": 0.05, "loss.alpha": 0.25}``). Before the tuning (a dry run) the keys it
    will choose map to None: ``pending()`` names them and ``overrides()`` leaves them out, so a
    job is composed at the config's defaults there (they do not change its speed)."""

    values: dict

    def overrides(self) -> list[str]:
        """The chosen values as train.py overrides (``["optim.lr=0.05", "loss.alpha=0.25"]``)."""
        return [f"{k}={v}" for k, v in self.values.items() if v is not None]

    def pending(self) -> list[str]:
        """The keys not chosen yet."""
        return [k for k, v in self.values.items() if v is None]

    def without(self, keys) -> "Setting":
        """This setting less ``keys`` (those a study sweeps or drops)."""
        keys = set(keys)
        return Setting({k: v for k, v in self.values.items() if k not in keys})

    @property
    def lr(self) -> float | None:
        return self.values.get("optim.lr")


class Study:
    """The protocol of studies/specs/bg_ablation.yaml, rooted at ``out``."""

    def __init__(self, out, quick: bool = False, spec=STUDY, overrides=()):
        self.out, self.quick = Path(out).resolve(), quick
        self.name = Path(spec).stem  # its results' folder name: results/bg_ablation
        s = OmegaConf.to_container(OmegaConf.load(spec))
        self.methods: dict[str, list[str]] = s["methods"]
        self.tune, self.controls = s["tune"], s["controls"]
        # each method's own hyperparameters, tuned at its best lr: method -> {key: values}
        self.own: dict[str, dict[str, list]] = self.tune.get("own") or {}
        self.seeds = s["quick"]["seeds"] if quick else s["seeds"]
        # a method's own seeds where it needs more than the others (the headline's five); not in --quick
        self.method_seeds: dict[str, list] = {} if quick else s.get("method_seeds") or {}
        # methods tuned and selected but given no final runs (a budget's cut): method -> why; not in --quick
        cut = {} if quick else s.get("left_out") or {}
        if cut and (not cut.get("why") or not cut.get("methods") or set(cut["methods"]) - set(self.methods)):
            raise ValueError(f"{spec}: left_out must be {{methods: [names of `methods`], why: a sentence}}; "
                             f"it is {cut}")
        self.left_out: dict[str, str] = {m: cut["why"] for m in cut.get("methods", [])}
        # methods that are the cells of two factors ({assigner: [...], loss: [...]}, cell
        # <assigner>_<loss>): the report's factorial section (reports/factorial.py); {} if not
        self.factors: dict[str, list] = s.get("factors") or {}
        # the final stage's order: group by group, each seed by seed (``final_order``); one group
        # of every method unless the spec says otherwise (the headline first, what a budget may cut last)
        self.final_groups: list[list[str]] = s.get("final_groups") or [list(self.methods)]
        if sorted(m for g in self.final_groups for m in g) != sorted(self.methods):
            raise ValueError(f"{spec}: final_groups must name every method of `methods` once, in groups "
                             f"(lists of names); it names {self.final_groups}, the methods are {list(self.methods)}")
        self.common = merge(s["common"] + (s["quick"]["common"] if quick else []) + list(overrides))
        # the final sweep's and the controls' own schedule (the tuning's is common's)
        self.final_overrides = list((s["quick"] if quick else s).get("final_overrides") or [])
        self.overrides = list(overrides)
        self.selection_file = self.out / "selection.yaml"

    def base(self, method: str) -> list[str]:
        return [*self.methods[method], *self.common]

    def seeds_of(self, method: str) -> list:
        """The final sweep's (and the controls') seeds of ``method``: its ``method_seeds``, else the
        study's; none for a method ``left_out``."""
        return [] if method in self.left_out else list(self.method_seeds.get(method, self.seeds))

    def all_seeds(self, methods=None) -> list:
        """Every seed some method's final runs use (of ``methods``; default: all), in order."""
        return sorted({s for m in methods or self.methods for s in self.seeds_of(m)})

    def pending(self, method: str) -> Setting:
        """``method``'s setting before its tuning: every key the tuning chooses, not chosen yet."""
        return Setting({"optim.lr": None, **{k: None for k in self.own.get(method, {})}})

    def final_base(self, method: str) -> list[str]:
        """What every final and control job of ``method`` runs with before its selection."""
        return merge([*self.base(method), *self.final_overrides, *self.overrides])

    # --- stage 1 ---
    def tune_lr(self, method: str) -> Sweep:
        return Sweep(self.out / "tune" / "lr" / method, [*self.base(method), *self.tune["overrides"],
                                                           f"seed={self.tune['seed']}"],
                     "optim.lr", self.tune["lr"], f"tune {method}: learning rate")

    def tune_own(self, method: str, lr: float | None) -> list[Sweep]:
        """``method``'s own hyperparameters (``tune.own``: focal's alpha, ...), each over its
        values at ``lr`` (its best; None in a dry run: not chosen yet), one sweep per key into
        ``tune/<key's last part>/<method>``."""
        at = Setting({"optim.lr": lr})
        return [Sweep(self.out / "tune" / key.split(".")[-1] / method,
                      [*self.base(method), *self.tune["overrides"], f"seed={self.tune['seed']}", *at.overrides()],
                      key, values, f"tune {method}: {key.split('.')[-1]} at lr {lr if lr is not None else '(its best)'}",
                      pending=at.pending())
                for key, values in self.own.get(method, {}).items()]

    def tuning_so_far(self) -> list[dict]:
        """Before the select stage (a study still tuning): every tuning sweep's ``candidates``,
        as ``select`` writes them, none chosen. The own-hyperparameter sweeps' runs (at the lr
        the lr pass chooses) are there once every lr pass has ended."""
        return [{"method": m, "key": sweep.key, **r, "chosen": False}
                for m in self.methods for sweep in [self.tune_lr(m), *self.tune_own(m, None)]
                for r in candidates(sweep)]

    # --- stage 2 ---
    def read_selection(self) -> dict[str, dict]:
        """selection.yaml's ``chosen``: method -> {key: value}."""
        if not self.selection_file.is_file():
            raise FileNotFoundError(
                f"no selection at {self.selection_file}: the final sweep runs each method at the setting "
                f"chosen on the tuning split. Make it with `python -m tools.ablation --out {self.out}"
                f"{' --quick' if self.quick else ''} --stage tune` then `--stage select` (or `make ablation`)")
        return yaml.safe_load(self.selection_file.read_text())["chosen"]

    def selected(self, method: str) -> Setting:
        return Setting(dict(self.read_selection()[method]))

    def setting(self, method: str, dry: bool = False) -> Setting:
        """``method``'s chosen setting; in a dry run before the selection, its pending one."""
        if dry and not self.selection_file.is_file():
            return self.pending(method)
        return self.selected(method)

    def settings(self, dry: bool = False) -> dict[str, Setting]:
        """Every method's ``setting``."""
        return {m: self.setting(m, dry) for m in self.methods}

    # --- stage 3 ---
    def seeds_or_all(self, method: str, seeds: list | None) -> list:
        """``seeds`` as a list; None: all of ``method``'s (``seeds_of``)."""
        return self.seeds_of(method) if seeds is None else list(seeds)

    def final(self, method: str, setting: Setting, seeds: list | None = None) -> Sweep:
        """``method``'s final runs at ``setting`` over ``seeds`` (default: all its ``seeds_of``)."""
        return Sweep(self.out / "final" / method, [*self.final_base(method), *setting.overrides()], "seed",
                     self.seeds_or_all(method, seeds), f"final {method}",
                     pending=setting.pending())

    def reevaluations(self, method: str, setting: Setting, seeds: list | None = None) -> list[Sweep]:
        """The eval controls (``controls.eval``) of ``method``'s final runs of ``seeds`` (default:
        all): one sweep per control, each job re-evaluating its seed's final checkpoint."""
        seeds = self.seeds_or_all(method, seeds)
        checkpoint = f"checkpoint={self.final_checkpoint(method, '${seed}')}"
        return [Sweep(self.out / "controls" / name / method,
                      [*self.final_base(method), *setting.overrides(), "eval_only=true", checkpoint, *overrides],
                      "seed", seeds, f"control {name}: {method}", reads=self.final_checkpoints(method, seeds),
                      pending=setting.pending())
                for name, overrides in (self.controls.get("eval") or {}).items()]

    def final_order(self, settings: dict[str, Setting]) -> list[Sweep]:
        """Stage 3 as it runs: group by group (``final_groups``; one group of every method unless the
        spec says otherwise), within a group seed by seed, every method's final run of a seed before
        the next seed's (a study stopped midway has paired seeds of every method of the groups it
        reached, not every seed of some), each run followed at once by the re-evaluations of its
        checkpoint (``reevaluations``), so that no checkpoint has to outlive the session that wrote
        it (a session's records leave checkpoints out)."""
        return [sweep for group in self.final_groups for seed in self.all_seeds(group) for m in group
                if seed in self.seeds_of(m)
                for sweep in [self.final(m, settings[m], [seed]), *self.reevaluations(m, settings[m], [seed])]]

    def final_checkpoint(self, method: str, seed) -> Path:
        """The checkpoint of ``method``'s final run of ``seed`` (``"${seed}"``: a sweep's own)."""
        return self.out / "final" / method / f"seed{seed}" / "checkpoints" / "last.pt"

    def final_checkpoints(self, method: str, seeds: list | None = None) -> list[Path]:
        """The checkpoints of ``method``'s final runs of ``seeds`` (default: all), one per seed,
        that the eval controls re-evaluate."""
        return [self.final_checkpoint(method, s) for s in self.seeds_or_all(method, seeds)]

    # --- stage 4 ---
    def retrained(self, settings: dict[str, Setting]) -> list[Sweep]:
        """Stage 4: the train controls (``controls.train``: retrained variants), each of its
        methods at its ``settings`` over its seeds."""
        return [Sweep(self.out / "controls" / name / m, [*self.final_base(m), *settings[m].overrides(),
                                                         *spec["overrides"]],
                      "seed", self.seeds_of(m), f"control {name}: {m}", pending=settings[m].pending())
                for name, spec in (self.controls.get("train") or {}).items() for m in spec["methods"]]


def candidates(sweep: Sweep) -> list[dict]:
    """A row {value, AP, status, run} per value of ``sweep``'s grid, in its order, then per
    value run beyond it (``extend_lr``), read from ``sweep.dir``: AP where the run finished,
    else None; status ``missing`` where no run is there."""
    runs, _ = load_runs(sweep.dir) if sweep.dir.is_dir() else ([], [])
    by_value, found = {}, []
    for run in runs:
        value = run.config
        for part in sweep.key.split("."):
            value = (value or {}).get(part)
        by_value[str(value)] = run
        found.append(value)
    grid = [str(v) for v in sweep.values]
    extended = sorted({v for v in found if str(v) not in grid and v is not None})  # runs beyond the grid (extend)
    rows = []
    for value in [*sweep.values, *extended]:
        run = by_value.get(str(value))
        ap = run.eval["AP"] if run is not None and run.status == "finished" and run.eval else None
        rows.append({"value": value, "AP": ap, "status": "missing" if run is None else run.status,
                     "run": run.name if run is not None else f"{sweep.key}={value}"})
    return rows


def choose(sweep: Sweep) -> tuple[object, list[dict]]:
    """The value of ``sweep.key`` whose run has the best AP in ``sweep.dir``, and its
    ``candidates`` rows, each marked ``chosen`` or not. Diverged, failed, unfinished or missing
    runs are rows too, never chosen; with no finished run: a ValueError naming them. Equal APs:
    the first in that order."""
    rows = candidates(sweep)
    done = [r for r in rows if r["AP"] is not None]
    if not done:
        raise ValueError(f"{sweep.dir}: no finished run to choose {sweep.key} from ("
                         + ", ".join(f"{r['run']}: {r['status']}" for r in rows)
                         + "); rerun the tuning stage to complete it")
    skipped = [r for r in rows if r["AP"] is None]
    if skipped:
        print(f"warning: {sweep.dir}: choosing {sweep.key} among the finished runs only; left out: "
              + ", ".join(f"{r['run']} ({r['status']})" for r in skipped), file=sys.stderr)
    best = max(done, key=lambda r: r["AP"])  # max keeps the first of equals
    for r in rows:
        r["chosen"] = r is best
    return best["value"], rows


def select(study: Study) -> dict:
    """Stage 2: each method's learning rate (then its own hyperparameters) from its tuning sweeps."""
    chosen, table = {}, []
    for m in study.methods:
        lr, rows = choose(study.tune_lr(m))
        table += [{"method": m, "key": "optim.lr", **r} for r in rows]
        chosen[m] = {"optim.lr": lr}
        for sweep in study.tune_own(m, lr):
            value, rows = choose(sweep)
            table += [{"method": m, "key": sweep.key, **r} for r in rows]
            chosen[m][sweep.key] = value
    study.selection_file.parent.mkdir(parents=True, exist_ok=True)
    study.selection_file.write_text(yaml.safe_dump({"chosen": chosen, "candidates": table}, sort_keys=False))
    print(f"selection: {chosen} -> {study.selection_file}")
    return chosen


def stage_sweeps(study: Study, stage: str, dry: bool) -> list[Sweep]:
    """The sweeps of ``stage``; in a dry run the settings not chosen yet are placeholders."""
    if stage == "tune":
        return [study.tune_lr(m) for m in study.methods] + [s for m in study.methods for s in study.tune_own(m, None)]
    if stage == "final":
        return study.final_order(study.settings(dry))
    if stage == "controls":
        return study.retrained(study.settings(dry))
    return []


def extend_edge(sweep: Sweep, times: int, name: str) -> None:
    """While the best ``sweep.key`` (a learning rate) is at an end of the values tried, try the
    next one beyond it (x2 or /2), at most ``times`` times: a choice at the edge of a grid is a
    guess. ``times`` counts the values beyond the grid whose runs ended, so a rerun (a study
    resumed in a later session) goes no further than the first pass did. ``name`` says whose lr
    it is in the log."""
    grid = {str(v) for v in sweep.values}
    for _ in range(times):
        best, rows = choose(sweep)
        # the values whose runs ended: one beyond the grid stopped midway (a session's end) is
        # reached again by this rule, and its sweep resumes it
        ap = {r["value"]: r["AP"] for r in rows if r["status"] in ENDED}
        tried = sorted(ap)
        if sum(str(v) not in grid for v in tried) >= times:
            return
        if best not in (tried[0], tried[-1]) or len(tried) < 2:
            return
        neighbour = tried[1] if best == tried[0] else tried[-2]
        if ap[neighbour] is not None and ap[neighbour] >= ap[best]:
            return  # a tie at the edge (e.g. nothing learned yet) says nothing about beyond it
        beyond = round(best * 2 if best == tried[-1] else best / 2, 8)
        Sweep(sweep.dir, sweep.fixed, sweep.key, [beyond], f"{name}: learning rate {beyond} "
              f"(the best, {best}, was at the end of the values tried)").run()


def extend_lr(study: Study, method: str) -> None:
    """``extend_edge`` on ``method``'s lr tuning, at most ``tune.extend`` times."""
    extend_edge(study.tune_lr(method), study.tune.get("extend", 0), f"tune {method}")


def copy_same(sweep: Sweep, matches) -> None:
    """Copies each run of ``matches`` ((job, folder name, source), ``Sweep.same_runs``'s with a
    source) into its job's folder in ``sweep`` (``studies.records.copy_run``), unless it was
    copied there before or trained there."""
    from reports.runs import reused_from
    from studies.records import copy_run

    for job, name, source in matches:
        dst = sweep.dir / name
        if reused_from(dst) is None and not finished(dst):
            copy_run(source, dst, job)


def reuse(sweep: Sweep, sources: list[Path]) -> list[str]:
    """Copies into ``sweep``'s folder each job's run that a sweep folder of ``sources`` already
    finished with the same resolved config (``copy_same``), instead of training it again;
    returns the folder names of the jobs that are copies. A method's own-hyperparameter pass at
    its best lr holds one such job: the loss's default value (focal's alpha 0.25), which the lr
    pass trained at that lr. On one kind of device the run is the same either way (on the CPU,
    bit-identical)."""
    matches = [m for m in sweep.same_runs(finished_runs(sources)) if m[2] is not None]
    copy_same(sweep, matches)
    return [name for _, name, _ in matches]


def run_stage(study: Study, stage: str) -> None:
    if stage == "tune":
        for m in study.methods:
            study.tune_lr(m).run()
            extend_lr(study, m)
        for m in study.methods:  # the second pass needs this method's best lr
            lr, _ = choose(study.tune_lr(m))
            for sweep in study.tune_own(m, lr):
                if copies := reuse(sweep, [study.tune_lr(m).dir]):
                    print(f"== {sweep.label}: {', '.join(copies)} copied from the lr pass (the same run), not trained",
                          flush=True)
                sweep.run()
    elif stage == "select":
        select(study)
    elif stage == "report":
        raise ValueError("the report stage is tools.ablation's (reports.ablation.write_report)")
    else:
        for sweep in stage_sweeps(study, stage, dry=False):
            if (missing := sweep.missing()) and not sweep.settled():
                # Final runs copied as records (tools.records) have no checkpoints: the other
                # controls still run, and the report says why this one did not. A control that
                # ran before they were copied (its records restored with them) has nothing to do.
                print(f"warning: skipping {sweep.label}: {len(missing)} of the {len(sweep.reads)} files it reads "
                      f"are not here (first: {missing[0]}): the final runs have not run yet, or were copied as "
                      "records, without checkpoints", file=sys.stderr)
                continue
            sweep.run()


def dry_run(study: Study, stages) -> int:
    """Prints every job of ``stages`` (its overrides; each config composed, so a bad override
    fails here) and the study's estimated time at the images/s measured here (``build.speed``).
    A job whose run folder holds a run that ended (``ENDED``: a rerun skips it) is marked so and
    left out of the time: a study resumed in a later session sees what is left. Returns the
    number of jobs, ended ones included."""
    from detection import build

    dry = DryRun()
    for stage in stages:
        print(f"## stage {stage}", flush=True)
        if stage == "select":
            print(f"  choose each method's lr (then alpha) by tuning AP -> {study.selection_file}")
        if stage == "report":
            print(f"  {study.out / 'report.md'}: Verdict, selection, convergence, controls")
        tunes = [study.tune_lr(m).dir for m in study.methods] if stage == "tune" else []
        for sweep in stage_sweeps(study, stage, dry=True):
            print(f"  {sweep.label} -> {sweep.dir}\n    every job: {' '.join(sweep.fixed)}{sweep.pending_note()}")
            if sweep.dir in tunes and study.tune.get("extend"):
                print(dry.extend_note(study.tune["extend"]))
            for job in sweep.jobs():
                # settings chosen later are left at their defaults: they do not change the speed
                print(dry.job(sweep, job, build.config([o.replace("${seed}", "0") for o in sweep.composable(job)]),
                              job[-1]), flush=True)  # a line per job as it is measured, into a file too
    print(*dry.summary(), sep="\n")
    return dry.jobs
