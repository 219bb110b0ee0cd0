"""The studies that build on the fair ablation: ``make followups``.

    python -m tools.followups --ablation ABLATION_OUT --out OUT [--study NAME ...] [--quick]
                              [--dry-run] [--results DIR] [OVERRIDE ...]

studies/specs/followups.yaml says what each study sweeps; each study names its kind by
``_target_`` (below: ``Grid``, ``Families``, ``Levels``), whose fields are its keys. Every method runs at the setting the
ablation chose on its tuning split (ABLATION_OUT/selection.yaml) except the keys a study
sweeps or drops; the common schedule and the seeds are the file's. Each study is one folder
OUT/<study>/ of train.py multiruns (one per method, or per method and level) and gets the
sweep report of reports/sweep.py, whose study sections (the paper's Table 1a/1b beside ours,
AP against measured imbalance) appear where its runs call for them. Each finished study is
then written to RESULTS/<study>/ (``--results``, default results/, not with ``--quick``): its
tables, the report made from them and its plots (``python -m tools.results write``); runs copied
from the ablation are rows naming their source there.

``imbalance_sweep`` first tunes each method's lr again at the sparse extreme
(``tune_at``: factors of the chosen lr, trained and evaluated on that dataset's tuning split)
and gives each level the setting of the extreme nearer to it in log measured ratio. A level may
run with more overrides than the others (``level_overrides``: the sparse levels' longer
schedule, which their AP curves required); its tuning runs at the tune_at level's.

``table1d`` (issue 15) runs, besides the ablation's methods, its own ``families`` (OHEM on
softmax CE at an NMS threshold and ratio), each over its ``family_grid`` (batch per image); a
family's lr is tuned once, on the tuning split at ``tune_family_at``, as ``lr_factors`` of the
lr the ablation chose for ``lr_of`` (OHEM's base loss), and carried to its other grid points.

Both tunings follow the ablation's rule for a best lr at an end of the values tried: the next
lr beyond it (x2 or /2) is trained too, up to the ablation's ``tune.extend`` times.

A job whose resolved config equals a finished run of the ablation's final stage (the same
method, setting, schedule and seed: the prior_init study's "on" arm and the imbalance study's
densest level, while that final trained 3000 iterations) is not trained again: the run's
records are copied into the study's folder (tools.records' copy, its overrides those of the job, ``reused_from.txt`` naming the source).
A study may set its own ``seeds`` (fewer for the Table 1 analogues than for the headline).

Rerunning the command continues where it stopped (train.py's sweep resumption).
"""

import argparse
import itertools
import math
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hydra.utils import get_class
from omegaconf import OmegaConf

from reports.runs import RESULTS
from studies.ablation import STUDY, Setting, Study, choose, copy_same, extend_edge
from studies.sweep import DryRun, Later, Sweep, finished_runs, merge

FOLLOWUPS = Path(__file__).parent / "specs" / "followups.yaml"


# --- the kinds of study: each study of the spec names one with _target_ -----------------------

@dataclass(kw_only=True)
class Kind:
    """What every kind of study has: the ablation's ``methods`` it runs at their chosen settings,
    ``seeds`` (the study's own; default: the file's), ``overrides`` for every job and ``drop``,
    keys of the chosen setting it does not keep."""

    methods: list[str]
    seeds: list[int] | None = None
    overrides: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)

    def all_methods(self) -> list[str]:
        return list(self.methods)

    def own_methods(self) -> dict[str, list[str]]:
        """The methods this study defines itself (name -> overrides), not the ablation's: none."""
        return {}

    def left_out(self) -> set[str]:
        """The keys of the chosen setting this study does not keep."""
        return set(self.drop)

    def tune_sweeps(self, f: "Followups", name: str) -> list[Sweep]:
        """The sweeps that tune what its sweeps need: none."""
        return []

    def lrs(self, f: "Followups", name: str, dry: bool = False) -> dict | None:
        """What the sweeps need of the tuning: nothing."""
        return None

    def sweeps(self, f: "Followups", name: str, lrs: dict | None = None) -> list[Sweep]:
        raise NotImplementedError


