# amaranth: UnusedElaboratable=no
"""Processing elements and the multiplier primitive, in Amaranth's simulator."""

import itertools

import numpy as np
import pytest
from amaranth.hdl import Shape, signed, unsigned
from amaranth.sim import Simulator

from systolic.rtl.multiplier import (
    ECP5Multiplier,
    ICE40Multiplier,
    Multiplier,
    multiplier_factory,
)
from systolic.rtl.pe import OSPE, WSPE


def simulate(dut, testbench, clock=True):
    sim = Simulator(dut)
    if clock:
        sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def values(shape):
    shape = Shape.cast(shape)
    if shape.signed:
        return range(-(1 << (shape.width - 1)), 1 << (shape.width - 1))
    return range(1 << shape.width)


@pytest.mark.parametrize("a_shape,b_shape", [
    (signed(4), signed(4)), (unsigned(4), signed(3)), (signed(3), unsigned(4)),
    (unsigned(4), unsigned(4)), (signed(1), signed(1)), (unsigned(1), signed(1)),
])
def test_multiplier_exhaustive(a_shape, b_shape):
    dut = Multiplier(a_shape, b_shape)
    assert dut.p.shape() == Shape(Shape.cast(a_shape).width + Shape.cast(b_shape).width,
                                  signed=Shape.cast(a_shape).signed or
                                  Shape.cast(b_shape).signed)

    async def testbench(ctx):
        for a, b in itertools.product(values(a_shape), values(b_shape)):
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            assert ctx.get(dut.p) == a * b, (a, b)
    simulate(dut, testbench, clock=False)


def test_multiplier_8bit_corners():
    for a_shape, b_shape in itertools.product([signed(8), unsigned(8)], repeat=2):
        dut = Multiplier(a_shape, b_shape)
        pairs = list(itertools.product([min(values(a_shape)), max(values(a_shape)), 0, 1],
                                       [min(values(b_shape)), max(values(b_shape)), 0, -1
                                        if Shape.cast(b_shape).signed else 1]))

        async def testbench(ctx, dut=dut, pairs=pairs):
            for a, b in pairs:
                ctx.set(dut.a, a)
                ctx.set(dut.b, b)
                assert ctx.get(dut.p) == a * b, (a, b)
        simulate(dut, testbench, clock=False)


def test_multiplier_factory():
    assert multiplier_factory() is Multiplier
    assert multiplier_factory("ice40") is ICE40Multiplier
    assert multiplier_factory("ecp5") is ECP5Multiplier
    assert ICE40Multiplier(signed(8), signed(8)).kind == "ice40"
    assert Multiplier.latency == 0

    def custom(a, b):
        return Multiplier(a, b)
    assert multiplier_factory(custom) is custom
    with pytest.raises(ValueError, match=r"^multiplier kind must be one of generic, ice40, "
                                         r"ecp5 or a callable, not 'xilinx'$"):
        multiplier_factory("xilinx")
    with pytest.raises(ValueError, match=r"^Multiplier a_shape must be at least 1 bit wide, "
                                         r"not 0$"):
        Multiplier(0, 8)
    with pytest.raises(TypeError, match=r"^Multiplier b_shape must be a shape, not 'x'$"):
        Multiplier(8, "x")


def test_pe_arguments():
    with pytest.raises(ValueError, match=r"^WSPE w_shape must be 1..8 bits wide, not 9$"):
        WSPE(signed(8), signed(9))
    with pytest.raises(TypeError, match=r"^OSPE a_shape must be a shape, not None$"):
        OSPE(None, signed(8))


@pytest.mark.parametrize("a_shape,w_shape", [(signed(8), signed(8)), (unsigned(8), signed(8)),
                                             (signed(8), unsigned(8))])
def test_ws_pe_shadow_and_swap(a_shape, w_shape):
    """The shadow weight is invisible until a swap; the swap acts at the end of its cycle;
    a preload in the swap cycle lands in the shadow for the next swap."""
    dut = WSPE(a_shape, w_shape)
    rng = np.random.default_rng(0)
    lo_a, hi_a = min(values(a_shape)), max(values(a_shape))
    lo_w, hi_w = min(values(w_shape)), max(values(w_shape))

    async def testbench(ctx):
        active = 0
        shadow = 0
        for _ in range(300):
            a = int(rng.choice([lo_a, hi_a, rng.integers(lo_a, hi_a + 1)]))
            psum = int(rng.integers(-(1 << 31), 1 << 31))
            load, swap = bool(rng.random() < 0.4), bool(rng.random() < 0.3)
            w = int(rng.choice([lo_w, hi_w, rng.integers(lo_w, hi_w + 1)]))
            ctx.set(dut.a, a)
            ctx.set(dut.psum_in, psum)
            ctx.set(dut.w_load, load)
            ctx.set(dut.w_data, w)
            ctx.set(dut.swap, swap)
            expected = (psum + a * active + (1 << 31)) % (1 << 32) - (1 << 31)
            assert ctx.get(dut.psum_out) == expected
            assert ctx.get(dut.weight) == active
            await ctx.tick()
            if swap:
                active = shadow
            if load:
                shadow = w
    simulate(dut, testbench)


@pytest.mark.parametrize("a_shape,b_shape", [(signed(8), signed(8)), (unsigned(8), signed(8)),
                                             (unsigned(8), unsigned(8))])
def test_os_pe_accumulates_and_drains(a_shape, b_shape):
    """The accumulator sums the products of valid steps; a flush moves the finished sum
    into the drain register and restarts with the flush step's own product; otherwise the
    drain register passes ``drain_in`` on."""
    dut = OSPE(a_shape, b_shape)
    rng = np.random.default_rng(1)

    async def testbench(ctx):
        acc = 0
        drain = 0
        for _ in range(400):
            a = int(rng.choice([min(values(a_shape)), max(values(a_shape))]))
            b = int(rng.choice([min(values(b_shape)), max(values(b_shape))]))
            valid, flush = bool(rng.random() < 0.8), bool(rng.random() < 0.1)
            drain_in = int(rng.integers(-(1 << 31), 1 << 31))
            for sig, v in ((dut.a, a), (dut.b, b), (dut.valid, valid), (dut.flush, flush),
                           (dut.drain_in, drain_in)):
                ctx.set(sig, v)
            assert ctx.get(dut.acc) == acc
            assert ctx.get(dut.drain_out) == drain
            await ctx.tick()
            drain = acc if flush else drain_in
            acc = (0 if flush else acc) + (a * b if valid else 0)
            acc = (acc + (1 << 31)) % (1 << 32) - (1 << 31)
    simulate(dut, testbench)
