"""End-to-end cocotb bench of ``Accelerator``: programs in an AxiRam with random
back-pressure, started over AXI4-Lite, finished on the interrupt, and system memory
compared byte for byte with the golden model.

Environment (set by ``tests/test_accelerator.py``; see docs/verification.md):

``SYSTOLIC_PRESET``        the configuration (``tiny``, ``icebreaker``, ``default`` ...)
``SYSTOLIC_SEED``          first seed of the random programs (default: per preset)
``SYSTOLIC_PROGRAMS``      how many random programs
``SYSTOLIC_BUDGET``        estimated cycles per random program (default 6000)
``SYSTOLIC_GEMM``          GEMM sizes (comma-separated cubes) for ``gemm``
``SYSTOLIC_GEMM_BUFFERS``  weight and accumulator buffers of the GEMM (default ``2,2``)
``SYSTOLIC_RESULTS``       file the GEMM figures are written to (JSON)
"""

import json
import os
import random

import cocotb
import pytest
from cocotb.triggers import First, RisingEdge, Timer

from systolic.config import preset
from systolic.csr import ID_MAGIC, id_words
from systolic.isa import MAX_TOKENS, ErrorCode, Instruction, Opcode, encode
from systolic.model import GoldenModel
from systolic.sim.harness import (
    STATUS_BUSY,
    STATUS_ERROR,
    STATUS_RESETTING,
    AcceleratorTB,
    RunTimeout,
    ScoreboardError,
    check_run,
)
from systolic.testing.directed import (
    directed_programs,
    far_error_programs,
    persistence_programs,
)
from systolic.testing.gemm import tiled_gemm
from systolic.testing.randprog import (
    DEFAULT_BUDGET,
    INPUT_BYTES,
    OUTPUT_BYTES,
    generate,
    reproduce_command,
)

PRESET = os.environ.get("SYSTOLIC_PRESET", "tiny")
CONFIG = preset(PRESET)
BASE_SEED = {"tiny": 1000, "icebreaker": 2000, "default": 3000}.get(PRESET, 0)
SEED = int(os.environ.get("SYSTOLIC_SEED", BASE_SEED))
PROGRAMS = int(os.environ.get("SYSTOLIC_PROGRAMS", 34))
BUDGET = int(os.environ.get("SYSTOLIC_BUDGET", DEFAULT_BUDGET))
ERRORS = [e for e in ErrorCode if e is not ErrorCode.NONE]


def timeout_for(cost):
    return 40 * cost + 50_000


async def new_tb(dut):
    tb = AcceleratorTB(dut, CONFIG)
    await tb.reset()
    return tb


async def run_checked(tb, prog, what, *, backpressure=0.0, seed=0, error_ranges=(),
                      expected=None):
    """Run a RandomProgram-like (image, prog_addr, prog_len) and check it; returns CSRs."""
    image, addr, length = prog
    if expected is None:
        expected = GoldenModel(CONFIG).run(image, addr, length, axi_error=error_ranges)
    tb.set_backpressure(backpressure, seed)
    memory, csrs = await tb.run_program(image, addr, length,
                                        timeout_for(getattr(prog, "cost", 2000)),
                                        error_ranges=error_ranges)
    tb.set_backpressure(0)
    check_run(expected, memory, csrs, image=image, what=what)
    return csrs


async def recover(tb):
    """After a failed run: soft reset, or the hardware reset if that hangs too."""
    try:
        await tb.soft_reset(timeout_cycles=20_000)
    except RunTimeout:
        await tb.reset()


@cocotb.test()
async def id_registers(dut):
    """ID and configuration readback match the configuration."""
    tb = await new_tb(dut)
    for name, value in id_words(CONFIG).items():
        got = await tb.read_csr(name)
        assert got == value, f"{name} reads 0x{got:08x}, expected 0x{value:08x}"
    assert await tb.read_csr("STATUS") & STATUS_BUSY == 0


@cocotb.test()
async def random_programs(dut):
    """SYSTOLIC_PROGRAMS constrained-random programs from SYSTOLIC_SEED on, each under
    its own back-pressure; every mismatch is logged with the command that repeats it."""
    tb = await new_tb(dut)
    failures = []
    cycles = 0
    for seed in range(SEED, SEED + PROGRAMS):
        prog = generate(CONFIG, seed, budget=BUDGET)
        bp = random.Random(seed).choice([0.0, 0.0, 0.2, 0.5])
        try:
            csrs = await run_checked(tb, prog, f"seed {seed}", backpressure=bp, seed=seed)
            cycles += csrs.get("PERF_CYCLES", 0)
        except (ScoreboardError, RunTimeout) as exc:
            message = (f"{exc}\n  repeat with: "
                       f"{reproduce_command(PRESET, seed, budget=BUDGET)}")
            dut._log.error(message)
            failures.append(message)
            await recover(tb)
    dut._log.info(f"{PRESET}: {PROGRAMS} random programs from seed {SEED}, "
                  f"{len(failures)} mismatches, {cycles} cycles")
    assert not failures, f"{len(failures)} of {PROGRAMS} programs mismatched:\n" + \
        "\n".join(failures)