@dataclass(kw_only=True)
class Grid(Kind):
    """The methods over every point of ``grid`` (config key -> values) x the seeds, one multirun
    per method and point (a point the ablation ran can be copied); the chosen setting loses the
    keys the grid sweeps."""

    grid: dict[str, list] = field(default_factory=dict)

    def left_out(self) -> set[str]:
        return set(self.grid) | set(self.drop)

    def points(self, grid: dict) -> list[dict]:
        return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] if grid else [{}]

    def point_sweeps(self, f: "Followups", name: str, method: str, grid: dict, setting: Setting) -> list[Sweep]:
        """One multirun of ``method`` per point of ``grid`` at ``setting``, over the study's seeds;
        a key the grid sweeps (schedule_check's schedule.max_iters) replaces the common one."""
        fixed = [o for o in merge([*f.base(name, method), *setting.overrides()]) if o.split("=", 1)[0] not in grid]
        return [Sweep(f.out / name / method, fixed, "seed", f.seeds_of(name),
                      f"{name}: {method}" + "".join(f" {k}={v}" for k, v in point.items()),
                      grid={k: [v] for k, v in point.items()}, pending=setting.pending())
                for point in self.points(grid)]

    def sweeps(self, f: "Followups", name: str, lrs: dict | None = None) -> list[Sweep]:
        return [s for m in self.methods for s in self.point_sweeps(f, name, m, self.grid, f.setting(name, m))]


@dataclass(kw_only=True)
class Families(Grid):
    """``Grid``, and besides the ablation's methods its own ``families`` (name -> overrides:
    Table 1d's OHEM variants), each over ``family_grid``. A family's lr is tuned once, on the
    tuning split at the ``tune_family_at`` point of its grid, as ``lr_factors`` of the lr the
    ablation chose for ``lr_of`` (OHEM's base loss), and carried to its other grid points."""

    families: dict[str, list[str]] = field(default_factory=dict)
    family_grid: dict[str, list] = field(default_factory=dict)
    tune_family_at: dict = field(default_factory=dict)
    lr_of: str = ""
    lr_factors: list[float] = field(default_factory=list)

    def all_methods(self) -> list[str]:
        return [*self.methods, *self.families]

    def own_methods(self) -> dict[str, list[str]]:
        return dict(self.families)

    def tune_sweeps(self, f: "Followups", name: str) -> list[Sweep]:
        lr = f.chosen(self.lr_of).lr
        at = [f"{k}={v}" for k, v in self.tune_family_at.items()]
        return [Sweep(f.out / name / "tune" / m, [*f.base(name, m), *at, "eval_split=tune", f"seed={f.tune_seed}"],
                      "optim.lr", factor_lrs(lr, self.lr_factors, f"{self.lr_of}'s"),
                      f"{name}: tune {m} at {' '.join(at)}", pending=["optim.lr"] if lr is None else [])
                for m in self.families]

    def lrs(self, f: "Followups", name: str, dry: bool = False) -> dict:
        """family -> the lr its tuning sweep chose (None in a dry run: not chosen yet)."""
        return {m: None if dry else choose(sweep)[0] for m, sweep in zip(self.families, self.tune_sweeps(f, name))}

    def sweeps(self, f: "Followups", name: str, lrs: dict | None = None) -> list[Sweep]:
        lrs = lrs if lrs is not None else self.lrs(f, name, dry=True)
        return super().sweeps(f, name) + [
            s for m in self.families for s in self.point_sweeps(f, name, m, self.family_grid, Setting({"optim.lr": lrs[m]}))]


