"""Paired-seed statistics for comparing methods: Student t intervals and one-line verdicts.

The ablations compare background-handling losses over a handful of seeds (3 to 10), where
the normal 1.96 understates the interval badly (t_{0.975} is 2.776 at n = 5), so every
interval here uses the Student t quantile, computed from the regularized incomplete beta
function (standard library only: scipy is not a dependency).

Methods are compared **per seed** (same seed = same data order and initialization), so
seed-to-seed noise that both methods share cancels in the difference:

    >>> a = {0: 40.0, 1: 41.0, 2: 39.5, 3: 42.0}             # AP (%) per seed
    >>> b = {0: 38.0, 1: 39.5, 2: 38.5, 3: 39.0, 4: 37.0}
    >>> verdict("softmax_bg", "focal", paired_difference(a, b))
    'softmax_bg - focal = +1.9 AP [+0.5, +3.2], 4 paired seeds: softmax_bg better'

A verdict names a winner only when the whole 95% interval lies on one side of zero.
"""

import functools
import itertools
import math

LEVEL = 0.95  # two-sided confidence level of every interval here
_EPS = 1e-15  # continued-fraction convergence: near double precision
_TINY = 1e-300  # Lentz's guard against dividing by zero
_MAXIT = 10_000  # the fraction needs O(sqrt(max(a, b))) terms: ~700 at df = 10**6


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz, Numerical
    Recipes ``betacf``); converges fast for x < (a + 1) / (a + b + 2)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAXIT + 1):
        m2 = 2 * m
        # Even and odd steps of the fraction, each folded in by Lentz's update.
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")


def _betai(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) (Numerical Recipes ``betai``)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    # x^a (1-x)^b / B(a, b), in logs so that large a (large df) does not overflow.
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    # Use the fraction on the side where it converges: I_x(a, b) = 1 - I_{1-x}(b, a).
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _t_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0: half the two-sided tail I_{df/(df+t^2)}(df/2, 1/2)."""
    t2 = t * t
    if t2 < df:
        # df/(df+t^2) rounds to 1 for t below ~1e-8, losing t: use the complement
        # I_x(df/2, 1/2) = 1 - I_{t^2/(df+t^2)}(1/2, df/2), whose argument keeps its digits.
        return 0.5 - 0.5 * _betai(0.5, 0.5 * df, t2 / (df + t2))
    return 0.5 * _betai(0.5 * df, 0.5, df / (df + t2))


@functools.cache  # a report asks for the same few (p, df) thousands of times
def t_quantile(p: float, df: int) -> float:
    """The Student t quantile: the t with P(T <= t) = p for T ~ t(df).

    Found by bisection on the tail probability (monotone, so bisection cannot miss), to
    ~1e-12 relative; df may be any positive number, large df approaches the normal quantile.

    >>> round(t_quantile(0.975, 4), 3), round(t_quantile(0.025, 4), 3)
    (2.776, -2.776)
    >>> round(t_quantile(0.975, 10**6), 3)
    1.96
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must lie in (0, 1), got {p!r}")
    if not df > 0:
        raise ValueError(f"t_quantile: df must be positive, got {df!r}")
    if p == 0.5:
        return 0.0
    # Solve in the smaller tail: q = 1 - p near 1 keeps its digits, p itself would not.
    q = min(p, 1.0 - p)
    lo, hi = 0.0, 1.0
    while _t_tail(hi, df) > q:  # grow the bracket: t_{0.9999999} at df = 1 is ~3e6
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_tail(mid, df) > q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    t = 0.5 * (lo + hi)
    return t if p > 0.5 else -t


