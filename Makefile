# Liveline: two commands on a fresh machine (Python 3.11+, make, git):
#   make run    install what is needed and start the local stack
#   make test   install what the tests need and run the whole suite
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
CHECKOV_VENV := .venv-checkov

.PHONY: help run test call lint bench webhook-zip relay-bundle clean browser

help:
	@echo "make run          start the local stack: relay :8080, webhook :5050, softphone :8070, stand-in model"
	@echo "                  if no OPENAI_API_KEY; other ports: make run RUN_ARGS=\"--relay-port 8081\" (RUN_ARGS=--help)"
	@echo "make test         run the whole test suite"
	@echo "make call         place one simulated call against the running local stack"
	@echo "                  (CALL_ARGS=\"--wav my.wav\": what the caller says; CALL_ARGS=--help for the rest)"
	@echo "make lint         ruff and mypy"
	@echo "make bench        load-test the relay (docs/performance.md)"
	@echo "make webhook-zip  build the Lambda zip into build/"
	@echo "make relay-bundle build the relay bundle (code + wheelhouse) into build/"

# -- environments -------------------------------------------------------------------------
$(VENV)/.python-ok:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Liveline needs Python 3.11 or newer (found " + sys.version.split()[0] + "); set PYTHON=python3.x")'
	@$(PYTHON) -m venv --clear $(VENV) || { echo "could not create $(VENV): install the venv module (e.g. apt install python3-venv)"; exit 1; }
	@touch $@

$(VENV)/.runtime: $(VENV)/.python-ok requirements/relay.txt requirements/webhook.txt requirements/local.txt
	$(PIP) install -r requirements/relay.txt -r requirements/webhook.txt -r requirements/local.txt
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements/dev.txt
	$(PIP) install -r requirements/dev.txt
	@touch $@

# checkov gets its own virtualenv: it installs bc-python-hcl2 under the same `hcl2` import
# name as python-hcl2 and silently replaces its API (docs/infra-testing.md).
$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	@$(PYTHON) -m venv --clear $(CHECKOV_VENV) || { echo "could not create $(CHECKOV_VENV): install the venv module (e.g. apt install python3-venv)"; exit 1; }
	$(CHECKOV_VENV)/bin/python -m pip --disable-pip-version-check -q install -r requirements/checkov.txt
	@touch $@

# The softphone's browser tests (tests/softphone) drive Debian's chromium through Playwright, which
# cannot download a browser of its own here. Installed only where it is missing: as root, or with
# passwordless sudo; otherwise one line says what to install (those tests are skipped until then).
CHROMIUM := /usr/bin/chromium
APT_CHROMIUM := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "the softphone's browser tests need Chromium at $(CHROMIUM) (Debian's chromium package): skipped"; \
	  elif [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium for the softphone's browser tests (once)"; \
	    { apt-get update -qq && $(APT_CHROMIUM); } >.chromium-install.log 2>&1 \
	      || { tail -5 .chromium-install.log; echo "could not install chromium: see .chromium-install.log"; exit 1; }; \
	  elif sudo -n true 2>/dev/null; then \
	    echo "installing Debian's chromium for the softphone's browser tests (once, with sudo)"; \
	    { sudo -n apt-get update -qq && sudo -n env $(APT_CHROMIUM); } >.chromium-install.log 2>&1 \
	      || { tail -5 .chromium-install.log; echo "could not install chromium: see .chromium-install.log"; exit 1; }; \
	  else \
	    echo "the softphone's browser tests need Chromium: run 'sudo apt-get install chromium' (skipped until then)"; \
	  fi; \
	fi

# -- the two commands ---------------------------------------------------------------------
# RUN_ARGS passes options on, e.g. other ports: make run RUN_ARGS="--relay-port 8081 --webhook-port 5051"
# (make run RUN_ARGS=--help lists them; make call and the softphone follow, through .local/stack.env).
run: $(VENV)/.runtime
	$(PY) -m scripts.local_stack $(RUN_ARGS)

test: $(VENV)/.dev $(CHECKOV_VENV)/.installed browser
	CHECKOV=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest

# -- the rest -----------------------------------------------------------------------------
# CALL_ARGS passes options on, e.g. make call CALL_ARGS="--wav my.wav --barge-in"
call: $(VENV)/.runtime
	$(PY) -m scripts.call $(CALL_ARGS)

# The operator's load test (docs/performance.md). BENCH_ARGS passes options through, e.g.
#   make bench BENCH_ARGS="--steps 50,100,150 --json"   or   BENCH_ARGS="--relay-url wss://relay.example.com"
# The relay runs on the virtualenv's interpreter; to bench another build, give it its own:
#   make bench PYTHON=/usr/bin/python3.11 VENV=.venv-system
$(VENV)/.bench: $(VENV)/.runtime requirements/bench.txt
	$(PIP) install -r requirements/bench.txt
	@touch $@

bench: $(VENV)/.bench
	$(PY) -m scripts.bench_relay $(BENCH_ARGS)

lint: $(VENV)/.dev
	$(PY) -m ruff check relay webhook_app scripts tests
	$(PY) -m mypy

# The webhook's deployable for infra/: webhook_app/ + requirements/webhook-lambda.txt installed for
# AWS Lambda python3.12, zipped deterministically (same inputs, same hash) into build/.
# WEBHOOK_ARCH=arm64 for a Graviton function (infra/: webhook_architecture).
WEBHOOK_ARCH ?= x86_64
webhook-zip: $(VENV)/.python-ok
	$(PY) scripts/build_webhook_zip.py --arch $(WEBHOOK_ARCH) --out build/webhook-lambda.zip

# The relay's deployable for infra/: relay/ + requirements/relay.txt + a wheelhouse for the instances
# (Amazon Linux 2023, python3.11). RELAY_ARCH=aarch64 for Graviton instance types.
RELAY_ARCH ?= x86_64
relay-bundle: $(VENV)/.python-ok
	$(PY) scripts/build_relay_bundle.py --arch $(RELAY_ARCH) --output build/relay-bundle.zip

clean:
	rm -rf build .local .pytest_cache .mypy_cache .ruff_cache
