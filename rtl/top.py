"""The accelerator top: ``Accelerator(config)`` with an AXI4 master, an AXI4-Lite slave
and an interrupt, under the standard flat port names."""

from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from systolic.config import AcceleratorConfig
from systolic.isa import ErrorCode, Queue

from . import axi
from .accumulator import Accumulator
from .controller import Controller
from .csr import CSR_ADDR_WIDTH, CsrBlock, PerfEvents
from .dma import DMA
from .exec_unit import ExecUnit
from .load_unit import LoadUnit
from .postproc import PostProcessor
from .scratchpad import Scratchpad
from .store_unit import StoreUnit

__all__ = ["Accelerator", "Core"]


class Core(wiring.Component):
    """Everything but the CSR block: controller, queue units, memories, array, DMA.

    Parameters
    ----------
    config : AcceleratorConfig
    multiplier : str or callable
        The systolic array's multiplier primitive (:mod:`systolic.rtl.multiplier`).
    """

    def __init__(self, *, config, multiplier="generic"):
        self.config = config
        self.multiplier = multiplier
        super().__init__({
            "bus": Out(axi.AXI4Signature.from_config(config)),
            "start": In(1),
            "prog_addr": In(32),
            "prog_len": In(32),
            "busy": Out(1),
            "done": Out(1),
            "error_we": Out(1),
            "error_code": Out(ErrorCode),
            "error_index": Out(32),
            "error_held": In(1),
            "error_held_index": In(32),
            "acc_overflow": Out(1),
            "events": Out(PerfEvents),
        })

    def elaborate(self, platform):
        c = self.config
        m = Module()
        m.submodules.ctrl = ctrl = Controller(config=c)
        m.submodules.dma = dma = DMA(c)
        m.submodules.sp = sp = Scratchpad(config=c)
        m.submodules.acc = acc = Accumulator(config=c)
        m.submodules.pp = pp = PostProcessor(config=c)
        m.submodules.lu = lu = LoadUnit(config=c)
        m.submodules.xu = xu = ExecUnit(config=c, multiplier=self.multiplier)
        m.submodules.su = su = StoreUnit(config=c, pp_signature=pp.signature)

        wiring.connect(m, wiring.flipped(self.bus), dma.bus)
        m.d.comb += [
            ctrl.start.eq(self.start), ctrl.prog_addr.eq(self.prog_addr),
            ctrl.prog_len.eq(self.prog_len),
            self.busy.eq(ctrl.busy), self.done.eq(ctrl.done),
            self.error_we.eq(ctrl.error_we),
            self.error_code.eq(ctrl.error_code), self.error_index.eq(ctrl.error_index),
            ctrl.error_held.eq(self.error_held), ctrl.error_held_index.eq(self.error_held_index),
        ]
        wiring.connect(m, ctrl.fetch_cmd, dma.fetch_cmd)
        wiring.connect(m, dma.fetch_words, ctrl.fetch_words)
        units = {Queue.LOAD: lu, Queue.EXEC: xu, Queue.STORE: su}
        for q, unit in units.items():
            wiring.connect(m, getattr(ctrl, q.name.lower()), unit.uop)
            m.d.comb += [
                ctrl.push[q.value][0].eq(unit.push_prev),
                ctrl.push[q.value][1].eq(unit.push_next),
                ctrl.unit_error[q.value].eq(unit.error),
                unit.start.eq(self.start),
            ]
        m.d.comb += ctrl.units_idle.eq(lu.idle & xu.idle & su.idle)

        # load unit
        wiring.connect(m, lu.load_cmd, dma.load_cmd)
        wiring.connect(m, dma.load_rows, lu.load_rows)
        wiring.connect(m, dma.load_done, lu.load_done)
        wiring.connect(m, lu.sp_w, sp.w)
        m.d.comb += [
            acc.load_w.en.eq(lu.acc_w.en), acc.load_w.addr.eq(lu.acc_w.addr),
            acc.load_w.data.eq(lu.acc_w.data), lu.acc_w.ready.eq(acc.load_w.ready),
            pp.param_w.en.eq(lu.param_w.en), pp.param_w.addr.eq(lu.param_w.addr),
            pp.param_w.data.eq(lu.param_w.data),
        ]
        # execute unit
        wiring.connect(m, xu.sp_in, sp.rd_in)
        wiring.connect(m, xu.sp_wt, sp.rd_wt)
        wiring.connect(m, xu.array_w, acc.array_w)
        wiring.connect(m, xu.acc_w, acc.vec_w)
        wiring.connect(m, xu.acc_a, acc.vec_rd_a)
        wiring.connect(m, xu.acc_b, acc.vec_rd_b)
        # store unit
        wiring.connect(m, su.store_cmd, dma.store_cmd)
        wiring.connect(m, su.store_rows, dma.store_rows)
        wiring.connect(m, dma.store_done, su.store_done)
        wiring.connect(m, su.acc_rd, acc.store_rd)
        wiring.connect(m, su.sp_rd, sp.rd_st)
        wiring.connect(m, su.pp_i, pp.i)
        wiring.connect(m, pp.o, su.pp_o)

        m.d.comb += [
            acc.overflow_clear.eq(self.start),
            self.acc_overflow.eq(acc.overflow | xu.overflow),
        ]
        ev = self.events
        computing = ~xu.idle
        m.d.comb += [
            ev.mac_busy.eq(xu.mac_busy),
            ev.stall_token.eq(ctrl.stall_token),
            ev.stall_fetch.eq(ctrl.stall_fetch),
            ev.stall_dma.eq((dma.bus.arvalid & ~dma.bus.arready)
                            | (dma.bus.awvalid & ~dma.bus.awready)
                            | (dma.bus.wvalid & ~dma.bus.wready)),
            ev.instret.eq(ctrl.instret),
            ev.load_busy.eq(lu.busy),
            ev.store_busy.eq(su.busy),
            ev.overlap.eq((lu.busy | su.busy) & computing),
        ]
        return m


