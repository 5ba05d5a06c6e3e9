"""The DMA: a read engine (instruction fetch, LOAD) and a write engine (STORE) on one AXI4 bus.

The two engines use AXI4's independent channels (AR/R for reads, AW/W/B for writes), so
a LOAD and a STORE run at the same time. See :mod:`.dma_read` and :mod:`.dma_write` for
the command layouts, the streams and their latencies, and ``docs/dma.md`` for the whole
interface.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from .axi import AXI4Signature
from .dma_common import BurstSplitter, row_bytes
from .dma_read import FetchCmd, LoadCmd, ReadEngine
from .dma_write import StoreCmd, WriteEngine

__all__ = ["DMA", "ReadEngine", "WriteEngine", "BurstSplitter", "FetchCmd", "LoadCmd",
           "StoreCmd", "row_bytes"]

_READ_CHANNELS = ("ar", "r")


class DMA(wiring.Component):
    """Both DMA engines on one AXI4 master bus.

    Parameters
    ----------
    config : AcceleratorConfig
    outstanding : int or None
        Read bursts in flight; ``None`` takes ``config.max_outstanding_reads``.

    Members
    -------
    bus : Out(AXI4Signature)
        The AXI4 master; all reads use ARID 0 and all writes AWID 0.
    fetch_cmd, fetch_words, load_cmd, load_rows, load_done :
        As in :class:`ReadEngine`.
    store_cmd, store_rows, store_done :
        As in :class:`WriteEngine`.
    """

    def __init__(self, config, *, outstanding=None):
        self._read = ReadEngine(config, outstanding=outstanding)
        self._write = WriteEngine(config)
        members = {"bus": Out(AXI4Signature.from_config(config))}
        for engine in (self._read, self._write):
            for name, member in engine.signature.members.items():
                if name != "bus":
                    members[name] = member
        self.config = config
        self.row_bytes = self._read.row_bytes
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.read = rd = self._read
        m.submodules.write = wr = self._write
        for name, member in self.bus.signature.members.items():
            engine = rd if name.startswith(_READ_CHANNELS) else wr
            ours, theirs = getattr(self.bus, name), getattr(engine.bus, name)
            if member.flow == Out:
                m.d.comb += ours.eq(theirs)
            else:
                m.d.comb += theirs.eq(ours)
        for engine in (rd, wr):
            for name in engine.signature.members:
                if name != "bus":
                    wiring.connect(m, wiring.flipped(getattr(self, name)),
                                   getattr(engine, name))
        return m
