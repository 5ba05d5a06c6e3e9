"""Store queue unit: STORE (accumulator rows through post-processing, or scratchpad bytes)
to system memory, CONFIG of the post-processing registers, and SYNC."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolic.isa import CONFIG_DEFAULTS, ConfigReg, Opcode, Queue, StoreSrc
from systolic.numerics import OutType

from .dma_common import row_bytes
from .dma_write import StoreCmd
from .load_unit import UnitSignature
from .scratchpad import ReadPortSignature, check_config

__all__ = ["StoreUnit"]

_STORE_REGS = (ConfigReg.REQ_MULT, ConfigReg.REQ_SHIFT, ConfigReg.REQ_ZP,
               ConfigReg.ACTIVATION, ConfigReg.CLAMP_LO, ConfigReg.CLAMP_HI)


class StoreUnit(wiring.Component):
    """Executes the store queue, one micro-op at a time.

    A STORE becomes one DMA :class:`~systolic.rtl.dma_write.StoreCmd`; then, row by row,
    the source row is read (``acc_rd`` or ``sp_rd``), an accumulator row is sent through
    the post-processor (``pp_i``/``pp_o``) and its output beats packed into a row, and the
    row is handed to the write engine. The instruction completes when the write engine
    reports the last B response.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    store_cmd : Out(stream.Signature(StoreCmd))
    store_rows : Out(stream.Signature(...))
    store_done : In(stream.Signature(...))
    acc_rd, sp_rd : Out(ReadPortSignature)
    pp_i : Out(stream)
        Input of the :class:`~systolic.rtl.postproc.PostProcessor`.
    pp_o : In(stream)
        Its output beats.
    """

    def __init__(self, *, config, pp_signature):
        check_config(config, "StoreUnit")
        self.config = config
        self.rb = row_bytes(config)
        sp_aw = ceil_log2(config.sp_rows)
        acc_aw = ceil_log2(config.acc_rows)
        row = data.ArrayLayout(signed(32), config.cols)
        super().__init__({
            **UnitSignature(Queue.STORE),
            "store_cmd": Out(stream.Signature(StoreCmd)),
            "store_rows": Out(stream.Signature(data.StructLayout({"data": 8 * self.rb}))),
            "store_done": In(stream.Signature(data.StructLayout({"error": 1}))),
            "acc_rd": Out(ReadPortSignature(acc_aw, row)),
            "sp_rd": Out(ReadPortSignature(sp_aw, 8 * config.sp_width)),
            "pp_i": pp_signature.members["i"].flip(),
            "pp_o": pp_signature.members["o"].flip(),
        })

    def elaborate(self, platform):
        m = Module()
        uop = Signal.like(self.uop.p)
        st = uop.body.store
        regs = {r: Signal(signed(32), name=r.name.lower(), init=CONFIG_DEFAULTS[r])
                for r in _STORE_REGS}
        with m.If(self.start):
            m.d.sync += [s.eq(CONFIG_DEFAULTS[r]) for r, s in regs.items()]

        row_i = Signal(16)
        buf = Signal(8 * self.rb)
        pos = Signal(range(self.rb + 1))
        acc_row = Signal.like(self.acc_rd.data)
        done_error = Signal()
        from_sp = st.src == StoreSrc.SP

        m.d.comb += [
            self.acc_rd.addr.eq(st.addr + row_i),
            self.sp_rd.addr.eq(st.addr + row_i),
            self.store_rows.p.data.eq(buf),
        ]
        s = self.pp_i.p.settings
        m.d.comb += [
            self.pp_i.p.row.eq(acc_row),
            s.out_type.eq(st.out_type),
            s.activation.eq(regs[ConfigReg.ACTIVATION]),
            s.per_channel.eq(st.per_channel),
            s.param_addr.eq(st.param_addr),
            s.multiplier.eq(regs[ConfigReg.REQ_MULT]),
            s.shift.eq(regs[ConfigReg.REQ_SHIFT]),
            s.zero_point.eq(regs[ConfigReg.REQ_ZP]),
            s.clamp_lo.eq(regs[ConfigReg.CLAMP_LO]),
            s.clamp_hi.eq(regs[ConfigReg.CLAMP_HI]),
            s.length.eq(st.length),
        ]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.idle.eq(1), self.uop.ready.eq(1)]
                with m.If(self.uop.valid):
                    p = self.uop.p
                    m.d.sync += [uop.eq(p), row_i.eq(0), done_error.eq(0)]
                    with m.Switch(p.opcode):
                        with m.Case(Opcode.STORE):
                            m.next = "CMD"
                        with m.Case(Opcode.CONFIG):
                            for r, sig in regs.items():
                                with m.If(p.body.config.reg == r.value):
                                    m.d.sync += sig.eq(p.body.config.value)
                            m.next = "RETIRE"
                        with m.Default():
                            m.next = "RETIRE"
            with m.State("CMD"):
                m.d.comb += [
                    self.busy.eq(1),
                    self.store_cmd.valid.eq(1),
                    self.store_cmd.p.dram_addr.eq(st.dram_addr),
                    self.store_cmd.p.stride.eq(st.stride),
                    self.store_cmd.p.n_rows.eq(st.n_rows),
                    self.store_cmd.p.row_bytes.eq(
                        Mux(st.out_type == OutType.INT32, st.length * 4, st.length)),
                ]
                with m.If(self.store_cmd.ready):
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [buf.eq(0), pos.eq(0)]
                with m.If(from_sp):
                    m.d.comb += self.sp_rd.en.eq(1)
                    with m.If(self.sp_rd.ready):
                        m.next = "SP_DATA"
                with m.Else():
                    m.d.comb += self.acc_rd.en.eq(1)
                    with m.If(self.acc_rd.ready):
                        m.next = "ACC_DATA"
            with m.State("SP_DATA"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += buf.eq(self.sp_rd.data)
                m.next = "SEND"
            with m.State("ACC_DATA"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += acc_row.eq(self.acc_rd.data)
                m.next = "PP"
            with m.State("PP"):
                m.d.comb += [self.busy.eq(1), self.pp_i.valid.eq(1)]
                with m.If(self.pp_i.ready):
                    m.next = "PACK"
            with m.State("PACK"):
                m.d.comb += [self.busy.eq(1), self.pp_o.ready.eq(1)]
                with m.If(self.pp_o.valid):
                    m.d.sync += [
                        buf.eq(buf | (self.pp_o.p.data << (pos * 8))),
                        pos.eq(pos + self.pp_o.p.nbytes),
                    ]
                    with m.If(self.pp_o.p.last):
                        m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.busy.eq(1), self.store_rows.valid.eq(1)]
                with m.If(self.store_rows.ready):
                    m.d.sync += row_i.eq(row_i + 1)
                    with m.If(row_i + 1 == st.n_rows):
                        m.next = "DONE"
                    with m.Else():
                        m.next = "READ"
            with m.State("DONE"):
                m.d.comb += [self.busy.eq(1), self.store_done.ready.eq(1)]
                with m.If(self.store_done.valid):
                    m.d.comb += [self.error.eq(self.store_done.p.error),
                                 self.error_index.eq(uop.index)]
                    m.next = "RETIRE"
            with m.State("RETIRE"):
                m.d.comb += self.push_prev.eq(uop.push_prev)
                m.next = "IDLE"
        return m
