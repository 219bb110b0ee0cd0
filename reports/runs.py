"""Reading a sweep for the report: run folders, what each holds, and its method group.

A run folder is one job of a sweep, written by train.py and read here through
``detection.run_folder.RunFolder`` (which defines its files). A sweep is read as it is,
half-finished included: whatever a run folder lacks or holds unreadably becomes a note on
that run, never an exception, so the report lists every run.
"""

import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hydra.utils import get_class

from detection.run_folder import ROOT, RunFolder, effective_status, flatten

STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
FLAT = 1.0  # AP points: a curve whose last quarter adds less than this has flattened,
FLAT_SHARE = 0.05  # and less than this share of its end's AP (a +0.8 on coco_person's ~6 AP is not flat)
RESULTS = ROOT / "results"  # the committed results: a folder of tables and report per study (reports/table_io.py)
# Not run folders, and never holding one: what train.py writes inside a run, and the report.
_SKIP_DIRS = {".hydra", "checkpoints", "tb", "plots"}
REUSED_FROM = "reused_from.txt"  # in a run folder copied into another study: where it came from


def is_run_folder(path: Path) -> bool:
    folder = RunFolder(path)
    return any(p.is_file() for p in (folder.status, folder.config, folder.overrides))


@dataclass
class Run:
    dir: Path | None  # None: read from results tables, not from a folder
    name: str  # path relative to the sweep folder
    status: str = "unknown"  # running | finished | diverged | failed | killed | interrupted | unknown
    seconds: float | None = None
    device: str | None = None  # what the seconds were spent on ("cpu (2 threads)", a card's name)
    message: str | None = None
    seed: int | None = None
    overrides: list[str] | None = None
    config: dict | None = None
    eval: dict | None = None
    metrics: list[dict] = field(default_factory=list)  # training lines of metrics.jsonl
    curve: list[dict] = field(default_factory=list)  # its evaluation lines: {"iter", "eval": {"AP", ...}}
    notes: list[str] = field(default_factory=list)
    group: str = ""
    code: str | None = None  # the code hash it ran (status.json)
    # status.json's: what its iterations trained on ([{device, kind, precision, iterations}]) and
    # what made it (package versions, git commit, CPU, GPU); None for runs from before they were recorded
    devices: list[dict] | None = None
    provenance: dict | None = None
    reused_from: str | None = None  # the run it is a copy of (REUSED_FROM), None if trained here
    # Read from results tables (reports/table_io.py) instead of the folder, which is then None:
    analysis: tuple | None = None  # reports.errors.read_analysis's (values, why not)
    loss_cdf: dict | None = None  # Figure 4's numbers (reports.cdf.figure4_numbers), None: none saved

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.dir)

    @property
    def ap(self) -> float | None:
        """AP (%) of the final evaluation; None without one (or COCOeval's -1, "undefined")."""
        return percent((self.eval or {}).get("AP"))

    @property
    def last_iter(self) -> int | None:
        return self.metrics[-1].get("iter") if self.metrics else None


