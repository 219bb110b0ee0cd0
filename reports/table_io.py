"""A study's results as tables: what its report is made from, written once when the study ends
and read back by every report section instead of the run folders.

``results/<study>/`` holds (every CSV has a header row; an empty cell is "no value"):

``runs.csv``       one row per run, in job order. ``run``: the run folder relative to the study
                   folder (``final/focal/seed0``); ``cell``: its report group (the overrides
                   without the seed); ``method``: the loss's short name; ``seed``;
                   ``overrides`` and ``notes`` (JSON lists); ``status`` (finished, diverged,
                   failed, killed, ...); ``reused_from``: ``<study>/<run>`` of the run this
                   one is (copied between studies, not trained here), whose row holds its
                   numbers: such a row carries only ``run``, ``cell``, ``method``, ``seed``,
                   ``overrides`` and ``config``; COCO stats of eval.json (``AP`` ... ``APl``,
                   fractions as COCOeval gives them) and ``per_category`` (JSON: class name ->
                   AP, -1 where undefined; empty in tables written before it was kept);
                   ``last_iter``, ``seconds`` (wall time of all sessions), ``device``, ``code``
                   (the code hash); ``devices`` (JSON: what
                   its iterations trained on, status.json's) and ``provenance`` (JSON: package
                   versions, git commit, CPU, GPU), empty for runs from before they were
                   recorded; ``message``; TIDE dAPs
                   (``tide_cls`` ... ``tide_falseneg``, AP points) and the report's background
                   numbers (``bg_band``, ``bkg_per_image``, ``bkg_at_recall``,
                   ``bg_anchors_above``, ``score_thresh``) where the run has an ``analysis/``,
                   else ``analysis`` says why not; ``config``: JSON of the run's flattened
                   config without the keys every run of the study shares (``study.yaml``).
``curves.csv``     one row per evaluation during training: run, iter, COCO stats.
``training.csv.gz`` one row per logged training step (metrics.jsonl): run, iter and what the
                   step logged (losses, loss shares, anchors per image, images/s, ...).
``analysis.csv.gz`` the analysis curves per run: ``pr_c50`` (x recall, y precision at IoU .5),
                   ``bkg_vs_recall`` (x recall, y background false positives per image),
                   ``anchor_scores`` (x bin edge, y foreground and z background anchors).
``loss_cdf.csv``   Figure 4's numbers of the runs that saved their per-anchor losses: anchors
                   and the share of the loss held by the hardest 10% fg, 1% and 10% bg.
``study.yaml``     the study: ``kind`` (sweep: ``python -m tools.report``'s report; ablation:
                   ``tools.ablation``'s; frozen: a report kept as written, without its runs;
                   across: reports/across.py's, from other studies' tables: its ``reference``,
                   ``studies`` and ``labels``, no tables of its own),
                   ``superseded_by`` and ``note`` (why), ``records`` (where the run folders
                   it was made from are kept, if anywhere), the sweep's command overrides
                   (``sweep_overrides``), the config every run shares (``config``), and an
                   ablation's protocol and selection (``ablation``).
``records.tar.gz`` a study still running: its runs' records (``make study-keep``; the run in
                   flight with its last checkpoint), which
                   ``make study-restore`` unpacks on a fresh machine to resume; rewriting the
                   tables keeps it.

Floats are written with ``repr`` and read back to the same value, so a report made from the
tables equals the one made from the run folders. The two per-step tables are gzip-compressed
(a fifth of their size; ``pandas.read_csv`` and ``zcat`` read them as they are), written with
no timestamp so that the same rows make the same bytes.

    write_tables(runs, study, out, analyses, reused, loss_cdf, meta)   # tools.results write: from folders
    runs = Tables(results_root).runs(study)               # reports.runs.Run, as the sections read them
"""

import csv
import gzip
import io
import json
import zlib
from pathlib import Path

import yaml

