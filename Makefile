# Everything runs in .venv, created with pip when it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: setup test test-all demo bench lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[test]"
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest

test-all: setup
	$(PY) -m pytest -m ""

demo: setup
	$(PY) train.py

lint: setup
	$(PY) -m pip install ruff
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) outputs multirun .cache
