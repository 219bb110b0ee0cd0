"""A run's analysis folder, ``<run>/analysis/``: where it is, which detections.json it was
made from (written by analysis/analyze.py's ``analyze_run``, read by the report), and whether
the run needs one (``skip_reason``)."""

from pathlib import Path

from detection.run_folder import RunFolder

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


def skip_reason(run_dir, force: bool = False) -> str | None:
    """Why the run folder gets no (new) analysis, or None when it should get one."""
    folder = RunFolder(run_dir)
    try:
        status = folder.read_status()
    except ValueError as e:
        return f"status.json unreadable ({e})"
    if status is None:
        return "no status.json"
    if status["status"] != "finished":
        return f"the run is {status['status']}"
    if status.get("AP") is None:
        return "no final evaluation (eval_at_end=false or a stop_after slice)"
    if not folder.detections.is_file():
        return "no detections.json"
    if not force:
        made_from, errors = analyzed_detections(run_dir), analysis_dir(run_dir) / "errors.json"
        if made_from == detections_stamp(folder.detections) or (  # an analysis from before source.txt:
                made_from is None and errors.is_file() and errors.stat().st_mtime >= folder.detections.stat().st_mtime):
            return "analysis/ is up to date"
    return None
