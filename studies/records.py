"""A study's records without its bulk: what a sweep report and a resumed sweep need, small
enough to commit, so a study can move to another machine between sessions.

    python -m tools.records SRC DST [--resumable]

Copies every file under SRC to DST except checkpoints/, tb/ (TensorBoard), detections.json,
anchor_losses.pt, plots/ (the report redraws them) and a run's analysis/ figures but its
gallery.png (the reports draw theirs from the analysis JSON; the ablation report links the
gallery), keeping the layout. Of the galleries, only the first run's of each sweep folder is
kept (``first_galleries``: the one a report links). A run copied this
way reads as what it was (finished, diverged, ...): rerunning its sweep skips it (finished
runs need no checkpoint), and tools.report and tools.ablation's selection read it. Copied back
into a sweep folder, the study continues there (``make ablation`` with the same OUT).

``--resumable`` copies what the study needs to go on on another machine: a run in progress or
stopped midway (running, killed, interrupted) comes with its last checkpoint (checkpoints/last.pt,
else previous.pt; ~6 MB for the default model), so that rerunning its sweep there resumes it
where the checkpoint left it instead of training it again; one with no checkpoint is left out
whole (it would be retrained from scratch anyway). This is what a session that ends during a
study commits (``make study-keep``), its study still running: a checkpoint is written atomically,
so a copy taken meanwhile is the one before or the one after, whole.
"""

import argparse
import shutil
from pathlib import Path

import yaml

from detection.run_folder import ENDED, RunFolder, effective_status
from reports.runs import natural_key

LEFT_OUT_DIRS = {"checkpoints", "tb", "plots", "__pycache__"}
LEFT_OUT_FILES = {"detections.json", "anchor_losses.pt"}
KEPT_FIGURES = {"gallery.png"}  # of a run's analysis/ figures, the one a report shows


def left_out(rel: Path) -> bool:
    """Whether the file ``rel`` (relative to the copied folder) is bulk the records do without,
    or a write in progress (a run still training writes status.json and its other records
    through a temporary ``.<name>.<random>.tmp`` beside them, then renames it)."""
    return bool(LEFT_OUT_DIRS & set(rel.parts[:-1])) or rel.name in LEFT_OUT_FILES or (
        rel.parent.name == "analysis" and rel.suffix == ".png" and rel.name not in KEPT_FIGURES) or (
        rel.name.startswith(".") and rel.suffix == ".tmp")


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


def first_galleries(src: Path, skipped: set[Path]) -> set[Path]:
    """The gallery.png files under ``src`` (relative to it) that the records keep: in each sweep
    folder, the first run's (in the natural order of its run folders' names, the runs of
    ``skipped`` aside) that drew one. That is the one a report links (an ablation's: each
    method's first final run's, ``reports.ablation.final_galleries``); the others, about 0.3 MB
    each on real photographs, would grow every committed archive by one per run."""
    first: dict[Path, Path] = {}
    for path in sorted(src.rglob("analysis/gallery.png"), key=lambda p: natural_key(p.parts[-3])):
        rel = path.relative_to(src)
        if not skipped & set(rel.parents):
            first.setdefault(path.parent.parent.parent, rel)
    return set(first.values())


def copy_records(src, dst, resumable: bool = False) -> list[Path]:
    """Copies the records of ``src`` into ``dst`` (files there are replaced); returns the
    copied files, relative to ``src``. ``resumable``: each run that has not ended comes with its
    last checkpoint, or is left out whole where it has none (the module docstring)."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such folder (expected a sweep or study folder)")
    midway = {run: RunFolder(src / run) for run in unended_runs(src)} if resumable else {}
    skipped = {run for run, f in midway.items() if not (f.checkpoint.is_file() or f.previous_checkpoint.is_file())}
    galleries = first_galleries(src, skipped)
    copied = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if not path.is_file() or left_out(rel) or (rel.name in KEPT_FIGURES and rel not in galleries):
            continue
        if skipped & set(rel.parents):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(path, dst / rel)
        except FileNotFoundError:  # removed since it was listed: the study is still running
            continue
        copied.append(rel)
    for run, folder in midway.items():
        if run not in skipped:
            copied.append(_copy_checkpoint(folder, src, dst))
    return copied


def _copy_checkpoint(folder: RunFolder, src: Path, dst: Path) -> Path:
    """The run's last.pt, else its previous.pt (a run still training may be between the two
    renames of a checkpoint write), copied to ``dst``; returns it relative to ``src``."""
    for path in (folder.checkpoint, folder.previous_checkpoint):
        rel = path.relative_to(src)
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copy2(path, dst / rel)
            return rel
        except FileNotFoundError:
            continue
    raise FileNotFoundError(f"{folder.checkpoint.parent}: its checkpoints went away while its records were copied")


def copy_run(source, dst, overrides: list[str]) -> None:
    """The finished run in ``source`` copied into ``dst`` as the run of ``overrides`` (a job of
    another sweep whose resolved config is the same): its records (``copy_records``), the
    job's own overrides in .hydra/overrides.yaml, and REUSED_FROM naming ``source``. Its
    sweep's train.py then skips it as finished, and the reports count its cost once."""
    from reports.runs import REUSED_FROM

    copy_records(source, dst)
    (Path(dst) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides), default_flow_style=False))
    (Path(dst) / REUSED_FROM).write_text(f"{source}\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m tools.records", description=__doc__.split("\n")[0])
    p.add_argument("src", type=Path, help="a sweep or study folder")
    p.add_argument("dst", type=Path, help="where its records go")
    p.add_argument("--resumable", action="store_true",
                   help="each run that has not ended (running, killed, interrupted) with its last checkpoint, "
                        "to resume on another machine; one without a checkpoint is left out")
    args = p.parse_args(argv)
    copied = copy_records(args.src, args.dst, args.resumable)
    size = sum((args.dst / f).stat().st_size for f in copied)
    print(f"copied {len(copied)} files ({size / 2**20:.1f} MiB) from {args.src} to {args.dst}")


if __name__ == "__main__":
    main()
