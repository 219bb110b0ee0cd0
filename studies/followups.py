"""The studies that build on the fair ablation: ``make followups``.

    python -m tools.followups --ablation ABLATION_OUT --out OUT [--study NAME ...] [--quick]
                              [--dry-run] [--results DIR] [OVERRIDE ...]

studies/specs/followups.yaml says what each study sweeps. Every method runs at the setting the
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
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from detection.run_folder import RUN_CONTROL, RunFolder, flatten
from reports.runs import RESULTS
from studies.ablation import STUDY, Study, choose, extend_edge
from studies.sweep import Sweep, merge

FOLLOWUPS = Path(__file__).parent / "specs" / "followups.yaml"


class Followups:
    """The studies of ``spec`` rooted at ``out``, at the settings chosen by the ablation in ``ablation``."""

    def __init__(self, out, ablation, quick: bool = False, spec=FOLLOWUPS, overrides=(), dry: bool = False):
        self.out, self.quick, self.dry = Path(out).resolve(), quick, dry
        s = OmegaConf.to_container(OmegaConf.load(spec))
        self.ablation = Study(ablation, quick=quick)  # its methods, its selection, its quick block
        self.studies: dict[str, dict] = s["studies"]
        self.seeds = s["quick"]["seeds"] if quick else s["seeds"]
        self._finals: dict[str, Path] | None = None
        quick_common = OmegaConf.to_container(OmegaConf.load(STUDY))["quick"]["common"] if quick else []
        self.common = merge(s["common"] + quick_common + list(overrides))

    def methods_of(self, study: str) -> list[str]:
        """The ablation's methods the study runs, then its own ``families`` (table1d's OHEM)."""
        spec = self.studies[study]
        return [*spec.get("methods", []), *spec.get("families", {})]

    def chosen(self, method: str) -> dict[str, str]:
        """The ablation's choice for ``method`` ({"optim.lr": "0.05", ...}); before there is one,
        in a dry run, placeholders."""
        if self.dry and not self.ablation.selection_file.is_file():
            return {"optim.lr": "<chosen>", **({"loss.alpha": "<chosen>"} if method in self.ablation.tune["alpha"] else {})}
        return dict(o.split("=", 1) for o in self.ablation.selected(method))

    def setting(self, study: str, method: str) -> list[str]:
        """The ablation's choice for ``method`` without the keys ``study`` sweeps or drops."""
        spec = self.studies[study]
        left_out = set(spec.get("grid", {})) | set(spec.get("drop", []))
        return [f"{k}={v}" for k, v in self.chosen(method).items() if k not in left_out]

    def seeds_of(self, study: str) -> list:
        """The study's own ``seeds`` if it sets them (not in --quick), else the file's."""
        return self.seeds if self.quick else self.studies[study].get("seeds", self.seeds)

    def base(self, study: str, method: str) -> list[str]:
        spec = self.studies[study]
        own = spec["families"][method] if method in spec.get("families", {}) else self.ablation.methods[method]
        return merge([*own, *self.common, *spec.get("overrides", [])])

    def level_overrides(self, study: str, level: str) -> list[str]:
        """What ``level`` runs with beyond the study's jobs (its ``level_overrides``: a sparse
        level's longer schedule); not in --quick, whose schedule is the miniature's."""
        return [] if self.quick else list(self.studies[study].get("level_overrides", {}).get(level, []))

    def sweeps(self, study: str, lrs: dict | None = None) -> list[Sweep]:
        """The study's sweeps: per method its grid x the seeds; ``imbalance_sweep``: per method
        and level, at that level's lr (``lrs[(method, level)]``, from ``level_lrs``)."""
        spec, root, seeds = self.studies[study], self.out / study, self.seeds_of(study)
        if "levels" not in spec:
            # one multirun per grid point, so that a point the ablation already ran can be reused
            families = spec.get("families", {})
            sweeps = []
            for m in self.methods_of(study):
                grid = spec.get("family_grid" if m in families else "grid", {})
                points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] if grid else [{}]
                setting = [f"optim.lr={lrs[m]}"] if m in families else self.setting(study, m)
                # a key the grid sweeps (schedule_check's schedule.max_iters) replaces the common one
                fixed = [o for o in merge([*self.base(study, m), *setting]) if o.split("=", 1)[0] not in grid]
                sweeps += [Sweep(root / m, fixed, "seed", seeds,
                                 f"{study}: {m}" + "".join(f" {k}={v}" for k, v in point.items()),
                                 grid={k: [v] for k, v in point.items()}) for point in points]
            return sweeps
        return [Sweep(root / m / level, merge([*self.base(study, m), *self.setting(study, m), f"dataset={level}",
                                               *self.level_overrides(study, level),
                                               *([f"optim.lr={lrs[(m, level)]}"] if lrs else [])]),
                      "seed", seeds, f"{study}: {m} on {level}")
                for m in spec["methods"] for level in spec["levels"]]

    # --- runs the ablation already made ---
    def final_runs(self) -> dict[str, Path]:
        """canonical resolved config -> folder of each finished run of the ablation's final stage."""
        if self._finals is None:
            self._finals = {}
            final = self.ablation.out / "final"
            for status in sorted(final.glob("*/*/status.json")) if final.is_dir() else []:
                folder = RunFolder(status.parent)
                if finished(folder.path) and folder.config.is_file():
                    self._finals.setdefault(canonical(yaml.safe_load(folder.config.read_text())), folder.path)
        return self._finals

    def reusable(self, sweep: Sweep) -> list[tuple[str, Path]] | None:
        """(job folder name, ablation run) for every job of ``sweep`` if each equals a finished
        ablation run in its resolved config; None if any does not (the sweep is trained)."""
        from detection import build

        if not self.final_runs() or any("<" in o for o in sweep.fixed):  # a setting not chosen yet (dry run)
            return None
        pairs = []
        for job in sweep.jobs():
            cfg = build.config(job)
            source = self.final_runs().get(canonical(OmegaConf.to_container(cfg, resolve=True)))
            if source is None:
                return None
            pairs.append((sweep.job_name(job, cfg), source))
        return pairs

    def reuse(self, sweep: Sweep) -> bool:
        """Copies the ablation's runs into ``sweep``'s folder when every job has one (see the
        module docstring); True if it did (or had), False if the sweep must be trained."""
        from reports.runs import REUSED_FROM, reused_from
        from studies.records import copy_records

        pairs = self.reusable(sweep)
        if pairs is None:
            return False
        print(f"== {sweep.label}: {len(pairs)} jobs, the same runs as the ablation's: copied, not trained", flush=True)
        for (name, source), job in zip(pairs, sweep.jobs()):
            dst = sweep.dir / name
            if reused_from(dst) is not None or finished(dst):
                continue  # copied before, or trained here (the ablation's run may be a copy of this one)
            copy_records(source, dst)
            (dst / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(job), default_flow_style=False))
            (dst / REUSED_FROM).write_text(f"{source}\n")
        return True

    def tune_sweeps(self, study: str) -> list[Sweep]:
        """``tune_at``: each method's lr again, as factors of its chosen lr, on that level's tuning
        split. ``families``: each family's lr, as factors of the lr chosen for ``lr_of``, at the
        ``tune_family_at`` point of its grid, on the tuning split."""
        spec = self.studies[study]
        if "families" in spec:
            lr = self.chosen(spec["lr_of"])["optim.lr"]
            lrs = [f"<{spec['lr_of']}'s x {f}>" if lr.startswith("<") else round(float(lr) * f, 6)
                   for f in spec["lr_factors"]]
            at = [f"{k}={v}" for k, v in spec["tune_family_at"].items()]
            return [Sweep(self.out / study / "tune" / m, [*self.base(study, m), *at, "eval_split=tune",
                                                            f"seed={self.ablation.tune['seed']}"],
                          "optim.lr", lrs, f"{study}: tune {m} at {' '.join(at)}")
                    for m in spec["families"]]
        if "tune_at" not in spec:
            return []
        sweeps = []
        for m in spec["methods"]:
            lr = self.chosen(m)["optim.lr"]
            lrs = [f"<chosen x {f}>" if lr.startswith("<") else round(float(lr) * f, 6) for f in spec["lr_factors"]]
            sweeps.append(Sweep(self.out / study / "tune" / m,
                                merge([*self.base(study, m), *self.setting(study, m), f"dataset={spec['tune_at']}",
                                       *self.level_overrides(study, spec["tune_at"]),
                                       "eval_split=tune", f"seed={self.ablation.tune['seed']}"]),
                                "optim.lr", lrs, f"{study}: tune {m} on {spec['tune_at']}"))
        return sweeps

    def level_lrs(self, study: str) -> dict:
        """(method, level) -> lr: the ablation's choice at the dense extreme, the one tuned at
        ``tune_at`` there, and for a level between them the one of the extreme nearer in log ratio."""
        spec = self.studies[study]
        levels, ratios = spec["levels"], spec["ratios"]
        dense, sparse = levels[0], spec["tune_at"]
        lrs = {}
        for m, sweep in zip(spec["methods"], self.tune_sweeps(study)):
            chosen = float(self.chosen(m)["optim.lr"])
            tuned, _ = choose(sweep)
            for level in levels:
                nearer_sparse = abs(math.log(ratios[level] / ratios[sparse])) < abs(math.log(ratios[level] / ratios[dense]))
                lrs[(m, level)] = tuned if nearer_sparse else chosen
        return lrs

    def family_lrs(self, study: str, dry: bool = False) -> dict:
        """family -> the lr its tuning sweep chose (a placeholder in a dry run)."""
        return {m: "<tuned>" if dry else choose(sweep)[0]
                for m, sweep in zip(self.studies[study]["families"], self.tune_sweeps(study))}

    def lrs(self, study: str, dry: bool = False) -> dict | None:
        """What ``sweeps`` needs of the tuning: per (method, level) or per family, the lr."""
        spec = self.studies[study]
        if "levels" in spec:
            return None if dry else self.level_lrs(study)
        return self.family_lrs(study, dry) if "families" in spec else None

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


