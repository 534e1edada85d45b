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

# The core next to transformers 5 (which has no Flax classes): its own environment, without
# pyvene (which would pull transformers 5 into the main one too) and without the [hf] extra.
TF5_VENV ?= .venv-tf5
TF5_PY := $(TF5_VENV)/bin/python
# The tests that compare with transformers' PyTorch classes (and the example, whose tokenizer
# goes through transformers); the engine's own native tests (analysis, sharding, training, hub
# cache) do not depend on the transformers version and run once, in `make test`.
# pytest refuses a missing path: the run takes those that exist.
NATIVE := tests/models/native
TF5_TESTS := $(NATIVE)/test_logits.py $(NATIVE)/test_generation.py $(NATIVE)/test_interventions.py \
	$(NATIVE)/test_loading.py $(NATIVE)/test_example.py tests/test_optional_transformers.py

$(TF5_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TF5_VENV)
	$(TF5_PY) -m pip install --quiet --upgrade pip
	$(TF5_PY) -m pip install --quiet -e . "torch==2.13.0" "transformers>=5" pytest pytest-xdist
	$(TF5_PY) -c "import sys, transformers; v = transformers.__version__; print('transformers', v); sys.exit(int(v.split('.')[0]) < 5)"
	touch $@

.PHONY: install demo test test-tf5 lint bench
install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m jaxvene demo

# A crashed worker fails the run at once (xdist would otherwise replace it and, with
# --dist loadfile, can wait forever for the file it never reschedules). Two runs, so that no
# worker process lives through the whole suite (see tests/conftest.py).
MODEL_TESTS := tests/models tests/families tests/adapters tests/pretrained
PYTEST := HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 --dist loadfile --max-worker-restart=0
test: $(VENV)/.installed
	$(PYTEST) $(MODEL_TESTS)
	$(PYTEST) $(addprefix --ignore=,$(MODEL_TESTS))

# Only the paths named: testpaths (and jaxvene/'s doctests, which need transformers 4) stay out.
test-tf5: $(TF5_VENV)/.installed
	HF_HUB_OFFLINE=1 $(TF5_PY) -m pytest -n 2 --max-worker-restart=0 -p no:cacheprovider $$(ls -d $(TF5_TESTS) 2>/dev/null)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_single_site.py
