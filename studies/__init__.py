"""The study drivers: the fair ablation (studies/ablation.py) and the studies built on it
(studies/followups.py), each a set of train.py multiruns (studies/sweep.py) defined only by its
spec in studies/specs/. Imports reports/ and analysis/; the command lines are in tools/."""