class Accelerator(wiring.Component):
    """The accelerator an SoC instantiates.

    Ports: the AXI4 master ``m_axi_*`` (instruction fetch, LOAD, STORE), the AXI4-Lite
    slave ``s_axil_*`` (CSRs, 8-bit addresses) and ``irq`` (level, high while
    IRQ_STATUS.DONE and CTRL.IRQ_ENABLE). One clock domain (``sync``), synchronous reset.

    A soft reset (CTRL.SOFT_RESET) stops new AXI address handshakes, waits until every
    accepted read burst has returned its last beat and every accepted write burst its B
    response, then resets everything but the CSR block (memories keep their contents;
    the array's weights clear, as in the golden model).

    Parameters
    ----------
    config : AcceleratorConfig
        Must have ``dataflow="ws"``.
    multiplier : str or callable
        The systolic array's multiplier primitive: ``"generic"`` (Amaranth ``*``),
        ``"ice40"``, ``"ecp5"`` or a factory (:mod:`systolic.rtl.multiplier`).
    """

    def __init__(self, config, *, multiplier="generic"):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"Accelerator config must be an AcceleratorConfig, not {config!r}")
        if config.dataflow != "ws":
            raise ValueError(f"Accelerator supports dataflow 'ws' only (the ISA has no "
                             f"output-stationary mode yet), not {config.dataflow!r}")
        self.config = config
        self.multiplier = multiplier
        self._axi = Out(axi.AXI4Signature.from_config(config))
        self._axil = In(axi.AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH, data_width=32))
        super().__init__({
            **axi.flat_members("m_axi", self._axi),
            **axi.flat_members("s_axil", self._axil),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        c = self.config
        m = Module()
        m.submodules.csr = csr = CsrBlock(config=c)
        core_reset = Signal()
        m.submodules.core = core = ResetInserter(core_reset)(
            Core(config=c, multiplier=self.multiplier))
        wiring.connect(m, wiring.flipped(axi.flat_interface(self, "s_axil", self._axil)),
                       csr.bus)
        m.d.comb += self.irq.eq(csr.irq)

        # -- the AXI master, gated while a soft reset waits for outstanding bursts -----------
        bus = axi.flat_interface(self, "m_axi", self._axi)
        resetting = Signal()
        gate = ~resetting
        for name, member in self._axi.signature.members.items():
            ours, theirs = getattr(bus, name), getattr(core.bus, name)
            if member.flow == Out:
                m.d.comb += ours.eq(theirs)
            else:
                m.d.comb += theirs.eq(ours)
        m.d.comb += [
            bus.arvalid.eq(core.bus.arvalid & gate), core.bus.arready.eq(bus.arready & gate),
            bus.awvalid.eq(core.bus.awvalid & gate), core.bus.awready.eq(bus.awready & gate),
        ]
        # The DMA keeps at most `max_outstanding_reads` (<= 16) read bursts and 15 B
        # responses in flight, so 6-bit counters hold every count.
        reads = Signal(6)     # accepted AR bursts without their last R beat
        writes = Signal(6)    # accepted AW bursts without their B response
        wbursts = Signal(6)   # accepted AW bursts without their last W beat
        m.d.sync += [
            reads.eq(reads + (bus.arvalid & bus.arready) - (bus.rvalid & bus.rready & bus.rlast)),
            writes.eq(writes + (bus.awvalid & bus.awready) - (bus.bvalid & bus.bready)),
            wbursts.eq(wbursts + (bus.awvalid & bus.awready)
                       - (bus.wvalid & bus.wready & bus.wlast)),
        ]
        with m.If(resetting):
            # the core may no longer take R/B; answer them here so bursts complete
            m.d.comb += [bus.rready.eq(1), bus.bready.eq(1)]
            with m.If((reads == 0) & (writes == 0) & (wbursts == 0)):
                m.d.comb += core_reset.eq(1)
                m.d.sync += resetting.eq(0)
        with m.If(csr.soft_reset):
            m.d.sync += resetting.eq(1)

        m.d.comb += [
            core.start.eq(csr.start), core.prog_addr.eq(csr.prog_addr),
            core.prog_len.eq(csr.prog_len),
            csr.busy.eq(core.busy & ~resetting), csr.resetting.eq(resetting),
            csr.done.eq(core.done & ~resetting),
            csr.error_we.eq(core.error_we),
            csr.error_code.eq(core.error_code), csr.error_index.eq(core.error_index),
            core.error_held.eq(csr.error_held), core.error_held_index.eq(csr.error_held_index),
            csr.acc_overflow.eq(core.acc_overflow),
            csr.events.eq(core.events),
        ]
        return m
