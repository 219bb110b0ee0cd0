"""``python -m tools.ablation``: the command line of ``studies.ablation`` (its docstring says what it does)."""

import sys

if not __package__:  # `python tools/ablation.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.ablation {' '.join(sys.argv[1:])}".rstrip())

from studies.ablation import main  # noqa: E402

if __name__ == "__main__":
    main()
