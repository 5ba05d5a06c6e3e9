# amaranth: UnusedElaboratable=no
"""Post-processing in Amaranth's simulator against systolic.numerics, bit for bit."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from systolic.config import AcceleratorConfig
from systolic.numerics import (
    INT32_MAX,
    INT32_MIN,
    Activation,
    OutType,
    activation_bounds,
    requantize,
    round_shift,
)
from systolic.rtl.postproc import LATENCY, PostProcessor

EDGE_ACC = [INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX]


def make_config(cols=4, lanes=None, requant_bits=32):
    return AcceleratorConfig(rows=2, cols=cols, sp_depth=16, acc_depth=8, param_rows=6,
                             postproc_lanes=lanes, requant_bits=requant_bits)


# -- reference ------------------------------------------------------------------------------

def expected_bytes(cfg, row, s, params):
    """The bytes a STORE writes for one accumulator row, from systolic.numerics."""
    acc = np.asarray(row[: s["length"]], dtype=np.int64)
    out_type = OutType(s["out_type"])
    if out_type is OutType.INT32:
        return acc.astype("<i4").tobytes()
    if s["per_channel"]:
        mult = params[s["param_addr"]][: s["length"]] & ((1 << (cfg.requant_bits - 1)) - 1)
        shift = params[s["param_addr"] + 1][: s["length"]] & 63
    else:
        mult, shift = s["multiplier"], s["shift"]
    lo, hi = activation_bounds(out_type, s["activation"], s["zero_point"],
                               s["clamp_lo"], s["clamp_hi"])
    out = requantize(acc, mult, shift, s["zero_point"], lo, hi)
    return (out & 0xFF).astype(np.uint8).tobytes()


def check_rows(expected, got):
    """Scoreboard: every row's bytes, in order; raises AssertionError naming the first
    difference."""
    assert len(got) == len(expected), f"{len(got)} rows out, {len(expected)} expected"
    for n, (want, have) in enumerate(zip(expected, got, strict=True)):
        if want != have:
            diff = next((i for i, (a, b) in enumerate(zip(want, have, strict=False)) if a != b),
                        min(len(want), len(have)))
            raise AssertionError(f"row {n}: byte {diff} differs: expected {want.hex()}, "
                                 f"got {have.hex()}")


# -- stimulus -------------------------------------------------------------------------------

def random_settings(rng, cfg, edge=False):
    mmax = (1 << (cfg.requant_bits - 1)) - 1
    mult = int(rng.choice([0, 1, mmax, mmax - 1])) if edge else int(rng.integers(0, mmax + 1))
    shift = int(rng.choice([0, 1, 62, 63])) if edge else int(rng.integers(0, 64))
    lo, hi = sorted(int(x) for x in rng.integers(-300, 300, size=2))
    if rng.random() < 0.1:
        lo, hi = hi, lo                                  # empty clamp range: gives lo
    return {
        "out_type": int(rng.integers(0, 3)),
        "activation": int(rng.integers(0, 3)),
        "per_channel": int(rng.random() < 0.4),
        "param_addr": int(rng.integers(0, cfg.param_rows - 1)),
        "multiplier": mult,
        "shift": shift,
        "zero_point": int(rng.choice([0, int(rng.integers(-140, 270)), INT32_MIN, INT32_MAX]
                                     if edge else [0, int(rng.integers(-140, 270))])),
        "clamp_lo": lo,
        "clamp_hi": hi,
        "length": int(rng.integers(1, cfg.cols + 1)) if rng.random() < 0.3 else cfg.cols,
    }


def random_rows(rng, cfg, n, edge_fraction=0.3):
    rows = []
    for _ in range(n):
        edge = rng.random() < edge_fraction
        if edge:
            row = rng.choice(EDGE_ACC, size=cfg.cols)
        else:
            bits = int(rng.choice([8, 16, 24, 32]))
            row = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=cfg.cols)
        rows.append(([int(x) for x in row], random_settings(rng, cfg, edge)))
    return rows


def random_params(rng, cfg):
    params = rng.integers(0, 1 << 32, size=(cfg.param_rows, cfg.cols), dtype=np.uint64)
    params[0, :] = (1 << (cfg.requant_bits - 1)) - 1       # maximum multiplier
    params[1, :] = 63                                       # maximum shift
    params[2, 0] = 0                                        # zero multiplier
    return params.astype(np.int64)


# -- simulation -----------------------------------------------------------------------------

def run_postproc(cfg, items, params, *, seed=0, in_gaps=0.3, out_stalls=0.3):
    """Drive ``items`` (row, settings) through a PostProcessor with random input gaps and
    output back-pressure; return the bytes of each output row and the measured cycles."""
    dut = PostProcessor(config=cfg)
    rng = np.random.default_rng(seed)
    rows_out = []
    result = {}

    async def producer(ctx):
        for addr, words in enumerate(params):
            ctx.set(dut.param_w.en, 1)
            ctx.set(dut.param_w.addr, addr)
            ctx.set(dut.param_w.data, [int(w) & 0xFFFF_FFFF for w in words])
            await ctx.tick()
        ctx.set(dut.param_w.en, 0)
        for row, s in items:
            # The serial engine takes one element (and its column) per transfer.
            inputs = ([{"elem": v, "index": k} for k, v in enumerate(row[:s["length"]])]
                      if dut.serial else [{"row": row}])
            for inp in inputs:
                while rng.random() < in_gaps:
                    await ctx.tick()
                ctx.set(dut.i.payload, {**inp, "settings": s})
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
                ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        current = b""
        cycles = 0
        beats = 0                       # of the current row
        while len(rows_out) < len(items):
            ready = rng.random() >= out_stalls
            ctx.set(dut.o.ready, ready)
            _, _, valid, beat = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            cycles += 1
            budget = (40 + 2 * cfg.cols * dut.beat_cycles) * len(items) + 100
            assert cycles < budget, "post-processing stopped producing"
            if valid and ready:
                nbytes = beat.nbytes
                current += int(beat.data).to_bytes(4 * cfg.lanes, "little")[:nbytes]
                beats += 1
                # A serial beat is the last of its element; the row ends with its length.
                if dut.serial and beats < items[len(rows_out)][1]["length"]:
                    assert beat.last
                elif beat.last:
                    rows_out.append(current)
                    current = b""
                    beats = 0
        result["cycles"] = cycles

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return rows_out, result["cycles"]


def check_config_run(cfg, n_rows, seed):
    rng = np.random.default_rng(seed)
    params = random_params(rng, cfg)
    items = random_rows(rng, cfg, n_rows)
    got, _ = run_postproc(cfg, items, params, seed=seed)
    check_rows([expected_bytes(cfg, r, s, params) for r, s in items], got)


@pytest.mark.parametrize("cols,lanes,requant_bits", [
    (4, 1, 32), (4, 4, 32), (4, 1, 16), (4, 4, 16), (4, 2, 32), (8, None, 16),
])
def test_random_rows_match_numerics(cols, lanes, requant_bits):
    cfg = make_config(cols, lanes, requant_bits)
    check_config_run(cfg, 400, seed=cols * 100 + (lanes or 0) * 10 + requant_bits)


def edge_items(cfg):
    """Hand-picked corners: most negative accumulator, shift 63, zero and maximum M,
    saturation both ways, every activation and out type, per tensor and per channel."""
    mmax = (1 << (cfg.requant_bits - 1)) - 1
    base = {"out_type": OutType.INT8, "activation": Activation.NONE, "per_channel": 0,
            "param_addr": 0, "multiplier": 1, "shift": 0, "zero_point": 0,
            "clamp_lo": -5, "clamp_hi": 5, "length": cfg.cols}
    row_min = [INT32_MIN] * cfg.cols
    row_max = [INT32_MAX] * cfg.cols
    row_mix = ([INT32_MIN, INT32_MAX, -1, 1] * cfg.cols)[: cfg.cols]
    cases = []
    for out_type in OutType:
        for act in Activation:
            for row in (row_min, row_max, row_mix):
                for mult, shift in ((mmax, 63), (mmax, 0), (0, 0), (0, 63), (mmax, 31),
                                    (1 << (cfg.requant_bits - 2), cfg.requant_bits - 1)):
                    for zp in (0, -100, 100):
                        cases.append((row, {**base, "out_type": int(out_type),
                                            "activation": int(act), "multiplier": mult,
                                            "shift": shift, "zero_point": zp}))
    for pc_addr in (0, 2):  # parameter rows: (max M, shift 63) and (random, random)
        for row in (row_min, row_max, row_mix):
            cases.append((row, {**base, "per_channel": 1, "param_addr": pc_addr}))
    return cases


@pytest.mark.parametrize("lanes,requant_bits", [(1, 32), (4, 16), (1, 16)])
def test_edge_values_match_numerics(lanes, requant_bits):
    cfg = make_config(4, lanes, requant_bits)
    rng = np.random.default_rng(7)
    params = random_params(rng, cfg)
    items = edge_items(cfg)
    got, _ = run_postproc(cfg, items, params, seed=3, in_gaps=0.0, out_stalls=0.2)
    expected = [expected_bytes(cfg, r, s, params) for r, s in items]
    check_rows(expected, got)
    # The corners really were exercised: both saturation directions appear.
    int8_rows = [e for e, (_, s) in zip(expected, items, strict=True) if s["out_type"] == 0]
    assert any(b"\x7f" in e for e in int8_rows) and any(b"\x80" in e for e in int8_rows)


def test_scoreboard_catches_one_corrupted_byte():
    cfg = make_config(4, 2, 32)
    rng = np.random.default_rng(11)
    params = random_params(rng, cfg)
    items = random_rows(rng, cfg, 12)
    got, _ = run_postproc(cfg, items, params, seed=11)
    expected = [expected_bytes(cfg, r, s, params) for r, s in items]
    check_rows(expected, got)
    corrupt = list(expected)
    row = bytearray(corrupt[5])
    row[0] ^= 0x01
    corrupt[5] = bytes(row)
    with pytest.raises(AssertionError, match="row 5: byte 0 differs"):
        check_rows(corrupt, got)


def test_full_rate_without_back_pressure():
    cfg = make_config(4, 1, 32)
    rng = np.random.default_rng(5)
    params = random_params(rng, cfg)
    items = [(row, {**s, "length": cfg.cols}) for row, s in random_rows(rng, cfg, 40)]
    got, cycles = run_postproc(cfg, items, params, in_gaps=0.0, out_stalls=0.0)
    check_rows([expected_bytes(cfg, r, s, params) for r, s in items], got)
    beats = len(items) * cfg.cols // cfg.lanes
    print(f"postproc lanes={cfg.lanes}: {beats} beats in {cycles} cycles "
          f"(pipeline latency {LATENCY})")
    # One beat per cycle once the pipeline is full, plus the parameter loading.
    assert cycles <= beats + LATENCY + cfg.param_rows + 2


def test_serial_engine_rate_for_one_lane_and_16_bit_m():
    """One lane with a 16-bit M (the icebreaker shape) requantizes each element with the
    shift-and-add engine: ``serial_cycles(s)`` cycles per element, still bit-exact."""
    cfg = make_config(4, 1, 16)
    dut = PostProcessor(config=cfg)
    assert (dut.beat_cycles, dut.latency) == PostProcessor.serial_cycles(63) == (99, 98)
    rng = np.random.default_rng(6)
    params = random_params(rng, cfg)
    for shift in (15, 24, 0, 63):
        items = [(row, {**s, "length": cfg.cols, "out_type": OutType.INT8,
                        "per_channel": 0, "shift": shift})
                 for row, s in random_rows(rng, cfg, 10)]
        got, cycles = run_postproc(cfg, items, params, in_gaps=0.0, out_stalls=0.0)
        check_rows([expected_bytes(cfg, r, s, params) for r, s in items], got)
        beats = len(items) * cfg.cols
        beat_cycles, latency = PostProcessor.serial_cycles(shift)
        print(f"postproc lanes=1, 16-bit M, shift {shift}: {beats} beats in {cycles} "
              f"cycles ({beat_cycles} per beat, latency {latency})")
        assert cycles <= beats * beat_cycles + cfg.param_rows + 2
    # An INT32 element passes through the engine in one step.
    items = [(row, {**s, "length": cfg.cols, "out_type": OutType.INT32})
             for row, s in random_rows(rng, cfg, 10)]
    got, cycles = run_postproc(cfg, items, params, in_gaps=0.0, out_stalls=0.0)
    check_rows([expected_bytes(cfg, r, s, params) for r, s in items], got)
    assert PostProcessor.serial_cycles(0, raw=True) == (4, 3)
    assert cycles <= len(items) * cfg.cols * 4 + cfg.param_rows + 2


def serial_edge_items(cfg):
    """Corners of the serial engine: every shift 0..63 with the maximum M on the
    extreme and saturating accumulators, both zero-point extremes, per tensor and per
    channel (parameter rows 0 and 1 hold the maximum M and the shift 63)."""
    mmax = (1 << (cfg.requant_bits - 1)) - 1
    rows = ([INT32_MIN, INT32_MAX, -1, 1], [INT32_MIN + 1, -(1 << 16), (1 << 16) - 1, 0],
            [-(1 << 30), 1 << 30, -12345678, 7654321])
    base = {"out_type": OutType.INT8, "activation": Activation.NONE, "per_channel": 0,
            "param_addr": 0, "multiplier": mmax, "shift": 0, "zero_point": 0,
            "clamp_lo": -5, "clamp_hi": 5, "length": cfg.cols}
    cases = []
    for shift in range(64):
        for row in rows:
            for zp, mult in ((0, mmax), (INT32_MIN, mmax), (-3, 12345)):
                cases.append((list(row[: cfg.cols]),
                              {**base, "shift": shift, "zero_point": zp, "multiplier": mult,
                               "out_type": shift % 2}))          # INT8 and UINT8
    for act in Activation:
        for row in rows:
            cases.append((row[: cfg.cols], {**base, "per_channel": 1, "activation": act}))
            cases.append((row[: cfg.cols], {**base, "per_channel": 1, "param_addr": 2,
                                            "activation": act, "zero_point": -100}))
    return cases


def test_serial_engine_edge_values_match_numerics():
    cfg = make_config(4, 1, 16)
    rng = np.random.default_rng(8)
    params = random_params(rng, cfg)
    params[3, :] = [0, 15, 46, 47]                     # shifts of the rows-2 multipliers
    items = serial_edge_items(cfg)
    got, _ = run_postproc(cfg, items, params, seed=4, in_gaps=0.1, out_stalls=0.2)
    expected = [expected_bytes(cfg, r, s, params) for r, s in items]
    check_rows(expected, got)
    # Both saturation directions and in-range values were exercised.
    int8 = b"".join(e for e, (_, s) in zip(expected, items, strict=True)
                    if s["out_type"] == OutType.INT8)
    assert b"\x7f" in int8 and b"\x80" in int8 and len(set(int8)) > 30


@pytest.mark.fpga
def test_serial_engine_uses_no_hardware_multiplier(tmp_path):
    """Synthesized for iCE40 with DSP inference on, the icebreaker post-processor has no
    SB_MAC16; the cell counts are printed."""
    import os
    import re
    import subprocess

    from amaranth.back import rtlil

    from systolic.config import preset

    dut = PostProcessor(config=preset("icebreaker"))
    (tmp_path / "pp.il").write_text(rtlil.convert(dut, name="pp", emit_src=False))
    result = subprocess.run(
        [os.environ["YOSYS"], "-q", "-p",
         "read_rtlil pp.il; synth_ice40 -dsp -top pp; tee -o stat.txt stat"],
        cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    cells = {name: int(n) for n, name in
             re.findall(r"(\d+)\s+(SB_\w+)", (tmp_path / "stat.txt").read_text())}
    print(f"icebreaker post-processor: {cells}")
    assert cells.get("SB_LUT4", 0) > 0
    assert cells.get("SB_MAC16", 0) == 0


@settings(max_examples=200, deadline=None)
@given(x=st.integers(-(1 << 62), (1 << 62) - 1), s=st.integers(0, 63))
def test_hardware_rounding_form_equals_numerics(x, s):
    """The RTL computes ((x >> (s-1)) + 1) >> 1; it must equal numerics.round_shift."""
    hw = x if s == 0 else ((x >> (s - 1)) + 1) >> 1
    assert hw == round_shift(x, s)


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lanes=st.sampled_from([1, 2, 4]),
       requant_bits=st.sampled_from([16, 32]))
def test_hypothesis_batches(seed, lanes, requant_bits):
    check_config_run(make_config(4, lanes, requant_bits), 30, seed)


def test_constructor_rejects_a_non_config():
    with pytest.raises(TypeError, match="PostProcessor config must be an AcceleratorConfig"):
        PostProcessor(config={"cols": 4})