@cocotb.test()
async def directed_instructions(dut):
    """One program per instruction and variant, with and without back-pressure."""
    tb = await new_tb(dut)
    failures = []
    for i, (name, prog) in enumerate(directed_programs(CONFIG).items()):
        try:
            await run_checked(tb, prog, name, backpressure=0.3 * (i % 2), seed=i)
        except (ScoreboardError, RunTimeout) as exc:
            failures.append(str(exc))
            await recover(tb)
    assert not failures, "\n".join(failures)


@cocotb.test()
async def state_between_runs(dut):
    """Memories and the preloaded weights survive from one run to the next, CONFIG
    registers do not; the low four bits of PROG_ADDR are ignored."""
    tb = await new_tb(dut)
    model = GoldenModel(CONFIG)
    first, second = persistence_programs(CONFIG)
    await run_checked(tb, first, "first run", expected=model.run(*first))
    await run_checked(tb, second, "second run", expected=model.run(*second))
    image, addr, length = generate(CONFIG, SEED + 90)
    await run_checked(tb, (image, addr + 9, length), "PROG_ADDR + 9")


@cocotb.test()
async def error_codes(dut):
    """Every error code at a random and at a chosen index: same code and index as the
    model; the device answers CSR reads afterwards; the next program runs correctly."""
    tb = await new_tb(dut)
    failures = []
    for code in ERRORS:
        for k in range(2):
            seed = SEED + 100 * code.value + k
            index = (MAX_TOKENS + 3 if code is ErrorCode.TOKEN_OVERFLOW else 5) if k else None
            prog = generate(CONFIG, seed, error=code, error_index=index, budget=1500)
            what = f"{code.name} seed {seed}"
            try:
                csrs = await run_checked(tb, prog, what, backpressure=0.2 * k, seed=seed)
                assert csrs["STATUS"] & STATUS_ERROR
                assert await tb.read_csr("ID") == ID_MAGIC, f"{what}: ID unreadable"
                await run_checked(tb, generate(CONFIG, seed + 1), f"after {what}")
            except (ScoreboardError, RunTimeout, AssertionError) as exc:
                failures.append(f"{exc}\n  repeat with: "
                                f"{reproduce_command(PRESET, SEED, 'errors')}")
                await recover(tb)
    assert not failures, "\n".join(failures)


@cocotb.test()
async def axi_errors(dut):
    """SLVERR on instruction fetch (program runs past the memory) and on a STORE's write
    response (an error window over the output area)."""
    tb = await new_tb(dut)
    prog = generate(CONFIG, SEED + 7)
    image = bytearray(prog.image)
    nop = encode(Instruction(Opcode.NOP, {})).to_bytes(16, "little")
    image[-32:] = nop * 2
    fetch = (bytes(image), len(image) - 32, 5)
    csrs = await run_checked(tb, fetch, "fetch past the memory")
    assert (csrs["ERROR_CODE"], csrs["ERROR_INDEX"]) == (ErrorCode.AXI_ERROR.value, 2)
    hits = 0
    for seed in range(SEED + 20, SEED + 30):
        prog = generate(CONFIG, seed)
        window = [(INPUT_BYTES, INPUT_BYTES + OUTPUT_BYTES)]   # the output area
        expected = GoldenModel(CONFIG).run(*prog, axi_error=window)
        hits += expected.error is ErrorCode.AXI_ERROR
        await run_checked(tb, prog, f"store error seed {seed}", error_ranges=window,
                          expected=expected, backpressure=0.3, seed=seed)
        assert await tb.read_csr("ID") == ID_MAGIC
    assert hits > 0, "no program stored into the error window"
    await run_checked(tb, generate(CONFIG, SEED + 31), "after AXI errors")


@cocotb.test()
async def axi_errors_far_index(dut):
    """AXI errors of LOAD and STORE micro-ops hundreds of instructions away from the
    others: the reported index is the model's although a queue entry keeps only the
    index's low bits."""
    tb = await new_tb(dut)
    for i, (name, prog) in enumerate(far_error_programs(CONFIG, seed=SEED).items()):
        expected = GoldenModel(CONFIG).run(*prog)
        assert expected.error is ErrorCode.AXI_ERROR, name
        csrs = await run_checked(tb, prog, name, expected=expected,
                                 backpressure=0.2 * (i % 2), seed=i)
        assert csrs["ERROR_INDEX"] == expected.error_index, name
    await run_checked(tb, generate(CONFIG, SEED + 41), "after far AXI errors")


async def _start_and_interrupt(tb, dut, prog, delay, hard):
    """Start ``prog``, wait ``delay`` cycles (then, for the hardware reset, for a read
    beat), interrupt it. Returns whether the program was still running."""
    tb.load_image(prog.image)
    tb.set_backpressure(0.3, delay)
    await tb.start(prog.prog_addr, prog.prog_len)
    await tb.cycles(delay)
    busy = bool(await tb.read_csr("STATUS") & STATUS_BUSY)
    if hard:
        if not int(dut.m_axi_rvalid.value):
            await First(RisingEdge(dut.m_axi_rvalid), Timer(20_000 * tb.period, unit="ns"))
        await tb.reset(4)
    else:
        await tb.soft_reset()
    tb.set_backpressure(0)
    return busy


