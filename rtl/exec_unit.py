"""Execute queue unit: MATMUL on the weight-stationary systolic array, VECTOR, CONFIG and
SYNC."""

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolic.checks import BINARY_VECTOR_OPS
from systolic.isa import CONFIG_DEFAULTS, ConfigReg, Opcode, Queue

from .array import WSArray, array_latency
from .load_unit import LANDING_CYCLES, UnitSignature
from .scratchpad import ReadPortSignature, check_config, shared_read_path
from .vector import VectorUnit

__all__ = ["ExecUnit", "matmul_landing"]


def matmul_landing(config):
    """Cycles from the grant of a MATMUL's last scratchpad read to its token push: one
    cycle of scratchpad latency, the array's latency, then ``LANDING_CYCLES`` of the
    accumulator's write pipeline."""
    return 1 + array_latency(config) + LANDING_CYCLES


class ExecUnit(wiring.Component):
    """Executes the execute queue on a :class:`~systolic.rtl.array.WSArray`.

    MATMUL issue: every cycle the unit asks ``sp_in`` for the next input row (``compute``)
    and ``sp_wt`` for the next weight row (``preload``). A granted input row enters the
    array one cycle later (the scratchpad's latency) with the tag ``(acc row, accumulate)``,
    so its result row leaves the array ``latency`` cycles after that straight into the
    accumulator's ``array_w`` port; a granted weight row goes into the array's shadow
    weights one cycle later. A cycle without a grant is a bubble. The cycle in which a
    MATMUL's last read is granted, the unit takes the next micro-op, so back-to-back
    MATMULs stream with no idle cycle while the scratchpad grants every read. The input
    row count is as wide as the smaller of the scratchpad and the accumulator (the
    decoder keeps a computing MATMUL's rows inside both), and one incrementer gives both
    the next count and the last-row test.

    Weight tiles: a preload of MATMUL ``k`` fills the shadow weights while ``k`` streams
    and leaves a *pending* swap; the first computing MATMUL after it raises ``swap`` in its
    first cycle (on its first row, or on a bubble if that read was not granted), which makes
    the tile active, exactly as the ISA's "active from the next MATMUL" says. Its own
    preload is pushed from that cycle on, so it belongs to the tile after.

    Where the scratchpad serves one read per cycle (:func:`.scratchpad.shared_read_path`)
    a preload cannot run under the streaming rows anyway, so the array keeps no shadow
    weights: a MATMUL asks for its weight rows only once all its input rows are granted,
    and they load straight into the active weights, used by the input rows granted after
    them (the next computing MATMUL's), which is the same order of effects.

    Completion: ``matmul_landing(config)`` cycles after a MATMUL's last grant its last
    accumulator write has landed and its tokens are pushed (a delay line of push flags,
    so a MATMUL retires while later ones stream). Every other micro-op with a push, and
    VECTOR, first waits until all MATMUL writes have landed (so VECTOR reads see them);
    CONFIG and SYNC without pushes do not wait. VECTOR: per row, operands from
    ``acc_a``/``acc_b``, the :class:`VectorUnit` result to ``acc_w``; the next micro-op
    starts after its last write has landed.

    Parameters
    ----------
    config : AcceleratorConfig
        ``dataflow`` must be ``"ws"``; ``pipeline_every`` sets the array's latency.
    multiplier : str or callable
        The array's multiplier primitive (:mod:`systolic.rtl.multiplier`).

    Attributes
    ----------
    latency : int
        The array's latency (cycles from an input row to its result row).
    sp_in, sp_wt : Out(ReadPortSignature)
        Scratchpad reads of input and weight rows.
    array_w : Out(...)
        Accumulator write port of the array's results (``accumulate``; no ``ready``).
    acc_w : Out(...)
        Accumulator write port of the vector unit (with ``ready``).
    acc_a, acc_b : Out(ReadPortSignature)
        Accumulator reads of the vector unit.
    mac_busy : Out(1)
        A valid input row enters the array this cycle.
    overflow : Out(1)
        Sticky: a VECTOR result saturated (cleared by ``start``).
    """

    def __init__(self, *, config, multiplier="generic"):
        check_config(config, "ExecUnit")
        if config.dataflow != "ws":
            raise ValueError(f"ExecUnit supports dataflow 'ws' only, not {config.dataflow!r}")
        self.config = config
        self.multiplier = multiplier
        self.latency = array_latency(config)
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
        acc_aw = ceil_log2(c.acc_rows)
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

        # -- the array and its feeds --------------------------------------------------------
        # one read per cycle: weights load after the inputs, into the active registers
        direct = shared_read_path(c)
        m.submodules.array = arr = WSArray(c, tag_bits=acc_aw + 1, multiplier=self.multiplier,
                                           shadow=not direct)
        # input rows granted in this MATMUL: the decoder keeps a computing MATMUL's rows
        # inside the scratchpad and the accumulator, so no more than the smaller one holds
        in_cnt = Signal(range(min(c.sp_rows, c.acc_rows) + 1))
        in_more = Signal()                    # input rows left (the decoder rejects a
                                              # computing MATMUL of 0 rows)
        in_next = Signal.like(in_cnt)         # input rows granted, this cycle's included
        wt_cnt = Signal(range(c.rows + 1))    # weight rows granted in this MATMUL
        first = Signal()                      # first issue cycle of this MATMUL
        pending = Signal()                    # the shadow weights hold a tile not yet swapped
        swap = Signal()
        tag = Signal(acc_aw + 1)
        w_row = Signal(range(c.rows))
        in_go = Signal()
        wt_go = Signal()
        m.d.comb += [
            self.sp_in.addr.eq(mm.a_addr + in_cnt),
            self.sp_wt.addr.eq(mm.w_addr + wt_cnt),
            in_go.eq(self.sp_in.en & self.sp_in.ready),
            wt_go.eq(self.sp_wt.en & self.sp_wt.ready),
        ]
        m.d.sync += swap.eq(0)
        with m.If(in_go):
            m.d.sync += tag.eq(Cat((mm.c_addr + in_cnt)[:acc_aw], mm.accumulate))
        with m.If(wt_go):
            m.d.sync += w_row.eq(wt_cnt)
        m.d.comb += [
            arr.inp.valid.eq(self.sp_in.valid),
            arr.inp.payload.data.eq(self.sp_in.data[:8 * c.rows]),
            arr.inp.payload.swap.eq(swap),
            arr.inp.payload.tag.eq(tag),
            arr.weight.valid.eq(self.sp_wt.valid),
            arr.weight.payload.data.eq(self.sp_wt.data[:8 * c.cols]),
            arr.weight.payload.row.eq(w_row),
            self.mac_busy.eq(arr.inp.valid),
            self.array_w.en.eq(arr.out.valid),
            self.array_w.addr.eq(arr.out.payload.tag[:acc_aw]),
            self.array_w.accumulate.eq(arr.out.payload.tag[acc_aw]),
            self.array_w.data.eq(arr.out.payload.data),
        ]

        # -- MATMUL completion: push flags wait in a delay line until the writes landed -------
        landing = matmul_landing(c)
        issued = Signal()                     # this cycle grants a MATMUL's last read
        flight = Signal(range(landing + 1))   # cycles until every issued MATMUL has landed
        drained = Signal()
        line = [Signal(2, name=f"push_d{i + 1}") for i in range(landing)]
        m.d.sync += line[0].eq(Cat(issued & uop.push_prev, issued & uop.push_next))
        m.d.sync += [line[i + 1].eq(line[i]) for i in range(landing - 1)]
        with m.If(issued):
            m.d.sync += flight.eq(landing)
        with m.Elif(flight != 0):
            m.d.sync += flight.eq(flight - 1)
        m.d.comb += drained.eq(flight == 0)
        retire_push = Signal(2)

        # -- vector ---------------------------------------------------------------------------
        v_cnt = Signal(range(4097))
        wait = Signal(range(LANDING_CYCLES + 1))
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
                self.acc_a.addr.eq(vec.src_a + v_cnt),
                self.acc_b.addr.eq(vec.src_b + v_cnt),
                self.acc_w.addr.eq(vec.dst + v_cnt),
                self.acc_w.data.eq(vu.result),
            ]
            with m.If(self.acc_a.valid):
                m.d.sync += [a_reg.eq(self.acc_a.data), a_got.eq(1)]
            with m.If(self.acc_b.valid):
                m.d.sync += [b_reg.eq(self.acc_b.data), b_got.eq(1)]

        m.d.comb += [self.push_prev.eq(line[-1][0] | retire_push[0]),
                     self.push_next.eq(line[-1][1] | retire_push[1])]

        def accept():
            """Take the queue head (if any) this cycle and go where its opcode leads."""
            m.d.comb += self.uop.ready.eq(1)
            p = self.uop.p
            with m.If(self.uop.valid):
                m.d.sync += [uop.eq(p), in_cnt.eq(0), wt_cnt.eq(0), v_cnt.eq(0),
                             in_more.eq(p.body.matmul.compute)]
                with m.Switch(p.opcode):
                    with m.Case(Opcode.MATMUL):
                        m.d.sync += first.eq(1)
                        m.next = "MATMUL"
                    with m.Case(Opcode.CONFIG):
                        for r, s in regs.items():
                            with m.If(p.body.config.reg == r.value):
                                m.d.sync += s.eq(p.body.config.value)
                        m.next = "DRAIN"
                    with m.Default():
                        m.next = "DRAIN"
            with m.Else():
                m.next = "IDLE"

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.idle.eq(drained), self.busy.eq(~drained)]
                accept()
            with m.State("MATMUL"):
                m.d.comb += self.busy.eq(1)
                # one incrementer for the count and the end test
                m.d.comb += in_next.eq(in_cnt + in_go)
                in_end = in_next == mm.n_rows[:len(in_cnt)]
                with m.If(in_go):
                    m.d.sync += in_more.eq(~in_end)
                wt_more = mm.preload & (wt_cnt != c.rows)
                m.d.comb += [self.sp_in.en.eq(in_more),
                             self.sp_wt.en.eq(wt_more & ~in_more if direct else wt_more)]
                m.d.sync += [in_cnt.eq(in_next), wt_cnt.eq(wt_cnt + wt_go),
                             first.eq(0)]
                if not direct:
                    with m.If(first):
                        m.d.sync += swap.eq(pending & mm.compute)
                        with m.If(mm.preload):
                            m.d.sync += pending.eq(1)
                        with m.Elif(mm.compute):
                            m.d.sync += pending.eq(0)
                in_last = ~in_more | (in_go & in_end)
                wt_last = ~wt_more | (wt_go & (wt_cnt + 1 == c.rows))
                with m.If(in_last & wt_last):
                    m.d.comb += issued.eq(1)
                    accept()
            with m.State("DRAIN"):
                # non-MATMUL micro-ops that push, and VECTOR, wait for MATMUL writes to land
                m.d.comb += self.busy.eq(1)
                needs = uop.push_prev | uop.push_next | (uop.opcode == Opcode.VECTOR)
                with m.If(drained | ~needs):
                    with m.If(uop.opcode == Opcode.VECTOR):
                        m.next = "V_READ" if c.vector_unit else "RETIRE"
                    with m.Else():
                        m.next = "RETIRE"
            with m.State("LAND"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 0):
                    m.next = "RETIRE"
            with m.State("RETIRE"):
                m.d.comb += [self.busy.eq(1),
                             retire_push.eq(Cat(uop.push_prev, uop.push_next))]
                accept()
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
                        m.d.sync += [v_cnt.eq(v_cnt + 1), a_req.eq(0), b_req.eq(0),
                                     a_got.eq(0), b_got.eq(0)]
                        with m.If(v_cnt + 1 == vec.n_rows):
                            m.d.sync += wait.eq(LANDING_CYCLES)
                            m.next = "LAND"
                        with m.Else():
                            m.next = "V_READ"
        return m
