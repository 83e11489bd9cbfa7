# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-slow bench clean data

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(STAMP)

# The data step as for the demo: one default test trains on real Fashion-MNIST (skipped without it).
# Tests run in one process per core (at most 4), a test file to a process: a file's tests keep
# their order and share their module fixtures.
test: $(DEV_STAMP) data
	$(VENV)/bin/ruff check
	$(PY) -m pytest -q -n auto --maxprocesses=4 --dist loadfile --durations=20

test-slow: $(DEV_STAMP) data
	$(PY) -m pytest -q -m slow

data:
	@bash scripts/get_data.sh

demo: $(STAMP) data
	@bash scripts/demo.sh

clean:
	rm -rf $(VENV) demo_out
