"""Test bench of the systolic array: stimulus, NumPy reference, scoreboard, cocotb tests.

The first half is plain Python (no simulator): schedules of cycles that drive the array,
with the rows it must answer, and an in-order scoreboard. The Amaranth-simulator tests in
``tests/test_array.py`` use the same schedules. The second half runs them on the Verilog
under Verilator; ``tests/test_array.py`` starts it through ``cocotb_tools.runner`` with
the configuration in the environment (``ARRAY_CONFIG``, JSON; ``ARRAY_TAG_BITS``).
"""

import json
import os
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from amaranth.hdl import Const

from systolic.config import AcceleratorConfig
from systolic.rtl.array import array_latency, payload_layouts

# -- reference model and stimulus ---------------------------------------------------------


def element_values(rng, shape, bits, signed, mode="random"):
    """Elements of ``bits`` bits: ``random`` over the full range, ``extreme`` (only the two
    end points), ``min`` or ``max``."""
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if mode == "random":
        return rng.integers(lo, hi + 1, size=shape, dtype=np.int64)
    if mode == "extreme":
        return rng.choice(np.array([lo, hi], dtype=np.int64), size=shape)
    return np.full(shape, lo if mode == "min" else hi, dtype=np.int64)


def to_bytes(rng, values, bits):
    """Bytes carrying ``values`` in their low ``bits``; the high bits are random junk that
    the array must ignore."""
    low = np.asarray(values, dtype=np.int64) & ((1 << bits) - 1)
    junk = rng.integers(0, 256, size=low.shape, dtype=np.int64) & ~((1 << bits) - 1) & 0xFF
    return [int(v) for v in np.ravel(low | junk)]


def wrap32(values):
    """Two's complement wrap to int32, as the 32-bit accumulators do."""
    v = np.asarray(values, dtype=np.int64) & 0xFFFFFFFF
    return np.where(v >= 1 << 31, v - (1 << 32), v)


@dataclass
class Expected:
    """One output row the array owes: its sums, tag, PE row (OS) and the cycle it is due
    relative to the array latency (``due + latency``)."""
    data: np.ndarray
    tag: int
    due: int
    row: int = 0


@dataclass
class Schedule:
    """What to drive in each cycle (dicts of payload fields, ``None``: idle) and the rows
    the array must answer, in order."""
    inp: list = field(default_factory=list)
    weight: list = field(default_factory=list)
    expected: list = field(default_factory=list)
    macs: int = 0

    def at(self, cycle):
        while len(self.inp) <= cycle:
            self.inp.append(None)
            self.weight.append(None)
        return cycle

    @property
    def cycles(self):
        return len(self.inp)


def ws_schedule(config, rng, *, tiles=3, tile_rows=None, bubbles=0.0, weight_gaps=0.0,
                mode="random", tag_bits=0):
    """Weight-stationary traffic: ``tiles`` weight tiles, each preloaded while the previous
    one streams (rows in random order), then ``tile_rows`` input rows (default: random,
    at least ``config.rows``) with a swap on the first, and random bubbles in between."""
    c = config
    s = Schedule()
    w_start = 0        # first cycle the next tile's weights may be pushed
    cursor = 0         # next free input cycle
    tag = 0
    for _ in range(tiles):
        W = element_values(rng, (c.rows, c.cols), c.weight_bits, c.weight_signed, mode)
        n = tile_rows or int(rng.integers(c.rows, 2 * c.rows + 3))
        X = element_values(rng, (n, c.rows), c.input_bits, c.input_signed, mode)
        t = w_start
        for k in rng.permutation(c.rows):
            while rng.random() < weight_gaps:
                t += 1
            s.weight[s.at(t)] = {"row": int(k), "data": to_bytes(rng, W[k], c.weight_bits)}
            t += 1
        t = max(cursor, t)
        swap_on_bubble = bubbles > 0 and rng.random() < 0.3
        if swap_on_bubble:
            s.inp[s.at(t)] = {"valid": 0, "swap": 1, "tag": 0, "data": to_bytes(rng, X[0], 8)}
            w_start, t = t, t + 1
        Y = wrap32(X @ W)
        for i in range(n):
            while rng.random() < bubbles:
                s.inp[s.at(t)] = {"valid": 0, "swap": 0, "tag": int(rng.integers(0, 256)),
                                  "data": to_bytes(rng, X[i], 0)}
                t += 1
            first = i == 0 and not swap_on_bubble
            s.inp[s.at(t)] = {"valid": 1, "swap": int(first), "tag": tag,
                              "data": to_bytes(rng, X[i], c.input_bits)}
            s.expected.append(Expected(Y[i], tag, due=t))
            s.macs += c.rows * c.cols
            tag = (tag + 1) % (1 << tag_bits)
            if first:
                w_start = t
            t += 1
        cursor = t
    return s


