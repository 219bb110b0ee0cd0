"""A report across studies of the fair protocol (``kind: across`` in results/<study>/study.yaml):
does a reference study's answer hold on other data?

Each study is an ablation-kind study of results/ (its own tuning, selection and final runs,
reports/ablation.py). For the methods every study ran, the report sets side by side each
study's final AP per method and, per pair of methods, the paired difference over seeds with
its 95% interval, and says for each other study whether the reference's verdict

- **holds**: resolved there and here, the same way;
- **flips**: resolved there and here, the other way;
- is **not resolved here**: resolved there, the interval here contains 0;
- is **resolved here only**: here resolved, there not;
- neither resolves it.

With one comparison per pair and study, it says how many "resolved" chance alone would give
and which survive Holm's correction over all of them (reports.stats.multiplicity). Where the
studies' AP differs tenfold, AP points do not compare: each difference is also given relative
to b's AP, per seed (reports.stats.relative_difference).

    md = write(tables, "real_images", meta, out)   # meta: study.yaml's reference, studies, labels
"""

import csv
from pathlib import Path

from analysis.markdown import markdown_table
from reports.runs import ap_by_seed, trained_on_by_seed
from reports.stats import (
    difference_text,
    direction,
    holm_note,
    multiplicity,
    pairwise_verdicts,
    relative_difference,
    summary,
    summary_text,
)

OUTCOMES = ("holds", "flips", "not resolved here", "resolved here only", "neither")


def final_runs(tables, study: str) -> dict[str, list]:
    """method -> the final runs (``final/<method>/...``) of the ablation-kind ``study``."""
    meta = tables.study(study)["meta"]
    if meta.get("kind") != "ablation":
        raise ValueError(f"{study}: an across report compares ablation-kind studies (its study.yaml says "
                         f"kind: {meta.get('kind')})")
    runs = tables.runs(study)
    return {m: [r for r in runs if r.name.startswith(f"final/{m}/")] for m in meta["ablation"]["methods"]}


def outcome(reference: dict, here: dict) -> str:
    """What becomes of the reference's verdict on a pair in another study (one of OUTCOMES)."""
    there, now = direction(reference), direction(here)
    if there and now:
        return "holds" if there == now else "flips"
    if there:
        return "not resolved here"
    return "resolved here only" if now else "neither"


def verdict_text(pairs: dict[str, list[str]], reference: str) -> str:
    """One study's verdict line: ``pairs`` (outcome -> the pairs "a - b" with it) in words, the
    reference's resolved differences first, then those it left open.

    >>> verdict_text({"holds": ["x - y"], "flips": [], "not resolved here": ["x - z", "y - z"],
    ...               "resolved here only": [], "neither": ["w - x"]}, "synthetic")
    "of synthetic's 3 resolved differences, 1 holds (x - y), 0 flip, 2 are not resolved here (x - z, y - z); of the 1 it left open, 0 are resolved here, 1 in neither (w - x)."
    """
    def part(n_text: str, names: list[str]) -> str:
        return n_text + (f" ({', '.join(names)})" if names else "")

    held, flipped, lost = pairs["holds"], pairs["flips"], pairs["not resolved here"]
    here_only, neither = pairs["resolved here only"], pairs["neither"]
    resolved, left = len(held) + len(flipped) + len(lost), len(here_only) + len(neither)
    text = []
    if resolved:
        text.append(f"of {reference}'s {resolved} resolved difference{'' if resolved == 1 else 's'}, "
                    + part(f"{len(held)} hold{'s' if len(held) == 1 else ''}", held) + ", "
                    + part(f"{len(flipped)} flip{'s' if len(flipped) == 1 else ''}", flipped) + ", "
                    + part(f"{len(lost)} {'is' if len(lost) == 1 else 'are'} not resolved here", lost))
    if left:
        text.append(f"of the {left} it left open, "
                    + part(f"{len(here_only)} {'is' if len(here_only) == 1 else 'are'} resolved here", here_only)
                    + ", " + part(f"{len(neither)} in neither", neither))
    return "; ".join(text) + "."


