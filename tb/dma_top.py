"""Test and benchmark top for the DMA: standard AXI4 port names, optional read latency."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, fifo, wiring
from amaranth.lib.wiring import In, Out

from systolic.rtl import axi
from systolic.rtl.dma import DMA

__all__ = ["DMATop"]


class DMATop(wiring.Component):
    """The DMA with its bus as ``m_axi_*`` ports and its streams as ``<name>__valid``,
    ``<name>__ready`` and ``<name>__payload`` ports (a stream without payload has no
    ``__payload`` port).

    Parameters
    ----------
    config : AcceleratorConfig
    outstanding : int or None
        Read bursts in flight (``None``: ``config.max_outstanding_reads``).
    read_latency : int
        Extra cycles each AR request waits before it reaches the bus (0: none). Requests
        stay pipelined, so this models a memory with a long but pipelined read latency.
    """

    def __init__(self, config, *, outstanding=None, read_latency=0):
        if not isinstance(read_latency, int) or not 0 <= read_latency <= 1000:
            raise ValueError(f"read latency must be an integer in 0..1000, "
                             f"not {read_latency!r}")
        self.dma = DMA(config, outstanding=outstanding)
        self.read_latency = read_latency
        self._bus = Out(axi.AXI4Signature.from_config(config))
        members = axi.flat_members("m_axi", self._bus)
        self._handshakes = set()     # streams without a payload: valid and ready only
        for name, member in self.dma.signature.members.items():
            if name == "bus":
                continue
            if data.Layout.cast(member.signature.members["payload"].shape).size == 0:
                self._handshakes.add(name)
                member = member.flow(wiring.Signature({"valid": Out(1), "ready": In(1)}))
            members[name] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dma = dma = self.dma
        for name, member in dma.signature.members.items():
            if name in self._handshakes:
                ours, theirs = getattr(self, name), getattr(dma, name)
                if member.flow == Out:
                    m.d.comb += [ours.valid.eq(theirs.valid), theirs.ready.eq(ours.ready)]
                else:
                    m.d.comb += [theirs.valid.eq(ours.valid), ours.ready.eq(theirs.ready)]
            elif name != "bus":
                wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(dma, name))
        outer = axi.flat_interface(self, "m_axi", self._bus)
        if not self.read_latency:
            wiring.connect(m, wiring.flipped(outer), dma.bus)
            return m

        # Everything but the AR handshake and its varying fields passes straight through.
        for name, member in dma.bus.signature.members.items():
            if name in ("araddr", "arlen", "arvalid", "arready"):
                continue
            if member.flow == Out:
                m.d.comb += getattr(outer, name).eq(getattr(dma.bus, name))
            else:
                m.d.comb += getattr(dma.bus, name).eq(getattr(outer, name))
        entry = data.StructLayout({"addr": 32, "len": 8, "time": 16})
        m.submodules.delay = delay = fifo.SyncFIFOBuffered(width=entry.size, depth=64)
        now = Signal(16)
        m.d.sync += now.eq(now + 1)
        w = Signal(entry)
        m.d.comb += [
            w.addr.eq(dma.bus.araddr), w.len.eq(dma.bus.arlen), w.time.eq(now),
            delay.w_data.eq(w.as_value()),
            delay.w_en.eq(dma.bus.arvalid),
            dma.bus.arready.eq(delay.w_rdy),
        ]
        r = data.View(entry, delay.r_data)
        age = Signal(16)
        m.d.comb += [
            age.eq(now - r.time),
            outer.arvalid.eq(delay.r_rdy & (age >= self.read_latency)),
            outer.araddr.eq(r.addr),
            outer.arlen.eq(r.len),
            delay.r_en.eq(outer.arvalid & outer.arready),
        ]
        return m
