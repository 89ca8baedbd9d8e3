# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv when missing (idempotent: a stamp file records what was installed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgekws-installed
DEMO_DIR ?= demo-out

.PHONY: demo test test-all setup system bench clean

setup: system $(STAMP)

system:
	@bash scripts/setup-system.sh

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# The main job. Until a shipped supernet exists it runs the stages that exist: synthesize a small
# corpus, print its statistics, and build the feature cache.
demo: setup
	$(VENV)/bin/edgekws data synth --out $(DEMO_DIR)/corpus --clips 400 --seed 0
	$(VENV)/bin/edgekws data stats --data-dir $(DEMO_DIR)/corpus
	$(VENV)/bin/edgekws data features --data-dir $(DEMO_DIR)/corpus

# Fast tests (real TTS, real runtimes; the slow marker is reserved for long jobs).
test: setup
	$(PY) -m pytest -q -m "not slow"

# Everything, slow tests included.
test-all: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/synth_rate.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