def relative_text(row: dict) -> str:
    """A row's relative difference (``rel_mean``, ``rel_lo``, ``rel_hi``, in %) as a cell.

    >>> relative_text({"rel_mean": -6.24, "rel_lo": -9.4, "rel_hi": -3.05})
    '-6.2% [-9.4, -3.0]'
    >>> relative_text({"rel_mean": 2.0, "rel_lo": None, "rel_hi": None}), relative_text({"rel_mean": None})
    ('+2.0%', '–')
    """
    if row["rel_mean"] is None:
        return "–"
    if row["rel_lo"] is None:
        return f"{row['rel_mean']:+.1f}%"
    return f"{row['rel_mean']:+.1f}% [{row['rel_lo']:+.1f}, {row['rel_hi']:+.1f}]"


def write(tables, name: str, meta: dict, out) -> Path:
    """report.md and report.csv of the across study ``name`` into ``out``: ``meta`` (its
    study.yaml) names the ``reference`` study, the other ``studies`` and their ``labels``
    (study -> a short name for the tables, default the study's)."""
    out = Path(out)
    reference, others = meta["reference"], list(meta["studies"])
    labels = {s: (meta.get("labels") or {}).get(s, s) for s in [reference, *others]}
    finals = {s: final_runs(tables, s) for s in [reference, *others]}
    methods = [m for m in finals[reference] if all(m in finals[s] for s in others)]
    rows = {}  # study -> pairwise_verdicts rows, pairs in one order for every study
    for s in [reference, *others]:
        aps = {m: ap_by_seed(finals[s][m]) for m in methods}
        kinds = {m: trained_on_by_seed(finals[s][m]) for m in methods}
        rows[s] = pairwise_verdicts(aps, kinds=kinds)  # runs without a device record pair as before
        for row in rows[s]:
            a, b = row["a"], row["b"]
            rel = relative_difference(aps[a], aps[b], kinds=(kinds[a], kinds[b]))
            row.update(rel_mean=rel["mean"], rel_lo=rel["lo"], rel_hi=rel["hi"])
    tested = [r for s in others for r in rows[s]]
    holm_lines = multiplicity(tested)

    md = [f"# Across studies: `{name}`", "", f"Does `{reference}`'s answer hold on "
          + ", ".join(f"`{s}`" for s in others) + "? Each study tuned every method on a split of its own "
          "training images and ran it at its choice over paired seeds (its own report has the details).", "",
          "## Verdict", ""]
    for s in others:
        pairs = {o: [f"{r['a']} - {r['b']}" for r, ref in zip(rows[s], rows[reference]) if outcome(ref, r) == o]
                 for o in OUTCOMES}
        md.append(f"- **{labels[s]}**: {verdict_text(pairs, labels[reference])}")
    md += ["", f"Paired differences a - b in AP points [95% interval] (n paired seeds), and what becomes of "
           f"{labels[reference]}'s verdict:", ""]
    md += markdown_table(["a - b", labels[reference], *(labels[s] for s in others)],
                         [[f"{ref['a']} - {ref['b']}", difference_text(ref),
                           *(f"{difference_text(r)}: {outcome(ref, r)}{holm_note(r)}"
                             for r in (rows[s][i] for s in others))]
                          for i, ref in enumerate(rows[reference])]) + [""]
    md += [*holm_lines, ""] if holm_lines else []
    md += ["The same differences relative to the AP each study reaches: 100 (a - b) / b per seed, mean [95% "
           "interval], in % of b's AP (what compares between studies whose AP differs, where AP points do not):", ""]
    md += markdown_table(["a - b", *(labels[s] for s in [reference, *others])],
                         [[f"{ref['a']} - {ref['b']}", *(relative_text(rows[s][i]) for s in [reference, *others])]
                          for i, ref in enumerate(rows[reference])]) + [""]
    md += ["## AP per method", "", "COCO AP (%) of each study's final runs: mean ± sample std [95% t interval] (n).", ""]
    md += markdown_table(["method", *(labels[s] for s in [reference, *others])],
                         [[m, *(summary_text(summary(ap_by_seed(finals[s][m]).values())) for s in [reference, *others])]
                          for m in methods]) + [""]
    left = sorted({m for s in [reference, *others] for m in finals[s]} - set(methods))
    if left:
        md += [f"Methods not in every study, left out here: {', '.join(left)} (their studies' own reports have them).",
               ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join(md))
    with open(out / "report.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["study", "a", "b", "n", "mean", "lo", "hi", "p", "holm", "outcome", "rel_mean", "rel_lo",
                               "rel_hi"], extrasaction="ignore")
        w.writeheader()
        for s in [reference, *others]:
            for r, ref in zip(rows[s], rows[reference]):
                w.writerow({"study": s, **r, "outcome": "reference" if s == reference else outcome(ref, r)})
    return out / "report.md"