from analysis.errors import MAIN_TYPES, SPECIAL_TYPES
from detection.run_folder import flatten
from reports.runs import STATS, Run, loss_name

RUNS, CURVES, TRAINING, ANALYSIS, LOSS_CDF, META = (
    "runs.csv", "curves.csv", "training.csv.gz", "analysis.csv.gz", "loss_cdf.csv", "study.yaml")
# A study still running keeps its runs' records beside its tables (`make study-keep`, a tar of
# tools.records --resumable's folders): the archive a later session on a fresh machine resumes from.
RECORDS = "records.tar.gz"
BACKGROUND = ("bg_band", "bkg_per_image", "bkg_at_recall", "bg_anchors_above", "score_thresh")
TIDE = (*MAIN_TYPES, *SPECIAL_TYPES)  # the dAP50s of errors.json (analysis/errors.py)
RUN_COLUMNS = ["study", "run", "cell", "method", "seed", "overrides", "status", "reused_from", *STATS,
               "per_category", "last_iter", "seconds", "device", "code", "devices", "provenance", "message", "notes",
               *(f"tide_{k.lower()}" for k in TIDE), *BACKGROUND, "analysis", "config"]
CURVE_COLUMNS = ["run", "iter", *STATS]
ANALYSIS_COLUMNS = ["run", "curve", "i", "x", "y", "z"]
LOSS_CDF_COLUMNS = ["run", "fg_anchors", "bg_anchors", "hardest_10_fg", "hardest_1_bg", "hardest_10_bg"]
JSON_COLUMNS = {"overrides", "notes", "config", "devices", "provenance", "per_category"}
TEXT_COLUMNS = {"study", "run", "cell", "method", "status", "reused_from", "device", "code", "message",
                "analysis", "curve"}
KINDS = ("sweep", "ablation", "frozen", "across")


# --- cells ---------------------------------------------------------------------------------

def encode(value) -> str:
    """One cell: "" for None, JSON for lists and dicts, ``repr`` for floats (exact), else str."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        raise ValueError(f"table cell {value!r}: a bool has no cell (write it as a JSON column)")
    return repr(value) if isinstance(value, float) else str(value)


def decode(column: str, text: str):
    """The value ``encode`` wrote: None for "", JSON columns parsed, text columns as text,
    numbers as int when they read as one, else float."""
    if text == "":
        return None
    if column in JSON_COLUMNS:
        return json.loads(text)
    if column in TEXT_COLUMNS:
        return text
    try:
        return int(text)
    except ValueError:
        return float(text)


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    """``rows`` under a header of ``columns``, each cell by ``encode``; gzip-compressed where the
    name ends in ``.gz`` (no timestamp in the header: the same rows make the same bytes)."""
    unknown = sorted({k for r in rows for k in r} - set(columns))
    if unknown:
        raise ValueError(f"{path}: values for columns {unknown} that {path.name} does not have ({columns})")
    text = io.StringIO(newline="")
    w = csv.writer(text, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([encode(r.get(c)) for c in columns])
    data = text.getvalue().encode()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def read_csv(path: Path) -> list[dict]:
    """The rows of a table written by ``write_csv`` (none if the file is missing), typed by
    ``decode``; empty cells are left out of each row."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:  # not gzip, cut short, corrupt inside
            raise ValueError(f"{path}: not a readable gzip file ({e})") from None
    with io.StringIO(data.decode(), newline="") as f:
        reader = csv.reader(f)
        try:
            columns = next(reader)
        except StopIteration:
            raise ValueError(f"{path}: empty file, expected a header row") from None
        rows = []
        for n, cells in enumerate(reader, 2):
            if len(cells) != len(columns):
                raise ValueError(f"{path}, line {n}: {len(cells)} cells, expected {len(columns)} ({columns})")
            try:
                rows.append({c: decode(c, t) for c, t in zip(columns, cells) if t != ""})
            except ValueError as e:
                raise ValueError(f"{path}, line {n}: {e}") from None
    return rows


