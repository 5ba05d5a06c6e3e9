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

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
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

        tag = data.StructLayout({"off": max(lg, 1), "nbytes": 9, "last_row": 1})
        m.submodules.split = split = BurstSplitter(bus_bytes=B, beats_width=10, tag_shape=tag)
        entry = data.StructLayout({"len": 8, "tag": tag, "row_end": 1})
        m.submodules.bursts = bursts = fifo.SyncFIFOBuffered(
            width=entry.size, depth=4)

        # -- planner: one span per row -----------------------------------------------------
        busy = Signal()
        planning = Signal()
        addr = Signal(32)
        stride = Signal(24)
        rows_left = Signal(13)
        nbytes = Signal(9)
        cmd = self.store_cmd
        m.d.comb += cmd.ready.eq(~busy)
        with m.If(cmd.valid & cmd.ready):
            rb = cmd.p.row_bytes
            rb = Mux(rb == 0, 1, Mux(rb > W, W, rb))
            m.d.sync += [
                busy.eq(1), planning.eq(1), addr.eq(cmd.p.dram_addr), stride.eq(cmd.p.stride),
                rows_left.eq(Mux(cmd.p.n_rows == 0, 1, cmd.p.n_rows)), nbytes.eq(rb),
            ]
        off = addr[:lg]
        last_row = rows_left == 1
        m.d.comb += [
            split.spans.valid.eq(planning),
            split.spans.p.addr.eq(addr),
            split.spans.p.beats.eq((off + nbytes + B - 1) >> lg),
            split.spans.p.tag.off.eq(off),
            split.spans.p.tag.nbytes.eq(nbytes),
            split.spans.p.tag.last_row.eq(last_row),
        ]
        with m.If(split.spans.valid & split.spans.ready):
            m.d.sync += [addr.eq(addr + stride), rows_left.eq(rows_left - 1)]
            with m.If(last_row):
                m.d.sync += planning.eq(0)

        # -- AW ----------------------------------------------------------------------------
        pending = Signal(range(_MAX_PENDING_WRITES + 1))
        can_aw = bursts.w_rdy & (pending < _MAX_PENDING_WRITES)
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
        e = data.View(entry, bursts.r_data)
        n = Signal(8)         # beat in the burst
        k = Signal(10)        # beat in the row
        rows = self.store_rows
        # ext holds B zero bytes, the row, then zeros up to a whole number of chunks plus
        # one: the window of beat k starts at ext byte (k + 1) * B - off.
        chunks = -(-(W + B) // B) + 1
        ext = Cat(Const(0, 8 * B), rows.p.data, Const(0, 8 * (chunks * B - W - B)))
        pair = Signal(16 * B)
        m.d.comb += pair.eq(Cat(ext.word_select(k, 8 * B), ext.word_select(k + 1, 8 * B)))
        shift = Signal(range(B + 1))
        m.d.comb += shift.eq(B - e.tag.off)
        m.d.comb += bus.wdata.eq((pair >> (shift << 3))[:8 * B])
        first = Signal(signed(12))
        m.d.comb += first.eq((k << lg) - e.tag.off)
        for lane in range(B):
            p = first + lane
            m.d.comb += bus.wstrb[lane].eq((p >= 0) & (p < e.tag.nbytes))
        wlast = n == e.len
        m.d.comb += [
            bus.wvalid.eq(bursts.r_rdy & rows.valid),
            bus.wlast.eq(wlast),
        ]
        w_all_sent = Signal()
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [n.eq(n + 1), k.eq(k + 1)]
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