def os_schedule(config, rng, *, tiles=3, steps=None, bubbles=0.0, mode="random",
                tag_bits=0):
    """Output-stationary traffic: ``tiles`` products ``A @ B`` with A of shape
    (rows, K) and K random (at least ``config.rows``) or ``steps``; a flush on the first
    step of the next tile (the last tile ends with a flush on a bubble)."""
    c = config
    s = Schedule()
    t = 0
    pending = None     # (sums, tag) of the tile the next flush ends
    tag = 1 % (1 << tag_bits)

    def flush_pending(at):
        sums, ptag = pending
        for j, row in enumerate(range(c.rows - 1, -1, -1)):
            s.expected.append(Expected(sums[row], ptag, due=at + j, row=row))

    for _ in range(tiles):
        k = steps or int(rng.integers(c.rows, 2 * c.rows + 3))
        A = element_values(rng, (c.rows, k), c.input_bits, c.input_signed, mode)
        B = element_values(rng, (k, c.cols), c.weight_bits, c.weight_signed, mode)
        for j in range(k):
            while j and rng.random() < bubbles:
                s.inp[s.at(t)] = {"valid": 0, "flush": 0, "tag": 0,
                                  "data": to_bytes(rng, A[:, j], 0),
                                  "weight": to_bytes(rng, B[j], 0)}
                t += 1
            flush = j == 0 and pending is not None
            s.inp[s.at(t)] = {"valid": 1, "flush": int(flush), "tag": pending[1] if flush else 0,
                              "data": to_bytes(rng, A[:, j], c.input_bits),
                              "weight": to_bytes(rng, B[j], c.weight_bits)}
            if flush:
                flush_pending(t)
            s.macs += c.rows * c.cols
            t += 1
        pending = (wrap32(A @ B), tag)
        tag = (tag + 1) % (1 << tag_bits)
    s.inp[s.at(t)] = {"valid": 0, "flush": 1, "tag": pending[1],
                      "data": [0] * c.rows, "weight": [0] * c.cols}
    flush_pending(t)
    return s


class Scoreboard:
    """In-order checker of output rows against :class:`Expected` rows.

    Parameters
    ----------
    expected : iterable of Expected
    latency : int or None
        If given, each row must arrive exactly at ``due + latency``.
    """

    def __init__(self, expected, latency=None):
        self.pending = deque(expected)
        self.latency = latency
        self.matched = 0

    def check(self, cycle, data, tag, row=0):
        """Compare one output row; raise :class:`AssertionError` on any difference."""
        assert self.pending, f"unexpected output row at cycle {cycle}: {list(data)}"
        exp = self.pending.popleft()
        where = f"output row {self.matched} (cycle {cycle})"
        got = np.asarray(list(data), dtype=np.int64)
        bad = np.flatnonzero(got != exp.data)
        assert bad.size == 0, (f"{where}: column {bad[0]} is {got[bad[0]]}, "
                               f"expected {exp.data[bad[0]]}; row {got} vs {exp.data}")
        assert tag == exp.tag, f"{where}: tag {tag}, expected {exp.tag}"
        assert row == exp.row, f"{where}: PE row {row}, expected {exp.row}"
        if self.latency is not None:
            assert cycle == exp.due + self.latency, (
                f"{where}: arrived at cycle {cycle}, expected {exp.due + self.latency}")
        self.matched += 1

    def finish(self):
        assert not self.pending, f"{len(self.pending)} output rows never arrived"


def schedule_for(config, rng, *, tag_bits, **kwargs):
    make = ws_schedule if config.dataflow == "ws" else os_schedule
    return make(config, rng, tag_bits=tag_bits, **kwargs)


# -- cocotb ------------------------------------------------------------------------------

try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, FallingEdge
except ImportError:  # pragma: no cover - cocotb is a pinned dependency
    cocotb = None


