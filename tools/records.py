"""``python -m tools.records``: the command line of ``studies.records`` (its docstring says what it does)."""

import sys

if not __package__:  # `python tools/records.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.records {' '.join(sys.argv[1:])}".rstrip())

from studies.records import main  # noqa: E402

if __name__ == "__main__":
    main()
