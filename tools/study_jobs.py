"""One shell command per job of a follow-up study, to run them side by side where one machine
has room for several (a GPU: the tiny default model leaves most of an H200 idle).

    python -m tools.study_jobs --study schedule_check --where schedule.max_iters=12000 > jobs.txt
    OMP_NUM_THREADS=1 xargs -P 12 -I{} sh -c {} < jobs.txt

Each line is one train.py multirun of a single seed into the folder, named as ``make followups``
names it, of the study's sweep (studies/followups.py), so a later ``make followups`` finds the run
finished and skips it, or resumes it from its checkpoint. The sweep report is left to that later
run (``~hydra.callbacks.report``: single-seed multiruns side by side would write one sweep
folder's report.md at once); each run's own error analysis stays. Only a study's main sweeps are
listed, not the tuning that sets their lr (imbalance_sweep, table1d): run that first.

``--out DIR`` puts the runs elsewhere (a control: the same jobs on another device).
"""

import argparse
import sys
from pathlib import Path

if not __package__:  # `python tools/study_jobs.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.study_jobs {' '.join(sys.argv[1:])}".rstrip())

from studies.followups import FOLLOWUPS, Followups  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m tools.study_jobs", description=__doc__.split("\n")[0])
    p.add_argument("--ablation", default="multirun/ablation", help="the fair ablation's folder (its selection.yaml)")
    p.add_argument("--out", default="multirun/followups", help="where the studies' sweep folders go")
    p.add_argument("--study", required=True)
    p.add_argument("--where", nargs="*", default=[], metavar="KEY=VALUE", help="only this grid point")
    p.add_argument("--seeds", nargs="*", type=int, help="only these seeds")
    p.add_argument("--spec", type=Path, default=FOLLOWUPS, help="the studies file")
    args = p.parse_args(argv)
    try:
        f = Followups(args.out, args.ablation, spec=args.spec)
    except ValueError as e:
        p.exit(2, f"tools.study_jobs: error: {e}\n")
    if args.study not in f.studies:
        p.error(f"unknown study {args.study}: {args.spec} has {', '.join(f.studies)}")
    bad = [w for w in args.where if "=" not in w]
    if bad:
        p.error(f"--where takes KEY=VALUE, got {' '.join(bad)}")
    try:
        commands = f.job_commands(args.study, dict(w.split("=", 1) for w in args.where), args.seeds)
    except (FileNotFoundError, ValueError) as e:
        p.exit(2, f"tools.study_jobs: error: {e} (a study's tuning runs first: make followups ARGS=\"--study "
                  f"{args.study}\")\n")
    if not commands:
        p.error(f"no job of {args.study} matches {' '.join(args.where)}")
    print("\n".join(commands))


if __name__ == "__main__":
    main()
