# Everything runs in .venv, created with pip when it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: setup setup-locked test test-all demo ablation study study-keep study-restore followups results bench lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[test]"
	touch $@

setup: $(VENV)/.installed

# The exact versions the studies ran with (requirements-lock.txt), instead of the latest ones.
setup-locked:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements-lock.txt
	$(PY) -m pip install --no-deps -e .
	touch $(VENV)/.installed

test: setup
	$(PY) -m pytest

test-all: setup
	$(PY) -m pytest -m ""

demo: setup
	$(PY) train.py

# The fair background ablation, from nothing to OUT/report.md and its tables in
# results/bg_ablation/ (not with QUICK=1; studies/ablation.py). A rerun continues where it
# stopped. QUICK=1: the whole protocol in miniature (a few minutes).
# ARGS: more options and train.py overrides, e.g. ARGS=--dry-run or ARGS="dataset=coco_sample".
OUT ?= multirun/ablation$(if $(QUICK),_quick)
ablation: setup
	$(PY) -m tools.ablation --out $(OUT) $(if $(QUICK),--quick) $(ARGS)

# A study with the ablation's protocol on other methods or data: studies/specs/$(SPEC).yaml
# (loss_x_assigner, real_images_coco_person, real_images_bccd), its sweeps under
# multirun/$(SPEC), its tables and report in results/$(SPEC)/. ARGS as for ablation.
SPEC ?= loss_x_assigner
study: setup
	$(PY) -m tools.ablation --study studies/specs/$(SPEC).yaml --out multirun/$(SPEC)$(if $(QUICK),_quick) $(if $(QUICK),--quick) $(ARGS)

# A study that outlives a machine: study-keep archives its runs' records (tools.records
# --resumable: no checkpoints, but the last one of a run still training or stopped midway) to
# results/$(SPEC)/records.tar.gz, to commit; on a fresh machine study-restore unpacks them into
# multirun/$(SPEC), and `make study` continues from there, that run resumed where it was.
study-keep: setup
	rm -rf multirun/.keep_$(SPEC) && $(PY) -m tools.records multirun/$(SPEC) multirun/.keep_$(SPEC) --resumable
	mkdir -p results/$(SPEC) && tar czf results/$(SPEC)/records.tar.gz -C multirun/.keep_$(SPEC) . && rm -rf multirun/.keep_$(SPEC)
study-restore:
	mkdir -p multirun/$(SPEC) && tar xzf results/$(SPEC)/records.tar.gz -C multirun/$(SPEC) --skip-old-files

# The studies that build on the ablation (studies/followups.py, studies/specs/followups.yaml): each
# method at the ablation's choice; sweep folders under FOLLOWUPS, each study's tables and
# report written to results/<study>/ (not with QUICK=1). ARGS: e.g. "--study alpha_sweep" or --dry-run.
FOLLOWUPS ?= multirun/followups$(if $(QUICK),_quick)
followups: setup
	$(PY) -m tools.followups --ablation $(OUT) --out $(FOLLOWUPS) $(if $(QUICK),--quick) $(ARGS)

# Every committed report in results/ made again from its tables alone (tools/results.py).
# ARGS=--check: compare with the committed files instead of writing them; fails on a difference.
results: setup
	$(PY) -m tools.results regenerate $(ARGS)

lint: setup
	$(PY) -m pip install ruff
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) outputs multirun .cache