# --- run folders -> rows -------------------------------------------------------------------

def shared_config(configs: list[dict]) -> dict:
    """The flattened config items (key -> value) that every one of ``configs`` has, equal."""
    flats = [flatten(c) for c in configs]
    if not flats:
        return {}
    first = flats[0]
    return {k: v for k, v in first.items() if all(k in f and _same(f[k], v) for f in flats[1:])}


def _same(a, b) -> bool:
    return type(a) is type(b) and json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def unflatten(flat: dict) -> dict:
    """{"a.b": 1} -> {"a": {"b": 1}}: the inverse of ``flatten`` (empty dicts aside)."""
    out: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def relative(value, roots: tuple[str, ...]):
    """``value`` with every ``root/`` inside its strings cut off (lists and dicts walked): a path
    under the study folder as it was on the machine that ran it becomes a path relative to
    the study (``checkpoint=final/focal/seed0/...``), so no table holds a machine's path."""
    if isinstance(value, str):
        for root in roots:
            value = value.replace(root.rstrip("/") + "/", "")
        return value
    if isinstance(value, list):
        return [relative(v, roots) for v in value]
    if isinstance(value, dict):
        return {k: relative(v, roots) for k, v in value.items()}
    return value


def run_row(run, study: str, shared: dict, analysis, reused: str | None) -> dict:
    """``run`` (a reports.runs.Run) as a row of runs.csv. ``analysis``: (values, why not) of
    reports.errors.read_analysis; ``reused``: ``<study>/<run>`` of its source, or None."""
    config = {k: v for k, v in flatten(run.config).items() if k not in shared} if run.config else None
    row = {"study": study, "run": run.name, "cell": run.group, "method": loss_name(run), "seed": run.seed,
           "overrides": run.overrides, "config": config}
    if reused is not None:
        return {**row, "reused_from": reused}
    row.update(status=run.status, last_iter=run.last_iter, seconds=run.seconds, device=run.device,
               code=run.code, devices=run.devices, provenance=run.provenance, message=run.message,
               notes=run.notes or None)
    row.update({k: (run.eval or {}).get(k) for k in STATS}, per_category=(run.eval or {}).get("per_category"))
    values, why = analysis
    if values is None:
        row["analysis"] = why
    else:
        row.update({f"tide_{k.lower()}": values["tide"].get(k) for k in TIDE})
        row.update({k: values[k] for k in ("bg_band", "bkg_per_image", "bkg_at_recall", "bg_anchors_above")})
        row["score_thresh"] = (values["hist"] or {}).get("score_thresh")
    return row


def analysis_rows(name: str, values: dict) -> list[dict]:
    """The curves of one run's analysis (reports.errors.read_analysis's values) as analysis.csv rows."""
    rows = []
    c50 = values.get("c50")
    if isinstance(c50, list):
        rows += [{"run": name, "curve": "pr_c50", "i": i, "x": i / (len(c50) - 1), "y": p} for i, p in enumerate(c50)]
    curve = values.get("bkg_curve")
    if curve:
        rows += [{"run": name, "curve": "bkg_vs_recall", "i": i, "x": r, "y": b}
                 for i, (r, b) in enumerate(zip(curve["recall"], curve["bkg_per_image"]))]
    hist = values.get("hist")
    if hist:
        counts = list(zip(hist["fg"], hist["bg"])) + [(None, None)]  # one edge more than bins
        rows += [{"run": name, "curve": "anchor_scores", "i": i, "x": e, "y": fg, "z": bg}
                 for i, (e, (fg, bg)) in enumerate(zip(hist["edges"], counts))]
    return rows


