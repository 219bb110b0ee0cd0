"""``python -m tools.study_jobs``: the command line of ``studies.jobs`` (its docstring says what it does)."""

import sys

if not __package__:  # `python tools/study_jobs.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.study_jobs {' '.join(sys.argv[1:])}".rstrip())

from studies.jobs import main  # noqa: E402

if __name__ == "__main__":
    main()