def _finite(values) -> tuple[list[float], int]:
    """(the finite values as floats, how many were None/NaN/inf: runs without a result)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    return xs, len(values) - len(xs)


def summary(values, level: float = LEVEL) -> dict:
    """Mean, sample std and t interval of the finite values; None/NaN count as missing.

    Returns {n, missing, mean, std, half_width, lo, hi}: std uses n - 1, the interval is
    mean ± t_{(1+level)/2, n-1} * std / sqrt(n). With n = 1 std and interval are None
    (one value says nothing about spread); with n = 0 the mean is None too.

    >>> s = summary([1, 2, 3, 4, 5, None, float("nan")])
    >>> s["n"], s["missing"], s["mean"], round(s["std"], 4), round(s["half_width"], 4)
    (5, 2, 3.0, 1.5811, 1.9632)
    """
    xs, missing = _finite(list(values))
    n = len(xs)
    out = {"n": n, "missing": missing, "mean": None, "std": None,
           "half_width": None, "lo": None, "hi": None}
    if n == 0:
        return out
    mean = math.fsum(xs) / n
    out["mean"] = mean
    if n == 1:
        return out
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(0.5 + level / 2, n - 1) * std / math.sqrt(n)
    out.update(std=std, half_width=half, lo=mean - half, hi=mean + half)
    return out


def _present(values: dict) -> set:
    """Seeds with a finite value: a None/NaN (unfinished or diverged run) is not a result."""
    return {s for s, v in values.items() if v is not None and math.isfinite(v)}


def paired_difference(a: dict, b: dict, level: float = LEVEL, kinds: tuple[dict, dict] | None = None) -> dict:
    """Per-seed differences a[s] - b[s] over the seeds both sides have, and their t interval.

    Returns ``summary``'s {n, mean, std, half_width, lo, hi} of the differences plus
    seeds (sorted, the ones used), diffs (in that order), missing_in_a (seeds only b has)
    and missing_in_b (seeds only a has). A None/NaN value counts as a missing seed.
    Seeds must be mutually comparable (all ints, or all strings) to be sorted.

    ``kinds`` ({seed: what the run trained on} of a and of b, reports.runs.trained_on): a seed
    is paired only where both runs trained on one kind of device and precision, the same; a
    run that trained on more than one ("mixed: ...") pairs with none. The seeds refused are
    ``device_unpaired``. A seed whose runs have no record of their devices is paired.

    >>> d = paired_difference({0: 40.0, 1: 41.0, 2: 39.5, 3: 42.0},
    ...                       {0: 38.0, 1: 39.5, 2: 38.5, 3: 39.0, 4: 37.0})
    >>> d["seeds"], d["diffs"], d["mean"], d["missing_in_a"], d["missing_in_b"]
    ([0, 1, 2, 3], [2.0, 1.5, 1.0, 3.0], 1.875, [4], [])
    >>> round(d["lo"], 4), round(d["hi"], 4)
    (0.5162, 3.2338)
    >>> on = ({0: "cpu fp32", 1: "cpu fp32", 2: "mixed: cuda bf16 x10, cpu fp32 x5"},
    ...       {0: "cpu fp32", 1: "cuda bf16", 2: "cpu fp32"})
    >>> d = paired_difference({0: 40.0, 1: 41.0, 2: 39.5}, {0: 38.0, 1: 39.5, 2: 38.5}, kinds=on)
    >>> d["seeds"], d["device_unpaired"]
    ([0], [1, 2])
    """
    in_a, in_b = _present(a), _present(b)
    both = in_a & in_b
    refused = [] if kinds is None else sorted(s for s in both if not same_kind(kinds[0].get(s), kinds[1].get(s)))
    seeds = sorted(both - set(refused))
    diffs = [float(a[s]) - float(b[s]) for s in seeds]
    stats = summary(diffs, level)
    del stats["missing"]  # always 0 here: unpaired seeds are listed below instead
    out = {**stats, "seeds": seeds, "diffs": diffs,
           "missing_in_a": sorted(in_b - in_a), "missing_in_b": sorted(in_a - in_b)}
    return out if kinds is None else {**out, "device_unpaired": refused}


def relative_difference(a: dict, b: dict, level: float = LEVEL, kinds: tuple[dict, dict] | None = None) -> dict:
    """The paired difference as a share of b, in %: ``summary`` of 100 (a[s] - b[s]) / b[s] over
    the seeds ``paired_difference`` pairs (a seed where b is not positive counts as missing).
    What compares effects between datasets whose AP differs tenfold.

    >>> d = relative_difference({0: 44.0, 1: 21.0, 2: 5.0}, {0: 40.0, 1: 20.0, 2: 5.0, 3: 9.0})
    >>> round(d["mean"], 4), d["n"], round(d["lo"], 2), round(d["hi"], 2)
    (5.0, 3, -7.42, 17.42)
    """
    seeds = paired_difference(a, b, level, kinds)["seeds"]
    return summary([100 * (float(a[s]) - float(b[s])) / float(b[s]) if float(b[s]) > 0 else None for s in seeds],
                   level)


def same_kind(a: str | None, b: str | None) -> bool:
    """Whether two runs that trained on ``a`` and ``b`` (reports.runs.trained_on) may be paired:
    one kind and precision each, the same; unknown (no record) on either side pairs."""
    if a is None or b is None:
        return True
    return a == b and not a.startswith("mixed")


def verdict(name_a: str, name_b: str, diff: dict, unit: str = "AP") -> str:
    """One line saying what the interval of ``paired_difference`` supports, and no more.

    ``name_a`` is better only if the whole interval is above 0, ``name_b`` only if it is
    below; an interval containing (or touching) 0 resolves nothing. Numbers are signed with
    one decimal (AP in percent); the bounds keep their sign even when they round to 0.0.

    >>> verdict("softmax_bg", "focal", {"n": 5, "mean": -2.3, "lo": -3.8, "hi": -0.8})
    'softmax_bg - focal = -2.3 AP [-3.8, -0.8], 5 paired seeds: focal better'
    >>> verdict("bce", "focal", {"n": 1, "mean": 0.4, "lo": None, "hi": None})
    'bce - focal = +0.4 AP, 1 paired seed: not resolved (n < 2 paired seeds)'
    """
    n, mean, lo, hi = diff["n"], diff["mean"], diff["lo"], diff["hi"]
    seeds = f"{n} paired seed{'' if n == 1 else 's'}"
    if diff.get("device_unpaired"):
        refused = diff["device_unpaired"]
        seeds += (f" (seed{'' if len(refused) == 1 else 's'} {', '.join(map(str, refused))} not paired: "
                  "trained on different devices or precisions)")
    head = f"{name_a} - {name_b} = " + ("n/a" if mean is None else f"{mean:+.1f} {unit}")
    if lo is None or hi is None:
        return f"{head}, {seeds}: not resolved (n < 2 paired seeds)"
    return f"{head} [{lo:+.1f}, {hi:+.1f}], {seeds}: {outcome_text(name_a, name_b, diff)}"


def direction(diff: dict) -> int:
    """Which side of ``paired_difference`` (a - b) its interval calls better: +1 (a) if the
    whole interval is above 0, -1 (b) if below, 0 if it holds or touches 0 or is missing (n < 2).
    The one rule every report applies.

    >>> [direction({"lo": lo, "hi": hi}) for lo, hi in [(0.2, 1.0), (-2.0, -0.1), (-1.0, 0.0), (None, None)]]
    [1, -1, 0, 0]
    """
    lo, hi = diff["lo"], diff["hi"]
    if lo is None or hi is None:
        return 0
    return 1 if lo > 0 else -1 if hi < 0 else 0


def outcome_text(name_a: str, name_b: str, diff: dict) -> str:
    """``direction`` in words: "<name> better" or "no difference resolved"."""
    return {1: f"{name_a} better", -1: f"{name_b} better", 0: "no difference resolved"}[direction(diff)]


def _cell(value):
    """A CSV-ready cell: seed lists become space-separated text, scalars stay as they are."""
    return " ".join(str(v) for v in value) if isinstance(value, list) else value


def pairwise_verdicts(per_method: dict[str, dict], level: float = LEVEL, kinds: dict[str, dict] | None = None) -> list[dict]:
    """Every pair of methods in the given order (first - second): its difference and verdict.

    One flat row per pair, ready for a report table or ``csv.DictWriter``: a, b, then
    ``paired_difference``'s keys (seeds, diffs and missing_* as space-separated text), then
    verdict, then ``p`` (``p_value``). With methods [m1, m2, m3] the rows are m1-m2, m1-m3, m2-m3. ``kinds`` (method ->
    {seed: what its run trained on}): ``paired_difference``'s check of the devices.

    >>> rows = pairwise_verdicts({"softmax_bg": {0: 40.0, 1: 41.0, 2: 39.5, 3: 42.0},
    ...                           "focal": {0: 38.0, 1: 39.5, 2: 38.5, 3: 39.0, 4: 37.0}})
    >>> rows[0]["a"], rows[0]["b"], rows[0]["seeds"], rows[0]["missing_in_a"]
    ('softmax_bg', 'focal', '0 1 2 3', '4')
    """
    rows = []
    for name_a, name_b in itertools.combinations(per_method, 2):
        pair = None if kinds is None else (kinds.get(name_a, {}), kinds.get(name_b, {}))
        diff = paired_difference(per_method[name_a], per_method[name_b], level, pair)
        row = {"a": name_a, "b": name_b, **{k: _cell(v) for k, v in diff.items()}}
        row["verdict"] = verdict(name_a, name_b, diff)
        row["p"] = p_value(diff)
        rows.append(row)
    return rows


def mean_std(values) -> tuple[float | None, float | None, int]:
    """(mean, sample std, n) over the finite values; std is None for n < 2, mean for n = 0."""
    s = summary(values)
    return s["mean"], s["std"], s["n"]


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
# Table cells of a group of runs (the report's study sections)

CELL_STATUSES = ("diverged", "running", "paused", "failed", "killed", "interrupted", "unknown")  # the n cell's order


def cell_stats(runs) -> dict:
    """summary() of AP (%) over the finished runs, plus counts of the runs not averaged: a table
    cell of one group of runs (``reports.runs.Run``: ``status``, ``ap``)."""
    finished = [r for r in runs if r.status == "finished"]
    stats = summary(r.ap for r in finished)
    counts = {s: sum(r.status == s for r in runs) for s in CELL_STATUSES}
    counts["finished without AP"] = stats["missing"]
    counts = {k: v for k, v in counts.items() if v}
    others = sum(r.status not in ("finished", *CELL_STATUSES) for r in runs)  # a status we do not know
    if others:
        counts["other"] = others
    return {**stats, "runs": len(runs), "counts": counts}


def ours_cell(p: dict | None) -> str:
    """A ``cell_stats`` as "mean ± std [lo, hi]" (AP %); "–" without a mean."""
    if p is None or p["mean"] is None:
        return "–"
    if p["std"] is None:
        return f"{p['mean']:.1f}"
    return f"{p['mean']:.1f} ± {p['std']:.1f} [{p['lo']:.1f}, {p['hi']:.1f}]"


def n_cell(p: dict | None) -> str:
    """A ``cell_stats``'s runs: the number averaged, then the others by status."""
    if p is None:
        return "not in this sweep"
    return ", ".join([str(p["n"]), *(f"{v} {k}" for k, v in p["counts"].items())])


