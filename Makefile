# Every target that runs code builds .venv first when it is missing (or pyproject.toml changed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Datasets: DRAW_DATA_ROOT if set; else the offline copies beside the clone where a machine has them
# (as CI machines do); else the product's default, a per-user cache that torchvision downloads into.
ifeq ($(origin DRAW_DATA_ROOT),undefined)
  ifneq ($(wildcard ../shared/datasets),)
    export DRAW_DATA_ROOT := $(abspath ../shared/datasets)
  endif
endif

.PHONY: setup test demo bench lint clean

# Setup talks on stderr, so that `make bench > bench.json` holds only the benchmark's JSON.
$(STAMP): pyproject.toml
	@echo "building $(VENV): pip install -e '.[dev]'" >&2
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) >&2
	@$(PY) -m pip install --quiet --upgrade pip >&2
	@$(PY) -m pip install -e '.[dev]' >&2
	@touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) jobs/demo.py $(DEMO_ARGS)

bench: $(STAMP)
	@$(PY) -m benchmarks $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check draw_service jobs tests

clean:
	rm -rf $(VENV) demo-out bench-out .pytest_cache