def natural_key(text: str):
    """Sort key in which "10_x" comes after "9_x" (Hydra numbers its job folders)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def find_run_dirs(sweep_dir: Path) -> list[Path]:
    """Every run folder under ``sweep_dir`` (itself included), in job order."""
    found = []
    for root, dirs, _ in os.walk(sweep_dir):
        path = Path(root)
        if is_run_folder(path):
            found.append(path)
            dirs.clear()  # a run folder holds no other run
        else:
            dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
    return sorted(found, key=lambda p: natural_key(str(p.relative_to(sweep_dir))))


def _read(read, what: str, run: Run):
    """``read()``, or None with a note on ``run`` when the file is unreadable."""
    try:
        return read()
    except (OSError, ValueError, yaml.YAMLError) as e:
        run.notes.append(f"{what} unreadable ({type(e).__name__}: {str(e)[:80]})")
        return None


def _seed_of(override: str) -> str | None:
    key, _, value = override.lstrip("+~").partition("=")
    return value if key == "seed" else None


def load_run(run_dir: Path, sweep_dir: Path) -> Run:
    run = Run(dir=run_dir, name=str(run_dir.relative_to(sweep_dir)) or ".")
    folder = run.folder
    status = _read(folder.read_status, "status.json", run)
    if status is not None:  # "running" with no live process: killed or interrupted
        run.status, run.seconds, run.message = effective_status(status), status.get("seconds"), status.get("message")
        run.device, run.code = status.get("device"), status.get("code")
        run.devices, run.provenance = status.get("devices") or None, status.get("provenance")
    elif not folder.status.is_file():
        run.notes.append("no status.json")
    run.overrides = _read(folder.read_overrides, ".hydra/overrides.yaml", run)
    config = _read(folder.read_config, "config.yaml", run)
    if isinstance(config, dict):
        run.config = config
    seeds = [s for s in map(_seed_of, run.overrides or []) if s is not None]
    seed = (run.config or {}).get("seed", seeds[0] if seeds else None)
    try:
        run.seed = None if seed is None else int(seed)
    except ValueError:
        run.notes.append(f"seed {seed!r} is not an int")

    ev = _read(folder.read_eval, "eval.json", run)
    if isinstance(ev, dict) and all(isinstance(ev.get(k), (int, float)) for k in STATS):
        run.eval = ev
    elif ev is not None:
        run.notes.append(f"eval.json: expected numbers for {', '.join(STATS)}")
    elif run.status == "finished":
        run.notes.append("no eval.json")
    run.reused_from = reused_from(run_dir)
    rows, bad = folder.read_metrics()
    run.metrics = [r for r in rows if "eval" not in r]
    run.curve = [r for r in rows if isinstance(r.get("eval"), dict)]
    if bad:
        run.notes.append(f"metrics.jsonl: {len(bad)} unreadable line(s) skipped (line {bad[0]}...)")
    return run


def load_runs(sweep_dir) -> tuple[list[Run], list[str]]:
    """Every run of the sweep, each with its ``group`` (method) label set, and the settings
    shared by all runs (see ``assign_groups``)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep folder {str(sweep_dir)!r} does not exist or is not a folder")
    runs = [load_run(d, sweep_dir) for d in find_run_dirs(sweep_dir)]
    if not runs:
        raise ValueError(f"no run folders in {str(sweep_dir)!r}: expected subfolders holding status.json, "
                         "config.yaml or .hydra/overrides.yaml (written by train.py / Hydra)")
    return runs, assign_groups(runs)


def arms(groups: dict[str, list[Run]], key: str) -> list[dict]:
    """The groups that are arms of one setting over ``key``: per setting (the config without
    ``key``, the seed, the run name and ``RUN_CONTROL``, the keys that only say how a run was
    started), {key's value: group label}, in the groups' order. A group counts when all its
    runs with a config agree on the setting and set ``key``; settings with one arm are kept
    (a caller asks for the values it needs)."""
    from detection.run_folder import RUN_CONTROL

    ignored = (key, "seed", "run_name", *RUN_CONTROL)
    found: dict[tuple, dict] = {}
    for label, runs in groups.items():
        seen = {}  # (setting, repr of key's value) -> the value
        for flat in (flatten(r.config) for r in runs if r.config):
            setting = tuple(sorted((k, repr(v)) for k, v in flat.items() if k not in ignored))
            seen[(setting, repr(flat[key]) if key in flat else None)] = flat.get(key)
        if len(seen) != 1 or next(iter(seen))[1] is None:
            continue
        ((setting, _), value), = seen.items()
        found.setdefault(setting, {}).setdefault(value, label)
    return list(found.values())


def assign_groups(runs: list[Run]) -> list[str]:
    """Sets ``run.group``: the run's settings except the seed, shown as what varies in the sweep.

    With every run's ``.hydra/overrides.yaml``: its overrides without ``seed=...``; otherwise
    the config keys whose values differ between runs (``seed`` and the derived ``run_name``
    aside). Settings shared by all runs (``experiment=...``) are left out of the labels and
    returned.
    """
    if all(r.overrides is not None for r in runs):
        items = [[o for o in r.overrides if _seed_of(o) is None] for r in runs]
    else:
        flat = [flatten(r.config) if r.config else None for r in runs]
        keys = sorted({k for f in flat if f for k in f} - {"seed", "run_name"})
        varying = [k for k in keys if len({repr(f.get(k, "<unset>")) for f in flat if f}) > 1]
        items = [[f"{k}={f[k]}" for k in varying if k in f] if f else None for f in flat]
    known = [set(i) for i in items if i is not None]
    shared = set.intersection(*known) if known else set()
    for run, item in zip(runs, items):
        if item is None:  # neither overrides nor config: a group of its own
            run.group = f"? {run.name}"
        else:
            run.group = ", ".join(o for o in item if o not in shared) or ", ".join(item) or "(defaults)"
    first = next((i for i in items if i is not None), [])
    return [o for o in first if o in shared]


