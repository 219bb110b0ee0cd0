"""The report of a sweep (reports/sweep.py) and of the fair ablation (reports/ablation.py), one
module per section; the sections share reports/runs.py (run records), reports/stats.py
(statistics and table cells), reports/cdf.py and reports/table_io.py (a study's results tables,
results/<study>/, that both reports can be made from), and import no other section. Imports analysis/."""
