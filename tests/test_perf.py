"""The analytic cycle model against the golden model's counts and its own bounds."""

import numpy as np
import pytest

from systolic.compiler import ProgramBuilder, Requant, compile_gemm
from systolic.config import preset
from systolic.isa import LoadDest, Opcode, assemble
from systolic.perf import PerfParams, estimate, estimate_compiled


def compiled(name, m, k, n, seed=0):
    c = preset(name)
    rng = np.random.default_rng(seed)
    cp = compile_gemm(c, m, k, n, rng.integers(-128, 128, (k, n)), rng.integers(-99, 99, n),
                      Requant.from_scale(0.002, requant_bits=c.requant_bits))
    return c, cp, rng.integers(-128, 128, (m, k))


@pytest.mark.parametrize("name,m,k,n", [
    ("tiny", 13, 7, 5), ("icebreaker", 40, 33, 17), ("default", 64, 64, 64),
    ("default", 1, 300, 10), ("default", 100, 9, 130),
])
def test_estimate_is_within_its_bounds_and_matches_golden_macs(name, m, k, n):
    c, cp, x = compiled(name, m, k, n)
    _, results = cp.run({"a": x})
    r = estimate(c, cp.words)
    assert r.macs == results[0].macs
    assert r.instructions == len(cp.words)
    assert r.cycles >= r.macs / c.macs_per_cycle                    # compute bound
    assert r.cycles >= (r.bytes_read + r.bytes_written) / (2 * c.axi_bytes)
    assert r.cycles <= r.serial_cycles                              # no overlap at all
    assert 0 < r.mac_utilization <= 1
    assert all(0 <= v <= 1 for v in r.occupancy().values())
    print(f"{name} {m}x{k}x{n}: {r.cycles} cycles, utilization {r.mac_utilization:.3f}, "
          f"{r.instructions} instructions")


def test_large_gemm_overlaps_loads_compute_and_stores():
    c, cp, _ = compiled("default", 256, 256, 256)
    r = estimate(c, cp.words)
    print(f"256x256x256 on default: {r.cycles} cycles, utilization {r.mac_utilization:.3f}, "
          f"occupancy {r.occupancy()}")
    assert r.mac_utilization > 0.95
    assert r.cycles < 0.9 * sum(r.busy.values())           # the queues overlap


def test_slower_memory_costs_cycles():
    c, cp, _ = compiled("icebreaker", 30, 30, 30)
    fast = estimate(c, cp.words, PerfParams(read_latency=4)).cycles
    slow = estimate(c, cp.words, PerfParams(read_latency=64)).cycles
    assert slow > fast


def test_tokens_serialize_and_a_missing_push_is_reported():
    """Expected fail: the same two instructions take longer when a token orders them, and a
    pop with no push is reported as the deadlock it would be."""
    c = preset("tiny")
    free = assemble("LOAD dest=sp n_rows=64 length=2 stride=2\n"
                    "MATMUL compute=1 n_rows=64 a_addr=100\nHALT\n")
    ordered = assemble("LOAD dest=sp n_rows=64 length=2 stride=2 push_next\n"
                       "MATMUL compute=1 n_rows=64 a_addr=100 pop_prev\nHALT\n")
    assert estimate(c, ordered).cycles > estimate(c, free).cycles
    with pytest.raises(ValueError, match="DEADLOCK"):
        estimate(c, assemble("MATMUL compute=1 n_rows=4 pop_prev\nHALT\n"))


def test_trace_and_compiled_program_steps():
    c, cp, _ = compiled("tiny", 9, 9, 9)
    trace = []
    r = estimate(c, cp.words, trace=trace)
    assert len(trace) == r.instructions - 1                 # every queued instruction
    assert all(start >= max(disp, tok) and done >= start
               for _, _, disp, tok, start, done in trace)
    assert r.cycles >= round(max(t[5] for t in trace) + PerfParams().halt)
    assert estimate_compiled(cp)[0].cycles == r.cycles
    b = ProgramBuilder(c)
    b.load(LoadDest.SP, 0, 0, 2, 2, 2)
    b.matmul(w_addr=0, compute=False, preload=True)
    words = b.words()
    assert estimate(c, words).macs == 0 and b.entries[-1].instr.opcode is Opcode.HALT


def _decoded(words):
    from systolic.isa import decode
    return [decode(int(w)) for w in words]


def test_gemm_schedule_keeps_banks_apart_and_ends_in_small_chunks():
    """Weights never share a scratchpad bank with the inputs of the same MATMUL, blocks
    alternate accumulator banks, a STORE never reads the bank the next MATMUL accumulates
    into, and the last MATMUL and STORE are one tail chunk."""
    c, cp, _ = compiled("default", 256, 256, 256)
    instrs = _decoded(cp.words)
    mms = [i for i in instrs if i.opcode is Opcode.MATMUL and i.compute]
    assert all(i.w_addr // c.sp_depth != i.a_addr // c.sp_depth for i in mms if i.preload)
    banks = [mms[0].c_addr // c.acc_depth]
    for prev, i in zip(mms, mms[1:], strict=False):
        if i.c_addr != prev.c_addr:                             # a new block
            banks.append(i.c_addr // c.acc_depth)
    assert len(banks) > 60
    assert all(a != b for a, b in zip(banks, banks[1:], strict=False))
    for k, i in enumerate(instrs):
        if i.opcode is Opcode.STORE:
            nxt = next((j for j in instrs[k + 1:] if j.opcode is Opcode.MATMUL and j.compute),
                       None)
            assert nxt is None or nxt.c_addr // c.acc_depth != i.addr // c.acc_depth
    last_store = [i for i in instrs if i.opcode is Opcode.STORE][-1]
    assert mms[-1].n_rows == last_store.n_rows == 32


def test_bank_conflicts_cost_cycles():
    """Weights in the inputs' scratchpad bank cost a tile of rows per MATMUL; a STORE from
    the accumulator bank the array accumulates into waits for it; a broadcast LOAD into the
    accumulator reads its row again for every row."""
    c = preset("default")
    w_other, w_same = 3 * c.sp_depth, 1000

    def mm(w):
        return assemble(f"MATMUL preload=1 w_addr={w}\n" + "".join(
            f"MATMUL compute=1 preload=1 w_addr={w} n_rows=128 accumulate=1\n"
            for _ in range(8)) + "HALT\n")
    assert estimate(c, mm(w_same)).cycles - estimate(c, mm(w_other)).cycles == 8 * c.rows

    def store_during(addr):
        return assemble("MATMUL compute=1 n_rows=512 accumulate=1\n"
                        f"STORE src=acc addr={addr} n_rows=128 length=8 stride=8\nHALT\n")
    same, other = store_during(256), store_during(c.acc_depth + 88)
    assert estimate(c, same).cycles > estimate(c, other).cycles + 128
    one = estimate(c, assemble("LOAD dest=acc n_rows=1 length=8 stride=0\nHALT\n")).cycles
    many = estimate(c, assemble("LOAD dest=acc n_rows=65 length=8 stride=0\nHALT\n")).cycles
    assert many - one == 64 * (4 * c.cols // c.axi_bytes)
