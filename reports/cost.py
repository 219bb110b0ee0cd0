"""The report's ``## Cost`` section: what the runs cost, per device they ran on, and (where the
runs recorded them) what each trained on and what made them."""

from pathlib import Path

from analysis.markdown import markdown_table
from reports.runs import Run, trained_on


def cost(runs: list[Run]) -> list[dict]:
    """What the runs cost, per device they ran on: {device, runs, seconds (wall time of every
    session of every run), images (training images seen: last logged iteration x batch), images_per_s}."""
    by_device: dict[str, dict] = {}
    for run in runs:
        if run.seconds is None:
            continue
        row = by_device.setdefault(run.device or "unknown device", {"runs": 0, "seconds": 0.0, "images": 0})
        row["runs"] += 1
        row["seconds"] += run.seconds
        batch = ((run.config or {}).get("schedule") or {}).get("batch_size") or 0
        row["images"] += (run.last_iter or 0) * batch
    return [{"device": d, **r, "images_per_s": r["images"] / r["seconds"] if r["seconds"] else None}
            for d, r in by_device.items()]


def iterations_by_device(runs: list[Run]) -> list[dict]:
    """The runs' training iterations per device, kind and precision (status.json's ``devices``),
    in order of first appearance: {device, kind, precision, runs, iterations}."""
    rows: dict[tuple, dict] = {}
    for run in runs:
        for d in run.devices or []:
            key = (d.get("device"), d.get("kind"), d.get("precision"))
            row = rows.setdefault(key, {"device": key[0], "kind": key[1], "precision": key[2], "runs": set(),
                                        "iterations": 0})
            row["runs"].add(run.name)
            row["iterations"] += d.get("iterations") or 0
    return [{**r, "runs": len(r["runs"])} for r in rows.values()]


def device_seconds(run: Run) -> dict[str, float]:
    """The run's wall seconds by the kind of device it trained on ({"cpu": s} or {"cuda": s}),
    split by iterations where it trained on several (``devices``); without that record, by the
    ``device`` it names ("cpu (2 threads)" or a card's name)."""
    if run.seconds is None:
        return {}
    devices = [d for d in run.devices or [] if d.get("iterations")]
    if not devices:
        return {"cpu" if (run.device or "cpu").startswith("cpu") else "cuda": run.seconds}
    total = sum(d["iterations"] for d in devices)
    out: dict[str, float] = {}
    for d in devices:
        kind = d.get("kind") or "unknown"
        out[kind] = out.get(kind, 0.0) + run.seconds * d["iterations"] / total
    return out


def cost_by_method(runs: list[Run], methods: list[str]) -> list[dict]:
    """Per method, its runs (every stage: a run belongs to the method its path names, as
    ``final/<method>/seed0`` or ``tune/lr/<method>/lr0.05``), their CPU-hours and GPU-minutes."""
    rows = {m: {"method": m, "runs": 0, "cpu_hours": 0.0, "gpu_minutes": 0.0} for m in methods}
    for run in runs:
        owner = next((part for part in Path(run.name).parts if part in rows), None)
        if owner is None:
            continue
        rows[owner]["runs"] += 1
        for kind, seconds in device_seconds(run).items():
            if kind == "cpu":
                rows[owner]["cpu_hours"] += seconds / 3600
            else:
                rows[owner]["gpu_minutes"] += seconds / 60
    return list(rows.values())


TRAINING_CODE = "training_code"  # a run's status.json "code": the hash of train.py, detection/, losses/, datasets/


def made_with(run: Run) -> dict:
    """What made ``run``: its provenance and, where recorded, TRAINING_CODE (a commit may
    change only the reports or the tools; this hash says whether the training changed)."""
    return {**run.provenance, **({TRAINING_CODE: run.code} if run.code else {})}


def provenance_groups(runs: list[Run]) -> tuple[dict, list[tuple[dict, list[str]]]]:
    """(what every run with a provenance shares, [(the keys they differ in -> value, the runs
    with those values)]): the second is empty when they are all made alike (``made_with``)."""
    recorded = [(r, made_with(r)) for r in runs if r.provenance]
    keys = sorted({k for _, made in recorded for k in made})
    differ = [k for k in keys if len({repr(made.get(k)) for _, made in recorded}) > 1]
    shared = {k: recorded[0][1].get(k) for k in keys if k not in differ} if recorded else {}
    groups: dict[str, tuple[dict, list[str]]] = {}
    for r, made in recorded:
        values = {k: made.get(k) for k in differ}
        groups.setdefault(repr(values), (values, []))[1].append(r.name)
    return shared, list(groups.values()) if differ else []


def _provenance_value(key: str, value) -> str:
    """One provenance value as the report shows it: a commit by its first 12 characters, None as –."""
    if value is None:
        return "–"
    return str(value)[:12] if key == "git_commit" else str(value)


def _provenance_text(values: dict) -> str:
    return ", ".join(f"{k} {_provenance_value(k, v)}" for k, v in values.items())


def cost_section(runs: list[Run], methods: list[str] | None = None) -> list[str]:
    """``## Cost``: the runs' time per device (CPU or the card) and their training images/s; with
    ``methods``, per method (``cost_by_method``); where the runs recorded them, their iterations
    per kind of device and precision (mixed runs named) and what made them (versions, commit,
    CPU, GPU; a table where runs differ)."""
    md = ["## Cost", "", "Wall time of every run (all its sessions, evaluations included) on what it ran on; "
          "the training images it saw and images/s over that time.", ""]
    md += markdown_table(["device", "runs", "time", "training images", "images/s"],
                 [[c["device"], c["runs"], f"{c['seconds'] / 3600:.2f} h", c["images"],
                   "–" if c["images_per_s"] is None else f"{c['images_per_s']:.1f}"] for c in cost(runs)])
    md += [""]
    if methods:
        md += ["Per method, every run of every stage (tuning, final, controls):", ""]
        md += markdown_table(["method", "runs", "CPU-hours", "GPU-minutes"],
                             [[r["method"], r["runs"], f"{r['cpu_hours']:.2f}", f"{r['gpu_minutes']:.1f}"]
                              for r in cost_by_method(runs, methods)]) + [""]
    by_device = iterations_by_device(runs)
    if by_device:
        md += ["Training iterations by what they ran on (status.json's `devices`):", ""]
        md += markdown_table(["device", "kind", "precision", "runs", "iterations"],
                             [[r["device"] or "unknown", r["kind"] or "–", r["precision"] or "–", r["runs"],
                               r["iterations"]] for r in by_device]) + [""]
        mixed = [r.name for r in runs if (trained_on(r) or "").startswith("mixed")]
        md += [f"**Mixed**: {len(mixed)} run(s) trained on more than one kind of device or precision, paired with "
               f"no other: {', '.join(mixed)}." if mixed else
               "Every run trained on one kind of device and precision, start to end.", ""]
    shared, groups = provenance_groups(runs)
    if shared or groups:
        md += [f"Made with: {_provenance_text(shared)}." if shared else "", ""]
        if groups:
            keys = list(groups[0][0])
            md += ["The runs differ in what made them:", ""]
            md += markdown_table([*keys, "runs"], [[*(_provenance_value(k, v) for k, v in values.items()), len(names)]
                                                    for values, names in groups]) + [""]
            if TRAINING_CODE in shared:
                md += ["Every run trained with the same code (`training_code`: train.py, detection/, losses/, "
                       "datasets/); the commits differ outside it.", ""]
    return md
