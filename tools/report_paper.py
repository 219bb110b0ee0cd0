"""The report's "against the paper" sections: Lin et al. 2017 (Focal Loss), Table 1a and 1b beside ours.

Table 1a is alpha-balanced CE over alpha; Table 1b is the focal loss over gamma, each gamma at
the paper's best alpha for it. Both lie on one plane of (gamma, alpha) of the sigmoid losses:
``losses.bce_alpha.AlphaBCELoss`` *is* ``losses.focal.FocalLoss`` at gamma = 0, so a run of
either loss is placed by its effective (gamma, alpha) (``loss_params``), and a setting of a
table is a point of that plane: Table 1a's alpha = .25 is (gamma 0, alpha .25), Table 1b's
gamma = .5 is (gamma .5, alpha .5). Config values are compared with a small tolerance.

For each table, the sweep's groups (methods) at a table setting are shown beside the paper's AP
in the paper's order, with mean ± std [95% t interval] of AP (%) over the finished seeds
(``tools.stats.summary``); diverged and other unfinished runs are counted, never averaged. The
two orders are compared by Spearman's rank correlation over the settings both have. Groups that
differ in anything besides the loss (learning rate, dataset, ...) are separate contexts, each
with its own table and correlation.

    md_lines = paper_section(groups_of(runs))   # [] unless a table has >= MIN_SETTINGS settings in the sweep
"""

import math
from dataclasses import dataclass, field

from tools.report_runs import Run, flatten, markdown_table, run_values
from tools.stats import summary

BCE_ALPHA = "bce_alpha.AlphaBCELoss"  # the end of config loss._target_ (losses/bce_alpha.py)
FOCAL = "focal.FocalLoss"  # losses/focal.py
_ATOL = 1e-6  # config values this close are the same setting (0.999 vs 0.99 differ by 9e-3)
_STATUSES = ("diverged", "running", "paused", "failed", "killed", "interrupted", "unknown")  # the n cell's order

# Fewer settings than this are no sweep of the paper's table (bg_ablation has bce_alpha .75 and
# focal 2/.25: two Table 1b points whose "rank correlation" would only restate their order).
MIN_SETTINGS = 3


@dataclass(frozen=True)
class PaperTable:
    name: str  # "Table 1a"
    what: str  # what the table varies, for the section's text
    key: str  # the config key it varies ("loss.alpha")
    ap: dict[float, float]  # setting -> the paper's AP (%), in the paper's order
    fixed: dict[float, dict[str, float]] = field(default_factory=dict)  # setting -> other loss keys there


