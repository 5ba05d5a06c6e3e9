"""cocotb throughput measurements for the DMA (run by scripts/bench_dma.py)."""

import json
import os

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge
from cocotb.utils import get_sim_time
from test_dma import TB, check_bytes, fill, load_ref

PERIOD_NS = 10


async def cycles_of(dut, coro):
    await RisingEdge(dut.clk)
    t0 = get_sim_time("ns")
    result = await coro
    return round((get_sim_time("ns") - t0) / PERIOD_NS), result


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def bench(dut):
    tb = TB(dut, pause=0)
    fill(tb)
    await tb.reset()
    B, W = TB.B, tb.W
    cols = tb.config.cols
    out = {"bus_bytes": B, "cases": []}

    def record(name, nbytes, cycles):
        out["cases"].append({"case": name, "bytes": nbytes, "cycles": cycles,
                             "bytes_per_cycle": nbytes / cycles, "peak": B,
                             "fraction": nbytes / cycles / B})

    if os.environ.get("BENCH_CONTIGUOUS") == "1":
        count = 65536 // 16
        cyc, (words, _, _) = await cycles_of(dut, tb.fetch(0x10000, count))
        check_bytes("fetch", b"".join(words), tb.ram.read(0x10000, 65536))
        record("64 KiB fetch (read)", 65536, cyc)

        n = 65536 // (4 * cols)
        cmd = dict(dram_addr=0x20000, n_rows=n, length=cols, stride=4 * cols, elem_bytes=4,
                   row_elems=cols)
        cyc, (rows, _, _) = await cycles_of(dut, tb.load(**cmd))
        expected, _ = load_ref(tb.ram.mem, cmd)
        assert rows == expected
        record(f"64 KiB LOAD, {4 * cols}-byte rows (read)", 65536, cyc)

        rows = [bytes((i + j) & 255 for j in range(W)) for i in range(65536 // W)]
        cyc, err = await cycles_of(dut, tb.store(rows, dram_addr=0x40000, n_rows=len(rows),
                                                 row_bytes=W, stride=W))
        assert err == 0 and tb.ram.read(0x40000, 65536) == b"".join(rows)
        record(f"64 KiB STORE, {W}-byte rows (write)", 65536, cyc)

    n = 512
    cmd = dict(dram_addr=0x80000, n_rows=n, length=8, stride=256, elem_bytes=1,
               row_elems=tb.config.sp_width)
    cyc, (rows, _, _) = await cycles_of(dut, tb.load(**cmd))
    expected, _ = load_ref(tb.ram.mem, cmd)
    assert rows == expected
    record("8-byte rows at 256-byte pitch (LOAD)", 8 * n, cyc)

    await ClockCycles(dut.clk, 4)
    with open(os.environ["BENCH_OUT"], "w") as f:
        json.dump(out, f)
