"""``python -m tools.analysis_callback``: the command line of ``analysis.callback`` (its docstring says what it does)."""

import sys

if not __package__:  # `python tools/analysis_callback.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.analysis_callback {' '.join(sys.argv[1:])}".rstrip())

from analysis.callback import main  # noqa: E402

if __name__ == "__main__":
    main()
