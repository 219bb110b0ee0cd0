"""``python -m tools.gallery``: the command line of ``analysis.gallery`` (its docstring says what it does)."""

import sys

if not __package__:  # `python tools/gallery.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.gallery {' '.join(sys.argv[1:])}".rstrip())

from analysis.gallery import main  # noqa: E402

if __name__ == "__main__":
    main()
