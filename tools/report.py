"""``python -m tools.report``: the command line of ``reports.sweep`` (its docstring says what it does)."""

import sys

if not __package__:  # `python tools/report.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.report {' '.join(sys.argv[1:])}".rstrip())

from reports.sweep import main  # noqa: E402

if __name__ == "__main__":
    main()
