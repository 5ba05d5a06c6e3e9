"""Execute queue unit: MATMUL on the weight-stationary array, VECTOR, CONFIG and SYNC."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolic.checks import BINARY_VECTOR_OPS
from systolic.isa import CONFIG_DEFAULTS, ConfigReg, Opcode, Queue

from .load_unit import LANDING_CYCLES, UnitSignature
from .scratchpad import ReadPortSignature, check_config
from .vector import VectorUnit

__all__ = ["ExecUnit"]


def _element(m, byte, bits, is_signed, name):
    e = Signal(signed(bits + 1), name=name)
    low = byte[:bits]
    m.d.comb += e.eq(low.as_signed() if is_signed else low)
    return e


class ExecUnit(wiring.Component):
    """Executes the execute queue, one micro-op at a time, each to completion.

    MATMUL: with ``preload``, the ``rows`` weight rows at ``w_addr`` are read (port
    ``sp_wt``) into the shadow weights; with ``compute``, input rows stream from ``sp_in``
    (one per cycle while the scratchpad grants them) through the active weights into the
    accumulator's ``array_w`` port (two cycles from grant to write); after the last write
    has landed the shadow weights become active and the tokens are pushed.
    VECTOR: per row, operands from ``acc_a``/``acc_b``, the :class:`VectorUnit` result to
    ``acc_w``. A micro-op starts only after the previous one's writes have landed, so
    reads always see earlier results.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    sp_in, sp_wt : Out(ReadPortSignature)
    array_w, acc_w : Out(...)
        Accumulator write ports (``array_w`` with ``accumulate``, ``acc_w`` with ``ready``).
    acc_a, acc_b : Out(ReadPortSignature)
    mac_busy : Out(1)
        An input row entered the array this cycle.
    overflow : Out(1)
        Sticky: a VECTOR result saturated (cleared by ``start``).
    """

    def __init__(self, *, config):
        check_config(config, "ExecUnit")
        self.config = config
        sp_aw = ceil_log2(config.sp_rows)
        acc_aw = ceil_log2(config.acc_rows)
        row = data.ArrayLayout(signed(32), config.cols)
        super().__init__({
            **UnitSignature(Queue.EXEC),
            "sp_in": Out(ReadPortSignature(sp_aw, 8 * config.sp_width)),
            "sp_wt": Out(ReadPortSignature(sp_aw, 8 * config.sp_width)),
            "array_w": Out(wiring.Signature({"en": Out(1), "addr": Out(acc_aw),
                                             "data": Out(row), "accumulate": Out(1)})),
            "acc_w": Out(wiring.Signature({"en": Out(1), "addr": Out(acc_aw),
                                           "data": Out(row), "ready": In(1)})),
            "acc_a": Out(ReadPortSignature(acc_aw, row)),
            "acc_b": Out(ReadPortSignature(acc_aw, row)),
            "mac_busy": Out(1),
            "overflow": Out(1),
        })

    def elaborate(self, platform):
        c = self.config
        m = Module()
        uop = Signal.like(self.uop.p)
        mm = uop.body.matmul
        vec = uop.body.vector

        # CONFIG registers of the execute queue
        regs = {r: Signal(signed(32), name=r.name.lower(), init=CONFIG_DEFAULTS[r])
                for r in (ConfigReg.VEC_MULT_A, ConfigReg.VEC_SHIFT_A, ConfigReg.VEC_MULT_B,
                          ConfigReg.VEC_SHIFT_B)}
        with m.If(self.start):
            m.d.sync += [s.eq(CONFIG_DEFAULTS[r]) for r, s in regs.items()]
            m.d.sync += self.overflow.eq(0)

        # -- weights --------------------------------------------------------------------------
        wshape = signed(c.weight_bits + 1)
        active = [[Signal(wshape, name=f"w{k}_{n}") for n in range(c.cols)]
                  for k in range(c.rows)]
        shadow = [[Signal(wshape, name=f"ws{k}_{n}") for n in range(c.cols)]
                  for k in range(c.rows)]

        issued = Signal(16)
        returned = Signal(16)
        wait = Signal(range(LANDING_CYCLES + 2))

        # preload: shadow row `returned` from sp_wt
        m.d.comb += self.sp_wt.addr.eq(mm.w_addr + issued)
        with m.If(self.sp_wt.valid):
            for k in range(c.rows):
                with m.If(returned == k):
                    for n in range(c.cols):
                        e = _element(m, self.sp_wt.data[8 * n:8 * n + 8], c.weight_bits,
                                     c.weight_signed, f"we{k}_{n}")
                        m.d.sync += shadow[k][n].eq(e)

        # compute: input row -> dot products -> array_w
        m.d.comb += self.sp_in.addr.eq(mm.a_addr + issued)
        res_valid = Signal()
        res_addr = Signal.like(self.array_w.addr)
        res = Signal(data.ArrayLayout(signed(32), c.cols))
        m.d.sync += res_valid.eq(0)
        with m.If(self.sp_in.valid):
            a = [_element(m, self.sp_in.data[8 * k:8 * k + 8], c.input_bits, c.input_signed,
                          f"a{k}") for k in range(c.rows)]
            m.d.sync += [res_valid.eq(1), res_addr.eq(mm.c_addr + returned)]
            for n in range(c.cols):
                total = 0
                for k in range(c.rows):
                    total = total + a[k] * active[k][n]
                m.d.sync += res[n].eq(total)
        m.d.comb += [
            self.array_w.en.eq(res_valid),
            self.array_w.addr.eq(res_addr),
            self.array_w.data.eq(res),
            self.array_w.accumulate.eq(mm.accumulate),
        ]

        # -- vector ---------------------------------------------------------------------------
        if c.vector_unit:
            m.submodules.vu = vu = VectorUnit(config=c)
            a_reg = Signal.like(self.acc_a.data)
            b_reg = Signal.like(self.acc_b.data)
            a_req = Signal()
            b_req = Signal()
            a_got = Signal()
            b_got = Signal()
            binary = 0
            for v in BINARY_VECTOR_OPS:
                binary = binary | (vec.op.as_value() == v.value)
            m.d.comb += [
                vu.op.eq(vec.op.as_value()), vu.imm.eq(vec.imm.as_signed()),
                vu.mult_a.eq(regs[ConfigReg.VEC_MULT_A]),
                vu.mult_b.eq(regs[ConfigReg.VEC_MULT_B]),
                vu.shift_a.eq(regs[ConfigReg.VEC_SHIFT_A]),
                vu.shift_b.eq(regs[ConfigReg.VEC_SHIFT_B]),
                vu.a.eq(a_reg), vu.b.eq(b_reg),
                self.acc_a.addr.eq(vec.src_a + issued),
                self.acc_b.addr.eq(vec.src_b + issued),
                self.acc_w.addr.eq(vec.dst + issued),
                self.acc_w.data.eq(vu.result),
            ]
            with m.If(self.acc_a.valid):
                m.d.sync += [a_reg.eq(self.acc_a.data), a_got.eq(1)]
            with m.If(self.acc_b.valid):
                m.d.sync += [b_reg.eq(self.acc_b.data), b_got.eq(1)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.idle.eq(1), self.uop.ready.eq(1)]
                with m.If(self.uop.valid):
                    p = self.uop.p
                    m.d.sync += [uop.eq(p), issued.eq(0), returned.eq(0)]
                    with m.Switch(p.opcode):
                        with m.Case(Opcode.MATMUL):
                            with m.If(p.body.matmul.preload):
                                m.next = "PRELOAD"
                            with m.Else():
                                m.next = "COMPUTE"
                        if c.vector_unit:       # else the decoder rejects VECTOR
                            with m.Case(Opcode.VECTOR):
                                m.next = "V_READ"
                        with m.Case(Opcode.CONFIG):
                            for r, s in regs.items():
                                with m.If(p.body.config.reg == r.value):
                                    m.d.sync += s.eq(p.body.config.value)
                            m.next = "RETIRE"
                        with m.Default():
                            m.next = "RETIRE"
            with m.State("PRELOAD"):
                m.d.comb += self.busy.eq(1)
                with m.If(issued < c.rows):
                    m.d.comb += self.sp_wt.en.eq(1)
                    with m.If(self.sp_wt.ready):
                        m.d.sync += issued.eq(issued + 1)
                with m.If(self.sp_wt.valid):
                    m.d.sync += returned.eq(returned + 1)
                    with m.If(returned == c.rows - 1):
                        m.d.sync += [issued.eq(0), returned.eq(0)]
                        with m.If(mm.compute):
                            m.next = "COMPUTE"
                        with m.Else():
                            m.d.sync += wait.eq(0)
                            m.next = "LAND"
            with m.State("COMPUTE"):
                m.d.comb += self.busy.eq(1)
                with m.If(issued < mm.n_rows):
                    m.d.comb += self.sp_in.en.eq(1)
                    with m.If(self.sp_in.ready):
                        m.d.comb += self.mac_busy.eq(1)
                        m.d.sync += issued.eq(issued + 1)
                with m.If(self.sp_in.valid):
                    m.d.sync += returned.eq(returned + 1)
                    with m.If(returned + 1 == mm.n_rows):
                        m.d.sync += wait.eq(LANDING_CYCLES + 1)
                        m.next = "LAND"
            with m.State("LAND"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 0):
                    with m.If((uop.opcode == Opcode.MATMUL) & mm.preload):
                        for k in range(c.rows):
                            for n in range(c.cols):
                                m.d.sync += active[k][n].eq(shadow[k][n])
                    m.next = "RETIRE"
            with m.State("RETIRE"):
                m.d.comb += [self.push_prev.eq(uop.push_prev), self.push_next.eq(uop.push_next)]
                m.next = "IDLE"
            if c.vector_unit:
                with m.State("V_READ"):
                    m.d.comb += self.busy.eq(1)
                    m.d.comb += [self.acc_a.en.eq(~a_req), self.acc_b.en.eq(binary & ~b_req)]
                    with m.If(self.acc_a.en & self.acc_a.ready):
                        m.d.sync += a_req.eq(1)
                    with m.If(self.acc_b.en & self.acc_b.ready):
                        m.d.sync += b_req.eq(1)
                    with m.If(a_got & (b_got | ~binary)):
                        m.next = "V_WRITE"
                with m.State("V_WRITE"):
                    m.d.comb += [self.busy.eq(1), self.acc_w.en.eq(1)]
                    with m.If(self.acc_w.ready):
                        with m.If(vu.overflow):
                            m.d.sync += self.overflow.eq(1)
                        m.d.sync += [issued.eq(issued + 1), a_req.eq(0), b_req.eq(0),
                                     a_got.eq(0), b_got.eq(0)]
                        with m.If(issued + 1 == vec.n_rows):
                            m.d.sync += wait.eq(LANDING_CYCLES)
                            m.next = "LAND"
                        with m.Else():
                            m.next = "V_READ"
        return m
