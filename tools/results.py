"""``python -m tools.results``: the command line of ``reports.results`` (its docstring says what it does)."""

import sys

if not __package__:  # `python tools/results.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.results {' '.join(sys.argv[1:])}".rstrip())

from reports.results import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