def write_tables(runs, study: str, out, analyses: dict, reused: dict | None = None, loss_cdf: dict | None = None,
                 meta: dict | None = None, roots=()) -> list[Path]:
    """Writes the tables of ``study`` from its ``runs`` (reports.runs.Run, job order, groups
    assigned) into ``out``; returns the files written.

    ``analyses``: run name -> (values, why not) of reports.errors.read_analysis; ``reused``:
    run name -> ``<study>/<run>`` of its source for the runs copied from another study (their
    numbers are not written again); ``loss_cdf``: run name -> its loss_cdf.csv values;
    ``meta``: study.yaml beyond the shared config (``kind`` at least); ``roots``: the study
    folder's absolute paths (as its runs recorded them), made relative in every row
    (``relative``).
    """
    out, reused, loss_cdf, roots = Path(out), reused or {}, loss_cdf or {}, tuple(str(r) for r in roots)
    meta = dict(meta or {})
    if meta.get("kind") not in KINDS:
        raise ValueError(f"study {study!r}: kind {meta.get('kind')!r}, expected one of {KINDS}")
    out.mkdir(parents=True, exist_ok=True)
    shared = shared_config([r.config for r in runs if r.config])
    rows, curves, training, curves_of = [], [], [], []
    for r in runs:
        source = reused.get(r.name)
        rows.append(relative(run_row(r, study, shared, analyses.get(r.name, (None, "not read")), source), roots))
        if source is not None:
            continue
        curves += [{"run": r.name, "iter": c["iter"], **{k: c["eval"].get(k) for k in STATS}} for c in r.curve]
        training += [{"run": r.name, **m} for m in r.metrics]
        values = analyses.get(r.name, (None, None))[0]
        if values is not None:
            curves_of += analysis_rows(r.name, values)
    training_columns = ["run", *dict.fromkeys(k for m in training for k in m if k != "run")]
    files = [(RUNS, RUN_COLUMNS, rows), (CURVES, CURVE_COLUMNS, curves), (TRAINING, training_columns, training),
             (ANALYSIS, ANALYSIS_COLUMNS, curves_of),
             (LOSS_CDF, LOSS_CDF_COLUMNS, [{"run": name, **v} for name, v in loss_cdf.items()])]
    written = []
    for name, columns, table in files:
        write_csv(out / name, columns, table)
        written.append(out / name)
    meta["config"] = relative(shared, roots)
    write_meta(out, {"study": study, **meta})
    return written + [out / META]


def write_meta(out: Path, meta: dict) -> None:
    """``out``/study.yaml: ``meta`` (its ``study`` first)."""
    (Path(out) / META).write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True))


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


# --- rows -> runs --------------------------------------------------------------------------

def read_meta(study_dir) -> dict:
    path = Path(study_dir) / META
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a study's results folder, written by "
                                "`python -m tools.results write`)")
    meta = yaml.safe_load(path.read_text())
    if not isinstance(meta, dict) or meta.get("kind") not in KINDS:
        raise ValueError(f"{path}: expected a mapping with kind one of {KINDS}, got {str(meta)[:80]}")
    return meta


def _by_run(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["run"], []).append(r)
    return out


