"""Post-processing parameter buffer: per-channel multiplier and shift rows."""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .scratchpad import check_config

__all__ = ["ParamBuffer"]


class ParamBuffer(wiring.Component):
    """``config.param_rows`` rows of ``config.cols`` 32-bit words that LOAD fills.

    A per-channel requantization reads two rows at once: the multipliers (row ``a``) and
    the shifts (row ``a + 1``). The rows are interleaved over two 1R1W memories (even rows
    in one, odd rows in the other), so the pair is always one row of each and both come
    back in the same cycle.

    * ``w``: one row per cycle, always accepted; written at the end of the cycle.
    * ``rd``: with ``en`` high in cycle ``t``, ``m_row`` holds row ``addr`` and ``s_row``
      row ``addr + 1`` from cycle ``t + 1`` on, until the next cycle with ``en`` high.
      A read in the cycle a row is written returns the old row. Rows at or beyond
      ``param_rows`` read as unspecified values (the decoder rejects such addresses).
    * Only the low ``word_bits`` (``max(requant_bits - 1, 6)``) bits of each word are
      stored, all that the post-processor uses; the higher bits of ``m_row`` and
      ``s_row`` read as 0.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    w : In(...)
        ``en``, ``addr``, ``data`` (ArrayLayout(unsigned(32), cols)).
    rd : In(...)
        ``en``, ``addr`` in; ``m_row``, ``s_row`` (ArrayLayout(unsigned(32), cols)) out.
    """

    def __init__(self, *, config):
        check_config(config, "ParamBuffer")
        self.config = config
        self.addr_width = max(1, ceil_log2(config.param_rows))
        #: Low bits kept of each word: the post-processor uses ``requant_bits - 1`` bits
        #: of a multiplier and 6 bits of a shift.
        self.word_bits = max(config.requant_bits - 1, 6)
        row = data.ArrayLayout(unsigned(32), config.cols)
        super().__init__({
            "w": In(wiring.Signature({
                "en": Out(1), "addr": Out(self.addr_width), "data": Out(row),
            })),
            "rd": In(wiring.Signature({
                "en": Out(1), "addr": Out(self.addr_width),
                "m_row": In(row), "s_row": In(row),
            })),
        })

    def elaborate(self, platform):
        cfg = self.config
        m = Module()
        depths = ((cfg.param_rows + 1) // 2, cfg.param_rows // 2)
        rdata = []
        odd = self.rd.addr[0]
        half = self.rd.addr[1:]
        # Row index inside each memory for the pair (addr, addr + 1).
        rd_index = (Mux(odd, half + 1, half), half)  # even memory, odd memory
        keep = self.word_bits
        for parity, depth in enumerate(depths):
            mem = Memory(shape=data.ArrayLayout(unsigned(keep), cfg.cols), depth=depth,
                         init=[])
            m.submodules[f"mem_{'odd' if parity else 'even'}"] = mem
            wp = mem.write_port()
            rp = mem.read_port()
            m.d.comb += [
                wp.en.eq(self.w.en & (self.w.addr[0] == parity)),
                wp.addr.eq(self.w.addr[1:]),
                wp.data.eq(Cat(*(word[:keep] for word in self.w.data))),
                rp.en.eq(self.rd.en),
                rp.addr.eq(rd_index[parity]),
            ]
            rdata.append(rp.data)
        odd_q = Signal()
        with m.If(self.rd.en):
            m.d.sync += odd_q.eq(odd)
        for c in range(cfg.cols):
            m.d.comb += [
                self.rd.m_row[c].eq(Mux(odd_q, rdata[1][c], rdata[0][c])),
                self.rd.s_row[c].eq(Mux(odd_q, rdata[0][c], rdata[1][c])),
            ]
        return m
