"""The report's ``## Cost`` section: what the runs cost, per device they ran on."""

from analysis.markdown import markdown_table
from reports.runs import Run


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


def cost_section(runs: list[Run]) -> list[str]:
    """``## Cost``: the runs' time per device (CPU or the card) and their training images/s."""
    md = ["## Cost", "", "Wall time of every run (all its sessions, evaluations included) on what it ran on; "
          "the training images it saw and images/s over that time.", ""]
    md += markdown_table(["device", "runs", "time", "training images", "images/s"],
                 [[c["device"], c["runs"], f"{c['seconds'] / 3600:.2f} h", c["images"],
                   "–" if c["images_per_s"] is None else f"{c['images_per_s']:.1f}"] for c in cost(runs)])
    return md + [""]