def p_value(diff: dict) -> float | None:
    """The two-sided p of a paired t test that ``paired_difference``'s mean is 0 (df = n - 1):
    the chance of a mean this far from 0 were there no difference. None with n < 2; with every
    difference equal (std 0): 0 if they are not 0, else 1.

    >>> round(p_value({"n": 5, "mean": 2.776445105 * 1.0 / 5 ** 0.5, "std": 1.0}), 6)  # t = t_.975(4)
    0.05
    """
    n, mean, std = diff["n"], diff["mean"], diff["std"]
    if n is None or n < 2 or mean is None or std is None:
        return None
    if std == 0:
        return 0.0 if mean != 0 else 1.0
    return min(1.0, 2.0 * _t_tail(abs(mean) / (std / math.sqrt(n)), n - 1))


def holm(pvalues: list, level: float = LEVEL) -> list:
    """Holm's step-down correction of several comparisons at family-wise error 1 - ``level``:
    for each p (None: no test), whether its comparison stays resolved. The smallest p is tested
    at alpha/m, the next at alpha/(m-1), ...; the first that fails stops it (it and every larger
    p are not resolved).

    >>> holm([0.01, 0.04, 0.03, 0.005, None])
    [True, False, False, True, None]
    """
    alpha = 1.0 - level
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    out: list = [None if p is None else False for p in pvalues]
    for k, (p, i) in enumerate(tested):
        if p > alpha / (len(tested) - k):
            break
        out[i] = True
    return out


