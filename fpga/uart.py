"""UART receiver and transmitter (8 data bits, no parity, 1 stop bit) with byte streams."""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx", "check_divisor"]

MIN_DIVISOR = 4


def check_divisor(divisor):
    """Raise :class:`ValueError` unless ``divisor`` is a valid clocks-per-bit count."""
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < MIN_DIVISOR:
        raise ValueError(f"UART divisor must be an integer of at least {MIN_DIVISOR} clocks "
                         f"per bit, not {divisor!r}")


class UartTx(wiring.Component):
    """UART transmitter.

    A byte accepted on ``i`` is sent as a start bit, 8 data bits LSB first and a stop bit,
    each ``divisor`` clock cycles long. ``i.ready`` is high while the line is idle, so a
    byte can be accepted in the cycle after the previous stop bit ends.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (at least 4), ``clock_hz // baud``.

    Attributes
    ----------
    i : In(stream.Signature(8))
        Bytes to send.
    tx : Out(1)
        Serial line, idle high.
    """

    def __init__(self, *, divisor):
        check_divisor(divisor)
        self.divisor = divisor
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        shreg = Signal(10, init=0x3FF)   # stop, data[7:0], start; shifted out LSB first
        bits = Signal(range(11))         # bits left to send
        timer = Signal(range(self.divisor))

        m.d.comb += [
            self.i.ready.eq(bits == 0),
            self.tx.eq(shreg[0]),
        ]
        with m.If(bits == 0):
            with m.If(self.i.valid):
                m.d.sync += [
                    shreg.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                    bits.eq(10),
                    timer.eq(self.divisor - 1),
                ]
        with m.Elif(timer == 0):
            m.d.sync += [
                shreg.eq(shreg >> 1 | 1 << 9),
                bits.eq(bits - 1),
                timer.eq(self.divisor - 1),
            ]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


class UartRx(wiring.Component):
    """UART receiver with a two-flop synchronizer and mid-bit sampling.

    A falling edge starts a byte; the start bit is checked at its middle (a glitch shorter
    than half a bit is ignored), then each data bit and the stop bit are sampled
    ``divisor`` cycles apart. A byte whose stop bit is low is dropped and ``error`` pulses;
    the receiver then waits for the line to return high. The receiver cannot be stalled:
    the byte on ``o.payload`` is the receive shift register itself, so a byte not taken
    before the next byte's first data bit is withdrawn (``o.valid`` falls) and ``overrun``
    pulses.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (at least 4).

    Attributes
    ----------
    rx : In(1)
        Serial line (asynchronous), idle high.
    o : Out(stream.Signature(8))
        Received bytes; ``valid`` stays high until ``ready`` or an overrun.
    error : Out(1)
        One-cycle pulse: framing error (stop bit low).
    overrun : Out(1)
        One-cycle pulse: a received byte was dropped, never taken.
    """

    def __init__(self, *, divisor):
        check_divisor(divisor)
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(self.divisor))
        # IDLE; then START, 8 data bits and STOP counting down to 1; BREAK after an error
        IDLE, START, STOP, BREAK = 0, 10, 1, 11
        bits = Signal(range(BREAK + 1))

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.If(bits == IDLE):
            with m.If(~line):
                m.d.sync += [timer.eq(self.divisor // 2 - 1), bits.eq(START)]
        with m.Elif(bits == BREAK):
            # wait for the line to return high before looking for the next start bit
            with m.If(line):
                m.d.sync += bits.eq(IDLE)
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [timer.eq(self.divisor - 1), bits.eq(bits - 1)]
            with m.If(bits == START):
                with m.If(line):
                    m.d.sync += bits.eq(IDLE)   # glitch, not a start bit
            with m.Elif(bits == STOP):
                with m.If(line):
                    m.d.sync += self.o.valid.eq(1)
                with m.Else():
                    m.d.comb += self.error.eq(1)
                    m.d.sync += bits.eq(BREAK)
            with m.Else():
                m.d.sync += self.o.payload.eq(Cat(self.o.payload[1:], line))
                with m.If(self.o.valid & ~self.o.ready):
                    m.d.comb += self.overrun.eq(1)
                    m.d.sync += self.o.valid.eq(0)
        return m
