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
from .dma_common import BurstSplitter, align_down, check_config, row_bytes

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


class _Desc(data.Struct):
    fetch: 1
    last: 1          # the command's final descriptor
    n_rows: 16       # destination rows of this descriptor (fetch words), 0 acts as 1
    beats: 9         # bus beats per row; 0: a pad row
    base: signed(11) # row byte position of lane 0 of the row's first beat
    lo: 9            # bytes [lo, hi) of the row take memory data
    hi: 9
    pad: 8


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

        m.submodules.spans = spans = fifo.SyncFIFOBuffered(width=32 + 18, depth=4)
        m.submodules.descs = descs = fifo.SyncFIFOBuffered(
            width=_Desc.as_shape().size, depth=self.outstanding + 2)
        m.submodules.split = split = BurstSplitter(bus_bytes=B, beats_width=18)

        self._planner(m, B, lg, spans, descs)

        # -- address side ----------------------------------------------------------------
        span_out = data.View(data.StructLayout({"addr": 32, "beats": 18}), spans.r_data)
        m.d.comb += [
            split.spans.valid.eq(spans.r_rdy),
            split.spans.p.addr.eq(span_out.addr),
            split.spans.p.beats.eq(span_out.beats),
            spans.r_en.eq(split.spans.ready),
        ]
        inflight = Signal(range(self.outstanding + 1))
        ar_go = bus.arvalid & bus.arready
        r_end = bus.rvalid & bus.rready & bus.rlast
        m.d.sync += inflight.eq(inflight + ar_go - r_end)
        m.d.comb += [
            bus.arvalid.eq(split.bursts.valid & (inflight < self.outstanding)),
            split.bursts.ready.eq(bus.arready & (inflight < self.outstanding)),
            bus.araddr.eq(split.bursts.p.addr),
            bus.arlen.eq(split.bursts.p.len),
            bus.arsize.eq(lg),
            bus.arburst.eq(Burst.INCR),
            bus.arcache.eq(0b0011),
            bus.arid.eq(0),
            bus.bready.eq(1),
        ]

        self._merger(m, B, descs)
        return m

    def _planner(self, m, B, lg, spans, descs):
        """Walks the active command, one destination row per cycle."""
        active = Signal()
        is_fetch = Signal()
        cmd = Signal(LoadCmd)
        count = Signal(16)
        row = Signal(13)
        addr = Signal(32)

        fc, lc = self.fetch_cmd, self.load_cmd
        m.d.comb += [
            fc.ready.eq(~active),
            lc.ready.eq(~active & ~fc.valid),
        ]
        with m.If(fc.valid & fc.ready):
            m.d.sync += [active.eq(1), is_fetch.eq(1), addr.eq(fc.p.addr),
                         count.eq(Mux(fc.p.count == 0, 1, fc.p.count))]
        with m.Elif(lc.valid & lc.ready):
            m.d.sync += [active.eq(1), is_fetch.eq(0), cmd.eq(lc.p), row.eq(0),
                         addr.eq(lc.p.dram_addr)]

        wide = cmd.elem_bytes == 4
        nbytes = Signal(9)
        dst = Signal(8)
        lim = Signal(9)
        m.d.comb += [
            nbytes.eq(Mux(wide, cmd.length << 2, cmd.length)),
            dst.eq(Mux(wide, cmd.pad_left << 2, cmd.pad_left)),
            lim.eq(Mux(wide, cmd.row_elems << 2, cmd.row_elems)),
        ]
        off = addr[:lg]
        end = Signal(10)
        m.d.comb += end.eq(dst + nbytes)
        mem_end = Signal(signed(14))
        m.d.comb += mem_end.eq(cmd.n_rows - cmd.pad_bottom)
        is_mem = Signal()
        m.d.comb += is_mem.eq((row >= cmd.pad_top) & (row < mem_end) & (nbytes != 0))
        last_row = Signal()
        m.d.comb += last_row.eq(row + 1 >= cmd.n_rows)

        desc = Signal(_Desc)
        span = Signal(data.StructLayout({"addr": 32, "beats": 18}))
        with m.If(is_fetch):
            m.d.comb += [
                desc.fetch.eq(1), desc.last.eq(1), desc.n_rows.eq(count),
                desc.beats.eq(16 // B), desc.base.eq(0), desc.lo.eq(0), desc.hi.eq(16),
                desc.pad.eq(0),
                span.addr.eq(addr), span.beats.eq(count * (16 // B)),
            ]
        with m.Else():
            m.d.comb += [
                desc.fetch.eq(0), desc.last.eq(last_row), desc.n_rows.eq(1),
                desc.beats.eq(Mux(is_mem, (off + nbytes + B - 1) >> lg, 0)),
                desc.base.eq(dst - off),
                desc.lo.eq(Mux(dst < lim, dst, lim)),
                desc.hi.eq(Mux(end < lim, end, lim)),
                desc.pad.eq(Mux(wide, 0, cmd.pad_value)),
                span.addr.eq(align_down(addr, lg)),
                span.beats.eq(desc.beats),
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
            m.d.sync += row.eq(row + 1)
            with m.If(~is_fetch & is_mem):
                m.d.sync += addr.eq(addr + cmd.stride)
            with m.If(is_fetch | last_row):
                m.d.sync += active.eq(0)

    def _merger(self, m, B, descs):
        """Places R beats into the row register and hands rows to their stream."""
        bus = self.bus
        width = max(self.row_bytes, 16)
        d = data.View(_Desc, descs.r_data)

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
        beat = Signal(9)
        row = Signal(16)

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

        # The realigner: lane t of the beat goes to row byte pos + t; rotate the beat so
        # that row byte j finds its data in lane j % B.
        pos = Signal(signed(12))
        m.d.comb += pos.eq(d.base + (beat << (B.bit_length() - 1)))
        rot_by = Signal(range(B + 1))
        m.d.comb += rot_by.eq(B - d.base.as_unsigned()[:B.bit_length() - 1])
        rot = Signal(8 * B)
        m.d.comb += rot.eq((Cat(bus.rdata, bus.rdata) >> (rot_by << 3))[:8 * B])
        start = beat == 0
        merged = Signal(8 * width)
        for j in range(width):
            take = (pos <= j) & (j < pos + B) & (d.lo <= j) & (j < d.hi)
            keep = Mux(start, d.pad, buf[8 * j:8 * j + 8])
            m.d.comb += merged[8 * j:8 * j + 8].eq(
                Mux(take, rot[8 * (j % B):8 * (j % B) + 8], keep))

        row_last = row + 1 >= d.n_rows
        beat_err = bus.rresp[1]
        finish = Signal()
        err_now = Signal()
        with m.If(free & descs.r_rdy):
            with m.If(d.beats == 0):
                m.d.comb += [finish.eq(1), err_now.eq(0)]
                m.d.sync += buf.eq(Const(0, 8 * width) | d.pad.replicate(width))
            with m.Else():
                m.d.comb += bus.rready.eq(1)
                with m.If(bus.rvalid):
                    m.d.comb += err_now.eq(beat_err)
                    m.d.sync += [buf.eq(merged), beat.eq(beat + 1)]
                    with m.If(beat + 1 == d.beats):
                        m.d.comb += finish.eq(1)
                    with m.Else():
                        m.d.sync += [word_err.eq(word_err | beat_err),
                                     cmd_err.eq(cmd_err | beat_err)]
        with m.If(finish):
            cmd_end = d.last & row_last
            m.d.sync += [
                beat.eq(0),
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
                m.d.sync += row.eq(0)
                m.d.comb += descs.r_en.eq(1)
            with m.Else():
                m.d.sync += row.eq(row + 1)
