"""``python -m tools.results``: the committed results (results/<study>/), written from a study's
run folders and made again from their tables alone.

    python -m tools.results regenerate [STUDY ...] [--results DIR] [--check]
    python -m tools.results write STUDY_FOLDER --study NAME [--kind sweep|ablation] [--spec YAML]
                            [--quick] [--source FOLDER=STUDY ...] [--results DIR]
    python -m tools.results across --study NAME --reference STUDY STUDY=LABEL ... [--label LABEL]

``regenerate``: every study's report.md and report.csv from its tables (reports/table_io.py):
a ``sweep`` study gets ``python -m tools.report``'s report (reports/sweep.py), an ``ablation``
study the fair ablation's (reports/ablation.py), a superseded one says so under its title; a
``frozen`` study is a report kept as written, without the runs to make it again. ``--check``
writes nothing and fails when a committed report differs from what its tables make. The plots
the reports link are committed beside them: regenerating draws into a scratch folder (a table
keeps no per-anchor losses: Figure 4 cannot be redrawn from one).

``across``: RESULTS/<NAME>/ saying whether the reference study's answer holds in the others
(reports/across.py; ablation-kind studies, each with its own tuning), made from their tables.
``write``: RESULTS/<study>/ from a finished study's run folders (the study drivers call it when
a study ends): the tables, the report made from them, its plots. ``--source FOLDER=STUDY``: a
run copied from FOLDER is a row naming its source ``STUDY/<run>`` (written to RESULTS too).
An ablation's protocol is read from ``--spec`` (studies/specs/bg_ablation.yaml).
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

if not __package__:  # `python tools/results.py`: the packages it imports are found from the root only
    sys.exit(f"run it from the repository root as a module: python -m tools.results {' '.join(sys.argv[1:])}".rstrip())

from reports import ablation, across, sweep  # noqa: E402
from reports.cdf import figure4_numbers  # noqa: E402
from reports.errors import read_analysis  # noqa: E402
from reports.runs import RESULTS, assign_groups, load_runs  # noqa: E402
from reports.table_io import KINDS, RECORDS, Tables, read_meta, source_ref, write_meta, write_tables  # noqa: E402
from studies.ablation import STUDY, Study  # noqa: E402


def studies(root) -> list[str]:
    """The studies under ``root``: its folders with a study.yaml, by name."""
    return sorted(p.parent.name for p in Path(root).glob("*/study.yaml"))


def superseded_line(meta: dict) -> list[str]:
    """The line under a superseded study's title, naming what replaced it and why."""
    if not meta.get("superseded_by"):
        return []
    note = f": {meta['note']}" if meta.get("note") else ""
    return [f"**Superseded** by `{meta['superseded_by']}`{note}.", ""]


def regenerate(root, study: str, out, tables: Tables | None = None, plots=None) -> Path | None:
    """Writes ``study``'s report.md and report.csv into ``out`` from the tables under ``root``;
    returns the path of report.md, or None for a frozen study (nothing written). ``tables``:
    a ``Tables`` of ``root`` already read (reused runs resolve through other studies);
    ``plots``: where to draw the plots (default: a scratch folder, thrown away)."""
    root, out = Path(root), Path(out)
    tables = tables or Tables(root)
    meta = read_meta(root / study)
    if meta["kind"] == "frozen":
        return None
    with tempfile.TemporaryDirectory() as scratch:
        plots = plots if plots is not None else scratch
        if meta["kind"] == "ablation":
            md = ablation.write(ablation.from_tables(tables, study), out, plots=plots)
        elif meta["kind"] == "across":
            md = across.write(tables, study, meta, out)
        else:
            runs = tables.runs(study)
            shared = assign_groups(runs)
            md = sweep.write(runs, shared, out, study, meta.get("sweep_overrides"), plots=plots)
    lines = md.read_text().split("\n")
    md.write_text("\n".join([*lines[:2], *superseded_line(meta), *lines[2:]]))
    return md


def check(root, study: str, tables: Tables | None = None) -> list[str]:
    """The files of ``study``'s report (report.md, report.csv) that differ from what its
    tables make now, each as "<study>/<file>" ([] for a frozen study)."""
    with tempfile.TemporaryDirectory() as scratch:
        if regenerate(root, study, scratch, tables) is None:
            return []
        return [f"{study}/{name}" for name in ("report.md", "report.csv")
                if not (Path(root) / study / name).is_file()
                or (Path(root) / study / name).read_bytes() != (Path(scratch) / name).read_bytes()]


def write_from_folders(study_dir, study: str, out, meta: dict, sources: dict | None = None) -> list[Path]:
    """The tables of ``study`` from its run folders under ``study_dir`` into ``out``; returns
    the files written. ``meta``: study.yaml's (``kind`` at least); ``sources``: {study folder:
    study name} of the other studies its copied runs come from: such a run, or one copied
    within the study itself, becomes a row naming its source; a copy from elsewhere keeps its
    own numbers, with a warning."""
    study_dir = Path(study_dir)
    runs, _ = load_runs(study_dir)
    sources = {study_dir: study, **(sources or {})}  # a run copied within the study (an ablation's tuning)
    reused = {}
    for r in runs:
        ref = None if r.reused_from is None else source_ref(r.reused_from, sources)
        if ref is not None:
            reused[r.name] = ref
        elif r.reused_from is not None:
            print(f"warning: {study}/{r.name} is a copy of {r.reused_from}, in none of the studies given as "
                  "sources: its row holds its numbers", file=sys.stderr)
    trained = [r for r in runs if r.name not in reused]
    loss_cdf = {}
    for r in trained:
        if r.folder.anchor_losses.is_file():
            losses = r.folder.load_anchor_losses()
            loss_cdf[r.name] = figure4_numbers(losses["fg"], losses["bg"])
    return write_tables(runs, study, out, {r.name: read_analysis(r) for r in trained}, reused, loss_cdf, meta,
                        roots=[study_dir.resolve()])


