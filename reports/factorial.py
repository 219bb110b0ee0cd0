"""The report section of a study whose methods are the cells of two factors (``factors`` in its
spec: assigner x loss, cell ``<assigner>_<loss>``): the effect of the first factor per level of
the second, the second's order per level of the first, and their interaction.

For factors ``{assigner: [max_iou, atss], loss: [focal, qfl]}`` and cells
``max_iou_focal``, ``atss_focal``, ...:

- per loss, ``atss - max_iou``: the paired difference over seeds (``effect``);
- per assigner, every pair of losses (``reports.stats.pairwise_verdicts``): their order there;
- per pair of losses and pair of assigners, the interaction: the paired difference of
  differences ``(atss_a - max_iou_a) - (atss_b - max_iou_b)`` over the seeds all four cells
  share (``interaction``), with its 95% interval: does the assigner change the losses' gap?

Every comparison is paired only over seeds whose runs trained on one kind of device and
precision (reports.stats.same_kind). Holm's correction runs over all of the section's
comparisons together.

    md, rows = factorial_section(aps, kinds, factors)   # aps: cell -> {seed: AP %}
"""

import itertools

from analysis.markdown import markdown_table
from reports.stats import (
    difference_text,
    direction,
    holm_note,
    multiplicity,
    order_text,
    p_value,
    paired_difference,
    pairwise_verdicts,
    same_kind,
    summary,
    summary_text,
    verdict,
)


def cell(first: str, second: str) -> str:
    """The method name of a cell: ``<first factor's level>_<second's>`` (``atss_focal``)."""
    return f"{first}_{second}"


def levels_run(factors: dict, left_out) -> dict:
    """``factors`` less each level whose every cell is in ``left_out`` (no final runs: a
    budget's cut leaves those levels out of the section, not unresolved in it).

    >>> levels_run({"assigner": ["max_iou", "atss"], "loss": ["focal", "qfl"]}, ["max_iou_qfl", "atss_qfl"])
    {'assigner': ['max_iou', 'atss'], 'loss': ['focal']}
    """
    (first, firsts), (second, seconds) = list(factors.items())
    return {first: [f for f in firsts if any(cell(f, s) not in left_out for s in seconds)],
            second: [s for s in seconds if any(cell(f, s) not in left_out for f in firsts)]}


def difference(a: dict, b: dict, kinds_a: dict, kinds_b: dict) -> tuple[dict, dict]:
    """({seed: a - b}, {seed: kind}) over the seeds both have, runs of one kind only."""
    seeds = [s for s in a if s in b and a[s] is not None and b[s] is not None
             and same_kind(kinds_a.get(s), kinds_b.get(s))]
    return {s: a[s] - b[s] for s in seeds}, {s: kinds_a.get(s) or kinds_b.get(s) for s in seeds}


def _row(name_a: str, name_b: str, diff: dict, unit: str = "AP") -> dict:
    """A comparison as ``pairwise_verdicts`` gives one: its seed lists as text, its verdict and p."""
    cells = {k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in diff.items()}
    return {"a": name_a, "b": name_b, **cells, "verdict": verdict(name_a, name_b, diff, unit), "p": p_value(diff)}


def effects(aps: dict, kinds: dict, firsts: list, seconds: list) -> list[dict]:
    """Per level of the second factor, ``firsts[-1] - firsts[0]`` (e.g. atss - max_iou), paired."""
    rows = []
    lo, hi = firsts[0], firsts[-1]
    for s in seconds:
        a, b = cell(hi, s), cell(lo, s)
        diff = paired_difference(aps[a], aps[b], kinds=(kinds[a], kinds[b]))
        rows.append({**_row(a, b, diff), "kind": "effect", "level": s})
    return rows