@cocotb.test()
async def soft_reset_mid_program(dut):
    """CTRL.SOFT_RESET while a program runs (with bursts in flight), then correct runs."""
    tb = await new_tb(dut)
    interrupted = 0
    for k in range(4):
        long = generate(CONFIG, SEED + 40 + k, budget=20_000, max_tasks=30)
        interrupted += await _start_and_interrupt(tb, dut, long, 50 + 97 * k, hard=False)
        status = await tb.read_csr("STATUS")
        assert not status & (STATUS_BUSY | STATUS_RESETTING), f"STATUS 0x{status:x}"
        assert await tb.read_csr("ID") == ID_MAGIC
        await run_checked(tb, generate(CONFIG, SEED + 50 + k), f"after soft reset {k}",
                          backpressure=0.2, seed=k)
    assert interrupted, "no soft reset hit a running program"


@cocotb.test()
async def reset_mid_transfer(dut):
    """The hardware reset asserted while a read burst is under way, then correct runs."""
    tb = await new_tb(dut)
    interrupted = 0
    for k in range(3):
        long = generate(CONFIG, SEED + 60 + k, budget=20_000, max_tasks=30)
        interrupted += await _start_and_interrupt(tb, dut, long, 20 + 61 * k, hard=True)
        assert await tb.read_csr("STATUS") & STATUS_BUSY == 0
        await run_checked(tb, generate(CONFIG, SEED + 70 + k), f"after reset {k}",
                          backpressure=0.2, seed=k)
    assert interrupted, "no reset hit a running program"


@cocotb.test()
async def scoreboard_catches_corruption(dut):
    """The scoreboard is shown to fail: one corrupted result byte, a wrong error index."""
    tb = await new_tb(dut)
    prog = generate(CONFIG, SEED + 80)
    expected = prog.run_golden()
    memory, csrs = await tb.run_program(*prog, timeout_for(prog.cost))
    check_run(expected, memory, csrs)            # the honest result passes
    want = expected.memory.tobytes()
    written = [i for i in range(len(want)) if want[i] != prog.image[i]]
    assert written, "the program wrote nothing to corrupt"
    bad = bytearray(memory)
    bad[written[len(written) // 2]] ^= 0x10
    with pytest.raises(ScoreboardError, match="1 memory bytes differ"):
        check_run(expected, bytes(bad), csrs)
    with pytest.raises(ScoreboardError, match="error"):
        check_run(expected, memory, {**csrs, "ERROR_INDEX": csrs["ERROR_INDEX"] + 1})


@cocotb.test()
async def gemm(dut):
    """The tiled GEMM: bit-exact with NumPy; perf counters show loads overlapping compute."""
    sizes = [int(s) for s in os.environ.get("SYSTOLIC_GEMM", "").split(",") if s]
    wb, ab = (int(x) for x in os.environ.get("SYSTOLIC_GEMM_BUFFERS", "2,2").split(","))
    programs = [tiled_gemm(CONFIG, size, size, size, seed=size, w_buffers=wb, acc_buffers=ab)
                for size in sizes or [4 * max(CONFIG.rows, CONFIG.cols)]]
    biggest = max(len(g.image) for g in programs)
    tb = AcceleratorTB(dut, CONFIG, mem_size=1 << (biggest - 1).bit_length())
    await tb.reset()
    figures = []
    for g in programs:
        size = g.m
        timeout = 50 * g.macs // CONFIG.rows + 10**5
        memory, csrs = await tb.run_program(*g, timeout_cycles=timeout)
        assert csrs["ERROR_CODE"] == 0, f"GEMM {size}: {csrs}"
        got = g.result(memory)
        assert (got == g.expected).all(), f"GEMM {size}^3 differs from NumPy"
        fig = {"preset": PRESET, "m": size, "n": size, "k": size, "macs": g.macs,
               "w_buffers": wb, "acc_buffers": ab,
               "instructions": g.prog_len, **{k.lower(): v for k, v in csrs.items()
                                              if k.startswith("PERF")}}
        if CONFIG.perf_counters:
            fig["mac_utilization"] = g.macs / (CONFIG.rows * CONFIG.cols * csrs["PERF_CYCLES"])
            assert csrs["PERF_OVERLAP"] > 0, f"GEMM {size}: no load overlapped compute"
            dut._log.info(f"GEMM {size}^3 on {PRESET}: {csrs['PERF_CYCLES']} cycles, MAC "
                          f"utilization {fig['mac_utilization']:.3f}, overlap "
                          f"{csrs['PERF_OVERLAP']} cycles")
        figures.append(fig)
    out = os.environ.get("SYSTOLIC_RESULTS")
    if out:
        with open(out, "w") as f:
            json.dump(figures, f, indent=1)