@dataclass(kw_only=True)
class Levels(Kind):
    """The ``methods`` on each of ``levels`` (dataset configs: the imbalance sweep's measured
    foreground:background ``ratios``) x the seeds. Each method's lr is tuned again at the
    ``tune_at`` level (the sparse extreme) as ``lr_factors`` of its chosen lr, on that
    dataset's tuning split; a level takes the lr of the extreme nearer to it in log ratio (the
    dense one's is the ablation's choice). ``level_overrides``: what a level runs with beyond
    the study's jobs (a sparse level's longer schedule); its tuning runs at the tune_at level's."""

    levels: list[str]
    tune_at: str
    lr_factors: list[float]
    ratios: dict[str, float]
    level_overrides: dict[str, list[str]] = field(default_factory=dict)

    def at_level(self, f: "Followups", level: str) -> list[str]:
        """What ``level`` runs with beyond the study's jobs; not in --quick, whose schedule is the miniature's."""
        return [] if f.quick else list(self.level_overrides.get(level, []))

    def tune_sweeps(self, f: "Followups", name: str) -> list[Sweep]:
        sweeps = []
        for m in self.methods:
            setting = f.setting(name, m)
            sweeps.append(Sweep(f.out / name / "tune" / m,
                                merge([*f.base(name, m), *setting.overrides(), f"dataset={self.tune_at}",
                                       *self.at_level(f, self.tune_at), "eval_split=tune", f"seed={f.tune_seed}"]),
                                "optim.lr", factor_lrs(setting.lr, self.lr_factors, "chosen"),
                                f"{name}: tune {m} on {self.tune_at}", pending=setting.pending()))
        return sweeps

    def lrs(self, f: "Followups", name: str, dry: bool = False) -> dict | None:
        """(method, level) -> lr: the ablation's choice at the dense extreme, the one tuned at
        ``tune_at`` there, and for a level between them the one of the extreme nearer in log
        ratio; None in a dry run (not tuned yet)."""
        if dry:
            return None
        dense, sparse = self.levels[0], self.tune_at
        lrs = {}
        for m, sweep in zip(self.methods, self.tune_sweeps(f, name)):
            chosen = f.chosen(m).lr
            tuned, _ = choose(sweep)
            for level in self.levels:
                ratio = self.ratios[level]
                nearer_sparse = abs(math.log(ratio / self.ratios[sparse])) < abs(math.log(ratio / self.ratios[dense]))
                lrs[(m, level)] = tuned if nearer_sparse else chosen
        return lrs

    def sweeps(self, f: "Followups", name: str, lrs: dict | None = None) -> list[Sweep]:
        """Per method and level, at that level's lr (``lrs[(method, level)]``; without ``lrs``,
        as in a dry run, the lr is pending)."""
        sweeps = []
        for m in self.methods:
            setting = f.setting(name, m)
            for level in self.levels:
                at = Setting({**setting.values, "optim.lr": None if lrs is None else lrs[(m, level)]})
                sweeps.append(Sweep(f.out / name / m / level,
                                    merge([*f.base(name, m), *at.overrides(), f"dataset={level}",
                                           *self.at_level(f, level)]),
                                    "seed", f.seeds_of(name), f"{name}: {m} on {level}", pending=at.pending()))
        return sweeps


def kind(spec, name: str, study: dict) -> Kind:
    """The study ``name`` of the file ``spec``: its ``_target_`` class built from its other keys
    (as hydra's instantiate, but leaving the jobs' ``${...}`` interpolations to train.py)."""
    fields = {k: v for k, v in study.items() if k != "_target_"}
    try:
        return get_class(study["_target_"])(**fields)
    except (KeyError, ImportError, TypeError) as e:
        raise ValueError(f"{spec}: study {name}: expected `_target_: studies.followups.Grid` (or Families, Levels) "
                         f"and that kind's fields, got {sorted(study)} ({type(e).__name__}: {e})") from None


def factor_lrs(lr: float | None, factors: list[float], of: str) -> list:
    """``factors`` of ``lr``; before ``lr`` is chosen (a dry run), what they will be (``Later``)."""
    return [Later(f"{of} x {x}") if lr is None else round(lr * x, 6) for x in factors]


