"""The command lines, each a thin entry point over analysis/, reports/ or studies/, run from the
repository root: ``python -m tools.report SWEEP_DIR``, ``python -m tools.ablation --out OUT``, ..."""