def write(study_dir, results, study: str, kind: str = "sweep", meta: dict | None = None,
          sources: dict | None = None) -> Path:
    """RESULTS/<study>/ (replaced, but for the records archive of a study still running,
    ``RECORDS``) from the study's run folders: tables, report, plots; returns the path of
    report.md. A sweep's plots are drawn from the folders (Figure 4 needs the per-anchor losses
    no table keeps), an ablation's from the tables."""
    study_dir, out = Path(study_dir), Path(results) / study
    for old in sorted(out.iterdir()) if out.is_dir() else []:
        if old.name != RECORDS:  # what a fresh machine resumes the study from (make study-restore)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    meta = {"kind": kind, **(meta or {})}
    if kind == "ablation":  # its galleries of background false positives: images no table can redraw
        if galleries := ablation.copy_galleries(study_dir, out, meta["ablation"]["methods"]):
            meta["galleries"] = galleries
    write_from_folders(study_dir, study, out, meta, sources)
    if kind == "sweep":
        sweep.write_report(study_dir, out)
    return regenerate(results, study, out, plots=None if kind == "sweep" else out / "plots")


def _source(text: str) -> tuple[Path, str]:
    folder, sep, name = text.rpartition("=")
    if not sep or not folder or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected FOLDER=STUDY (a study folder and its results name)")
    return Path(folder), name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.results", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("regenerate", help="every study's report.md and report.csv from its tables")
    p.add_argument("studies", nargs="*", help="which studies (default: every folder of RESULTS with a study.yaml)")
    p.add_argument("--results", type=Path, default=RESULTS, help="the results folder (default: results/)")
    p.add_argument("--check", action="store_true",
                   help="write nothing: compare with the committed files, exit 1 on a difference")
    w = sub.add_parser("write", help="RESULTS/<study>/ from a finished study's run folders")
    w.add_argument("study_dir", type=Path, help="the study's folder of run folders (a followups study, the ablation's OUT)")
    w.add_argument("--study", required=True, help="its name in the results (alpha_sweep, bg_ablation, ...)")
    w.add_argument("--kind", choices=KINDS[:2], default="sweep")
    w.add_argument("--spec", type=Path, default=STUDY, help="an ablation's protocol (default: bg_ablation.yaml)")
    w.add_argument("--quick", action="store_true", help="an ablation run with --quick")
    w.add_argument("--source", type=_source, action="append", default=[], metavar="FOLDER=STUDY",
                   help="the folder of a study its copied runs come from, and that study's name")
    w.add_argument("--results", type=Path, default=RESULTS, help="the results folder (default: results/)")
    a = sub.add_parser("across", help="RESULTS/<study>/: does a reference study's answer hold in other studies?")
    a.add_argument("--study", required=True, help="its name in the results (real_images)")
    a.add_argument("--reference", required=True, help="the ablation-kind study whose answer is checked (bg_ablation)")
    a.add_argument("studies", nargs="+", metavar="STUDY=LABEL",
                   help="the other ablation-kind studies, each with a short label (real_images_bccd=bccd)")
    a.add_argument("--label", default=None, help="the reference's short label (default: its name)")
    a.add_argument("--results", type=Path, default=RESULTS, help="the results folder (default: results/)")
    args = parser.parse_args(argv)
    try:
        if args.command == "across":
            pairs = [s.partition("=") for s in args.studies]
            meta = {"study": args.study, "kind": "across", "reference": args.reference,
                    "studies": [s for s, _, _ in pairs],
                    "labels": {args.reference: args.label or args.reference, **{s: label or s for s, _, label in pairs}}}
            (args.results / args.study).mkdir(parents=True, exist_ok=True)
            write_meta(args.results / args.study, meta)
            print(f"wrote {regenerate(args.results, args.study, args.results / args.study)}")
            return 0
        if args.command == "write":
            meta = ({"ablation": ablation.protocol(Study(args.study_dir, args.quick, args.spec))}
                    if args.kind == "ablation" else {})
            print(f"wrote {write(args.study_dir, args.results, args.study, args.kind, meta, dict(args.source))}")
            return 0
        names = args.studies or studies(args.results)
        if not names:
            sys.exit(f"tools.results: error: no study in {args.results} (expected folders holding study.yaml)")
        tables, differ = Tables(args.results), []
        for name in names:
            if args.check:
                differ += check(args.results, name, tables)
                continue
            md = regenerate(args.results, name, args.results / name, tables)
            print(f"{name}: kept as written (frozen)" if md is None else f"wrote {md}")
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"tools.results: error: {e}")
    if args.check:
        print("\n".join(f"differs: {d}" for d in differ) or f"{len(names)} studies: every report is its tables' report")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
