"""``python -m tools.ablation``: the fair background ablation, from nothing to its report
(``make ablation``). Stages 1-4 are studies/ablation.py's (its docstring: the protocol), the
report reports/ablation.py's.

    python -m tools.ablation --out OUT [--quick] [--dry-run] [--stage STAGE] [--study YAML] [--results DIR]
                             [OVERRIDE ...]

The report stage then writes the study's tables and the report made from them to
RESULTS/<study>/ (``--results``, default results/, not with ``--quick``; ``python -m tools.results write``).
"""

import argparse
import subprocess
import sys
from pathlib import Path

if not __package__:  # `python tools/ablation.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.ablation {' '.join(sys.argv[1:])}".rstrip())

from reports.ablation import write_report  # noqa: E402
from reports.runs import RESULTS  # noqa: E402
from studies import ablation  # noqa: E402


def main(argv=None) -> int | None:
    p = argparse.ArgumentParser(prog="python -m tools.ablation", description=ablation.__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="the study's folder (sweeps, selection.yaml, report.md)")
    p.add_argument("--quick", action="store_true", help="the whole protocol in miniature")
    p.add_argument("--stage", choices=("all",) + ablation.STAGES, default="all")
    p.add_argument("--dry-run", action="store_true", help="list every stage's jobs and their estimated time, train nothing")
    p.add_argument("--study", type=Path, default=ablation.STUDY, help=f"the protocol (default {ablation.STUDY.relative_to(ablation.STUDY.parents[2])})")
    p.add_argument("--results", type=Path, help="where the report stage writes the study's tables and report, "
                                                   "RESULTS/<study>/ (default: results/, not with --quick)")
    p.add_argument("overrides", nargs="*", help="train.py overrides for every job (dataset=..., schedule.max_iters=...)")
    args = p.parse_args(argv)
    study = ablation.Study(args.out, args.quick, args.study, args.overrides)
    results = args.results if args.results is not None or args.quick else RESULTS
    stages = ablation.STAGES if args.stage == "all" else (args.stage,)
    if args.dry_run:
        return ablation.dry_run(study, stages)
    try:
        for stage in stages:
            if stage == "report" and len(stages) > 1:
                # In a fresh process: the stages before it train for hours, and tools/ edited
                # meanwhile would meet the modules this one imported at its start.
                subprocess.run([sys.executable, "-m", "tools.ablation", "--out", str(study.out), "--study",
                                str(args.study), *(["--quick"] if args.quick else []), "--stage", "report",
                                *(["--results", str(results)] if results is not None else []), *args.overrides],
                               check=True)
            elif stage == "report":
                print(f"wrote {write_report(study)}")
                if results is not None:  # the study's tables and the report made from them
                    subprocess.run([sys.executable, "-m", "tools.results", "write", str(study.out), "--study",
                                    study.name, "--kind", "ablation", "--spec", str(args.study),
                                    *(["--quick"] if args.quick else []), "--results", str(results)], check=True)
            else:
                ablation.run_stage(study, stage)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"tools.ablation: error: {e}")
    except subprocess.CalledProcessError as e:
        sys.exit(f"tools.ablation: error: a sweep or the report failed ({' '.join(map(str, e.cmd[:6]))} ...); "
                 "rerun the same command to continue")


if __name__ == "__main__":
    main()