class Followups:
    """The studies of ``spec`` rooted at ``out``, at the settings chosen by the ablation in ``ablation``."""

    def __init__(self, out, ablation, quick: bool = False, spec=FOLLOWUPS, overrides=(), dry: bool = False):
        self.out, self.quick, self.dry = Path(out).resolve(), quick, dry
        s = OmegaConf.to_container(OmegaConf.load(spec))  # unresolved: jobs' overrides may hold interpolations
        self.ablation = Study(ablation, quick=quick)  # its methods, its selection, its quick block
        self.studies: dict[str, Kind] = {name: kind(spec, name, study) for name, study in s["studies"].items()}
        self.seeds = s["quick"]["seeds"] if quick else s["seeds"]
        self.tune_seed = self.ablation.tune["seed"]
        self._finals: dict[str, Path] | None = None
        quick_common = OmegaConf.to_container(OmegaConf.load(STUDY))["quick"]["common"] if quick else []
        self.common = merge(s["common"] + quick_common + list(overrides))

    def methods_of(self, study: str) -> list[str]:
        """The ablation's methods the study runs, then its own (table1d's OHEM families)."""
        return self.studies[study].all_methods()

    def chosen(self, method: str) -> Setting:
        """The ablation's choice for ``method``; before there is one, in a dry run, its pending setting."""
        return self.ablation.setting(method, self.dry)

    def setting(self, study: str, method: str) -> Setting:
        """The ablation's choice for ``method`` without the keys ``study`` sweeps or drops."""
        return self.chosen(method).without(self.studies[study].left_out())

    def seeds_of(self, study: str) -> list:
        """The study's own ``seeds`` if it sets them (not in --quick), else the file's."""
        own = self.studies[study].seeds
        return self.seeds if self.quick or own is None else own

    def base(self, study: str, method: str) -> list[str]:
        spec = self.studies[study]
        own = spec.own_methods().get(method) or self.ablation.methods[method]
        return merge([*own, *self.common, *spec.overrides])

    def tune_sweeps(self, study: str) -> list[Sweep]:
        """The sweeps that tune what ``study``'s own sweeps need (none for most studies)."""
        return self.studies[study].tune_sweeps(self, study)

    def lrs(self, study: str, dry: bool = False) -> dict | None:
        """What ``sweeps`` needs of the tuning (per (method, level) or per family, the lr)."""
        return self.studies[study].lrs(self, study, dry)

    def sweeps(self, study: str, lrs: dict | None = None) -> list[Sweep]:
        return self.studies[study].sweeps(self, study, lrs)

    # --- runs the ablation already made ---
    def final_runs(self) -> dict[str, Path]:
        """canonical resolved config -> folder of each finished run of the ablation's final stage."""
        if self._finals is None:
            final = self.ablation.out / "final"
            self._finals = finished_runs(sorted(p for p in final.iterdir() if p.is_dir()) if final.is_dir() else [])
        return self._finals

    def reusable(self, sweep: Sweep) -> list[tuple[str, Path]] | None:
        """(job folder name, ablation run) for every job of ``sweep`` if each equals a finished
        ablation run in its resolved config; None if any does not (the sweep is trained)."""
        if not self.final_runs() or sweep.pending:  # a setting not chosen yet (dry run)
            return None
        pairs = []
        for _, name, source in sweep.same_runs(self.final_runs()):
            if source is None:
                return None
            pairs.append((name, source))
        return pairs

    def reuse(self, sweep: Sweep) -> bool:
        """Copies the ablation's runs into ``sweep``'s folder when every job has one (see the
        module docstring); True if it did (or had), False if the sweep must be trained. A job
        whose folder holds a copy already, or a run trained there (the ablation's run may be a
        copy of this one), is left as it is."""
        pairs = self.reusable(sweep)
        if pairs is None:
            return False
        print(f"== {sweep.label}: {len(pairs)} jobs, the same runs as the ablation's: copied, not trained", flush=True)
        copy_same(sweep, [(job, name, source) for (name, source), job in zip(pairs, sweep.jobs())])
        return True

    def all_sweeps(self, study: str, dry: bool = False) -> list[Sweep]:
        return self.tune_sweeps(study) + self.sweeps(study, self.lrs(study, dry))

    def tune(self, study: str) -> None:
        """Trains the study's tuning sweeps, each extended by the ablation's edge rule (a best lr
        at an end of the factors is a guess: the next one beyond it is trained too)."""
        for sweep in self.tune_sweeps(study):
            sweep.run()
            extend_edge(sweep, self.ablation.tune.get("extend", 0), sweep.label)

    def run(self, study: str) -> Path:
        self.tune(study)
        for sweep in self.sweeps(study, self.lrs(study)):
            if not self.reuse(sweep):
                sweep.run()
        # In a fresh process: a study trains for hours, and tools/ edited meanwhile would meet the
        # modules this one imported at its start.
        subprocess.run([sys.executable, "-m", "tools.report", str(self.out / study)], check=True)
        return self.out / study / "report.md"

    def job_commands(self, study: str, where: dict[str, str], seeds=None) -> list[str]:
        """The commands of ``study``'s sweeps whose grid point matches ``where`` ({key: value}), one
        per seed (``seeds``, default the study's)."""
        commands = []
        for sweep in self.sweeps(study, self.lrs(study)):  # a study with tuning: its lrs from the tuning runs
            point = {k: str(v[0]) for k, v in sweep.grid.items()}
            if any(point.get(k) != v for k, v in where.items()):
                continue
            for seed in sweep.values if seeds is None else seeds:
                job = Sweep(sweep.dir, sweep.fixed, sweep.key, [seed], sweep.label, sweep.grid)
                commands.append(shlex.join([*job.command(), "~hydra.callbacks.report"]))
        return commands


