"""The accelerator end to end: the cocotb bench (tb/test_accelerator.py) under Verilator
for three presets, and the hand-assembled GEMM on the golden model.

Random programs per preset come from ``SYSTOLIC_SEED`` (first seed) and
``SYSTOLIC_PROGRAMS`` (count); ``SYSTOLIC_PRESETS`` (comma-separated) narrows the presets.
A failing seed is repeated with the command printed in the failure, e.g.::

    SYSTOLIC_SEED=1234 SYSTOLIC_PRESETS=tiny SYSTOLIC_PROGRAMS=1 \\
        .venv/bin/python -m pytest tests/test_accelerator.py -k random
"""

import os

import numpy as np
import pytest

from sim.build import run_accelerator_bench
from systolic.config import PRESETS as ALL_PRESETS
from systolic.config import preset
from systolic.isa import Opcode, decode
from systolic.model import GoldenModel
from systolic.testing.gemm import tiled_gemm

# Verilator builds of this module (three of the project's budget).
BUILDS = {"accel-tiny": "tiny", "accel-icebreaker": "icebreaker", "accel-default": "default"}

# Random programs per preset in `make test`: 34 + 33 + 33 = 100 per CI run. Other presets
# (SYSTOLIC_PRESETS=ulx3s, the board's) run 34.
PROGRAMS = {"tiny": 34, "icebreaker": 33, "default": 33}
LONG_PROGRAMS = 400    # per preset in the slow campaign (1200 in all)

PRESETS = [p for p in os.environ.get("SYSTOLIC_PRESETS", ",".join(PROGRAMS)).split(",") if p]


def _env(name, programs, seed=None):
    env = {"SYSTOLIC_PROGRAMS": os.environ.get("SYSTOLIC_PROGRAMS", str(programs))}
    for var in ("SYSTOLIC_SEED", "SYSTOLIC_BUDGET"):
        if var in os.environ:
            env[var] = os.environ[var]
    if seed is not None:
        env.setdefault("SYSTOLIC_SEED", str(seed))
    return env


def _bench_params():
    return [pytest.param(p, marks=pytest.mark.xdist_group(f"accel-{p}")) for p in PRESETS]


@pytest.mark.verilator
@pytest.mark.parametrize("name", _bench_params())
def test_random(name):
    """Random programs against the golden model, byte for byte (one simulator process)."""
    run_accelerator_bench(name, testcase=["id_registers", "random_programs"],
                          env=_env(name, PROGRAMS.get(name, 34)))


@pytest.mark.verilator
@pytest.mark.parametrize("name", _bench_params())
def test_directed_errors_resets(name):
    """Every instruction, state kept between runs, every error code, AXI errors (also far
    from the other instructions' indices), soft and hard reset mid-program, the
    scoreboard's expected failure, and a small tiled GEMM."""
    run_accelerator_bench(name, testcase=[
        "directed_instructions", "state_between_runs", "error_codes", "axi_errors",
        "axi_errors_far_index", "soft_reset_mid_program", "reset_mid_transfer",
        "scoreboard_catches_corruption", "gemm"], env=_env(name, 0))


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("name", _bench_params())
def test_random_campaign(name):
    """The long campaign: LONG_PROGRAMS random programs per preset (make test-long)."""
    order = [*PROGRAMS, *(p for p in ALL_PRESETS if p not in PROGRAMS)]
    seed = 100_000 * (1 + order.index(name))    # clear of the CI seeds
    run_accelerator_bench(name, testcase="random_programs",
                          env=_env(name, LONG_PROGRAMS, seed))


# -- the tiled GEMM on the golden model ----------------------------------------------------

@pytest.mark.parametrize("name,size", [("tiny", 8), ("icebreaker", 16), ("default", 64),
                                       ("default", 128)])
def test_gemm_golden_bit_exact(name, size):
    config = preset(name)
    g = tiled_gemm(config, size, size, size, seed=size)
    result = GoldenModel(config).run(*g)
    assert result.ok and result.races == []
    assert np.array_equal(g.result(result.memory), g.a @ g.b)
    assert result.macs == g.macs == size ** 3


def test_gemm_is_double_buffered():
    """Loads of step s+2 come before the MATMUL of step s+1 (overlap) and wait for the
    MATMUL that read their buffer (E2L); MATMULs preload while they compute."""
    config = preset("default")
    g = tiled_gemm(config, 32, 16, 24, seed=1)
    instrs = [decode(w) for w in g.words]
    steps = (24 // config.rows) * (16 // config.cols)
    w_base = config.sp_depth                     # weight buffers in the bank after the A tiles
    matmuls = [i for i in instrs if i.opcode is Opcode.MATMUL]
    assert len(matmuls) == steps + 1
    assert sum(bool(i.preload and i.compute) for i in matmuls) == steps - 1
    assert {i.w_addr for i in matmuls if i.preload} == {w_base, w_base + config.rows}
    first_mm = next(n for n, i in enumerate(instrs) if i.opcode is Opcode.MATMUL)
    assert sum(i.opcode is Opcode.LOAD for i in instrs[:first_mm]) >= 3
    assert sum(bool(i.pop_next) for i in instrs if i.opcode is Opcode.LOAD) == steps - 2


def test_gemm_catches_a_wrong_token():
    """Dropping one E2L pop makes the model report a race (the check can fail)."""
    config = preset("default")
    g = tiled_gemm(config, 32, 16, 24, seed=1)
    words = list(g.words)
    n = next(k for k, w in enumerate(words) if decode(w).opcode is Opcode.LOAD
             and decode(w).pop_next)
    words[n] &= ~(1 << 5)          # clear pop_next (bit 5)
    image = bytearray(g.image)
    image[g.prog_addr:g.prog_addr + 16 * len(words)] = b"".join(
        w.to_bytes(16, "little") for w in words)
    result = GoldenModel(config).run(bytes(image), g.prog_addr, g.prog_len)
    assert result.races, "an unordered weight-buffer reload went unnoticed"


def test_gemm_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"GEMM k must be a positive multiple of rows \(8\), "
                                         r"not 12"):
        tiled_gemm(preset("default"), 8, 8, 12)
    with pytest.raises(ValueError, match=r"GEMM m must be in 1..512, not 513"):
        tiled_gemm(preset("default"), 513, 8, 8)
