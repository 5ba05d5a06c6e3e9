"""UART transmitter and receiver in the Amaranth simulator: loopback, framing errors, checks."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from systolic.fpga.uart import UartRx, UartTx


def loopback(divisor, data, *, gaps=0):
    """Send ``data`` from a UartTx into a UartRx; return the received bytes and errors."""
    m = Module()
    m.submodules.tx = tx = UartTx(divisor=divisor)
    m.submodules.rx = rx = UartRx(divisor=divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    received, errors = [], []

    async def sender(ctx):
        rng = random.Random(divisor)
        for byte in data:
            ctx.set(tx.i.payload, byte)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
            ctx.set(tx.i.valid, 0)
            if gaps:
                await ctx.tick().repeat(1 + rng.randrange(gaps))
        await ctx.tick().repeat(12 * divisor)   # let the last byte arrive

    async def receiver(ctx):
        ctx.set(rx.o.ready, 1)
        async for _, _, valid, payload, error in ctx.tick().sample(
                rx.o.valid, rx.o.payload, rx.error):
            if valid:
                received.append(payload)
            if error:
                errors.append(1)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(sender)
    sim.add_testbench(receiver, background=True)
    sim.run()
    return bytes(received), errors


@pytest.mark.parametrize("divisor", [4, 5, 7, 16])
def test_loopback_random_bytes(divisor):
    rng = random.Random(1000 + divisor)
    data = bytes(rng.randrange(256) for _ in range(40)) + b"\x00\xff\x55\xaa"
    received, errors = loopback(divisor, data, gaps=2 * divisor)
    assert received == data
    assert errors == []


def test_loopback_back_to_back():
    data = bytes(range(256))
    received, errors = loopback(4, data)
    assert received == data
    assert errors == []


def test_loopback_scoreboard_catches_a_corrupted_byte():
    data = bytes(range(20))
    received, _ = loopback(4, data)
    corrupted = bytearray(received)
    corrupted[7] ^= 0x10
    with pytest.raises(AssertionError):
        assert bytes(corrupted) == data


def drive_line(divisor, bits_per_byte):
    """Drive a UartRx line with raw bit lists (start bit first); return bytes and errors."""
    rx = UartRx(divisor=divisor)
    received, errors = [], 0

    async def bench(ctx):
        nonlocal errors
        ctx.set(rx.o.ready, 1)
        for bits in bits_per_byte:
            for bit in bits:
                ctx.set(rx.rx, bit)
                for _ in range(divisor):
                    await ctx.tick()
                    if ctx.get(rx.o.valid):
                        received.append(ctx.get(rx.o.payload))
                    errors += ctx.get(rx.error)
        ctx.set(rx.rx, 1)
        for _ in range(4 * divisor):
            await ctx.tick()
            if ctx.get(rx.o.valid):
                received.append(ctx.get(rx.o.payload))
            errors += ctx.get(rx.error)

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return received, errors


def frame_bits(byte, stop=1):
    return [0] + [byte >> i & 1 for i in range(8)] + [stop]


def test_framing_error_is_flagged_and_byte_dropped():
    received, errors = drive_line(6, [frame_bits(0x3C, stop=0), [1, 1], frame_bits(0xA7)])
    assert errors == 1
    assert received == [0xA7]


def test_short_glitch_is_not_a_start_bit():
    rx_divisor = 8
    # a one-cycle-wide low pulse is filtered by the start-bit check at mid-bit
    rx = UartRx(divisor=rx_divisor)
    seen = []

    async def bench(ctx):
        ctx.set(rx.o.ready, 1)
        ctx.set(rx.rx, 0)
        await ctx.tick()
        ctx.set(rx.rx, 1)
        for _ in range(20 * rx_divisor):
            await ctx.tick()
            seen.append((ctx.get(rx.o.valid), ctx.get(rx.error)))

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert not any(v or e for v, e in seen)
    received, errors = drive_line(rx_divisor, [frame_bits(0x81)])
    assert received == [0x81] and errors == 0


@pytest.mark.parametrize("cls", [UartRx, UartTx])
@pytest.mark.parametrize("divisor", [3, 0, 4.5, True])
def test_divisor_is_checked(cls, divisor):
    with pytest.raises(ValueError, match=r"UART divisor must be an integer of at least 4 "
                                         r"clocks per bit, not "):
        cls(divisor=divisor)


def test_byte_not_taken_is_dropped_with_an_overrun():
    """With ``ready`` low, a byte stays on the stream until the next byte's first data
    bit, then it is withdrawn and ``overrun`` pulses; the next byte arrives intact."""
    divisor = 6
    rx = UartRx(divisor=divisor)
    seen = []

    async def bench(ctx):
        for bits in (frame_bits(0x5A), [1], frame_bits(0xC3), [1, 1]):
            for bit in bits:
                ctx.set(rx.rx, bit)
                for _ in range(divisor):
                    await ctx.tick()
                    seen.append((ctx.get(rx.o.valid), ctx.get(rx.o.payload),
                                 ctx.get(rx.overrun)))

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    offered = [payload for valid, payload, _ in seen if valid]
    assert offered[0] == 0x5A and offered[-1] == 0xC3
    assert set(offered) == {0x5A, 0xC3}            # never a half-shifted byte
    assert sum(overrun for *_, overrun in seen) == 1