def publish(f: Followups, study: str, results: Path) -> Path:
    """RESULTS/<study>/ from the study's folder (``python -m tools.results write``, in a fresh
    process as the report): a run copied from the ablation, or from another of these studies,
    is a row naming its source there. Returns the path of its report.md."""
    sources = {f.ablation.out: f.ablation.name, **{f.out / s: s for s in f.studies}}
    subprocess.run([sys.executable, "-m", "tools.results", "write", str(f.out / study), "--study", study,
                    "--results", str(results), *(f"--source={folder}={name}" for folder, name in sources.items())],
                   check=True)
    return results / study / "report.md"


def dry_run(f: Followups, studies) -> int:
    from detection import build

    dry = DryRun()
    for study in studies:
        print(f"## {study}", flush=True)
        tunes = f.tune_sweeps(study)
        for sweep in f.all_sweeps(study, dry=True):
            print(f"  {sweep.label} -> {sweep.dir}\n    every job: {' '.join(sweep.fixed)}{sweep.pending_note()}")
            if f.reusable(sweep):
                print(f"    {len(sweep.jobs())} jobs: the ablation's own runs, copied (no training)")
                continue
            if sweep in tunes and f.ablation.tune.get("extend"):
                print(dry.extend_note(f.ablation.tune["extend"]))
            for job in sweep.jobs():
                # settings chosen later are left at their defaults: they do not change the speed
                print(dry.job(sweep, job, build.config(sweep.composable(job)), " ".join(job[len(sweep.fixed):])),
                      flush=True)  # a line per job as it is measured, into a file too
    print(*dry.summary(), sep="\n")
    return dry.jobs


def main(argv=None) -> int | None:
    p = argparse.ArgumentParser(prog="python -m tools.followups", description=__doc__.split("\n")[0])
    p.add_argument("--ablation", required=True, help="the fair ablation's folder (its selection.yaml)")
    p.add_argument("--out", required=True, help="where the studies' sweep folders go")
    p.add_argument("--study", nargs="*", help="which studies (default: all of the file)")
    p.add_argument("--quick", action="store_true", help="in miniature (the ablation's quick block)")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and their estimated time, train nothing")
    p.add_argument("--results", type=Path, help="write each study's tables and report to RESULTS/<study>/ "
                                                   "(default: results/, not with --quick)")
    p.add_argument("--spec", type=Path, default=FOLLOWUPS, help="the studies file")
    p.add_argument("overrides", nargs="*", help="train.py overrides for every job")
    args = p.parse_args(argv)
    results = args.results if args.results is not None or args.quick else RESULTS
    try:
        f = Followups(args.out, args.ablation, args.quick, args.spec, args.overrides, dry=args.dry_run)
    except ValueError as e:
        sys.exit(f"tools.followups: error: {e}")
    studies = args.study or list(f.studies)
    unknown = [s for s in studies if s not in f.studies]
    if unknown:
        p.error(f"unknown study {', '.join(unknown)}: {args.spec} has {', '.join(f.studies)}")
    try:
        if args.dry_run:
            return dry_run(f, studies)
        for study in studies:
            report = f.run(study)
            print(f"wrote {report}" + (f" and {publish(f, study, results)}" if results is not None else ""))
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"tools.followups: error: {e}")
    except subprocess.CalledProcessError as e:
        sys.exit(f"tools.followups: error: a sweep or the report failed ({' '.join(map(str, e.cmd[:6]))} ...); "
                 "rerun the same command to continue")
    return None


if __name__ == "__main__":
    main()
