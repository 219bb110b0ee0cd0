"""``python -m tools.crowd_stats``: the command line of ``analysis.crowd_stats`` (its docstring says what it does)."""

import sys

if not __package__:  # `python tools/crowd_stats.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.crowd_stats {' '.join(sys.argv[1:])}".rstrip())

from analysis.crowd_stats import main  # noqa: E402

if __name__ == "__main__":
    main()
