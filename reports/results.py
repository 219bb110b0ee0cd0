"""Every study's report, made again from its results tables alone (reports/table_io.py).

    md = regenerate(results_root, "alpha_sweep", out)   # out/report.md and out/report.csv

A ``sweep`` study gets ``python -m tools.report``'s report (reports/sweep.py), an ``ablation``
study the fair ablation's (reports/ablation.py); a superseded study's report says so under its
title. A ``frozen`` study is a report kept as it was written, without the runs to make it again:
it is not regenerated. The plots the report links are committed beside it and drawn when the
study is written from its run folders; regenerating draws them into a scratch folder and keeps
the committed ones (a table keeps no per-anchor losses: Figure 4 cannot be redrawn).
"""

import tempfile
from pathlib import Path

from reports import ablation, sweep
from reports.runs import assign_groups
from reports.table_io import Tables, read_meta


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
