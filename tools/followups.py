"""``python -m tools.followups``: the command line of ``studies.followups`` (its docstring says what it does)."""

import sys

if not __package__:  # `python tools/followups.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.followups {' '.join(sys.argv[1:])}".rstrip())

from studies.followups import main  # noqa: E402

if __name__ == "__main__":
    main()
