"""Pieces shared by the DMA read and write engines: sizes and the AXI burst splitter."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["row_bytes", "check_config", "align_down", "BurstSplitter",
           "MAX_BURST_BEATS", "PAGE_BYTES"]

MAX_BURST_BEATS = 256   # AXI4 INCR bursts are at most 256 beats
PAGE_BYTES = 4096       # an AXI burst never crosses a 4 KiB boundary


def row_bytes(config):
    """Width in bytes of the row streams: ``max(sp_width, 4 * cols)``.

    A scratchpad row (``sp_width`` int8 elements) and an accumulator or parameter row
    (``cols`` int32 elements) both fit; a row uses its low bytes.
    """
    return max(config.sp_width, 4 * config.cols)


def check_config(config):
    from systolic.config import AcceleratorConfig

    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {config!r}")


class BurstSplitter(wiring.Component):
    """Splits spans of bus beats into AXI INCR bursts.

    A span is ``beats`` consecutive bus words from ``addr`` (rounded down to the bus
    width). Each burst has at most 256 beats and never crosses a 4 KiB boundary. One burst
    leaves per cycle, also across spans; a span of 0 beats is dropped.

    Parameters
    ----------
    bus_bytes : int
        Bus width in bytes (a power of two, 4..128).
    beats_width : int
        Width of the ``beats`` field.
    tag_shape : shape-like
        Caller data copied from a span to each of its bursts.

    Members
    -------
    spans : In(stream.Signature(Struct(addr, beats, tag)))
    bursts : Out(stream.Signature(Struct(addr, len, tag, last)))
        ``len`` is AxLEN (beats minus one); ``last`` marks the span's final burst.
    """

    def __init__(self, *, bus_bytes, beats_width, tag_shape=1, addr_width=32):
        if bus_bytes not in (4, 8, 16, 32, 64, 128):
            raise ValueError(f"bus width in bytes must be a power of two in 4..128, "
                             f"not {bus_bytes!r}")
        if not isinstance(beats_width, int) or beats_width < 1:
            raise ValueError(f"beats width must be a positive integer, not {beats_width!r}")
        self.bus_bytes = bus_bytes
        self._beats_width = beats_width
        span = data.StructLayout({"addr": addr_width, "beats": beats_width, "tag": tag_shape})
        burst = data.StructLayout({"addr": addr_width, "len": 8, "tag": tag_shape,
                                   "last": 1})
        super().__init__({
            "spans": In(stream.Signature(span)),
            "bursts": Out(stream.Signature(burst)),
        })

    def elaborate(self, platform):
        m = Module()
        B = self.bus_bytes
        lg = B.bit_length() - 1
        word_bits = 12 - lg                  # bus words within a 4 KiB page
        addr_width = len(self.spans.p.addr)

        # The current burst address as page number and word within the page: a burst
        # never crosses the page, so only the word index is added to; the page is the
        # span's plus the pages crossed so far (one more when a burst ends exactly at
        # the page end).
        active = Signal()
        page = Signal(addr_width - 12)
        crossed = Signal(max(1, self._beats_width + lg - 11))
        word = Signal(word_bits)
        rem = Signal(self._beats_width)      # beats left
        tag = Signal.like(self.spans.p.tag)

        # Beats to the page end minus one is the complement of the word index; a burst
        # that does not end its span runs to the page end or is 256 beats long.
        room_m1 = ~word
        cap_m1 = Signal(8)
        to_end = Signal()        # the burst (if not the span's last) ends at the page end
        if word_bits > 8:
            m.d.comb += [to_end.eq(word[8:].all()),
                         cap_m1.eq(Mux(to_end, room_m1[:8], 0xFF))]
        else:
            m.d.comb += [to_end.eq(1), cap_m1.eq(room_m1)]
        # Beats left after a burst of cap_m1 + 1: none or fewer means the span ends here.
        after = Signal(max(self._beats_width + 1, 10))   # -256 .. beats - 1
        m.d.comb += after.eq(rem + ~Cat(cap_m1, Const(0, 1)).as_signed())
        last = Signal()
        len_ = Signal(8)
        m.d.comb += [
            last.eq(active & (after[-1] | (after == 0))),
            len_.eq(Mux(last, rem[:8] - 1, cap_m1)),
            self.bursts.valid.eq(active),
            self.bursts.p.addr.eq(Cat(Const(0, lg), word, page + crossed)),
            self.bursts.p.len.eq(len_),
            self.bursts.p.tag.eq(tag),
            self.bursts.p.last.eq(last),
            self.spans.ready.eq(~active | (self.bursts.ready & last)),
        ]
        with m.If(self.bursts.valid & self.bursts.ready):
            # Only a burst that is not the span's last needs the next address: word 0
            # of the next page, or 256 words on.
            m.d.sync += [crossed.eq(crossed + to_end), rem.eq(after)]
            if word_bits > 8:
                m.d.sync += word[8:].eq(word[8:] + 1)
                with m.If(to_end):
                    m.d.sync += word[:8].eq(0)
            else:
                m.d.sync += word.eq(0)
            with m.If(last):
                m.d.sync += active.eq(0)
        with m.If(self.spans.valid & self.spans.ready):
            m.d.sync += [
                word.eq(self.spans.p.addr[lg:12]),
                page.eq(self.spans.p.addr[12:]),
                crossed.eq(0),
                rem.eq(self.spans.p.beats),
                tag.eq(self.spans.p.tag),
                active.eq(self.spans.p.beats != 0),
            ]
        return m


def align_down(addr, lg):
    """``addr`` with its ``lg`` low bits cleared."""
    return addr & ~Const((1 << lg) - 1, unsigned(len(addr)))
