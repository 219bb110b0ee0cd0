"""``python -m tools.analysis_callback RUN_DIR [RUN_DIR ...]``: (re)writes the error analysis
(``<run>/analysis/``, analysis/analyze.py's ``analyze_run``) of finished run folders, e.g. those
from before the analysis callback (analysis/callback.py) or whose analysis failed.

    python -m tools.analysis_callback RUN_DIR [RUN_DIR ...] [--per-class] [--score-thresh 0.3]
                                      [--no-anchor-scores] [--gallery N]
"""

import argparse
import logging
import sys
from pathlib import Path

if not __package__:  # `python tools/analysis_callback.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.analysis_callback "
             f"{' '.join(sys.argv[1:])}".rstrip())

from analysis.analyze import analyze_run  # noqa: E402
from analysis.folder import skip_reason  # noqa: E402


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(prog="python -m tools.analysis_callback",
                                     description="(Re)write the error analysis (analysis/) of finished run folders.")
    parser.add_argument("run_dirs", nargs="+", help="run folders written by train.py")
    parser.add_argument("--per-class", action="store_true", help="also a bands figure per class")
    parser.add_argument("--score-thresh", type=float, default=0.3, help="the confusion matrix's score threshold")
    parser.add_argument("--no-anchor-scores", action="store_true", help="skip the anchor score histograms")
    parser.add_argument("--gallery", type=int, default=0, metavar="N", help="draw the N top background false positives")
    args = parser.parse_args(argv)
    if args.gallery < 0:
        parser.error(f"--gallery {args.gallery}: expected a number of images >= 0")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    written, failed = [], []
    for run_dir in args.run_dirs:
        why = skip_reason(run_dir, force=True)
        if why is not None:
            print(f"{run_dir}: skipped: {why}")
            continue
        try:
            written.append(analyze_run(run_dir, args.per_class, args.score_thresh, not args.no_anchor_scores,
                                       args.gallery))
            print(f"wrote {written[-1]}")
        except (FileNotFoundError, ValueError) as e:
            failed.append(run_dir)
            print(f"{run_dir}: error: {e}", file=sys.stderr)
    if failed:
        sys.exit(f"tools.analysis_callback: {len(failed)} run(s) not analyzed")
    return written


if __name__ == "__main__":
    main()
