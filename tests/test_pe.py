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
    SBMac16Dual,
    is_ice40,
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


@pytest.mark.parametrize("a_shape,w_shape", [(signed(8), signed(8)), (unsigned(4), signed(6))])
def test_ws_pe_without_shadow_loads_active(a_shape, w_shape):
    """Without a shadow register ``w_load`` writes the active weight at the end of its
    cycle and ``swap`` changes nothing."""
    dut = WSPE(a_shape, w_shape, shadow=False)
    rng = np.random.default_rng(1)
    lo_w, hi_w = min(values(w_shape)), max(values(w_shape))

    async def testbench(ctx):
        active = 0
        for _ in range(200):
            a = int(rng.choice(values(a_shape)))
            load = bool(rng.random() < 0.4)
            w = int(rng.choice([lo_w, hi_w, rng.integers(lo_w, hi_w + 1)]))
            ctx.set(dut.a, a)
            ctx.set(dut.psum_in, 7)
            ctx.set(dut.w_load, load)
            ctx.set(dut.w_data, w)
            ctx.set(dut.swap, bool(rng.random() < 0.5))
            assert ctx.get(dut.psum_out) == 7 + a * active
            assert ctx.get(dut.weight) == active
            await ctx.tick()
            if load:
                active = w
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


# -- the iCE40 SB_MAC16 in dual 8x8 mode -----------------------------------------------------


def _mac_operands(a_signed, b_signed, rng, count):
    """Byte pairs for both halves: every corner, then random ones."""
    def byte_values(is_signed):
        return [-128, -1, 0, 1, 127] if is_signed else [0, 1, 127, 128, 255]
    corners = list(itertools.product(byte_values(a_signed), byte_values(b_signed)))
    lo_a = -128 if a_signed else 0
    lo_b = -128 if b_signed else 0
    rand = [(int(x), int(y)) for x, y in zip(rng.integers(lo_a, lo_a + 256, count),
                                              rng.integers(lo_b, lo_b + 256, count), strict=True)]
    return corners + rand


@pytest.mark.parametrize("a_signed,b_signed", list(itertools.product([True, False], repeat=2)))
def test_sbmac16_dual_model_matches_product(a_signed, b_signed):
    """The behavioral model gives both 8x8 products exactly (as 16-bit two's complement)."""
    dut = SBMac16Dual(a_signed=a_signed, b_signed=b_signed)
    rng = np.random.default_rng(int(a_signed) * 2 + int(b_signed))
    lows = _mac_operands(a_signed, b_signed, rng, 400)
    highs = lows[::-1]

    async def testbench(ctx):
        for (a0, b0), (a1, b1) in zip(lows, highs, strict=True):
            ctx.set(dut.a, (a0 & 0xFF) | (a1 & 0xFF) << 8)
            ctx.set(dut.b, (b0 & 0xFF) | (b1 & 0xFF) << 8)
            o = ctx.get(dut.o)
            assert o & 0xFFFF == (a0 * b0) & 0xFFFF, (a0, b0)
            assert o >> 16 == (a1 * b1) & 0xFFFF, (a1, b1)
    simulate(dut, testbench, clock=False)


def test_ice40_pairs_share_blocks_and_stay_exact():
    """Four multipliers from one pairing factory make two blocks; mixed signedness starts
    a new block; every product is exact, whatever the factor widths."""
    factory = ICE40Multiplier.pairing()
    assert factory.kind == "ice40"
    shapes = [(signed(8), signed(8)), (signed(8), signed(8)), (unsigned(8), signed(8)),
              (signed(8), signed(8)), (signed(3), unsigned(5)), (signed(5), unsigned(2))]
    muls = [factory(a, b) for a, b in shapes]
    hosts = [m for m in muls if m._host is None]
    assert [m._guest is not None for m in hosts] == [True, False, False, True]
    assert muls[1]._host is muls[0] and muls[5]._host is muls[4]

    from amaranth.hdl import Module
    top = Module()
    for i, mul in enumerate(muls):
        top.submodules[f"m{i}"] = mul
    rng = np.random.default_rng(7)
    samples = [[(int(rng.choice(values(a))), int(rng.choice(values(b)))) for a, b in shapes]
               for _ in range(200)]

    async def testbench(ctx):
        for row in samples:
            for mul, (a, b) in zip(muls, row, strict=True):
                ctx.set(mul.a, a)
                ctx.set(mul.b, b)
            for mul, (a, b) in zip(muls, row, strict=True):
                assert ctx.get(mul.p) == a * b, (a, b)
    simulate(top, testbench, clock=False)


def test_ice40_registered_pair_holds_factors():
    """A registered pair multiplies the factors of the cycle before; ``b`` changes only
    in a cycle with the host's ``b_load``, for both halves; ``clear`` zeroes both, the
    domain's reset does not (as on the primitive)."""
    factory = ICE40Multiplier.pairing(registered=True)
    host, guest = factory(signed(8), unsigned(8)), factory(signed(8), unsigned(8))
    assert guest._host is host and host.registered and guest.registered
    from amaranth.hdl import ClockDomain, Module
    top = Module()
    top.domains.sync = sync = ClockDomain()
    top.submodules.host, top.submodules.guest = host, guest
    rng = np.random.default_rng(3)

    async def testbench(ctx):
        held = [0, 0]
        prev_a = [0, 0]
        for step in range(300):
            a = [int(v) for v in rng.integers(-128, 128, 2)]
            b = [int(v) for v in rng.integers(0, 256, 2)]
            load = bool(rng.random() < 0.3)
            for mul, x, y in zip((host, guest), a, b, strict=True):
                ctx.set(mul.a, x)
                ctx.set(mul.b, y)
                ctx.set(mul.b_load, load)
                ctx.set(mul.clear, step == 150)
            ctx.set(sync.rst, step == 220)
            for i, mul in enumerate((host, guest)):
                assert ctx.get(mul.p) == prev_a[i] * held[i], (step, i)
            await ctx.tick()
            prev_a = [0, 0] if step == 150 else a
            if step == 150:
                held = [0, 0]
            elif load:
                held = b

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def test_ice40_multiplier_bad_arguments():
    with pytest.raises(ValueError, match=r"^ICE40Multiplier a_shape must be at most 8 bits "
                                         r"wide, not 9$"):
        ICE40Multiplier(signed(9), signed(8))
    with pytest.raises(TypeError, match=r"^SBMac16Dual a_signed must be a bool, not 1$"):
        SBMac16Dual(a_signed=1, b_signed=True)
    host = ICE40Multiplier(signed(8), signed(8))
    with pytest.raises(ValueError, match=r"same signedness"):
        host.share(ICE40Multiplier(unsigned(8), signed(8)))
    with pytest.raises(ValueError, match=r"registered alike"):
        host.share(ICE40Multiplier(signed(8), signed(8), registered=True))
    with pytest.raises(TypeError, match=r"^ICE40Multiplier registered must be a bool"):
        ICE40Multiplier(signed(8), signed(8), registered=1)
    with pytest.raises(ValueError, match=r"keeps no shadow weight"):
        WSPE(signed(8), signed(8), multiplier=ICE40Multiplier.pairing(registered=True))
    host.share(ICE40Multiplier(signed(8), signed(8)))
    with pytest.raises(ValueError, match=r"^ICE40Multiplier shares its block with one "
                                         r"multiplier at most$"):
        host.share(ICE40Multiplier(signed(8), signed(8)))
    assert is_ice40(type("P", (), {"device": "iCE40UP5K"})())
    assert not is_ice40(None) and not is_ice40(type("P", (), {"device": "LFE5U-85F"})())
