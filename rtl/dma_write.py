"""DMA write engine: STORE blocks over the AXI4 write channels.

Pipeline::

    command -> planner -> burst splitter -> AW -> (burst FIFO) -> W <- rows
                                                        B -> counter -> done

The planner walks the command one row per cycle, handing each row's span (address,
beats) to the burst splitter; AW requests therefore run ahead of the data by up to the
depth of the burst FIFO (4 bursts). The W side takes one burst at a time from the FIFO
and sends its beats from the row on the input stream, cut out of the row by a chunk
select and a byte rotator (the realigner) and masked by byte strobes where the row
starts or ends inside a bus word. A row is taken from ``rows`` (``ready`` high) with its
last beat, so the producer holds it during its beats.

Latency and throughput: one W beat per cycle while rows come in; the first AW leaves
3 cycles after the command handshake. ``done`` comes the cycle after the last B response
(the last write has landed); a new command is taken after ``done``'s handshake.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4Signature, Burst
from .dma_common import BurstSplitter, check_config, row_bytes

__all__ = ["StoreCmd", "WriteEngine"]

_MAX_PENDING_WRITES = 255


class StoreCmd(data.Struct):
    """Write ``n_rows`` rows of ``row_bytes`` bytes, row ``i`` at ``dram_addr + i * stride``.
    An ``n_rows`` or ``row_bytes`` of 0 acts as 1 (the decoder rejects them)."""
    dram_addr: 32
    stride: 24
    n_rows: 13
    row_bytes: 9


class WriteEngine(wiring.Component):
    """The DMA write engine.

    Parameters
    ----------
    config : AcceleratorConfig
        Gives ``axi_data_width`` (bus width), ``sp_width`` and ``cols`` (row width).

    Members
    -------
    bus : Out(AXI4Signature)
        The AW, W and B channels are driven; AR and R are idle.
    store_cmd : In(stream.Signature(StoreCmd))
        ``row_bytes`` is at most the row width (larger values are clipped to it).
    store_rows : In(stream.Signature(Struct(data: 8 * row_bytes)))
        The rows to write; a row's byte ``k`` goes to ``dram_addr + i * stride + k``.
    store_done : Out(stream.Signature(Struct(error: 1)))
        One result per command, after its last B response; ``error`` when any B response
        was SLVERR or DECERR (all rows are still sent).
    """

    def __init__(self, config):
        check_config(config)
        self.config = config
        self.row_bytes = row_bytes(config)
        super().__init__({
            "bus": Out(AXI4Signature.from_config(config)),
            "store_cmd": In(stream.Signature(StoreCmd)),
            "store_rows": In(stream.Signature(data.StructLayout(
                {"data": 8 * self.row_bytes}))),
            "store_done": Out(stream.Signature(data.StructLayout({"error": 1}))),
        })

    def elaborate(self, platform):
        m = Module()
        B = self.config.axi_bytes
        lg = B.bit_length() - 1
        W = self.row_bytes
        bus = self.bus

        # A row of at most W bytes starting at any lane spans at most max_beats beats.
        max_beats = (B - 1 + W + B - 1) >> lg
        tag = data.StructLayout({"off": lg, "end_lane": lg, "last_row": 1})
        m.submodules.split = split = BurstSplitter(
            bus_bytes=B, beats_width=max_beats.bit_length(), tag_shape=tag)
        entry = data.StructLayout({"len": max(max_beats - 1, 1).bit_length(), "tag": tag,
                                   "row_end": 1})
        m.submodules.bursts = bursts = fifo.SyncFIFOBuffered(
            width=entry.size, depth=4)

        # -- planner: one span per row -----------------------------------------------------
        busy = Signal()
        planning = Signal()
        addr = Signal(32)
        stride = Signal(24)
        rows_left = Signal(13)          # this row included; 0 acts as 1
        nbytes_m1 = Signal(range(W))    # bytes per row minus one
        cmd = self.store_cmd
        m.d.comb += cmd.ready.eq(~busy)
        with m.If(cmd.valid & cmd.ready):
            rb = cmd.p.row_bytes
            m.d.sync += [
                busy.eq(1), planning.eq(1), addr.eq(cmd.p.dram_addr), stride.eq(cmd.p.stride),
                rows_left.eq(cmd.p.n_rows),
                nbytes_m1.eq(Mux(rb == 0, 0, Mux(rb > W, W - 1, rb - 1))),
            ]
        off = addr[:lg]
        span_end = Signal(range(B + W))  # lane offset of the row's last byte from beat 0
        m.d.comb += span_end.eq(off + nbytes_m1)
        last_row = rows_left[1:] == 0
        m.d.comb += [
            split.spans.valid.eq(planning),
            split.spans.p.addr.eq(addr),
            split.spans.p.beats.eq((span_end >> lg) + 1),
            split.spans.p.tag.off.eq(off),
            split.spans.p.tag.end_lane.eq(span_end[:lg]),
            split.spans.p.tag.last_row.eq(last_row),
        ]
        with m.If(split.spans.valid & split.spans.ready):
            m.d.sync += [addr.eq(addr + stride), rows_left.eq(rows_left - 1)]
            with m.If(last_row):
                m.d.sync += planning.eq(0)

        # -- AW ----------------------------------------------------------------------------
        pending = Signal(range(_MAX_PENDING_WRITES + 1))
        can_aw = bursts.w_rdy & (pending != _MAX_PENDING_WRITES)
        w_entry = Signal(entry)
        m.d.comb += [
            bus.awvalid.eq(split.bursts.valid & can_aw),
            split.bursts.ready.eq(bus.awready & can_aw),
            bus.awaddr.eq(split.bursts.p.addr),
            bus.awlen.eq(split.bursts.p.len),
            bus.awsize.eq(lg),
            bus.awburst.eq(Burst.INCR),
            bus.awcache.eq(0b0011),
            bus.awid.eq(0),
            w_entry.len.eq(split.bursts.p.len),
            w_entry.tag.eq(split.bursts.p.tag),
            w_entry.row_end.eq(split.bursts.p.last),
            bursts.w_en.eq(bus.awvalid & bus.awready),
            bursts.w_data.eq(w_entry.as_value()),
        ]

        # -- W -----------------------------------------------------------------------------
        # Lane t of the row's beat k carries row byte k * B + t - off: for t >= off byte
        # t - off of row chunk k, else byte B + t - off of chunk k - 1. The chunk is
        # rotated by off lanes; the low lanes come from the previous beat's rotated chunk.
        e = data.View(entry, bursts.r_data)
        n = Signal(len(e.len))          # beat in the burst
        k = Signal(range(max_beats))    # beat in the row
        rows = self.store_rows
        chunks = -(-W // B)
        sel_bits = (chunks - 1).bit_length()
        ext = Cat(rows.p.data, Const(0, 8 * ((1 << sel_bits) * B - W)))
        chunk = Signal(8 * B)
        m.d.comb += chunk.eq(ext.word_select(k[:sel_bits], 8 * B) if sel_bits else ext)
        rot_by = Signal(lg)
        m.d.comb += rot_by.eq(-e.tag.off)
        rot = Signal(8 * B)
        m.d.comb += rot.eq((Cat(chunk, chunk) >> (rot_by << 3))[:8 * B])
        prev = Signal(8 * B)
        ones = Const((1 << B) - 1, B)
        high = Signal(B)                # lanes t >= off
        upto_end = Signal(B)            # lanes t <= end_lane
        m.d.comb += [
            high.eq(ones << e.tag.off),
            upto_end.eq(~((ones << 1) << e.tag.end_lane)[:B]),
        ]
        wlast = n == e.len
        row_first = k == 0
        row_last = wlast & e.row_end
        for lane in range(B):
            byte = slice(8 * lane, 8 * lane + 8)
            m.d.comb += [
                bus.wdata[byte].eq(Mux(high[lane], rot[byte], prev[byte])),
                bus.wstrb[lane].eq((~row_first | high[lane]) & (~row_last | upto_end[lane])),
            ]
        m.d.comb += [
            bus.wvalid.eq(bursts.r_rdy & rows.valid),
            bus.wlast.eq(wlast),
        ]
        w_all_sent = Signal()
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [n.eq(n + 1), k.eq(k + 1), prev.eq(rot)]
            with m.If(wlast):
                m.d.comb += bursts.r_en.eq(1)
                m.d.sync += n.eq(0)
                with m.If(e.row_end):
                    m.d.comb += rows.ready.eq(1)
                    m.d.sync += k.eq(0)
                    with m.If(e.tag.last_row):
                        m.d.sync += w_all_sent.eq(1)

        # -- B and the result ----------------------------------------------------------------
        error = Signal()
        b_go = bus.bvalid & bus.bready
        m.d.comb += bus.bready.eq(1)
        m.d.sync += pending.eq(pending + (bus.awvalid & bus.awready) - b_go)
        with m.If(b_go & bus.bresp[1]):
            m.d.sync += error.eq(1)
        done = self.store_done
        m.d.comb += [done.p.error.eq(error)]
        with m.If(w_all_sent & (pending == 0) & ~done.valid):
            m.d.sync += done.valid.eq(1)
        with m.If(done.valid & done.ready):
            m.d.sync += [done.valid.eq(0), busy.eq(0), w_all_sent.eq(0), error.eq(0)]
        return m
