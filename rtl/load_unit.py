"""Load queue unit: runs LOAD (DMA 2-D block into scratchpad, accumulator or parameter
buffer), CONFIG PAD_VALUE and SYNC micro-ops in order."""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolic.isa import CONFIG_DEFAULTS, ConfigReg, LoadDest, Opcode, Queue

from .decoder import uop_layout
from .dma_common import row_bytes
from .dma_read import LoadCmd
from .scratchpad import check_config

__all__ = ["UnitSignature", "LoadUnit"]

LANDING_CYCLES = 2  # an accumulator write accepted in t is committed by t + 2


def UnitSignature(queue):
    """Members every queue unit shares.

    ``uop`` carries the queue's micro-ops (the controller raises ``valid`` only once the
    head's tokens are available); ``push_prev``/``push_next`` pulse for one cycle when an
    instruction with those flags has completed (its last write landed); ``error`` pulses
    when the micro-op taken last got an AXI error response (the controller knows its
    instruction index); ``idle`` is high when
    no micro-op is in progress; ``start`` resets the unit's CONFIG registers.
    """
    return {
        "uop": In(stream.Signature(uop_layout(queue))),
        "push_prev": Out(1),
        "push_next": Out(1),
        "error": Out(1),
        "idle": Out(1),
        "busy": Out(1),
        "start": In(1),
    }