_T1A_ALPHA = (0.10, 0.25, 0.50, 0.75, 0.90, 0.99, 0.999)
_T1B_GAMMA = (0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_T1B_ALPHA = (0.75, 0.75, 0.75, 0.50, 0.25, 0.25, 0.25)  # = detection.build.FOCAL_PAPER_ALPHA

TABLE_1A = PaperTable(
    name="Table 1a", what="alpha-balanced CE (gamma = 0) over alpha", key="loss.alpha",
    ap=dict(zip(_T1A_ALPHA, (0.0, 10.8, 30.2, 31.1, 30.8, 28.7, 25.1))),
    fixed={a: {"loss.gamma": 0.0} for a in _T1A_ALPHA})
TABLE_1B = PaperTable(
    name="Table 1b", what="focal loss over gamma, each gamma at the paper's best alpha for it",
    key="loss.gamma",
    ap=dict(zip(_T1B_GAMMA, (31.1, 31.4, 31.9, 32.9, 33.7, 34.0, 32.2))),
    fixed={g: {"loss.alpha": a} for g, a in zip(_T1B_GAMMA, _T1B_ALPHA)})
TABLES = (TABLE_1A, TABLE_1B)

PAPER_SETUP = ("COCO (trainval35k, evaluated on minival), ResNet-50-FPN at 600 px, ~100k anchors per image, "
               "90k iterations")


# ---------------------------------------------------------------------------------------------
# Spearman's rank correlation


def ranks(xs) -> list[float]:
    """1-based ranks, ties sharing the average of their ranks: [10, 20, 20, 30] -> [1, 2.5, 2.5, 4]."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    out = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):  # positions i..j (0-based) hold ranks i+1..j+1: their mean
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs, ys) -> float | None:
    """Spearman's rank correlation: Pearson's correlation of the average ranks (ties handled).

    None for fewer than 2 points or when either side has no spread (all values tied).

    >>> spearman([1, 2, 3], [10, 30, 20])
    0.5
    """
    xs, ys = list(xs), list(ys)
    if len(xs) != len(ys):
        raise ValueError(f"spearman: {len(xs)} x values but {len(ys)} y values")
    if len(xs) < 2:
        return None
    rx, ry = ranks(xs), ranks(ys)
    mx, my = math.fsum(rx) / len(rx), math.fsum(ry) / len(ry)
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = math.fsum((a - mx) ** 2 for a in rx)
    syy = math.fsum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


# ---------------------------------------------------------------------------------------------
# Matching the sweep's groups to the tables


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def loss_params(config: dict | None) -> dict[str, float | None] | None:
    """The run's effective {"loss.gamma", "loss.alpha"} on the sigmoid losses' plane: an
    ``AlphaBCELoss`` is gamma 0; a ``FocalLoss`` its gamma (alpha None: no weighting). None for
    any other loss (softmax_bg) or a config without ``loss._target_``."""
    loss = (config or {}).get("loss")
    target = loss.get("_target_") if isinstance(loss, dict) else None
    if not isinstance(target, str):
        return None
    if target.endswith(BCE_ALPHA):
        return {"loss.gamma": 0.0, "loss.alpha": _number(loss.get("alpha"))}
    if target.endswith(FOCAL):
        return {"loss.gamma": _number(loss.get("gamma")), "loss.alpha": _number(loss.get("alpha"))}
    return None


def _close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=0.0, abs_tol=_ATOL)


def setting_of(config: dict | None, table: PaperTable) -> float | None:
    """The table setting the config is at (the table's own key, e.g. 0.25), or None."""
    params = loss_params(config)
    if params is None:
        return None
    for s in table.ap:
        if _close(params[table.key], s) and all(_close(params[k], v) for k, v in table.fixed.get(s, {}).items()):
            return s
    return None


def _group_setting(runs: list[Run], table: PaperTable) -> float | None:
    """The setting every run of the group with a config is at, or None (none, or they disagree)."""
    found = {setting_of(r.config, table) for r in runs if r.config}
    return found.pop() if len(found) == 1 else None


def _context(runs: list[Run]) -> dict[str, str]:
    """What the group holds fixed besides the loss: the config keys (flattened, repr values)
    that all its runs with a config share, without loss.*, seed and the derived run_name."""
    flats = [{k: repr(v) for k, v in flatten(r.config).items()} for r in runs if r.config]
    shared = set.intersection(*(set(f.items()) for f in flats)) if flats else set()
    return {k: v for k, v in shared if not k.startswith("loss.") and k not in ("seed", "run_name")}


def _cell_stats(runs: list[Run]) -> dict:
    """summary() of AP (%) over the finished runs, plus counts of the runs not averaged."""
    finished = [r for r in runs if r.status == "finished"]
    stats = summary(run_values(r)["AP"] for r in finished)
    counts = {s: sum(r.status == s for r in runs) for s in _STATUSES}
    counts["finished without AP"] = stats["missing"]
    counts = {k: v for k, v in counts.items() if v}
    others = sum(r.status not in ("finished", *_STATUSES) for r in runs)  # a status we do not know
    if others:
        counts["other"] = others
    return {**stats, "runs": len(runs), "counts": counts}


def table_points(groups: dict[str, list[Run]], table: PaperTable) -> dict[str, dict[float, dict]]:
    """The sweep's groups at the table's settings: context -> setting -> point.

    A context is what the groups hold fixed besides the loss, written as the config keys on
    which the matched groups differ ("optim.lr=0.05"; "" when they differ only in the loss).
    A point: {group, runs, n, missing, mean, std, half_width, lo, hi (AP %, as
    ``tools.stats.summary`` over the finished runs), counts ({status: runs} of the runs not
    averaged, e.g. {"diverged": 1}), also (labels of further groups at the same setting and
    context: only the first group in the groups' order is shown)}. Settings in the paper's
    order; contexts in the order of their first group.
    """
    matched = []  # (label, runs, setting, context)
    for label, runs in groups.items():
        s = _group_setting(runs, table)
        if s is not None:
            matched.append((label, runs, s, _context(runs)))
    keys = sorted({k for *_, c in matched for k in c})
    differing = [k for k in keys if len({c.get(k) for *_, c in matched}) > 1]
    out: dict[str, dict[float, dict]] = {}
    for label, runs, s, ctx in matched:
        name = ", ".join(f"{k}={'(unset)' if k not in ctx else _unrepr(ctx[k])}" for k in differing)
        points = out.setdefault(name, {})
        if s in points:
            points[s]["also"].append(label)
        else:
            points[s] = {"group": label, **_cell_stats(runs), "also": []}
    return {name: {s: pts[s] for s in table.ap if s in pts} for name, pts in out.items()}


def _unrepr(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == "'" else text


# ---------------------------------------------------------------------------------------------
# The markdown


def _setting(x: float) -> str:
    return f"{x:g}"


def _ours(p: dict | None) -> str:
    if p is None or p["mean"] is None:
        return "–"
    if p["std"] is None:
        return f"{p['mean']:.1f}"
    return f"{p['mean']:.1f} ± {p['std']:.1f} [{p['lo']:.1f}, {p['hi']:.1f}]"


def _n(p: dict | None) -> str:
    if p is None:
        return "not in this sweep"
    return ", ".join([str(p["n"]), *(f"{v} {k}" for k, v in p["counts"].items())])


def rho_line(table: PaperTable, points: dict[float, dict]) -> str:
    """The Spearman line of one context: paper AP against our mean AP over the settings with both."""
    both = [s for s, p in points.items() if p["mean"] is not None]
    rho = spearman([table.ap[s] for s in both], [points[s]["mean"] for s in both])
    head = f"Spearman rank correlation of the orders over the {len(both)} setting{'' if len(both) == 1 else 's'} both have: "
    if rho is not None:
        return head + f"rho = {rho:+.2f}"
    if len(both) < 2:
        return head + "n/a (fewer than 2 settings with a finished run)"
    return head + "n/a (all tied on one side)"


def _ours_setup(groups: dict[str, list[Run]], points: dict[str, dict[float, dict]]) -> str:
    runs = [r for pts in points.values() for p in pts.values() for r in groups[p["group"]] if r.config]
    datasets = sorted({str(ds) for r in runs if (ds := (r.config.get("dataset") or {}).get("name")) is not None})
    iters = sorted({it for r in runs if isinstance(it := (r.config.get("schedule") or {}).get("max_iters"), int)})
    parts = ([f"dataset {', '.join(datasets)}"] if datasets else []) + \
        ([f"{', '.join(map(str, iters))} iterations"] if iters else [])
    return "this sweep's runs" + (f" ({'; '.join(parts)})" if parts else "")


def table_section(groups: dict[str, list[Run]], table: PaperTable) -> list[str]:
    """``## Against the paper (Table 1x)`` as markdown lines; [] unless some context of the sweep
    has at least 2 of the table's settings."""
    points = {c: pts for c, pts in table_points(groups, table).items() if len(pts) >= MIN_SETTINGS}
    if not points:
        return []
    name = table.key.split(".")[-1]
    fixed = sorted({k for f in table.fixed.values() for k in f} - {"loss.gamma"})  # 1a: gamma 0 everywhere
    header = [name, *(k.split(".")[-1] for k in fixed), "paper AP", "ours: AP (%) mean ± std [95% CI]", "n"]
    md = [f"## Against the paper ({table.name})", "",
          f"Lin et al. 2017 (Focal Loss), {table.name}: {table.what}. Paper AP beside ours per setting, in the "
          "paper's order; ours over the finished seeds (n), diverged and unfinished runs counted, not averaged.", ""]
    for context, pts in points.items():
        if len(points) > 1 or context:
            md += [f"### {context}", ""]
        rows = [[_setting(s), *(_setting(table.fixed[s][k]) for k in fixed), f"{ap:.1f}", _ours(pts.get(s)),
                 _n(pts.get(s))] for s, ap in table.ap.items()]
        md += markdown_table(header, rows) + ["", rho_line(table, pts), ""]
        md += [f"- note: {name} {_setting(s)}: also group{'s' if len(p['also']) > 1 else ''} "
               f"{', '.join(f'`{g}`' for g in p['also'])} (one group per setting is shown: `{p['group']}`)"
               for s, p in pts.items() if p["also"]]
        if md[-1].startswith("- note"):
            md.append("")
    md += [f"Paper: {PAPER_SETUP}; ours: {_ours_setup(groups, points)}. The AP values are not comparable "
           "across the two setups; the order of the settings is what is compared.", ""]
    return md


def paper_section(groups: dict[str, list[Run]]) -> list[str]:
    """The sections of Table 1a and Table 1b (each only where the sweep has >= MIN_SETTINGS of its
    settings in one context), as markdown lines; [] when the sweep has neither."""
    return [line for table in TABLES for line in table_section(groups, table)]
