"""A run's analysis folder, ``<run>/analysis/``: where it is, and which detections.json it was
made from (written by analysis/analyze.py's ``analyze_run``, read by the report)."""

from pathlib import Path

ANALYSIS = "analysis"  # the folder inside a run folder
SOURCE = "source.txt"  # in analysis/: the stamp of the detections.json it was made from


def analysis_dir(run_dir) -> Path:
    return Path(run_dir) / ANALYSIS


def detections_stamp(path: Path) -> str:
    """What tells one detections.json from a rewritten one: its size and mtime in ns. Kept in
    analysis/source.txt, so a detections.json written again within the file system's clock
    tick after an analysis is still seen as new (comparing the two files' mtimes is not)."""
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def analyzed_detections(run_dir) -> str | None:
    """The stamp of the detections.json the current analysis/ was made from (None: none)."""
    try:
        return (analysis_dir(run_dir) / SOURCE).read_text().strip()
    except OSError:
        return None
