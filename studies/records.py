"""A study's records without its bulk: what a sweep report and a resumed sweep need, small
enough to carry, so a study can move to another machine between sessions; and a finished
study's results as tables (``write_results``: results/<study>/, reports/table_io.py).

    python -m tools.records SRC DST [--ended-only]

Copies every file under SRC to DST except checkpoints/, tb/ (TensorBoard), detections.json,
anchor_losses.pt and plots/ (the report redraws them), keeping the layout. A run copied this
way reads as what it was (finished, diverged, ...): rerunning its sweep skips it (finished
runs need no checkpoint), and tools.report and tools.ablation's selection read it. Copied back
into a sweep folder, the study continues there (``make ablation`` with the same OUT).

``--ended-only`` copies only the runs that ended (finished, diverged or failed): a run in
progress or stopped midway is left out whole, since without its checkpoints its half a
record would only be retrained from scratch. This is what a session that ends during a study
commits.
"""

import argparse
import shutil
import sys
from pathlib import Path

from detection.run_folder import STATUSES, RunFolder, effective_status
from reports import sweep
from reports.cdf import figure4_numbers
from reports.errors import read_analysis
from reports.results import RESULTS, regenerate
from reports.runs import REUSED_FROM, load_runs
from reports.table_io import write_tables

LEFT_OUT_DIRS = {"checkpoints", "tb", "plots", "__pycache__"}
LEFT_OUT_FILES = {"detections.json", "anchor_losses.pt"}
ENDED = set(STATUSES) - {"running"}  # finished, diverged, failed


def reused_from(run_dir) -> str | None:
    """Where the run in ``run_dir`` was copied from (its ``REUSED_FROM``), or None if it was
    trained there."""
    note = Path(run_dir) / REUSED_FROM
    return note.read_text().strip() if note.is_file() else None


def unended_runs(src) -> set[Path]:
    """The run folders under ``src`` (relative to it) that have not ended: running, killed or
    interrupted midway."""
    src = Path(src)
    runs = set()
    for status in src.rglob("status.json"):
        try:
            state = effective_status(RunFolder(status.parent).read_status())
        except ValueError as e:
            raise ValueError(f"{status}: not a run status ({e})") from e
        if state not in ENDED:
            runs.add(status.parent.relative_to(src))
    return runs


def copy_records(src, dst, ended_only: bool = False) -> list[Path]:
    """Copies the records of ``src`` into ``dst`` (files there are replaced); returns the
    copied files, relative to ``src``. ``ended_only``: runs that have not ended are left out."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder (expected a sweep or study folder)")
    skipped = unended_runs(src) if ended_only else set()
    copied = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if not path.is_file() or LEFT_OUT_DIRS & set(rel.parts[:-1]) or path.name in LEFT_OUT_FILES:
            continue
        if skipped & set(rel.parents):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dst / rel)
        copied.append(rel)
    return copied


def source_ref(note: str, sources: dict) -> str | None:
    """A copied run's source as results name it, ``<study>/<run>``: ``note`` (the path its
    ``REUSED_FROM`` holds) inside one of ``sources`` ({study folder: study name}); None if
    it is in none of them."""
    path = Path(note).resolve()
    for folder, name in sources.items():
        try:
            return f"{name}/{path.relative_to(Path(folder).resolve()).as_posix()}"
        except ValueError:
            continue
    return None


def write_results(study_dir, results, study: str, kind: str = "sweep", meta: dict | None = None,
                  sources: dict | None = None) -> Path:
    """results/<study>/ from the study's run folders: its tables (reports/table_io.py), the
    report made again from them (report.md, report.csv) and its plots; the folder is replaced.
    Returns the path of report.md.

    ``kind``: "sweep" (``python -m tools.report``'s report) or "ablation" (``meta["ablation"]``:
    reports.ablation.protocol); ``sources``: {study folder: study name} of the studies its
    copied runs come from: such a run becomes a row naming its source (which must be written
    to ``results`` too); a copy from elsewhere keeps its own numbers, with a warning.
    """
    study_dir, out = Path(study_dir), Path(results) / study
    runs, _ = load_runs(study_dir)
    reused = {}
    for r in runs:
        if r.reused_from is not None:
            ref = source_ref(r.reused_from, sources or {})
            if ref is None:
                print(f"warning: {study}/{r.name} is a copy of {r.reused_from}, a study not in the results: its row "
                      "holds its numbers", file=sys.stderr)
            else:
                reused[r.name] = ref
    trained = [r for r in runs if r.name not in reused]
    loss_cdf = {}
    for r in trained:
        if r.folder.anchor_losses.is_file():
            losses = r.folder.load_anchor_losses()
            loss_cdf[r.name] = figure4_numbers(losses["fg"], losses["bg"])
    if out.exists():
        shutil.rmtree(out)
    write_tables(runs, study, out, {r.name: read_analysis(r) for r in trained}, reused, loss_cdf,
                 {"kind": kind, **(meta or {})}, roots=[study_dir.resolve()])
    if kind == "sweep":  # the plots from the folders: Figure 4 needs the per-anchor losses, which no table keeps
        sweep.write_report(study_dir, out)
    return regenerate(results, study, out, plots=None if kind == "sweep" else out / "plots")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m tools.records", description=__doc__.split("\n")[0])
    p.add_argument("src", type=Path, help="a sweep or study folder")
    p.add_argument("dst", type=Path, help="where its records go")
    p.add_argument("--ended-only", action="store_true",
                   help="leave out the runs that have not ended (running, killed, interrupted)")
    args = p.parse_args(argv)
    copied = copy_records(args.src, args.dst, args.ended_only)
    size = sum((args.dst / f).stat().st_size for f in copied)
    print(f"copied {len(copied)} files ({size / 2**20:.1f} MiB) from {args.src} to {args.dst}")


if __name__ == "__main__":
    main()
