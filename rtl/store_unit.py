"""Store queue unit: STORE (accumulator rows through post-processing, or scratchpad bytes)
to system memory, CONFIG of the post-processing registers, and SYNC."""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from systolic.isa import CONFIG_DEFAULTS, ConfigReg, Opcode, Queue, StoreSrc

from .dma_write import StoreCmd, chunk_bytes, chunk_layout
from .load_unit import UnitSignature
from .postproc import element_input
from .scratchpad import ReadPortSignature, check_config

__all__ = ["StoreUnit", "max_rows_in_flight", "narrow_bound", "narrow_bound_hdl"]


def max_rows_in_flight(config):
    """Rows read and not yet handed to the write engine, at most: 1 with one
    post-processing lane (a row takes several cycles per element anyway: the next row is
    read once the last chunk of the previous one was taken), else 7 (enough for one row
    every 2 cycles through the post-processor's pipeline)."""
    return 1 if config.lanes == 1 else 7


def narrow_bound(value):
    """The 10-bit form a clamp bound is kept in: ``value`` itself in -512..511, else its
    low byte above 255 (large) or below -256 (very negative).

    Outputs are bytes of a type whose range lies in -128..255, so a bound acts only by
    its side of that range and its low byte (a bound outside the range that wins the
    clamp gives its low byte); the narrow form keeps both.
    """
    if -512 <= value < 512:
        return value
    return (256 if value > 0 else -512) + (value & 0xFF)


def narrow_bound_hdl(v):
    """:func:`narrow_bound` of the signed 32-bit value ``v``, as a 10-bit expression."""
    # Inside -512..511, bit 9 is the sign already; outside, bit 8 is set for a large
    # value and clear for a very negative one.
    inside = (v[9:] == 0) | (v[9:] == (1 << 23) - 1)
    return Cat(v[:8], Mux(inside, v[8], ~v[31]), v[31])