def groups_of(runs: list[Run]) -> dict[str, list[Run]]:
    """group label -> its runs sorted by seed; groups in the order of their first job."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(r.group, []).append(r)
    return {g: sorted(rs, key=lambda r: (r.seed is None, r.seed or 0, natural_key(r.name))) for g, rs in groups.items()}


def bg_per_fg(metrics: list[dict]) -> float | None:
    """Measured background anchors per foreground anchor over training lines of metrics.jsonl.

    Total ``num_bg`` over total ``num_fg`` of the lines that log both (each a per-image mean of
    one logged step), so steps count equally. None without such lines or without any
    foreground anchor. Example: lines (fg 10, bg 1000) and (fg 30, bg 2000) give 3000 / 40 = 75,
    shown as "1:75".
    """
    both = [m for m in metrics if m.get("num_fg") is not None and m.get("num_bg") is not None]
    fg = sum(m["num_fg"] for m in both)
    return sum(m["num_bg"] for m in both) / fg if fg > 0 else None


def percent(ap: float | None) -> float | None:
    """A COCOeval AP (a fraction) in percent; None for none or COCOeval's -1 ("undefined":
    nothing to measure, e.g. no object of that size)."""
    return None if ap is None or not ap >= 0 else 100.0 * ap


def run_values(run: Run) -> dict[str, float | None]:
    """The numbers the report averages over seeds, for one run (None where it has none).

    AP stats in percent (COCOeval's -1, "undefined", is None); the losses and loss shares of
    the last metrics line; #fg anchors per image averaged over the log; background anchors per
    foreground anchor over the log (``bg_per_fg``); wall seconds from
    status.json; the median images/s of the log (robust to a slow first interval).
    """
    ev, last = run.eval or {}, run.metrics[-1] if run.metrics else {}
    values = {k: percent(ev.get(k)) for k in STATS}
    for k in ("loss_cls", "loss_box", "bg_share", "easy_bg_share"):
        values[k] = last.get(k)
    fg = [m["num_fg"] for m in run.metrics if "num_fg" in m]
    values["num_fg"] = statistics.fmean(fg) if fg else None
    values["bg_per_fg"] = bg_per_fg(run.metrics)
    values["train_s"] = run.seconds
    speed = [m["images_per_s"] for m in run.metrics if "images_per_s" in m]
    values["images_per_s"] = statistics.median(speed) if speed else None
    return values


def convergence(runs) -> dict:
    """Mean AP curve over the runs (iteration -> AP %) and the gain of its last quarter."""
    points: dict[int, list[float]] = {}
    for r in runs:
        for row in r.curve:
            points.setdefault(row["iter"], []).append(100 * row["eval"]["AP"])
    curve = {it: statistics.fmean(v) for it, v in sorted(points.items())}
    if len(curve) < 2:
        return {"curve": curve, "gain": None}
    last = max(curve)
    quarter = min(curve, key=lambda it: abs(it - 0.75 * last))  # the point nearest 3/4 of training
    return {"curve": curve, "gain": curve[last] - curve[quarter], "from": quarter, "to": last}


CONVERGENCE_HEADER = ["method", "AP at 3/4", "AP at the end", "last-quarter gain", "flat"]


def convergence_note(longer: str) -> str:
    """What a Convergence table's numbers mean and what they cannot say; ``longer`` names where
    the same jobs trained for longer are reported."""
    return ("Mean AP (%) over each method's finished seeds at each evaluation (`schedule.eval_every`), and what "
            f"the last quarter of training added; **flat**: less than {FLAT:.0f} AP and less than "
            f"{100 * FLAT_SHARE:.0f}% of the AP at the end. A gain says the schedule "
            "ended while the model still improved. A flat end does not prove the converse: under cosine decay the "
            "lr reaches 0 there, and every curve flattens however long the schedule. Training the same jobs for "
            f"longer tells ({longer}).")


def convergence_cells(c: dict) -> list[str]:
    """A ``convergence`` result as table cells: AP at 3/4 and at the end (with their
    iterations), the gain, and whether the curve is flat ("–" each without a gain)."""
    if c["gain"] is None:
        return ["–"] * 4
    end = c["curve"][c["to"]]
    return [f"{c['curve'][c['from']]:.1f} (iter {c['from']})", f"{end:.1f} (iter {c['to']})",
            f"{c['gain']:+.1f}", "yes" if is_flat(c["gain"], end) else "**no**"]


def is_flat(gain: float, end: float) -> bool:
    """Whether a last-quarter ``gain`` (AP points) to ``end`` (the AP at the end) is flat: less
    than FLAT and less than FLAT_SHARE of ``end``.

    >>> is_flat(0.5, 50.0), is_flat(1.2, 50.0), is_flat(0.8, 5.7), is_flat(0.2, 5.7)
    (True, False, False, True)
    """
    return gain < min(FLAT, FLAT_SHARE * end)


def ap_by_seed(runs: list[Run]) -> dict:
    """{seed: AP (%)} of the finished runs with a seed and an AP: what a paired difference pairs."""
    return {r.seed: ap for r in runs
            if r.status == "finished" and r.seed is not None and (ap := run_values(r)["AP"]) is not None}


def trained_on(run: Run) -> str | None:
    """What ``run`` trained on, as one kind and precision (``"cpu fp32"``, ``"cuda bf16"``), or
    ``"mixed: cuda bf16 x4000, cpu fp32 x2000"`` when its iterations ran on more than one (a run
    resumed on another kind of device); None when it has no record of its devices.

    >>> trained_on(Run(None, "r", devices=[{"kind": "cpu", "precision": "fp32", "iterations": 30}]))
    'cpu fp32'
    >>> trained_on(Run(None, "r", devices=[{"kind": "cuda", "precision": "bf16", "iterations": 40},
    ...                                    {"kind": "cpu", "precision": "fp32", "iterations": 20}]))
    'mixed: cuda bf16 x40, cpu fp32 x20'
    """
    if not run.devices:
        return None
    parts: list[list] = []  # [kind and precision, iterations], consecutive sessions on one kind merged
    for d in run.devices:
        kind = f"{d.get('kind') or 'unknown'} {d.get('precision') or 'unknown'}"
        if parts and parts[-1][0] == kind:
            parts[-1][1] += d.get("iterations") or 0
        else:
            parts.append([kind, d.get("iterations") or 0])
    if len({k for k, _ in parts}) == 1:
        return parts[0][0]
    return "mixed: " + ", ".join(f"{k} x{n}" for k, n in parts)


def trained_on_by_seed(runs: list[Run]) -> dict:
    """{seed: ``trained_on``} of the runs with a seed: what a paired difference checks before it
    pairs two runs (reports.stats.paired_difference's ``kinds``)."""
    return {r.seed: trained_on(r) for r in runs if r.seed is not None}


def on_tuning_split(run: Run) -> bool:
    """Evaluated on the tuning split (``eval_split: tune``, a study's lr tuning): its AP is of
    other images than the compared runs', so it is no point of a comparison."""
    return (run.config or {}).get("eval_split") == "tune"


def config_loss_name(config: dict | None) -> str | None:
    """The short name of the loss in a run's resolved config: the ``name`` of its ``loss._target_``
    class (``losses.focal.FocalLoss.name`` = "focal", as configs/loss/focal.yaml). None without a
    loss ``_target_``, or when that class is not in this checkout (a run of a loss removed since)."""
    loss = (config or {}).get("loss")
    target = loss.get("_target_") if isinstance(loss, dict) else None
    if not isinstance(target, str) or not target:
        return None
    try:
        return get_class(target).name
    except (ImportError, AttributeError, ValueError):
        return None


def loss_name(run: Run) -> str | None:
    """``config_loss_name`` of the run's config."""
    return config_loss_name(run.config)


def reused_from(run_dir) -> str | None:
    """Where the run in ``run_dir`` was copied from (its ``REUSED_FROM``), or None if it was
    trained there."""
    note = Path(run_dir) / REUSED_FROM
    return note.read_text().strip() if note.is_file() else None