class TB:
    """Clock, reset, and a cycle loop that drives a :class:`Schedule` and checks outputs."""

    def __init__(self, dut):
        self.dut = dut
        self.config = AcceleratorConfig(**json.loads(os.environ["ARRAY_CONFIG"]))
        self.tag_bits = int(os.environ.get("ARRAY_TAG_BITS", "0"))
        self.latency = array_latency(self.config)
        self.layouts = payload_layouts(self.config, self.tag_bits)
        for name, layout in self.layouts.items():
            port = getattr(dut, f"{name}__payload")
            assert len(port) == layout.size, (f"{name} payload is {len(port)} bits, "
                                              f"expected {layout.size}")

    def pack(self, name, fields):
        return Const.cast(self.layouts[name].const(fields)).value

    async def reset(self):
        cocotb.start_soon(Clock(self.dut.clk, 10, unit="ns").start())
        self.dut.rst.value = 1
        self.dut.inp__valid.value = 0
        if self.config.dataflow == "ws":
            self.dut.weight__valid.value = 0
        await ClockCycles(self.dut.clk, 3)
        self.dut.rst.value = 0

    async def run(self, schedule, scoreboard, tail=None):
        """Drive ``schedule`` (one step per cycle) and feed every output row to the
        scoreboard. Returns the cycles in which ``out.valid`` was high."""
        dut, ws = self.dut, self.config.dataflow == "ws"
        tail = self.latency + self.config.rows + 4 if tail is None else tail
        busy = []
        for cycle in range(schedule.cycles + tail):
            await FallingEdge(dut.clk)
            if int(dut.out__valid.value):
                out = self.layouts["out"].from_bits(int(dut.out__payload.value))
                busy.append(cycle)
                scoreboard.check(cycle, list(out.data), int(out.tag),
                                 0 if ws else int(out.row))
            step = schedule.inp[cycle] if cycle < schedule.cycles else None
            dut.inp__valid.value = step["valid"] if step else 0
            if step:
                dut.inp__payload.value = self.pack("inp", {k: v for k, v in step.items()
                                                           if k != "valid"})
            else:
                dut.inp__payload.value = 0
            if ws:
                w = schedule.weight[cycle] if cycle < schedule.cycles else None
                dut.weight__valid.value = int(w is not None)
                if w:
                    dut.weight__payload.value = self.pack("weight", w)
        return busy


if cocotb is not None:

    @cocotb.test()
    async def random_traffic(dut):
        """Random matrices, random bubbles (and weight gaps) against NumPy."""
        tb = TB(dut)
        await tb.reset()
        rng = np.random.default_rng(cocotb.RANDOM_SEED)
        for mode in ("random", "extreme", "min", "max"):
            kwargs = {"weight_gaps": 0.2} if tb.config.dataflow == "ws" else {}
            sched = schedule_for(tb.config, rng, tag_bits=tb.tag_bits, tiles=8,
                                 bubbles=0.3, mode=mode, **kwargs)
            sb = Scoreboard(sched.expected, latency=tb.latency)
            await tb.run(sched, sb)
            sb.finish()
            dut._log.info("%s: %d rows matched", mode, sb.matched)

    @cocotb.test()
    async def back_to_back(dut):
        """Tiles of minimal length with the next weights preloaded (WS) or flushes exactly
        ``rows`` steps apart (OS): no idle cycle between tiles."""
        tb = TB(dut)
        await tb.reset()
        rng = np.random.default_rng(cocotb.RANDOM_SEED + 1)
        c = tb.config
        tiles = 6
        if c.dataflow == "ws":
            sched = ws_schedule(c, rng, tiles=tiles, tile_rows=c.rows, tag_bits=tb.tag_bits)
        else:
            sched = os_schedule(c, rng, tiles=tiles, steps=c.rows, tag_bits=tb.tag_bits)
        sb = Scoreboard(sched.expected, latency=tb.latency)
        busy = await tb.run(sched, sb)
        sb.finish()
        span = busy[-1] - busy[0] + 1
        idle = span - len(busy)
        first_in = next(i for i, s in enumerate(sched.inp) if s and s["valid"])
        in_span = max(i for i, s in enumerate(sched.inp) if s and s["valid"]) - first_in + 1
        dut._log.info("back-to-back: %d tiles, %d MACs in %d input cycles = %.2f MACs/cycle "
                      "(peak %d); %d idle output cycles in a span of %d",
                      tiles, sched.macs, in_span, sched.macs / in_span, c.rows * c.cols,
                      idle, span)
        assert idle == 0, f"{idle} idle cycles between tiles"
        assert sched.macs == in_span * c.rows * c.cols, "inputs were not back to back"

    @cocotb.test()
    async def scoreboard_catches_corruption(dut):
        """Expected fail: one corrupted expected value must be reported."""
        tb = TB(dut)
        await tb.reset()
        rng = np.random.default_rng(cocotb.RANDOM_SEED + 2)
        sched = schedule_for(tb.config, rng, tag_bits=tb.tag_bits, tiles=1)
        victim = sched.expected[len(sched.expected) // 2]
        victim.data = victim.data.copy()
        victim.data[-1] += 1
        sb = Scoreboard(sched.expected, latency=tb.latency)
        try:
            await tb.run(sched, sb)
        except AssertionError as err:
            assert "column" in str(err), err
            dut._log.info("scoreboard caught it: %s", err)
        else:
            raise AssertionError("the scoreboard missed a corrupted value")
