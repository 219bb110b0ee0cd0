"""The report's prior-init section: each loss with and without the prior-probability bias
init (issue 12, ``make followups ARGS="--study prior_init"``; the focal-loss paper, Sec. 3.3
and 4.1: plain cross-entropy without it diverges at the start of training).

Two groups of a sweep are the two arms of one setting when their configs differ in
``model.prior_init`` only (seed, run name and the keys
that only say how a run was started, ``RUN_CONTROL``, aside). Per pair: each arm's AP (%) as mean ±
std [95% t interval] over its finished seeds, its diverged and other runs counted (a
diverged run is a result: the paper's claim is about divergence), and the paired
difference on − off over the seeds both arms finished, with what its interval supports
(``reports.stats.verdict``).

    md_lines = prior_section(groups_of(runs))   # [] unless the sweep has such a pair
"""

from analysis.markdown import markdown_table
from reports.runs import Run, ap_by_seed, arms, loss_name
from reports.stats import cell_stats, n_cell, ours_cell, paired_difference, verdict

KEY = "model.prior_init"


def prior_pairs(groups: dict[str, list[Run]]) -> list[tuple[str, str]]:
    """(label on, label off) of the groups that differ only in model.prior_init, in the
    groups' order."""
    return [(a[True], a[False]) for a in arms(groups, KEY) if True in a and False in a]


def prior_section(groups: dict[str, list[Run]]) -> list[str]:
    """``## Prior-probability bias init (on − off)`` as markdown lines; [] without a pair."""
    pairs = prior_pairs(groups)
    if not pairs:
        return []
    header = ["method (on)", "loss", "init on: AP (%) mean ± std [95% CI]", "n", "init off: AP (%)", "n",
              "on − off: paired AP difference [95% CI]"]
    rows = []
    for on, off in pairs:
        s_on, s_off = cell_stats(groups[on]), cell_stats(groups[off])
        d = paired_difference(ap_by_seed(groups[on]), ap_by_seed(groups[off]))
        rows.append([f"`{on}`", loss_name(groups[on][0]) or "?", ours_cell(s_on), n_cell(s_on), ours_cell(s_off), n_cell(s_off),
                     verdict("on", "off", d).split(" = ", 1)[1]])
    diverged = sum(r.status == "diverged" for _, off in pairs for r in groups[off])
    runs_off = sum(len(groups[off]) for _, off in pairs)
    return ["## Prior-probability bias init (on − off)", "",
            f"Each loss with the classification bias initialized to the prior probability (`{KEY}=true`, the "
            "paper's init) and without it (bias 0). The paper: cross-entropy without the prior diverges in the "
            "first iterations. Diverged runs are results: counted in n's column, not averaged. The last column "
            "is on − off over the seeds both arms finished and says only what its interval supports.", "",
            *markdown_table(header, rows), "",
            f"Without the prior: {diverged} of {runs_off} runs diverged.", ""]