class LoadUnit(wiring.Component):
    """Executes the load queue.

    A LOAD becomes one DMA :class:`~systolic.rtl.dma_read.LoadCmd`, offered straight from
    the queue head: the micro-op is taken in the cycle the read engine takes the command,
    and the unit keeps only what the rows need (the destination, a running row address
    and the push flag). Every destination row the read engine then delivers is written in
    order to the scratchpad (the whole row, pads included), the accumulator (``load_w``,
    waiting for ``ready``) or the parameter buffer, at the next row address. The read
    engine reports the end of the command after the last row's handshake; the
    instruction completes (and pushes its token) ``LANDING_CYCLES + 1`` cycles after that
    report, when its last write has landed.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    load_cmd : Out(stream.Signature(LoadCmd))
    load_rows : In(stream.Signature(...))
    load_done : In(stream.Signature(...))
        The read engine's LOAD streams.
    sp_w, acc_w, param_w : Out(...)
        Write ports of the scratchpad, accumulator (``load_w``) and parameter buffer.
    """

    def __init__(self, *, config):
        check_config(config, "LoadUnit")
        self.config = config
        rb = row_bytes(config)
        sp_aw = ceil_log2(config.sp_rows)
        acc_aw = ceil_log2(config.acc_rows)
        par_aw = max(1, ceil_log2(config.param_rows))
        super().__init__({
            **UnitSignature(Queue.LOAD),
            "load_cmd": Out(stream.Signature(LoadCmd)),
            "load_rows": In(stream.Signature(data.StructLayout({"data": 8 * rb, "last": 1}))),
            "load_done": In(stream.Signature(data.StructLayout({"error": 1}))),
            "sp_w": Out(wiring.Signature({
                "en": Out(1), "addr": Out(sp_aw), "data": Out(8 * config.sp_width),
                "be": Out(config.sp_width)})),
            "acc_w": Out(wiring.Signature({
                "en": Out(1), "addr": Out(acc_aw),
                "data": Out(data.ArrayLayout(unsigned(32), config.cols)),
                "ready": In(1)})),
            "param_w": Out(wiring.Signature({
                "en": Out(1), "addr": Out(par_aw),
                "data": Out(data.ArrayLayout(unsigned(32), config.cols))})),
        })

    def elaborate(self, platform):
        c = self.config
        m = Module()
        head = self.uop.p
        ld = head.body.load
        pad_value = Signal(8, init=CONFIG_DEFAULTS[ConfigReg.PAD_VALUE] & 0xFF)
        addr = Signal(max(len(self.sp_w.addr), len(self.acc_w.addr), len(self.param_w.addr)))
        dest = Signal(LoadDest)
        push_next = Signal()
        done_error = Signal()
        wait = Signal(range(LANDING_CYCLES + 1))

        with m.If(self.start):
            m.d.sync += pad_value.eq(CONFIG_DEFAULTS[ConfigReg.PAD_VALUE] & 0xFF)

        cols32 = 32 * c.cols
        sp = ld.dest == LoadDest.SP
        m.d.comb += [
            self.load_cmd.p.dram_addr.eq(ld.dram_addr),
            self.load_cmd.p.stride.eq(ld.stride),
            self.load_cmd.p.n_rows.eq(ld.n_rows),
            self.load_cmd.p.pad_top.eq(ld.pad_top),
            self.load_cmd.p.pad_bottom.eq(ld.pad_bottom),
            self.load_cmd.p.length.eq(ld.length),
            self.load_cmd.p.pad_left.eq(ld.pad_left),
            self.load_cmd.p.elem_bytes.eq(Mux(sp, 1, 4)),
            self.load_cmd.p.row_elems.eq(Mux(sp, c.sp_width, c.cols)),
            self.load_cmd.p.pad_value.eq(pad_value),
            self.sp_w.addr.eq(addr),
            self.sp_w.data.eq(self.load_rows.p.data[:8 * c.sp_width]),
            self.sp_w.be.eq((1 << c.sp_width) - 1),
            self.acc_w.addr.eq(addr),
            self.acc_w.data.eq(self.load_rows.p.data[:cols32]),
            self.param_w.addr.eq(addr),
            self.param_w.data.eq(self.load_rows.p.data[:cols32]),
        ]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                with m.If(self.uop.valid):
                    with m.Switch(head.opcode):
                        with m.Case(Opcode.LOAD):
                            m.d.comb += [self.busy.eq(1), self.load_cmd.valid.eq(1),
                                         self.uop.ready.eq(self.load_cmd.ready)]
                            with m.If(self.load_cmd.ready):
                                m.d.sync += [addr.eq(ld.addr), dest.eq(ld.dest),
                                             push_next.eq(head.push_next)]
                                m.next = "ROWS"
                        with m.Case(Opcode.CONFIG):
                            m.d.comb += self.uop.ready.eq(1)
                            m.d.sync += [pad_value.eq(head.body.config.value[:8]),
                                         push_next.eq(head.push_next)]
                            m.next = "RETIRE"
                        with m.Default():
                            m.d.comb += self.uop.ready.eq(1)
                            m.d.sync += push_next.eq(head.push_next)
                            m.next = "RETIRE"
            with m.State("RETIRE"):
                m.d.comb += self.push_next.eq(push_next)
                m.next = "IDLE"
            with m.State("ROWS"):
                m.d.comb += [self.busy.eq(1), self.load_done.ready.eq(1)]
                with m.Switch(dest):
                    with m.Case(LoadDest.SP):
                        m.d.comb += [self.sp_w.en.eq(self.load_rows.valid),
                                     self.load_rows.ready.eq(1)]
                    with m.Case(LoadDest.ACC):
                        m.d.comb += [self.acc_w.en.eq(self.load_rows.valid),
                                     self.load_rows.ready.eq(self.acc_w.ready)]
                    with m.Default():
                        m.d.comb += [self.param_w.en.eq(self.load_rows.valid),
                                     self.load_rows.ready.eq(1)]
                with m.If(self.load_rows.valid & self.load_rows.ready):
                    m.d.sync += addr.eq(addr + 1)
                # the read engine reports the end after the last row's handshake
                with m.If(self.load_done.valid):
                    m.d.sync += [done_error.eq(self.load_done.p.error),
                                 wait.eq(LANDING_CYCLES)]
                    m.next = "LAND"
            with m.State("LAND"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 0):
                    m.d.comb += [self.error.eq(done_error), self.push_next.eq(push_next)]
                    m.next = "IDLE"
        return m
