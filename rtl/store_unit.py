"""Store queue unit: STORE (accumulator rows through post-processing, or scratchpad bytes)
to system memory, CONFIG of the post-processing registers, and SYNC."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from systolic.isa import CONFIG_DEFAULTS, ConfigReg, Opcode, Queue, StoreSrc

from .dma_write import StoreCmd, chunk_bytes, chunk_layout
from .load_unit import UnitSignature
from .scratchpad import ReadPortSignature, check_config

__all__ = ["StoreUnit", "MAX_ROWS_IN_FLIGHT", "narrow_bound"]

MAX_ROWS_IN_FLIGHT = 7  # rows read and not yet handed to the write engine, at most


def narrow_bound(value):
    """The 11-bit form a clamp bound is kept in: ``value`` itself in -1024..1023, else
    its low byte above 767 (large) or below -768 (very negative).

    Outputs are bytes of a type whose range lies in -128..255, so a bound acts only by
    its side of that range and its low byte (a bound outside the range that wins the
    clamp gives its low byte); the narrow form keeps both.
    """
    if -1024 <= value < 1024:
        return value
    return (768 if value > 0 else -1024) + (value & 0xFF)


def _narrow_bound(v):
    inside = (v[10:] == 0) | (v[10:] == (1 << 22) - 1)
    return Mux(inside, v[:11], Cat(v[:8], Mux(v[31], Const(0b001, 3), Const(0b011, 3))))


class StoreUnit(wiring.Component):
    """Executes the store queue, one micro-op at a time; a STORE streams its rows as
    chunks of ``chunk_bytes(config)`` bytes to the write engine::

        read (acc_rd / sp_rd) -> hold (1 row) -> post-processing -> chunks -> store_rows
                                               (accumulator rows)

    * Read: one source row is requested when the hold register is empty or is emptied in
      the same cycle, and no row is landing; a refused request is repeated. The row lands
      in the hold register the cycle after the grant and is offered from there the cycle
      after (a row every 2 cycles at best).
    * An accumulator row is held on ``pp_i`` until the post-processor takes it; each
      output beat on ``pp_o`` is cut into chunks and taken with its last chunk. A
      scratchpad row is cut into chunks from the hold register.
    * Every chunk carries the row's system-memory address, which steps by the stride
      when the row's last chunk is taken.

    A STORE ends when every row was handed over: the unit sends ``store_cmd``, waits for
    ``store_done`` (the last B response has arrived) and completes, pushing its token, the
    cycle after.

    CONFIG values are kept as narrow as the post-processor reads them: the multiplier in
    ``requant_bits - 1`` bits, the shift in 6, the activation in 2, the clamp bounds in
    the 11-bit form of :func:`narrow_bound` (the same outputs); the zero point whole.

    Parameters
    ----------
    config : AcceleratorConfig
    pp_signature : wiring.Signature
        The :class:`~systolic.rtl.postproc.PostProcessor`'s signature.

    Attributes
    ----------
    store_cmd : Out(stream.Signature(StoreCmd))
    store_rows : Out(stream.Signature(chunk_layout(config)))
    store_done : In(stream.Signature(...))
        The write engine's streams (:class:`~systolic.rtl.dma_write.WriteEngine`).
    acc_rd, sp_rd : Out(ReadPortSignature)
    pp_i : Out(stream)
        Input of the :class:`~systolic.rtl.postproc.PostProcessor`.
    pp_o : In(stream)
        Its output beats.
    """

    def __init__(self, *, config, pp_signature):
        check_config(config, "StoreUnit")
        if not isinstance(pp_signature, wiring.Signature) or \
                not {"i", "o"} <= set(pp_signature.members.keys()):
            raise TypeError(f"pp_signature must be the post-processor's signature (members "
                            f"i and o), not {pp_signature!r}")
        self.config = config
        self.chunk = chunk_bytes(config)
        sp_aw = ceil_log2(config.sp_rows)
        acc_aw = ceil_log2(config.acc_rows)
        row = data.ArrayLayout(signed(32), config.cols)
        super().__init__({
            **UnitSignature(Queue.STORE),
            "store_cmd": Out(stream.Signature(StoreCmd)),
            "store_rows": Out(stream.Signature(chunk_layout(config))),
            "store_done": In(stream.Signature(data.StructLayout({"error": 1}))),
            "acc_rd": Out(ReadPortSignature(acc_aw, row)),
            "sp_rd": Out(ReadPortSignature(sp_aw, 8 * config.sp_width)),
            "pp_i": pp_signature.members["i"].flip(),
            "pp_o": pp_signature.members["o"].flip(),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        C = self.chunk
        s = self.pp_i.p.settings

        # -- CONFIG registers, as narrow as the post-processor reads them ---------------------
        regs = {
            ConfigReg.REQ_MULT: (len(s.multiplier), lambda v: v),
            ConfigReg.REQ_SHIFT: (len(s.shift), lambda v: v),
            ConfigReg.REQ_ZP: (signed(32), lambda v: v),
            ConfigReg.ACTIVATION: (len(s.activation), lambda v: v),
            ConfigReg.CLAMP_LO: (signed(11), _narrow_bound),
            ConfigReg.CLAMP_HI: (signed(11), _narrow_bound),
        }
        reg = {}
        for r, (shape, narrow) in regs.items():
            init = CONFIG_DEFAULTS[r]
            if narrow is _narrow_bound:
                init = narrow_bound(init)
            reg[r] = Signal(shape, name=r.name.lower(), init=init)
            with m.If(self.start):
                m.d.sync += reg[r].eq(init)

        # -- the STORE being run ---------------------------------------------------------------
        st_fields = self.uop.p.body.store
        from_sp = Signal()
        out_type = Signal.like(st_fields.out_type)
        per_channel = Signal()
        length = Signal(bits_for(max(cfg.cols, cfg.sp_width)))
        param_addr = Signal.like(s.param_addr)
        stride = Signal.like(st_fields.stride)
        dram_addr = Signal(32)                 # the current row's address
        push_prev = Signal()
        running = Signal()                     # rows are being read and sent

        # -- read: one row per request into the hold register ---------------------------------
        rd_addr = Signal(max(ceil_log2(cfg.sp_rows), ceil_log2(cfg.acc_rows)))
        rd_left = Signal(range(4097))
        inflight = Signal(range(MAX_ROWS_IN_FLIGHT + 1))
        acc_bits = len(self.acc_rd.data.as_value())
        sp_bits = len(self.sp_rd.data)
        hold = Signal(max(acc_bits, sp_bits))
        hold_valid = Signal()
        taken = Signal()                       # the held row is consumed this cycle
        landing = Mux(from_sp, self.sp_rd.valid, self.acc_rd.valid)
        want = Signal()
        m.d.comb += [
            want.eq(running & (rd_left != 0) & (inflight != MAX_ROWS_IN_FLIGHT) & ~landing &
                    (~hold_valid | taken)),
            self.acc_rd.addr.eq(rd_addr),
            self.sp_rd.addr.eq(rd_addr),
            self.sp_rd.en.eq(want & from_sp),
            self.acc_rd.en.eq(want & ~from_sp),
        ]
        granted = want & Mux(from_sp, self.sp_rd.ready, self.acc_rd.ready)
        with m.If(granted):
            m.d.sync += [rd_addr.eq(rd_addr + 1), rd_left.eq(rd_left - 1)]
        with m.If(landing):
            m.d.sync += [hold_valid.eq(1),
                         hold.eq(self.acc_rd.data.as_value()),
                         hold[:sp_bits].eq(Mux(from_sp, self.sp_rd.data,
                                               self.acc_rd.data.as_value()[:sp_bits]))]
        with m.Elif(taken):
            m.d.sync += hold_valid.eq(0)

        # -- post-processing of accumulator rows ------------------------------------------------
        m.d.comb += [
            self.pp_i.valid.eq(hold_valid & ~from_sp),
            self.pp_i.p.row.eq(hold[:len(self.pp_i.p.row.as_value())]),
            s.out_type.eq(out_type),
            s.activation.eq(reg[ConfigReg.ACTIVATION]),
            s.per_channel.eq(per_channel),
            s.param_addr.eq(param_addr),
            s.multiplier.eq(reg[ConfigReg.REQ_MULT]),
            s.shift.eq(reg[ConfigReg.REQ_SHIFT]),
            s.zero_point.eq(reg[ConfigReg.REQ_ZP]),
            s.clamp_lo.eq(reg[ConfigReg.CLAMP_LO]),
            s.clamp_hi.eq(reg[ConfigReg.CLAMP_HI]),
            s.length.eq(length),
        ]

        # -- chunks: a scratchpad row or a post-processor beat, C bytes at a time -------------
        beat = self.pp_o.p
        src_bytes = max(cfg.sp_width, len(beat.data) // 8)
        n_chunks = -(-src_bytes // C)
        src = Signal(8 * n_chunks * C)
        src_n = Signal(range(max(src_bytes, 4 * cfg.cols) + 1))
        m.d.comb += [
            src.eq(Mux(from_sp, hold[:sp_bits], beat.data)),
            src_n.eq(Mux(from_sp, length, beat.nbytes)),
        ]
        k = Signal(range(max(n_chunks, 2)))     # chunk of the source
        rest = Signal(range(max(src_bytes, 4 * cfg.cols) + 1))
        m.d.comb += rest.eq(src_n - k * C)
        final = rest <= C
        out = self.store_rows
        m.d.comb += [
            out.valid.eq(running & Mux(from_sp, hold_valid, self.pp_o.valid)),
            out.p.data.eq(src.word_select(k, 8 * C) if n_chunks > 1 else src),
            out.p.nbytes.eq(Mux(final, rest, C)),
            out.p.last.eq(final & (from_sp | beat.last)),
            out.p.addr.eq(dram_addr),
        ]
        chunk_go = out.valid & out.ready
        m.d.comb += [
            taken.eq(Mux(from_sp, chunk_go & final, self.pp_i.valid & self.pp_i.ready)),
            self.pp_o.ready.eq(chunk_go & final & ~from_sp),
        ]
        with m.If(chunk_go):
            m.d.sync += k.eq(Mux(final, 0, k + 1))
            with m.If(out.p.last):
                m.d.sync += dram_addr.eq(dram_addr + stride)
        m.d.sync += inflight.eq(inflight + granted - (chunk_go & out.p.last))

        # -- micro-ops --------------------------------------------------------------------------
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.idle.eq(1), self.uop.ready.eq(1)]
                with m.If(self.uop.valid):
                    p = self.uop.p
                    n_rows = st_fields.n_rows
                    m.d.sync += [
                        push_prev.eq(p.push_prev),
                        from_sp.eq(st_fields.src == StoreSrc.SP),
                        out_type.eq(st_fields.out_type),
                        per_channel.eq(st_fields.per_channel),
                        length.eq(st_fields.length),
                        param_addr.eq(st_fields.param_addr),
                        stride.eq(st_fields.stride),
                        dram_addr.eq(st_fields.dram_addr),
                        rd_addr.eq(st_fields.addr),
                        rd_left.eq(Mux(n_rows == 0, 1, n_rows)),
                    ]
                    with m.Switch(p.opcode):
                        with m.Case(Opcode.STORE):
                            m.d.sync += running.eq(1)
                            m.next = "STORE"
                        with m.Case(Opcode.CONFIG):
                            for r, (_, narrow) in regs.items():
                                with m.If(p.body.config.reg == r.value):
                                    m.d.sync += reg[r].eq(narrow(p.body.config.value))
                            m.next = "RETIRE"
                        with m.Default():
                            m.next = "RETIRE"
            with m.State("STORE"):
                m.d.comb += [self.busy.eq(1),
                             self.store_cmd.valid.eq((rd_left == 0) & (inflight == 0))]
                with m.If(self.store_cmd.valid & self.store_cmd.ready):
                    m.d.sync += running.eq(0)
                    m.next = "END"
            with m.State("END"):
                m.d.comb += [self.busy.eq(1), self.store_done.ready.eq(1)]
                with m.If(self.store_done.valid):
                    # Every chunk was written and answered.
                    m.d.comb += self.error.eq(self.store_done.p.error)
                    m.next = "RETIRE"
            with m.State("RETIRE"):
                m.d.comb += self.push_prev.eq(push_prev)
                m.next = "IDLE"
        return m

