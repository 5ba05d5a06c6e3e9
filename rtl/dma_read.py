"""DMA read engine: instruction fetch and LOAD blocks over the AXI4 read channels.

Two clients share the AR/R channels, one command at a time (a fetch command waiting
wins over a LOAD waiting); the next command's addresses go out while the previous one's
data still arrives, so back-to-back commands stream.

Pipeline::

    commands -> planner -> (span FIFO) -> burst splitter -> AR        (address side)
                       \\-> (row descriptor FIFO) ---------> merger <- R (data side)

The planner walks a command one destination row per cycle. A row that reads memory sends
a span (address, beats) to the burst splitter and a descriptor (where the bytes go in the
row) to the merger; a pad row sends only the descriptor, so rows of all padding issue no
AXI read. The merger rotates each R beat to its byte position (the realigner) and writes
the row's bytes into a row register preset with the pad pattern. All reads use ARID 0,
so data returns in order; at most ``outstanding`` bursts are in flight.

Latency and throughput: one R beat is taken per cycle; a row is offered on its stream
the cycle after its last beat (or, for a pad row, the cycle after it reaches the merger)
and the next row's first beat is taken in the same cycle as that row's handshake, so there
are no bubbles between rows. A command's first AR leaves 4 cycles after its command
handshake (planner, span FIFO, splitter). A memory row of ``bytes`` at address ``a``
costs ``ceil((a % B + bytes) / B)`` beats for a bus of ``B`` bytes.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4Signature, Burst
from .dma_common import BurstSplitter, check_config, row_bytes

__all__ = ["FetchCmd", "LoadCmd", "ReadEngine"]


class FetchCmd(data.Struct):
    """Instruction fetch: ``count`` 128-bit words from ``addr`` (16-byte aligned).
    A count of 0 acts as 1."""
    addr: 32
    count: 16


class LoadCmd(data.Struct):
    """A 2-D block read, matching the ISA's LOAD.

    Destination rows ``0 .. n_rows-1``: the first ``pad_top`` and the last ``pad_bottom``
    are pad rows; memory row ``r`` (counting from the first row after the top pads) is read
    from ``dram_addr + r * stride``, ``length`` elements of ``elem_bytes`` (1 or 4) bytes,
    and placed after ``pad_left`` pad elements. Destination elements beyond
    ``pad_left + length`` (up to ``row_elems``) are pads too. Pads are ``pad_value`` when
    ``elem_bytes`` is 1, and 0 when it is 4. An ``n_rows`` of 0 acts as 1 (the decoder
    rejects it).
    """
    dram_addr: 32
    stride: 24
    n_rows: 13
    pad_top: 4
    pad_bottom: 4
    length: 7
    pad_left: 6
    elem_bytes: 3
    row_elems: 7
    pad_value: 8


def _desc_layout(width):
    """A destination row (a fetch command: all its words) for the merger."""
    return data.StructLayout({
        "fetch": 1,
        "last": 1,                  # the command's final descriptor
        "mem": 1,                   # takes R beats (0: a pad row)
        "base": signed(9),          # row byte position of lane 0 of the row's first beat
        "lo": range(width + 1),     # bytes [lo, hi) of the row take memory data
        "hi": range(width + 1),
        "pad": 8,
    })


class ReadEngine(wiring.Component):
    """The DMA read engine.

    Parameters
    ----------
    config : AcceleratorConfig
        Gives ``axi_data_width`` (bus width), ``sp_width`` and ``cols`` (row width).
    outstanding : int or None
        Read bursts in flight (1..64); ``None`` takes ``config.max_outstanding_reads``.

    Members
    -------
    bus : Out(AXI4Signature)
        The AR and R channels are driven; AW, W and B are idle.
    fetch_cmd : In(stream.Signature(FetchCmd))
    fetch_words : Out(stream.Signature(Struct(data: 128, error: 1, last: 1)))
        One word per fetched instruction; ``error`` when an R beat of it had SLVERR or
        DECERR, ``last`` on the command's final word.
    load_cmd : In(stream.Signature(LoadCmd))
    load_rows : Out(stream.Signature(Struct(data: 8 * row_bytes, last: 1)))
        Destination rows in order; a row uses its low ``row_elems * elem_bytes`` bytes.
    load_done : Out(stream.Signature(Struct(error: 1)))
        One result per LOAD, after its last row's handshake; ``error`` when any R beat of
        the command had SLVERR or DECERR (the command still runs to its end).
    """

    def __init__(self, config, *, outstanding=None):
        check_config(config)
        if outstanding is None:
            outstanding = config.max_outstanding_reads
        if not isinstance(outstanding, int) or not 1 <= outstanding <= 64:
            raise ValueError(f"outstanding reads must be an integer in 1..64, "
                             f"not {outstanding!r}")
        self.config = config
        self.outstanding = outstanding
        self.row_bytes = row_bytes(config)
        super().__init__({
            "bus": Out(AXI4Signature.from_config(config)),
            "fetch_cmd": In(stream.Signature(FetchCmd)),
            "fetch_words": Out(stream.Signature(data.StructLayout(
                {"data": 128, "error": 1, "last": 1}))),
            "load_cmd": In(stream.Signature(LoadCmd)),
            "load_rows": Out(stream.Signature(data.StructLayout(
                {"data": 8 * self.row_bytes, "last": 1}))),
            "load_done": Out(stream.Signature(data.StructLayout({"error": 1}))),
        })

    def elaborate(self, platform):
        m = Module()
        B = self.config.axi_bytes
        lg = B.bit_length() - 1
        bus = self.bus
        width = max(self.row_bytes, 16)
        desc_layout = _desc_layout(width)
        span_layout = data.StructLayout({"addr": 32 - lg, "beats": 16 + 4 - lg})

        m.submodules.spans = spans = fifo.SyncFIFOBuffered(width=span_layout.size, depth=3)
        m.submodules.descs = descs = fifo.SyncFIFOBuffered(
            width=desc_layout.size, depth=self.outstanding + 2)
        m.submodules.split = split = BurstSplitter(bus_bytes=B,
                                                   beats_width=span_layout["beats"].width)
        # One entry per burst in flight: whether it ends its span (a LOAD row or a fetch
        # command). Its level is the count of bursts in flight.
        m.submodules.flags = flags = fifo.SyncFIFO(width=1, depth=self.outstanding)

        self._planner(m, B, lg, width, desc_layout, span_layout, spans, descs)

        # -- address side ----------------------------------------------------------------
        span_out = data.View(span_layout, spans.r_data)
        m.d.comb += [
            split.spans.valid.eq(spans.r_rdy),
            split.spans.p.addr.eq(Cat(Const(0, lg), span_out.addr)),
            split.spans.p.beats.eq(span_out.beats),
            spans.r_en.eq(split.spans.ready),
        ]
        m.d.comb += [
            bus.arvalid.eq(split.bursts.valid & flags.w_rdy),
            split.bursts.ready.eq(bus.arready & flags.w_rdy),
            flags.w_en.eq(bus.arvalid & bus.arready),
            flags.w_data.eq(split.bursts.p.last),
            flags.r_en.eq(bus.rvalid & bus.rready & bus.rlast),
            bus.araddr.eq(split.bursts.p.addr),
            bus.arlen.eq(split.bursts.p.len),
            bus.arsize.eq(lg),
            bus.arburst.eq(Burst.INCR),
            bus.arcache.eq(0b0011),
            bus.arid.eq(0),
            bus.bready.eq(1),
        ]

        self._merger(m, B, lg, width, desc_layout, descs, flags.r_data)
        return m

    def _planner(self, m, B, lg, width, desc_layout, span_layout, spans, descs):
        """Walks the active command, one destination row per cycle."""
        active = Signal()
        is_fetch = Signal()
        addr = Signal(32)
        count = Signal(16)      # fetch words (0 acts as 1)
        stride = Signal(24)
        nbytes = Signal(9)      # memory bytes per row
        dst = Signal(8)         # row byte of the first memory byte
        lo = Signal(range(width + 1))
        hi = Signal(range(width + 1))
        pad = Signal(8)
        rows_left = Signal(13)  # destination rows left, this one included (0 acts as 1)
        top_left = Signal(4)    # top pad rows left
        mem_left = Signal(13)   # memory rows left

        fc, lc = self.fetch_cmd, self.load_cmd
        m.d.comb += [
            fc.ready.eq(~active),
            lc.ready.eq(~active & ~fc.valid),
        ]

        # Per-command values, worked out as the command is taken.
        wide = lc.p.elem_bytes == 4
        c_nbytes = Mux(wide, lc.p.length << 2, lc.p.length)
        c_dst = Mux(wide, lc.p.pad_left << 2, lc.p.pad_left)
        c_lim = Signal(9)
        m.d.comb += c_lim.eq(Mux(wide, lc.p.row_elems << 2, lc.p.row_elems))
        c_end = Signal(10)
        m.d.comb += c_end.eq(c_dst + c_nbytes)
        c_mem = Signal(signed(14))
        m.d.comb += c_mem.eq(lc.p.n_rows - (lc.p.pad_top + lc.p.pad_bottom))

        def at_most_width(value):
            if width & (width - 1) == 0:    # a power of two: look at the high bits
                return Mux(value[width.bit_length() - 1:].any(), width, value)
            return Mux(value < width, value, width)

        # Bytes from lim on are pads: [lo, hi) is empty when dst >= lim.
        c_hi = Mux(c_end < c_lim, c_end, c_lim)

        with m.If(fc.valid & fc.ready):
            m.d.sync += [active.eq(1), is_fetch.eq(1), addr.eq(fc.p.addr),
                         count.eq(Mux(fc.p.count == 0, 1, fc.p.count))]
        with m.Elif(lc.valid & lc.ready):
            m.d.sync += [
                active.eq(1), is_fetch.eq(0), addr.eq(lc.p.dram_addr),
                stride.eq(lc.p.stride), nbytes.eq(c_nbytes), dst.eq(c_dst),
                lo.eq(at_most_width(c_dst)), hi.eq(at_most_width(c_hi)),
                pad.eq(Mux(wide, 0, lc.p.pad_value)),
                rows_left.eq(lc.p.n_rows), top_left.eq(lc.p.pad_top),
                mem_left.eq(Mux(c_mem[-1] | (lc.p.length == 0), 0, c_mem)),
            ]

        off = addr[:lg]
        is_top = top_left != 0
        is_mem = ~is_top & (mem_left != 0)
        last_row = rows_left[1:] == 0

        desc = Signal(desc_layout)
        span = Signal(span_layout)
        m.d.comb += span.addr.eq(addr[lg:])
        with m.If(is_fetch):
            m.d.comb += [
                desc.fetch.eq(1), desc.last.eq(1), desc.mem.eq(1),
                desc.base.eq(0), desc.lo.eq(0), desc.hi.eq(16), desc.pad.eq(0),
                span.beats.eq(count << (4 - lg)),
            ]
        with m.Else():
            m.d.comb += [
                desc.fetch.eq(0), desc.last.eq(last_row), desc.mem.eq(is_mem),
                desc.base.eq(dst - off), desc.lo.eq(lo), desc.hi.eq(hi), desc.pad.eq(pad),
                span.beats.eq((off + nbytes + B - 1) >> lg),
            ]
        reads = is_fetch | is_mem
        go = Signal()
        m.d.comb += [
            go.eq(active & descs.w_rdy & (spans.w_rdy | ~reads)),
            descs.w_en.eq(go),
            descs.w_data.eq(desc.as_value()),
            spans.w_en.eq(go & reads),
            spans.w_data.eq(span.as_value()),
        ]
        with m.If(go):
            m.d.sync += rows_left.eq(rows_left - 1)
            with m.If(is_top):
                m.d.sync += top_left.eq(top_left - 1)
            with m.Elif(is_mem):
                m.d.sync += [mem_left.eq(mem_left - 1), addr.eq(addr + stride)]
            with m.If(is_fetch | last_row):
                m.d.sync += active.eq(0)

    def _merger(self, m, B, lg, width, desc_layout, descs, span_end):
        """Places R beats into the row register and hands rows to their stream.

        ``span_end`` tells whether the R burst arriving ends its span (a LOAD row or a
        fetch command).
        """
        bus = self.bus
        d = data.View(desc_layout, descs.r_data)
        chunks = width // B

        buf = Signal(8 * width)
        out_valid = Signal()
        out_fetch = Signal()
        out_last = Signal()
        out_error = Signal()
        out_done = Signal()      # this row ends a LOAD: raise load_done after its handshake
        done_valid = Signal()
        done_error = Signal()
        cmd_err = Signal()
        word_err = Signal()
        first = Signal(init=1)   # the next beat is the first of a row or fetch word
        # One-hot bus-word position of the current beat in the row: bit i is row chunk
        # i - 1 (the first beat may start one chunk before the row).
        win = Signal(chunks + 1)

        fw, lr, ld = self.fetch_words, self.load_rows, self.load_done
        # A LOAD's final row waits while the previous LOAD's result is still unread.
        out_ok = out_valid & ~(out_done & done_valid)
        out_ready = Mux(out_fetch, fw.ready, lr.ready)
        m.d.comb += [
            fw.valid.eq(out_ok & out_fetch),
            fw.p.data.eq(buf[:128]),
            fw.p.error.eq(out_error),
            fw.p.last.eq(out_last),
            lr.valid.eq(out_ok & ~out_fetch),
            lr.p.data.eq(buf[:8 * self.row_bytes]),
            lr.p.last.eq(out_last),
            ld.valid.eq(done_valid),
            ld.p.error.eq(done_error),
        ]
        with m.If(ld.valid & ld.ready):
            m.d.sync += done_valid.eq(0)
        with m.If(out_ok & out_ready):
            m.d.sync += out_valid.eq(0)
            with m.If(out_done):
                m.d.sync += [done_valid.eq(1), done_error.eq(out_error)]

        free = Signal()
        m.d.comb += free.eq(~out_valid | (out_ok & out_ready))

        # The realigner: lane t of a beat goes to row byte base + beat * B + t. Rotate
        # the beat by base % B so that row byte j finds its data in lane j % B; a chunk
        # of the row takes its high lanes (t >= base % B) from the beat at its position
        # and its low lanes from the beat one position earlier.
        shift = d.base.as_unsigned()[:lg]
        rot_by = Signal(lg)
        m.d.comb += rot_by.eq(-shift)
        rot = Signal(8 * B)
        m.d.comb += rot.eq((Cat(bus.rdata, bus.rdata) >> (rot_by << 3))[:8 * B])
        start_chunk = d.base >> lg
        cur = Signal(chunks + 1)
        m.d.comb += cur.eq(Mux(first, Cat(start_chunk == i - 1 for i in range(chunks + 1)),
                               win))
        ones = Const((1 << width) - 1, width)
        span = Signal(width)     # row bytes in [lo, hi)
        m.d.comb += span.eq((ones << d.lo)[:width] & ~(ones << d.hi)[:width])
        high = Signal(B)         # lanes t >= base % B
        m.d.comb += high.eq(Const((1 << B) - 1, B) << shift)
        # A row byte is written when a beat brings its data or, on a row's first beat (or
        # a pad row), with the pad value; otherwise it keeps its value.
        step = Signal()          # a beat is taken or a pad row completes
        m.d.comb += step.eq(free & descs.r_rdy & (~d.mem | bus.rvalid))
        for j in range(width):
            c, t = divmod(j, B)
            take = Mux(high[t], cur[c + 1], cur[c]) & span[j] & d.mem
            with m.If(step & (take | first)):
                m.d.sync += buf[8 * j:8 * j + 8].eq(Mux(take, rot[8 * t:8 * t + 8], d.pad))

        beat_err = bus.rresp[1]
        burst_end = bus.rlast & span_end
        word_end = Mux(d.fetch, cur[16 // B], burst_end)
        finish = Signal()
        err_now = Signal()
        with m.If(free & descs.r_rdy):
            with m.If(~d.mem):
                m.d.comb += [finish.eq(1), err_now.eq(0)]
            with m.Else():
                m.d.comb += bus.rready.eq(1)
                with m.If(bus.rvalid):
                    m.d.comb += err_now.eq(beat_err)
                    m.d.sync += [first.eq(0), win.eq(cur << 1)]
                    with m.If(word_end):
                        m.d.comb += finish.eq(1)
                    with m.Else():
                        m.d.sync += [word_err.eq(word_err | beat_err),
                                     cmd_err.eq(cmd_err | beat_err)]
        with m.If(finish):
            row_last = ~d.fetch | burst_end
            cmd_end = d.last & row_last
            m.d.sync += [
                first.eq(1),
                out_valid.eq(1),
                out_fetch.eq(d.fetch),
                out_last.eq(cmd_end),
                out_done.eq(cmd_end & ~d.fetch),
                out_error.eq(Mux(d.fetch, word_err | err_now,
                                 cmd_err | err_now)),
                word_err.eq(0),
                cmd_err.eq(Mux(cmd_end, 0, cmd_err | err_now)),
            ]
            with m.If(row_last):
                m.d.comb += descs.r_en.eq(1)
