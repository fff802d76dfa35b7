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

.PHONY: setup browser test demo bench lint clean

# Setup talks on stderr, so that `make bench > bench.json` holds only the benchmark's JSON.
$(STAMP): pyproject.toml
	@echo "building $(VENV): pip install -e '.[dev]'" >&2
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) >&2
	@$(PY) -m pip install --quiet --upgrade pip >&2
	@$(PY) -m pip install -e '.[dev]' >&2
	@touch $(STAMP)

setup: $(STAMP)

# The page test drives the system's Chromium; install it where this machine can (Debian, as root), else
# that one test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  echo "installing Chromium for the browser test (apt-get)" >&2 && \
	  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2; } || \
	  echo "no Chromium, and no way to install it here: the browser test will skip" >&2

test: $(STAMP) browser
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) jobs/demo.py $(DEMO_ARGS)

bench: $(STAMP)
	@$(PY) -m benchmarks $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check draw_service jobs tests

clean:
	rm -rf $(VENV) demo-out bench-out .pytest_cache
