# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv when missing (idempotent: a stamp file records what was installed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgekws-installed
DEMO_DIR ?= demo-out

.PHONY: demo demo-data test test-all setup system arm bench clean

setup: system $(STAMP)

system:
	@bash scripts/setup-system.sh

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# The main job: from the shipped supernet, export the width-0.5 subnet to ONNX and TFLite (float
# and int8) behind the accuracy gates, and show where the files are.
demo: setup
	$(VENV)/bin/edgekws info --checkpoint edgekws/assets/dscnn_supernet.pt
	$(VENV)/bin/edgekws export --width 0.5 --out $(DEMO_DIR) --force

# The data stage on its own: a small synthetic corpus, its statistics and feature cache.
demo-data: setup
	$(VENV)/bin/edgekws data synth --out $(DEMO_DIR)/corpus --clips 400 --seed 0
	$(VENV)/bin/edgekws data stats --data-dir $(DEMO_DIR)/corpus
	$(VENV)/bin/edgekws data features --data-dir $(DEMO_DIR)/corpus

# Emulated 64-bit Arm for `bench --device qemu-aarch64[:CPU][@bullseye]`: arm64 Debian bookworm
# and bullseye sysroots (debootstrap) with aarch64 runtime wheels, built once (~90 s) under
# $EDGEKWS_ARM_SYSROOT or ~/.cache/edgekws/qemu-aarch64. Needs root, qemu-user and debootstrap
# (`make setup` installs them).
arm: setup
	$(VENV)/bin/edgekws qemu setup

# Fast tests (real TTS, real runtimes, the emulated-Arm ones included; the slow marker is
# reserved for long jobs). The arm tests fail rather than skip here: this target builds the sysroot.
test: setup arm
	EDGEKWS_REQUIRE_ARM=1 $(PY) -m pytest -q -m "not slow"

# Everything, slow tests included.
test-all: setup arm
	EDGEKWS_REQUIRE_ARM=1 $(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/synth_rate.py --clips 2000
	$(PY) benchmarks/export_bench.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