def chance_resolved(m: int, level: float = LEVEL) -> float:
    """How many of ``m`` comparisons chance alone would call resolved at ``level`` were there no
    difference at all: (1 - level) x m.

    >>> round(chance_resolved(21), 2)
    1.05
    """
    return (1.0 - level) * m


def multiplicity(rows: list[dict], level: float = LEVEL) -> list[str]:
    """Lines saying what chance alone would give among ``rows`` (``pairwise_verdicts``' rows,
    or any with ``verdict`` and ``p``) and which resolved ones survive Holm's correction; sets
    each row's ``holm`` (True: resolved after the correction, False: not, None: no test)."""
    for row, kept in zip(rows, holm([r["p"] for r in rows], level)):
        row["holm"] = kept
    tested = [r for r in rows if r["p"] is not None]
    resolved = [r for r in tested if r["p"] < 1.0 - level]
    if not tested:
        return []
    kept = sum(1 for r in tested if r["holm"])
    lines = [f"Multiplicity: {len(tested)} paired comparison{'' if len(tested) == 1 else 's'}; were there no "
             f"difference at all, chance alone would call ~{chance_resolved(len(tested), level):.1f} of them resolved "
             f"at {100 * level:.0f}%. {len(resolved)} {'is' if len(resolved) == 1 else 'are'} resolved; after "
             f"Holm's correction {kept} remain{'s' if kept == 1 else ''}."]
    dropped = [r for r in resolved if not r["holm"]]
    if dropped:
        lines.append("Resolved, but not after the correction: " + "; ".join(f"{r['a']} - {r['b']}" for r in dropped)
                     + ".")
    return lines


