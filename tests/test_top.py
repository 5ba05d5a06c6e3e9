"""Smoke test of the whole accelerator top in Amaranth's simulator, against the golden model.

System memory is an AXI4 RAM modelled by an async testbench; the program is started over
AXI4-Lite and finished on the interrupt.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from systolic.config import preset
from systolic.csr import CSR
from systolic.isa import ErrorCode, assemble, to_bytes
from systolic.model import GoldenModel
from systolic.rtl.multiplier import Multiplier
from systolic.rtl.top import Accelerator
from systolic.verilog import convert as to_verilog

MEM_BYTES = 4096
PROG_ADDR = 0x800


class Bus:
    """The flat ports of one prefix as attributes."""

    def __init__(self, dut, prefix):
        self._dut, self._prefix = dut, prefix

    def __getattr__(self, name):
        return getattr(self._dut, f"{self._prefix}_{name}")


def axi_ram(mem, bus, nbytes, error_ranges=()):
    """An AXI4 slave over ``mem`` (a bytearray): INCR bursts, one beat per cycle."""

    def bad(addr):
        return any(a <= addr < b for a, b in error_ranges) or addr + nbytes > len(mem)

    async def process(ctx):
        reads, writes, bresps = [], [], []
        rbeat = None
        ctx.set(bus.arready, 1)
        ctx.set(bus.awready, 1)
        ctx.set(bus.wready, 1)
        names = ("rvalid", "rready", "bvalid", "bready", "arvalid", "arready", "araddr",
                 "arlen", "arid", "awvalid", "awready", "awaddr", "awlen", "awid", "wvalid",
                 "wready", "wdata", "wstrb")
        async for _, _, *values in ctx.tick().sample(*(getattr(bus, n) for n in names)):
            # handshakes at the edge just passed, sampled as the DUT saw them
            s = dict(zip(names, values, strict=True))
            if s["rvalid"] and s["rready"]:
                rbeat = None
            if s["bvalid"] and s["bready"]:
                bresps.pop(0)
            if s["arvalid"] and s["arready"]:
                reads.append([s["araddr"], s["arlen"] + 1, s["arid"]])
            if s["awvalid"] and s["awready"]:
                writes.append([s["awaddr"], s["awlen"] + 1, s["awid"], False])
            if s["wvalid"] and s["wready"] and writes:
                w = writes[0]
                data, strb = s["wdata"], s["wstrb"]
                if bad(w[0]):
                    w[3] = True
                else:
                    for i in range(nbytes):
                        if strb >> i & 1:
                            mem[w[0] + i] = data >> (8 * i) & 0xFF
                w[0] += nbytes
                w[1] -= 1
                if w[1] == 0:
                    bresps.append((w[2], 2 if w[3] else 0))
                    writes.pop(0)
            if rbeat is None and reads:
                r = reads[0]
                addr = r[0]
                value = 0 if bad(addr) else int.from_bytes(mem[addr:addr + nbytes], "little")
                r[0] += nbytes
                r[1] -= 1
                rbeat = (r[2], value, 2 if bad(addr) else 0, r[1] == 0)
                if r[1] == 0:
                    reads.pop(0)
            if rbeat is not None:
                ctx.set(bus.rid, rbeat[0])
                ctx.set(bus.rdata, rbeat[1])
                ctx.set(bus.rresp, rbeat[2])
                ctx.set(bus.rlast, rbeat[3])
            ctx.set(bus.rvalid, rbeat is not None)
            if bresps:
                ctx.set(bus.bid, bresps[0][0])
                ctx.set(bus.bresp, bresps[0][1])
            ctx.set(bus.bvalid, bool(bresps))

    return process


async def csr_write(ctx, dut, reg, value):
    b = Bus(dut, "s_axil")
    ctx.set(b.awaddr, CSR[reg].offset)
    ctx.set(b.wdata, value)
    ctx.set(b.wstrb, 0xF)
    ctx.set(b.awvalid, 1)
    ctx.set(b.wvalid, 1)
    ctx.set(b.bready, 1)
    await ctx.tick().until(b.awready)
    ctx.set(b.awvalid, 0)
    ctx.set(b.wvalid, 0)
    await ctx.tick().until(b.bvalid)
    ctx.set(b.bready, 0)


async def csr_read(ctx, dut, reg):
    b = Bus(dut, "s_axil")
    ctx.set(b.araddr, CSR[reg].offset)
    ctx.set(b.arvalid, 1)
    ctx.set(b.rready, 1)
    await ctx.tick().until(b.arready)
    ctx.set(b.arvalid, 0)
    (value,) = await ctx.tick().sample(b.rdata).until(b.rvalid)
    ctx.set(b.rready, 0)
    return value


def run_top(config, program, memory, *, max_cycles=20000):
    """Run ``program`` on the top; returns (memory, csr values, cycles)."""
    dut = Accelerator(config)
    mem = bytearray(memory)
    code = to_bytes(program)
    mem[PROG_ADDR:PROG_ADDR + len(code)] = code
    result = {}

    async def bench(ctx):
        await csr_write(ctx, dut, "PROG_ADDR", PROG_ADDR)
        await csr_write(ctx, dut, "PROG_LEN", len(program))
        await csr_write(ctx, dut, "CTRL", 0b101)
        cycles = 0
        while not ctx.get(dut.irq):
            await ctx.tick()
            cycles += 1
            assert cycles < max_cycles, "no interrupt"
        result["cycles"] = cycles
        for reg in ("STATUS", "ERROR_CODE", "ERROR_INDEX", "PERF_CYCLES", "PERF_MAC_BUSY",
                    "PERF_INSTRET"):
            result[reg] = await csr_read(ctx, dut, reg)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(axi_ram(mem, Bus(dut, "m_axi"), config.axi_bytes), background=True)
    sim.add_testbench(bench)
    sim.run()
    return mem, result


GEMM = """
load dest=sp n_rows=2 length=2 addr=0 stride=2 dram_addr=0x100 push_next   # weights
load dest=sp n_rows=3 length=2 addr=4 stride=2 dram_addr=0x200 push_next   # inputs
load dest=acc n_rows=3 length=2 addr=0 stride=0 dram_addr=0x300 push_next  # bias
matmul preload=1 w_addr=0 pop_prev
sync queue=exec pop_prev
matmul compute=1 accumulate=1 n_rows=3 a_addr=4 c_addr=0 pop_prev push_next
config reg=req_mult value=3
config reg=req_shift value=2
store n_rows=3 length=2 addr=0 stride=4 dram_addr=0x400 pop_prev
store n_rows=3 length=2 addr=0 stride=8 out_type=int32 dram_addr=0x500
halt
"""


def _memory(rng):
    mem = bytearray(MEM_BYTES)
    mem[0x100:0x104] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
    mem[0x200:0x206] = rng.integers(0, 256, 6, dtype=np.uint8).tobytes()
    mem[0x300:0x308] = rng.integers(-1000, 1000, 2).astype("<i4").tobytes()
    return mem


def test_tiny_gemm_matches_model():
    config = preset("tiny")
    program = assemble(GEMM)
    mem = _memory(np.random.default_rng(5))
    image = bytearray(mem)
    image[PROG_ADDR:PROG_ADDR + 16 * len(program)] = to_bytes(program)
    want = GoldenModel(config).run(image, PROG_ADDR, len(program))
    assert want.ok and not want.races
    got, csrs = run_top(config, program, mem)
    print(f"tiny GEMM: {csrs['cycles']} cycles to the interrupt, PERF_CYCLES="
          f"{csrs['PERF_CYCLES']}, MAC busy {csrs['PERF_MAC_BUSY']}")
    assert csrs["ERROR_CODE"] == 0 and csrs["STATUS"] & 0b111 == 0b010
    assert csrs["PERF_INSTRET"] == want.retired
    assert bytes(got) == want.memory.tobytes()
    # the scoreboard catches a corrupted byte
    bad = bytearray(got)
    bad[0x400] ^= 1
    with pytest.raises(AssertionError):
        assert bytes(bad) == want.memory.tobytes()


@pytest.mark.parametrize("source, code, index", [
    ("nop\nload n_rows=0\nhalt", ErrorCode.BAD_FIELD, 1),
    ("matmul compute=1 n_rows=1 pop_prev\nhalt", ErrorCode.DEADLOCK, 0),
    ("nop\nnop", ErrorCode.PROGRAM_END, 2),
    ("load n_rows=1 length=1 dram_addr=0x2000\nhalt", ErrorCode.AXI_ERROR, 0),
])
def test_tiny_errors_match_model(source, code, index):
    config = preset("tiny")
    program = assemble(source)
    mem = bytearray(MEM_BYTES)
    image = bytearray(mem)
    image[PROG_ADDR:PROG_ADDR + 16 * len(program)] = to_bytes(program)
    want = GoldenModel(config).run(image, PROG_ADDR, len(program))
    assert (want.error, want.error_index) == (code, index)
    _, csrs = run_top(config, program, mem)
    assert (csrs["ERROR_CODE"], csrs["ERROR_INDEX"]) == (code.value, index)
    assert csrs["STATUS"] & 0b111 == 0b110


BACK_TO_BACK = """
load dest=sp n_rows=64 length=8 addr=0 stride=8 dram_addr=0x000              # inputs, bank 0
load dest=sp n_rows=32 length=8 addr=2048 stride=8 dram_addr=0x200 push_next  # weights, bank 1
matmul preload=1 w_addr=2048 pop_prev
matmul compute=1 n_rows=32 a_addr=0 c_addr=0 preload=1 w_addr=2056
matmul compute=1 accumulate=1 n_rows=32 a_addr=32 c_addr=0 preload=1 w_addr=2064
matmul compute=1 accumulate=1 n_rows=32 a_addr=16 c_addr=0 preload=1 w_addr=2072
matmul compute=1 accumulate=1 n_rows=32 a_addr=8 c_addr=0 push_next
store n_rows=32 length=8 addr=0 stride=32 out_type=int32 dram_addr=0xC00 pop_prev
halt
"""


def test_default_back_to_back_matmuls_match_model():
    """Four 32-row MATMULs that each preload the next tile, on the default preset: the
    results match the golden model and the array takes all 128 rows."""
    config = preset("default")
    program = assemble(BACK_TO_BACK)
    rng = np.random.default_rng(12)
    mem = bytearray(MEM_BYTES)
    mem[0x000:0x200] = rng.integers(0, 256, 0x200, dtype=np.uint8).tobytes()
    mem[0x200:0x300] = rng.integers(0, 256, 0x100, dtype=np.uint8).tobytes()
    image = bytearray(mem)
    image[PROG_ADDR:PROG_ADDR + 16 * len(program)] = to_bytes(program)
    want = GoldenModel(config).run(image, PROG_ADDR, len(program))
    assert want.ok and not want.races
    got, csrs = run_top(config, program, mem)
    print(f"default, 4 back-to-back MATMULs of 32 rows: {csrs['PERF_CYCLES']} cycles, "
          f"MAC busy {csrs['PERF_MAC_BUSY']}")
    assert csrs["ERROR_CODE"] == 0 and csrs["STATUS"] & 0b111 == 0b010
    assert csrs["PERF_MAC_BUSY"] == 4 * 32
    assert bytes(got) == want.memory.tobytes()
    assert want.memory[0xC00:0x1000].any()


def test_multiplier_reaches_the_array():
    """``Accelerator(config, multiplier=...)`` builds every PE's multiplier with it."""
    made = []

    def factory(a_shape, b_shape):
        made.append((a_shape, b_shape))
        return Multiplier(a_shape, b_shape)

    config = preset("tiny")
    to_verilog(Accelerator(config, multiplier=factory), "top")
    assert len(made) == config.rows * config.cols
