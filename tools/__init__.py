"""Command-line tools (report, evaluate), run from the repository root: ``python tools/report.py``."""
