"""``python -m tools.draw_anchors``: the command line of ``analysis.draw_anchors`` (its docstring says what it does)."""

import sys

if not __package__:  # `python tools/draw_anchors.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.draw_anchors {' '.join(sys.argv[1:])}".rstrip())

from analysis.draw_anchors import main  # noqa: E402

if __name__ == "__main__":
    main()