def finished(folder: Path) -> bool:
    """Whether ``folder`` holds a finished run."""
    try:
        return (RunFolder(folder).read_status() or {}).get("status") == "finished"
    except ValueError:
        return False


def canonical(config: dict) -> str:
    """A resolved run config as one string, without the keys that do not change what a run
    computes (as train.py's check_same_run ignores them)."""
    return json.dumps({k: v for k, v in flatten(config).items() if k.split(".")[0] not in RUN_CONTROL},
                      sort_keys=True, default=str)


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

    total, seconds = 0, 0.0
    for study in studies:
        print(f"## {study}")
        tunes = f.tune_sweeps(study)
        for sweep in f.all_sweeps(study, dry=True):
            print(f"  {sweep.label} -> {sweep.dir}\n    every job: {' '.join(sweep.fixed)}")
            if f.reusable(sweep):
                print(f"    {len(sweep.jobs())} jobs: the ablation's own runs, copied (no training)")
                continue
            if sweep in tunes and f.ablation.tune.get("extend"):
                print(f"    (+ up to {f.ablation.tune['extend']} more lrs if the best is at an end of these)")
            for job in sweep.jobs():
                # settings chosen later are left at their defaults: they do not change the speed
                cfg = build.config([o for o in job if "<" not in o])
                est = build.estimate(cfg, build.speed(cfg))
                print(f"    job: {' '.join(job[len(sweep.fixed):])}  (~{build.duration(est.job_seconds)}: "
                      f"~{build.duration(est.seconds)} of training)")
                total, seconds = total + 1, seconds + est.job_seconds
    print(f"{total} jobs: ~{build.duration(seconds)} on this machine, one after another (training, start-up, "
          "evaluations, analysis)")
    return total


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
    f = Followups(args.out, args.ablation, args.quick, args.spec, args.overrides, dry=args.dry_run)
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
