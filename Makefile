# `make demo` and `make test` build their own virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# One resolve for the transformers pin and pyvene: installed alone, pyvene pulls transformers 5.
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

.PHONY: install demo test lint bench
install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m jaxvene demo

test: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 --dist loadfile

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_single_site.py