class Tables:
    """The tables of every study under one results folder, read once each: a reused row is
    resolved through its source's study."""

    def __init__(self, root):
        self.root = Path(root)
        self._studies: dict[str, dict] = {}

    def study(self, name: str) -> dict:
        if name not in self._studies:
            folder = self.root / name
            meta = read_meta(folder)
            for table in (TRAINING, ANALYSIS):
                plain = folder / table.removesuffix(".gz")
                if plain.is_file() and not (folder / table).is_file():
                    raise ValueError(f"{plain}: written uncompressed (before December 2026); its tables now read "
                                     f"{table}: `gzip -n {plain}`")
            self._studies[name] = {
                "meta": meta, "runs": read_csv(folder / RUNS), "curves": _by_run(read_csv(folder / CURVES)),
                "training": _by_run(read_csv(folder / TRAINING)), "analysis": _by_run(read_csv(folder / ANALYSIS)),
                "loss_cdf": {r["run"]: _without_run(r) for r in read_csv(folder / LOSS_CDF)}}
            self._studies[name]["by_name"] = {r["run"]: r for r in self._studies[name]["runs"]}
        return self._studies[name]

    def measured(self, study: str, name: str, seen=()) -> tuple[dict, str, str]:
        """(the row holding the numbers of run ``name`` of ``study``, that row's study, its run
        name): the row itself, or its ``reused_from`` source's, followed to the end."""
        row = self.study(study)["by_name"].get(name)
        if row is None:
            raise ValueError(f"{self.root / study / RUNS}: no run {name!r} (named as a reused run's source)")
        source = row.get("reused_from")
        if source is None:
            return row, study, name
        if source in seen:
            raise ValueError(f"{self.root / study / RUNS}: run {name!r} is reused from itself ({source})")
        src_study, _, src_run = source.partition("/")
        return self.measured(src_study, src_run, (*seen, source))

    def runs(self, study: str) -> list:
        """The study's runs as reports.runs.Run objects (``dir`` None: no folder behind them),
        groups not yet assigned: what the report sections read."""
        tables = self.study(study)
        shared = tables["meta"].get("config") or {}
        out = []
        for row in tables["runs"]:
            measured, where, name = self.measured(study, row["run"])
            src = self.study(where)
            run = Run(dir=None, name=row["run"], status=measured.get("status", "unknown"),
                      seconds=measured.get("seconds"), device=measured.get("device"), message=measured.get("message"),
                      seed=row.get("seed"), overrides=row.get("overrides"),
                      config=unflatten({**shared, **row["config"]}) if "config" in row else None,
                      eval=_eval(measured),
                      metrics=[_without_run(m) for m in src["training"].get(name, [])],
                      curve=[{"iter": c["iter"], "eval": {k: c[k] for k in STATS if k in c}}
                             for c in src["curves"].get(name, [])],
                      notes=list(measured.get("notes") or []), code=measured.get("code"),
                      devices=measured.get("devices"), provenance=measured.get("provenance"),
                      reused_from=row.get("reused_from"), analysis=_analysis(measured, src["analysis"].get(name, [])),
                      loss_cdf=src["loss_cdf"].get(name))
            out.append(run)
        return out


def _eval(row: dict) -> dict | None:
    """eval.json's numbers from a runs.csv row (its COCO stats, and ``per_category`` where kept);
    None for a run without them."""
    if not all(k in row for k in STATS):
        return None
    kept = row.get("per_category")
    return {**{k: row[k] for k in STATS}, **({"per_category": kept} if kept is not None else {})}


def _without_run(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "run"}


def _analysis(row: dict, curves: list[dict]) -> tuple[dict | None, str | None]:
    """reports.errors.read_analysis's (values, why not) from a runs.csv row and its analysis.csv rows."""
    if "analysis" in row:
        return None, row["analysis"]
    by = {}
    for c in curves:
        by.setdefault(c["curve"], []).append(c)
    c50 = [c.get("y") for c in by.get("pr_c50", [])] or None
    bkg = by.get("bkg_vs_recall")
    bkg_curve = {"recall": [c["x"] for c in bkg], "bkg_per_image": [c.get("y") for c in bkg]} if bkg else None
    scores = by.get("anchor_scores")
    hist = None
    if scores:
        hist = {"edges": [c["x"] for c in scores], "fg": [c["y"] for c in scores[:-1]],
                "bg": [c["z"] for c in scores[:-1]], "score_thresh": row.get("score_thresh"),
                "bg_above_thresh_per_image": row.get("bg_anchors_above")}
    return {"tide": {k: row.get(f"tide_{k.lower()}") for k in TIDE},
            "bkg_dap50": row.get("tide_bkg"), "falsepos_dap50": row.get("tide_falsepos"),
            **{k: row.get(k) for k in ("bg_band", "bkg_per_image", "bkg_at_recall", "bg_anchors_above")},
            "c50": c50, "bkg_curve": bkg_curve, "hist": hist}, None

