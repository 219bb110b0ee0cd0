"""The report of a sweep (reports/sweep.py) and of the fair ablation (reports/ablation.py), one
module per section; the sections share reports/runs.py (run records), reports/stats.py
(statistics and table cells) and reports/cdf.py, and import no other section. Imports analysis/."""
