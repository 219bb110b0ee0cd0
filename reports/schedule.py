"""The report's schedule section: is a schedule long enough, and does the order of the losses
hold at a longer one (issue 12, ``make followups ARGS="--study schedule_check"``)?

Under a cosine schedule the AP curve of any run flattens at its end, where the lr goes to 0,
and rises in its last quarter as the lr anneals, however long the schedule: neither says
whether training longer would help. The test that does is to train the same job for longer.
Groups of a sweep that differ in ``schedule.max_iters`` only (seed, run name and ``RUN_CONTROL``
aside; ``reports.runs.arms``) are one setting at two schedules. Per setting and each
pair of consecutive schedules, short T and long T': AP at each and the paired difference
long − short over the seeds both finished, judged against a tolerance of 1 AP:

- **long enough**: the whole 95% interval is below +1 AP (training longer adds < 1 AP);
- **too short**: the whole interval is at or above +1 AP;
- otherwise **not resolved** at this many seeds.

Then, per schedule with more than one loss, the paired differences between the losses
(``reports.stats.pairwise_verdicts``): whether their order holds at the longer schedule.

    md_lines = schedule_section(groups_of(runs))   # [] unless the sweep has such a pair
"""

from analysis.markdown import markdown_table
from reports.runs import Run, ap_by_seed, arms, loss_name
from reports.stats import (
    cell_stats,
    difference_text,
    n_cell,
    ours_cell,
    paired_difference,
    pairwise_verdicts,
)

KEY = "schedule.max_iters"
TOLERANCE = 1.0  # AP (%): a schedule is long enough when training longer adds less


def schedule_pairs(groups: dict[str, list[Run]]) -> list[tuple[int, str, int, str]]:
    """(T, label at T, T', label at T') for each setting run at more than one schedule and each
    pair of its consecutive schedules T < T', in the groups' order."""
    return _consecutive(arms(groups, KEY))


def _consecutive(settings: list[dict]) -> list[tuple[int, str, int, str]]:
    pairs = []
    for arm in settings:
        steps = sorted(arm)
        pairs += [(t, arm[t], u, arm[u]) for t, u in zip(steps, steps[1:])]
    return pairs


def doubling_verdict(diff: dict, tolerance: float = TOLERANCE) -> str:
    """What the interval of long − short (AP, %) says about the short schedule.

    >>> doubling_verdict({"n": 3, "mean": 0.3, "lo": -0.2, "hi": 0.8})
    'long enough (< +1.0 AP)'
    >>> doubling_verdict({"n": 3, "mean": 2.5, "lo": 1.2, "hi": 3.8})
    'too short (>= +1.0 AP)'
    >>> doubling_verdict({"n": 3, "mean": 0.9, "lo": 0.1, "hi": 1.7})
    'not resolved'
    """
    if diff["lo"] is None or diff["hi"] is None:
        return "not resolved (n < 2 paired seeds)"
    if diff["hi"] < tolerance:
        return f"long enough (< {tolerance:+.1f} AP)"
    if diff["lo"] >= tolerance:
        return f"too short (>= {tolerance:+.1f} AP)"
    return "not resolved"


def schedule_section(groups: dict[str, list[Run]]) -> list[str]:
    """``## Schedule length`` as markdown lines; [] without a setting at two schedules."""
    settings = [arm for arm in arms(groups, KEY) if len(arm) > 1]  # run at more than one schedule
    pairs = _consecutive(settings)
    if not pairs:
        return []
    rows = []
    for t, short, u, long in pairs:
        s_short, s_long = cell_stats(groups[short]), cell_stats(groups[long])
        d = paired_difference(ap_by_seed(groups[long]), ap_by_seed(groups[short]))
        rows.append([f"`{short}`", loss_name(groups[short][0]) or "?", f"{t} → {u}", ours_cell(s_short), n_cell(s_short),
                     ours_cell(s_long), n_cell(s_long), difference_text(d), doubling_verdict(d)])
    md = ["## Schedule length", "",
          f"The same jobs trained for longer (`{KEY}`). Under a cosine schedule every AP curve flattens at "
          "its end, so its shape cannot say whether training longer helps; this can. AP (%) mean ± std "
          "[95% CI]; the difference is long − short over the seeds both finished, and the short schedule "
          f"is **long enough** where its whole interval lies below {TOLERANCE:+.1f} AP, **too short** where it "
          "lies at or above it, else not resolved.", "",
          *markdown_table(["method (short)", "loss", "iterations", "AP short", "n", "AP long", "n",
                           "long − short [95% CI]", "short schedule"], rows), ""]
    by_steps: dict[int, list[str]] = {}
    for arm in settings:
        for steps, label in arm.items():
            by_steps.setdefault(steps, []).append(label)
    for steps, labels in sorted(by_steps.items()):
        if len(labels) < 2:
            continue
        names = [loss_name(groups[label][0]) or label for label in labels]
        if len(set(names)) < len(names):  # two settings of one loss: their labels tell them apart
            names = labels
        verdicts = pairwise_verdicts({name: ap_by_seed(groups[label]) for label, name in zip(labels, names)})
        md += [f"Between the losses at {steps} iterations (paired over seeds):", ""]
        md += [f"- {v['verdict']}" for v in verdicts] + [""]
    return md