class StoreUnit(wiring.Component):
    """Executes the store queue, one micro-op at a time; a STORE streams its rows as
    chunks of ``chunk_bytes(config)`` bytes to the write engine::

        read (acc_rd / sp_rd) -> hold (1 row) -> post-processing -> chunks -> store_rows

    * Read: one source row is requested when the hold register is empty or is emptied in
      the same cycle, and no row is landing; a refused request is repeated. The row lands
      in the hold register the cycle after the grant and is offered from there the cycle
      after (a row every 2 cycles at best). With one post-processing lane the next row
      is read only once the last chunk of the previous one was taken.
    * The held row goes to the post-processor on ``pp_i``: an accumulator row with the
      STORE's settings, a scratchpad row (when ``sp_width <= 4 * lanes``) as an INT32
      row of one beat, which the post-processor passes unchanged. Each output beat on
      ``pp_o`` is cut into chunks (of the beat's first ``length`` bytes for a scratchpad
      row) and taken with its last chunk. A wider scratchpad row is cut into chunks
      straight from the hold register.
    * Every chunk carries its system-memory address: the row's address, which steps by
      the stride when the row's last chunk is taken, plus the bytes sent of the row.

    With the serial post-processor (one lane and a 16-bit M, see
    :func:`~systolic.rtl.postproc.element_input`) no row is held: the source row is
    read again for each element (a scratchpad row for each 4-byte word, sent as an
    INT32 element), only that element is held and offered on ``pp_i`` with its column,
    and the next read is requested the cycle after the element's last chunk was taken.
    The row's address steps by the stride in the cycle after its last chunk, through the
    adder that gives the chunks' addresses.

    A STORE ends when every row was handed over: the unit raises ``store_cmd`` and
    completes, pushing its token, in the cycle the write engine answers on
    ``store_done`` (no B response owed). CONFIG and SYNC complete in the cycle they are
    taken.

    CONFIG values are kept as narrow as the post-processor reads them: the multiplier in
    ``requant_bits - 1`` bits, the shift in 6, the activation in 2, the clamp bounds in
    the 10-bit form of :func:`narrow_bound` (the same outputs); the zero point whole.

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
        #: One element at a time (the serial post-processor), else whole rows.
        self.element = element_input(config)
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
        s = self.pp_i.p.settings

        # -- CONFIG registers, as narrow as the post-processor reads them ---------------------
        regs = {
            ConfigReg.REQ_MULT: (len(s.multiplier), lambda v: v),
            ConfigReg.REQ_SHIFT: (len(s.shift), lambda v: v),
            ConfigReg.REQ_ZP: (signed(32), lambda v: v),
            ConfigReg.ACTIVATION: (len(s.activation), lambda v: v),
            ConfigReg.CLAMP_LO: (signed(10), narrow_bound_hdl),
            ConfigReg.CLAMP_HI: (signed(10), narrow_bound_hdl),
        }
        reg = {}
        for r, (shape, narrow) in regs.items():
            init = CONFIG_DEFAULTS[r]
            if narrow is narrow_bound_hdl:
                init = narrow_bound(init)
            reg[r] = Signal(shape, name=r.name.lower(), init=init)

        # -- the STORE being run ---------------------------------------------------------------
        st_fields = self.uop.p.body.store
        # The out type, or 3 (which the decoder rejects) for a scratchpad source.
        out_type = Signal.like(st_fields.out_type)
        from_sp = Signal()
        m.d.comb += from_sp.eq(out_type == 3)
        per_channel = Signal()
        length = Signal(bits_for(max(cfg.cols, cfg.sp_width)))
        param_addr = Signal.like(s.param_addr)
        stride = Signal.like(st_fields.stride)
        dram_addr = Signal(32)                 # the current row's address
        push_prev = Signal()
        # The decoder keeps addr + n_rows within the memory, so the counters need no more.
        src_rows = max(cfg.sp_rows, cfg.acc_rows)
        run = SimpleNamespace(
            running=Signal(),                  # rows are being read and sent
            from_sp=from_sp, out_type=out_type, length=length, stride=stride,
            dram_addr=dram_addr,
            rd_addr=Signal(ceil_log2(src_rows)),
            rd_left=Signal(range(src_rows + 1)))
        rd_addr, rd_left = run.rd_addr, run.rd_left
        m.d.comb += [self.acc_rd.addr.eq(rd_addr), self.sp_rd.addr.eq(rd_addr)]
        sent = (self.element_path if self.element else self.row_path)(m, run)
        s = self.pp_i.p.settings
        m.d.comb += [
            s.out_type.eq(out_type),           # 3 (a scratchpad row) acts as INT32
            s.activation.eq(reg[ConfigReg.ACTIVATION]),
            s.per_channel.eq(per_channel),
            s.param_addr.eq(param_addr),
            s.multiplier.eq(reg[ConfigReg.REQ_MULT]),
            s.shift.eq(reg[ConfigReg.REQ_SHIFT]),
            s.zero_point.eq(reg[ConfigReg.REQ_ZP]),
            s.clamp_lo.eq(reg[ConfigReg.CLAMP_LO]),
            s.clamp_hi.eq(reg[ConfigReg.CLAMP_HI]),
        ]

        # -- micro-ops --------------------------------------------------------------------------
        # CONFIG and SYNC complete, and push their token, in the cycle they are taken; a
        # STORE in the cycle the write engine answers the end of its data.
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.idle.eq(1), self.uop.ready.eq(1)]
                with m.If(self.uop.valid):
                    p = self.uop.p
                    m.d.sync += [
                        push_prev.eq(p.push_prev),
                        out_type.eq(Mux(st_fields.src == StoreSrc.SP, 3,
                                        st_fields.out_type)),
                        per_channel.eq(st_fields.per_channel),
                        length.eq(st_fields.length),
                        param_addr.eq(st_fields.param_addr),
                        stride.eq(st_fields.stride),
                        dram_addr.eq(st_fields.dram_addr),
                        rd_addr.eq(st_fields.addr),
                        rd_left.eq(st_fields.n_rows),
                    ]
                    with m.If(p.opcode == Opcode.STORE):
                        m.next = "STORE"
                    with m.Else():
                        m.d.comb += self.push_prev.eq(p.push_prev)
                    with m.If(p.opcode == Opcode.CONFIG):
                        for r, (_, narrow) in regs.items():
                            with m.If(p.body.config.reg == r.value):
                                m.d.sync += reg[r].eq(narrow(p.body.config.value))
            with m.State("STORE"):
                # Once every chunk was handed over, the write engine answers when every
                # write was answered.
                m.d.comb += [self.busy.eq(1), run.running.eq(~sent),
                             self.store_cmd.valid.eq(sent), self.store_done.ready.eq(sent)]
                with m.If(self.store_done.valid & self.store_done.ready):
                    m.d.comb += [self.error.eq(self.store_done.p.error),
                                 self.push_prev.eq(push_prev)]
                    m.next = "IDLE"
        # A new program starts from the defaults (over a CONFIG taken in the same cycle).
        with m.If(self.start):
            m.d.sync += [sig.eq(sig.init) for sig in reg.values()]
        return m

    def row_path(self, m, run):
        """Rows through the post-processor (or cut into chunks) from a one-row hold
        register; returns the signal that every chunk of the STORE was handed over."""
        cfg = self.config
        C = self.chunk
        running, from_sp, out_type, length = run.running, run.from_sp, run.out_type, run.length
        stride, dram_addr, rd_addr, rd_left = run.stride, run.dram_addr, run.rd_addr, run.rd_left
        # -- read: one row per request into the hold register ---------------------------------
        max_inflight = max_rows_in_flight(cfg)
        inflight = Signal(range(max_inflight + 1))
        acc_bits = len(self.acc_rd.data.as_value())
        sp_bits = len(self.sp_rd.data)
        hold = Signal(max(acc_bits, sp_bits))
        hold_valid = Signal()
        taken = Signal()                       # the held row is consumed this cycle
        landing = Mux(from_sp, self.sp_rd.valid, self.acc_rd.valid)
        want = Signal()
        m.d.comb += [
            want.eq(running & (rd_left != 0) & (inflight != max_inflight) & ~landing &
                    (~hold_valid | taken)),
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

        # -- post-processing ----------------------------------------------------------------
        # A scratchpad row that fits one output beat goes through the post-processor too,
        # as an INT32 row (passed unchanged) of its bytes; a wider one is cut into chunks
        # from the hold register.
        via_pp = cfg.sp_width <= 4 * cfg.lanes
        direct = Const(0) if via_pp else from_sp     # chunks from the hold register
        sp_elems = -(-cfg.sp_width // 4)
        m.d.comb += [
            self.pp_i.valid.eq(hold_valid & ~direct),
            self.pp_i.p.row.eq(hold[:len(self.pp_i.p.row.as_value())]),
            self.pp_i.p.settings.length.eq(Mux(from_sp, sp_elems, length)),
        ]

        # -- chunks of a post-processor beat (or of a scratchpad row), C bytes at a time ------
        beat = self.pp_o.p
        src_bytes = len(beat.data) // 8 if via_pp else max(cfg.sp_width, len(beat.data) // 8)
        n_chunks = -(-src_bytes // C)
        src = Signal(8 * n_chunks * C)
        src_n = Signal(range(max(src_bytes, 4 * cfg.cols) + 1))
        m.d.comb += [
            src.eq(beat.data if via_pp else Mux(from_sp, hold[:sp_bits], beat.data)),
            src_n.eq(Mux(from_sp, length, beat.nbytes)),   # a scratchpad row: its length
        ]
        boff = Signal(range(max(cfg.sp_width, 4 * cfg.cols)))   # bytes sent of the row
        k = Signal(range(max(n_chunks, 2)))     # chunk of the source
        if C == 1:
            # Chunk k of a scratchpad row is its byte boff; an INT32 beat of one element
            # starts at a multiple of 4 bytes of the row; an int8 beat is one chunk.
            m.d.comb += k.eq(Mux(from_sp, boff, Mux(out_type[1], boff[:2], 0)))
        rest = Signal(range(max(src_bytes, 4 * cfg.cols) + 1))
        m.d.comb += rest.eq(src_n - k * C)
        final = rest <= C
        nbytes = Mux(final, rest, C)
        row_end = final & (from_sp | beat.last)
        out = self.store_rows
        m.d.comb += [
            out.valid.eq(running & Mux(direct, hold_valid, self.pp_o.valid)),
            out.p.data.eq(src.word_select(k, 8 * C) if n_chunks > 1 else src),
            out.p.nbytes.eq(nbytes),
            out.p.addr.eq(dram_addr + boff),
        ]
        chunk_go = out.valid & out.ready
        m.d.comb += [
            taken.eq(Mux(direct, chunk_go & final, self.pp_i.valid & self.pp_i.ready)),
            self.pp_o.ready.eq(chunk_go & final & ~direct),
        ]
        with m.If(chunk_go):
            if C > 1:
                m.d.sync += k.eq(Mux(final, 0, k + 1))
            m.d.sync += boff.eq(boff + nbytes)
            with m.If(row_end):
                m.d.sync += [boff.eq(0), dram_addr.eq(dram_addr + stride)]
        m.d.sync += inflight.eq(inflight + granted - (chunk_go & row_end))
        return (rd_left == 0) & (inflight == 0)


    def element_path(self, m, run):
        """One element at a time, for the serial post-processor: the source row is read
        again for every element and only that element is held; returns the signal that
        every chunk of the STORE was handed over."""
        cfg = self.config
        running, from_sp = run.running, run.from_sp
        rd_addr, rd_left = run.rd_addr, run.rd_left
        sp_words = -(-cfg.sp_width // 4)
        k = Signal(range(max(cfg.cols, sp_words, 2)))    # element (or word) of the row
        elem = Signal(signed(32))
        elem_valid = Signal()
        length_m1 = Signal.like(run.length)
        m.d.comb += length_m1.eq(run.length - 1)
        # A scratchpad row of `length` bytes is sent as INT32 words: its last word is
        # (length - 1) // 4, of which bytes up to (length - 1) % 4 are sent.
        row_last = k == Mux(from_sp, length_m1[2:], length_m1)
        tail = Mux(from_sp, length_m1[:2], 3)

        # -- read: the row of element k, again for each element ------------------------------
        landing = self.acc_rd.valid | self.sp_rd.valid
        want = running & (rd_left != 0) & ~elem_valid & ~landing
        m.d.comb += [self.sp_rd.en.eq(want & from_sp), self.acc_rd.en.eq(want & ~from_sp)]
        sp_row = Cat(self.sp_rd.data, Const(0, 32 * sp_words - len(self.sp_rd.data)))
        sp_word = sp_row if sp_words == 1 else sp_row.word_select(k, 32)
        taken = self.pp_i.valid & self.pp_i.ready
        with m.If(landing):
            m.d.sync += [elem_valid.eq(1),
                         elem.eq(Mux(from_sp, sp_word,
                                     self.acc_rd.data.as_value().word_select(k, 32)))]
        with m.Elif(taken):
            m.d.sync += elem_valid.eq(0)
        with m.If(taken):
            m.d.sync += k.eq(Mux(row_last, 0, k + 1))
            with m.If(row_last):
                m.d.sync += [rd_addr.eq(rd_addr + 1), rd_left.eq(rd_left - 1)]
        m.d.comb += [
            self.pp_i.valid.eq(elem_valid),
            self.pp_i.p.elem.eq(elem),
            self.pp_i.p.index.eq(k),
            self.pp_i.p.settings.length.eq(run.length),
        ]

        # -- chunks: a byte element, or the bytes of an INT32 (or scratchpad) word ----------
        beat = self.pp_o.p
        raw = run.out_type[1]                  # INT32 (2) or a scratchpad word (3)
        boff = Signal(range(max(cfg.sp_width, 4 * cfg.cols, 4)))   # bytes sent of the row
        beat_final = ~raw | (boff[:2] == Mux(row_last, tail, 3))
        row_end = beat_final & row_last
        # One adder gives the chunk's address (row address + boff) and, in the cycle after
        # a row's last chunk (`step`, no chunk then: the next element is not out yet), the
        # next row's address (row address + stride).
        step = Signal()
        addr = Signal(32)
        m.d.comb += addr.eq(run.dram_addr + (boff | Mux(step, run.stride, 0)))
        out = self.store_rows
        m.d.comb += [
            out.valid.eq(running & self.pp_o.valid & ~step),
            out.p.data.eq(beat.data.word_select(Mux(raw, boff[:2], 0), 8)),
            out.p.nbytes.eq(1),
            out.p.addr.eq(addr),
        ]
        chunk_go = out.valid & out.ready
        m.d.comb += self.pp_o.ready.eq(chunk_go & beat_final)
        with m.If(chunk_go):
            m.d.sync += boff.eq(boff + 1)
            with m.If(row_end):
                m.d.sync += [boff.eq(0), step.eq(1)]
        with m.If(step):
            m.d.sync += [run.dram_addr.eq(addr), step.eq(0)]
        return (rd_left == 0) & ~step
