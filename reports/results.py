"""Every study's report, made again from its results tables alone (reports/table_io.py).

    python -m tools.results regenerate [STUDY ...] [--results DIR] [--check]
    md = regenerate(results_root, "alpha_sweep", out)   # out/report.md and out/report.csv

A ``sweep`` study gets ``python -m tools.report``'s report (reports/sweep.py), an ``ablation``
study the fair ablation's (reports/ablation.py); a superseded study's report says so under its
title. A ``frozen`` study is a report kept as it was written, without the runs to make it again:
it is not regenerated. The plots the report links are committed beside it and drawn when the
study is written from its run folders; regenerating draws them into a scratch folder and keeps
the committed ones (a table keeps no per-anchor losses: Figure 4 cannot be redrawn).
"""

import argparse
import sys
import tempfile
from pathlib import Path

from detection.run_folder import ROOT
from reports import ablation, sweep
from reports.runs import assign_groups
from reports.table_io import Tables, read_meta

RESULTS = ROOT / "results"  # the committed results: one folder of tables and report per study


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.results", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("regenerate", help="write every study's report.md and report.csv from its tables")
    p.add_argument("studies", nargs="*", help="which studies (default: every folder of RESULTS with a study.yaml)")
    p.add_argument("--results", type=Path, default=RESULTS, help="the results folder (default: results/)")
    p.add_argument("--check", action="store_true",
                   help="write nothing: compare with the committed files, exit 1 on a difference")
    args = parser.parse_args(argv)
    names = args.studies or studies(args.results)
    if not names:
        sys.exit(f"tools.results: error: no study in {args.results} (expected folders holding study.yaml)")
    tables, differ = Tables(args.results), []
    try:
        for name in names:
            if args.check:
                differ += check(args.results, name, tables)
                continue
            md = regenerate(args.results, name, args.results / name, tables)
            print(f"{name}: kept as written (frozen)" if md is None else f"wrote {md}")
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"tools.results: error: {e}")
    if args.check:
        print("\n".join(f"differs: {d}" for d in differ) or f"{len(names)} studies: every report equals its tables' report")
    return 1 if differ else 0
