"""DMA write engine: STORE data over the AXI4 write channels, one chunk at a time.

The store unit streams its data as chunks of at most ``chunk_bytes(config)`` bytes, each
with its byte address; the engine writes every chunk as a single-beat INCR burst (one AW
and one W), the chunk rotated to its byte lanes and masked by byte strobes. A chunk that
straddles two bus words takes two bursts. Single beats never cross a 4 KiB boundary,
whatever the address.

Latency and throughput: a chunk's AW is offered in the cycle it arrives; its W beat never
goes before the AW handshake. With one-byte chunks the W beat is offered from the cycle
after it and the chunk is taken with the W handshake (a burst every 2 cycles at best);
with bus-wide chunks the chunk is taken with the AW handshake and its W beat waits in a
two-entry queue (a burst every cycle while the bus is ready). ``store_done`` answers
``store_cmd`` (the end of a STORE's data) once every B response has arrived, in the same
cycle when none is owed.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .axi import AXI4Signature, Burst
from .dma_common import check_config

__all__ = ["StoreCmd", "WriteEngine", "chunk_bytes", "chunk_layout", "max_pending_writes"]

#: Payload of ``store_cmd``, the end of a STORE's data: nothing but the handshake.
StoreCmd = data.StructLayout({})


def chunk_bytes(config):
    """Bytes per chunk of the store stream: 1 with one post-processing lane (one element
    comes out every few cycles at best, so bytes need no realigner), else the bus width."""
    return 1 if config.lanes == 1 else config.axi_bytes


def max_pending_writes(config):
    """Bursts whose B response may be owed before AW waits: 1 with one post-processing
    lane (a chunk every few cycles at best), else 15."""
    return 1 if config.lanes == 1 else 15


def chunk_layout(config):
    """Layout of one chunk: ``data`` (``nbytes`` valid bytes from byte 0; ``nbytes`` is
    0..``chunk_bytes``, and ignored, the chunk being one byte, when that is 1) and
    ``addr`` (the byte address of data's byte 0)."""
    c = chunk_bytes(config)
    return data.StructLayout({"data": 8 * c, "nbytes": bits_for(c), "addr": 32})


class WriteEngine(wiring.Component):
    """The DMA write engine.

    Parameters
    ----------
    config : AcceleratorConfig
        Gives ``axi_data_width`` (bus width) and, with ``lanes``, the chunk width.

    Members
    -------
    bus : Out(AXI4Signature)
        The AW, W and B channels are driven; AR and R are idle.
    store_rows : In(stream.Signature(chunk_layout(config)))
        The chunks to write, in order.
    store_cmd : In(stream.Signature(StoreCmd))
        The end of a STORE's data, raised after its last chunk was taken.
    store_done : Out(stream.Signature(Struct(error: 1)))
        The result, valid while ``store_cmd`` is and no B response is owed; both streams
        complete in the same cycle. ``error`` when any B response since the previous
        result was SLVERR or DECERR (every chunk is still written).
    """

    def __init__(self, config):
        check_config(config)
        self.config = config
        self.chunk = chunk_bytes(config)
        super().__init__({
            "bus": Out(AXI4Signature.from_config(config)),
            "store_cmd": In(stream.Signature(StoreCmd)),
            "store_rows": In(stream.Signature(chunk_layout(config))),
            "store_done": Out(stream.Signature(data.StructLayout({"error": 1}))),
        })

    def elaborate(self, platform):
        m = Module()
        B = self.config.axi_bytes
        lg = B.bit_length() - 1
        C = self.chunk
        bus = self.bus
        rows = self.store_rows

        # The second burst of a straddling chunk is one bus word further.
        split = Signal()
        addr = rows.p.addr
        pos = addr[:lg]          # the lane of the chunk's first byte
        if C == 1:
            strb = (Const(1, B) << pos)[:B]
            # The byte on every lane would do; lanes above 0 carry it only where strobed,
            # so that no output bit is a plain copy of another (a false loop to Verilator).
            wdata = Cat(rows.p.data,
                        *[rows.p.data & strb[t].replicate(8) for t in range(1, B)])
            final = Const(1)
            word = addr[lg:]
        else:
            # Chunk byte j goes to lane (pos + j) mod B; `lanes` marks the chunk's bytes
            # over two bus words, the first burst taking the low word.
            lanes = Signal(2 * B)
            m.d.comb += lanes.eq(((Const(1, B + 1) << rows.p.nbytes) - 1) << pos)
            strb = Mux(split, lanes[B:], lanes[:B])
            ext = Cat(rows.p.data, Const(0, 8 * (B - C)))
            wdata = (Cat(ext, ext) << (pos * 8))[8 * B:16 * B]
            final = split | (lanes[B:] == 0)
            word = addr[lg:] + split

        most = max_pending_writes(self.config)
        pending = Signal(range(most + 1))
        room = pending != most
        # AW first, then W: a W beat never goes before its AW, so that a soft reset,
        # which stops new AWs, never leaves a W beat without its burst.
        aw_go = bus.awvalid & bus.awready
        m.d.comb += [
            bus.awaddr.eq(Cat(Const(0, lg), word)),
            bus.awlen.eq(0),
            bus.awsize.eq(lg),
            bus.awburst.eq(Burst.INCR),
            bus.awcache.eq(0b0011),
            bus.awid.eq(0),
            bus.wlast.eq(1),
        ]
        if C == 1:
            # One byte every few cycles at most: the W beat follows its AW from the chunk.
            aw_done = Signal()
            part_go = bus.wvalid & bus.wready
            m.d.comb += [
                bus.awvalid.eq(rows.valid & ~aw_done & room),
                bus.wvalid.eq(rows.valid & aw_done),
                bus.wdata.eq(wdata),
                bus.wstrb.eq(strb),
            ]
            with m.If(aw_go):
                m.d.sync += aw_done.eq(1)
            with m.If(part_go):
                m.d.sync += aw_done.eq(0)
        else:
            # A beat a cycle: each accepted AW leaves its W beat in a two-entry queue.
            beat = data.StructLayout({"data": 8 * B, "strb": B})
            m.submodules.w_queue = wq = fifo.SyncFIFO(width=beat.size, depth=2)
            head = data.View(beat, wq.r_data)
            part_go = aw_go
            m.d.comb += [
                bus.awvalid.eq(rows.valid & room & wq.w_rdy),
                wq.w_en.eq(aw_go),
                wq.w_data.eq(Cat(wdata, strb)),
                bus.wvalid.eq(wq.r_rdy),
                bus.wdata.eq(head.data),
                bus.wstrb.eq(head.strb),
                wq.r_en.eq(bus.wready),
            ]
        m.d.comb += rows.ready.eq(part_go & final)
        with m.If(part_go):
            m.d.sync += split.eq(~final)

        # -- B and the result ----------------------------------------------------------------
        error = Signal()
        b_go = bus.bvalid & bus.bready
        m.d.comb += bus.bready.eq(1)
        m.d.sync += pending.eq(pending + aw_go - b_go)
        cmd, done = self.store_cmd, self.store_done
        m.d.comb += [
            done.valid.eq(cmd.valid & (pending == 0)),
            done.p.error.eq(error),
            cmd.ready.eq(done.ready & (pending == 0)),
        ]
        with m.If(b_go & bus.bresp[1]):
            m.d.sync += error.eq(1)
        with m.If(done.valid & done.ready):
            m.d.sync += error.eq(0)
        return m
