# Two entry points, each doing all of its own set-up on a fresh machine (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup run test

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The torch pair measured to work here; installed first so nothing later swaps it.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[all,dev]"
	touch $@

setup: $(VENV)/.installed

# The main job, offline: the whole pipeline on the built-in default (report at runs/compact-run/report.html).
run: setup
	$(VENV)/bin/compact run

test: setup
	apps/setup.sh $(VENV)  # chromium + chromedriver (apt), onnxruntime-web (npm), the apps extra: browser tests
	# two xdist workers (one core each on CI's 2 cores; tests/conftest.py splits torch threads between them)
	$(PY) -m pytest -q -n 2
