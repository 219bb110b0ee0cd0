"""``python -m tools.analyze``: the command line of ``analysis.analyze`` (its docstring says what it does)."""

import sys

if not __package__:  # `python tools/analyze.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.analyze {' '.join(sys.argv[1:])}".rstrip())

from analysis.analyze import main  # noqa: E402

if __name__ == "__main__":
    main()