def holm_note(row: dict) -> str:
    """" (**not after Holm**)" for a row (``multiplicity`` has set its ``holm``) whose interval
    resolves a difference that Holm's correction does not keep, else "".

    >>> holm_note({"lo": 0.1, "hi": 2.0, "holm": False}), holm_note({"lo": -0.1, "hi": 2.0, "holm": False})
    (' (**not after Holm**)', '')
    """
    return " (**not after Holm**)" if row.get("holm") is False and direction(row) else ""


def order_text(order: list[str], means: dict, labels: dict | None = None) -> str:
    """``order`` (names, best first) as text: ">" between them, "=" between two of equal
    ``means`` (name -> mean); each name shown as ``labels[name]`` (default: the name).

    >>> order_text(["b", "a", "c"], {"a": 1.0, "b": 2.0, "c": 1.0})
    'b > a = c'
    """
    labels = labels or {name: name for name in order}
    return "".join((f" {'=' if means[name] == means[prev] else '>'} " if prev else "") + labels[name]
                   for prev, name in zip([None, *order], order))


def summary_text(s: dict, ci: bool = True, n: bool = True) -> str:
    """``summary``'s numbers as a table cell: ``60.5 ± 1.0 [59.3, 61.7] (n=5)`` (the interval
    with ``ci``, the count with ``n``); ``60.5 (n=1)`` for one value, ``–`` for none.

    >>> summary_text(summary([1.0, 2.0, 3.0]), ci=False)
    '2.0 ± 1.0 (n=3)'
    """
    if s["mean"] is None:
        return "–"
    if s["half_width"] is None:
        return f"{s['mean']:.1f} (n=1)"
    return (f"{s['mean']:.1f} ± {s['std']:.1f}" + (f" [{s['lo']:.1f}, {s['hi']:.1f}]" if ci else "")
            + (f" (n={s['n']})" if n else ""))


def difference_text(d: dict) -> str:
    """A paired difference (``paired_difference``'s, or a ``pairwise_verdicts`` row) as a cell:
    ``+2.0 [-0.5, +4.5] (n=3)``; ``+2.0 (n=1)`` without an interval, ``–`` without a mean.

    >>> difference_text({"n": 3, "mean": 2.0, "lo": -0.48, "hi": 4.48})
    '+2.0 [-0.5, +4.5] (n=3)'
    """
    if d["mean"] is None:
        return "–"
    if d["lo"] is None:
        return f"{d['mean']:+.1f} (n={d['n']})"
    return f"{d['mean']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}] (n={d['n']})"
