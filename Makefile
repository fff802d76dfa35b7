# Every target that runs code builds .venv first when it is missing (or pyproject.toml changed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test demo bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) jobs/demo.py $(DEMO_ARGS)

bench: $(STAMP)
	$(PY) -m draw_service.bench $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check draw_service jobs tests

clean:
	rm -rf $(VENV) demo-out bench-out .pytest_cache