def interactions(aps: dict, kinds: dict, firsts: list, seconds: list) -> list[dict]:
    """Per pair of second-factor levels (a, b): the paired difference of the first factor's
    effects, ``(hi_a - lo_a) - (hi_b - lo_b)``."""
    lo, hi = firsts[0], firsts[-1]
    rows = []
    for a, b in itertools.combinations(seconds, 2):
        ea, ka = difference(aps[cell(hi, a)], aps[cell(lo, a)], kinds[cell(hi, a)], kinds[cell(lo, a)])
        eb, kb = difference(aps[cell(hi, b)], aps[cell(lo, b)], kinds[cell(hi, b)], kinds[cell(lo, b)])
        diff = paired_difference(ea, eb, kinds=(ka, kb))
        rows.append({**_row(f"({cell(hi, a)} - {cell(lo, a)})", f"({cell(hi, b)} - {cell(lo, b)})", diff),
                     "kind": "interaction", "level": f"{a} vs {b}"})
    return rows


def _resolved(row: dict) -> str:
    if row["lo"] is None or row["hi"] is None:
        return "not resolved (n < 2)"
    word = "resolved" if direction(row) else "not resolved"
    return word + holm_note(row)


def factorial_section(aps: dict, kinds: dict, factors: dict) -> tuple[list[str], list[dict]]:
    """The section's markdown lines and its comparisons as rows (kind: effect, order,
    interaction). ``aps``: cell -> {seed: AP %}; ``kinds``: cell -> {seed: trained_on} (or
    {}); ``factors``: {first factor: its levels (the effect is last - first), second: levels}.
    Cells missing from ``aps`` count as without runs."""
    (first, firsts), (second, seconds) = list(factors.items())
    names = [cell(f, s) for f in firsts for s in seconds]
    aps = {c: aps.get(c, {}) for c in names}
    kinds = {c: (kinds or {}).get(c, {}) for c in names}
    effect_rows = effects(aps, kinds, firsts, seconds)
    order_rows = [{**r, "kind": "order", "level": f}
                  for f in firsts for r in pairwise_verdicts({cell(f, s): aps[cell(f, s)] for s in seconds},
                                                              kinds={cell(f, s): kinds[cell(f, s)] for s in seconds})]
    interaction_rows = interactions(aps, kinds, firsts, seconds)
    rows = effect_rows + order_rows + interaction_rows
    holm_lines = multiplicity(rows)

    hi, lo = firsts[-1], firsts[0]
    md = [f"## {first.capitalize()} x {second}", "",
          f"COCO AP (%) of every cell, mean ± std (n seeds), and per {second} the paired difference {hi} - {lo} "
          "[95% interval] over its seeds:", ""]
    md += markdown_table([second, *firsts, f"{hi} - {lo}", ""],
                         [[s, *(summary_text(summary(aps[cell(f, s)].values()), ci=False) for f in firsts), difference_text(r), _resolved(r)]
                          for s, r in zip(seconds, effect_rows)]) + [""]
    for f in firsts:
        means = {s: summary(aps[cell(f, s)].values())["mean"] for s in seconds}
        ranked = sorted((s for s in seconds if means[s] is not None), key=lambda s: -means[s])
        unrun = [s for s in seconds if means[s] is None]
        md += [f"**{first} {f}**: the {second} settings by mean AP: {order_text(ranked, means) or '–'}"
               + (f" (no runs yet: {', '.join(unrun)})" if unrun else "") + "; resolved pairs:", ""]
        resolved = [r for r in order_rows if r["level"] == f and direction(r)]
        md += [f"- {r['verdict']}{holm_note(r)}" for r in resolved] \
            or ["- none"]
        md += [""]
    md += [f"**Interaction**: does {hi} - {lo} differ between two {second} settings? The paired difference of the two "
           f"differences over the seeds all four cells share (AP points [95% interval]):", ""]
    md += markdown_table([f"{second} a", f"{second} b", f"({hi} - {lo}) of a - of b", ""],
                         [[a, b, difference_text(r), _resolved(r)]
                          for (a, b), r in zip(itertools.combinations(seconds, 2), interaction_rows)]) + [""]
    md += [*holm_lines, ""] if holm_lines else []
    return md, rows
