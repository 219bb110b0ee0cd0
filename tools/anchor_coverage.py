"""``python -m tools.anchor_coverage``: the command line of ``analysis.anchor_coverage`` (its docstring says what it does)."""

import sys

if not __package__:  # `python tools/anchor_coverage.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.anchor_coverage {' '.join(sys.argv[1:])}".rstrip())

from analysis.anchor_coverage import main  # noqa: E402

if __name__ == "__main__":
    main()
