"""Instruction decoder: static checks, queue routing, token masks and micro-ops, from isa.py.

Every layout, enum and rule here is read from :mod:`systolic.isa` and mirrors
:func:`systolic.checks.static_check` check for check, so the hardware reports the same
:class:`~systolic.isa.ErrorCode` as the golden model for every 128-bit word.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from systolic.checks import BINARY_VECTOR_OPS
from systolic.isa import (
    CONFIG_QUEUE,
    INSTR_BITS,
    LAYOUTS,
    MAX_ROWS,
    ConfigReg,
    ErrorCode,
    LoadDest,
    Opcode,
    Queue,
    StoreSrc,
    VectorOp,
)
from systolic.model import _POPS, _PUSHES
from systolic.numerics import SHIFT_MAX, OutType

from .scratchpad import check_config

__all__ = ["NO_QUEUE", "CHANNEL_ORDER", "UOP_OPS", "body_layout", "body_leaks", "uop_layout",
           "SKEW", "walk_steps", "Decoder"]

NO_QUEUE = 3                                # ``queue`` output of NOP, HALT and bad selectors
CHANNEL_ORDER = ("L2E", "E2L", "E2S", "S2E")  # bit order of the ``pops``/``pushes`` masks

# Opcodes each queue runs, besides CONFIG and SYNC.
UOP_OPS = {Queue.LOAD: (Opcode.LOAD,), Queue.EXEC: (Opcode.MATMUL, Opcode.VECTOR),
           Queue.STORE: (Opcode.STORE,)}

def body_layout(op):
    """The fields of opcode ``op`` without the header, as a struct layout."""
    return data.StructLayout({name: field.shape
                              for name, field in data.Layout.cast(LAYOUTS[op])
                              if name != "header"})


def _config_body():
    # reg and value where the instruction holds them (body bits 0 and 8), so that a
    # micro-op's body is the instruction's bits 8 and up
    return data.FlexibleLayout(40, {"reg": data.Field(unsigned(4), 0),
                                    "value": data.Field(signed(32), 8)})


def uop_layout(queue):
    """The micro-op a queue holds: opcode, token flags and the body of the opcodes that
    run in ``queue`` (a union; CONFIG keeps register and value only)."""
    bodies = {op.name.lower(): body_layout(op) for op in UOP_OPS[queue]}
    bodies["config"] = _config_body()
    return data.StructLayout({
        "opcode": Opcode,
        "pop_prev": 1, "pop_next": 1, "push_prev": 1, "push_next": 1,
        "body": data.UnionLayout(bodies),
    })


def _above(x, c, *, equal=False):
    """``x > c`` (``x >= c`` with ``equal``) for an unsigned ``x`` and a constant ``c``,
    as gates: a constant comparison needs no carry chain."""
    result = Const(int(equal))
    for i in range(len(x)):              # least significant bit first
        result = (x[i] & result) if c >> i & 1 else (x[i] | result)
    if c >= 1 << len(x):
        return Const(0)
    return result if c >= 0 else Const(1)


def _within(x, lo, hi):
    """``lo <= x <= hi`` for an unsigned ``x`` and constants ``lo``, ``hi``."""
    return _above(x, lo, equal=True) & ~_above(x, hi)


def _signed_within(x, lo, hi):
    """``lo <= x <= hi`` for a signed ``x`` (its raw bits) and constants ``lo``, ``hi``."""
    bias = 1 << (len(x) - 1)             # x + bias, unsigned, is x with its sign bit inverted
    return _within(x ^ bias, lo + bias, hi + bias)


def _sum_above(a, n, limit):
    """``a + n > limit`` for unsigned ``a``, ``n`` and a constant ``limit > 0``: an operand
    with a bit at or above ``limit``'s width exceeds it alone, so the adder is that wide."""
    k = max(1, int(limit).bit_length())
    high = 0
    for v in (a, n):
        if len(v) > k:
            high = high | (v[k:] != 0)
    return high | _above((a[:k] + n[:k])[:k + 1], limit)


def body_leaks(queue):
    """``{opcode: body bits}``: bits where an instruction of ``opcode`` run by ``queue``
    has a field that its micro-op does not keep (SYNC's ``queue``, CONFIG's ``reg`` above
    bit 3). The decoder passes the word's bits 8 and up as the body; elsewhere they are
    the opcode's own fields or reserved bits, zero in a dispatched word, so these bits
    are the only ones to clear to get the micro-op.
    """
    ops = (Opcode.CONFIG, Opcode.SYNC, *UOP_OPS[queue])
    layout = data.Layout.cast(uop_layout(queue))["body"].shape
    leaks = {}
    for op in ops:
        kept = set()
        name = op.name.lower()
        if name in dict(layout.members):
            for _n, field in data.Layout.cast(layout[name].shape):
                kept.update(range(field.offset, field.offset + field.width))
        bits = sorted(set(range(data.Layout.cast(body_layout(op)).size)) - kept)
        if bits:
            leaks[op] = bits
    return leaks


def _used_mask(op):
    used = (1 << 8) - 1
    for name, field in data.Layout.cast(LAYOUTS[op]):
        if name != "header":
            used |= ((1 << field.width) - 1) << field.offset
    return used


def _offset(op, name):
    return data.Layout.cast(LAYOUTS[op])[name].offset


# LOAD's n_rows, addr, stride and dram_addr sit this many bits above STORE's
SKEW = _offset(Opcode.LOAD, "stride") - _offset(Opcode.STORE, "stride")


def walk_steps(config, opcode):
    """Cycles ``ready`` stays low for a LOAD or STORE (``opcode``) that is walked: on a
    32-bit bus every one (17 for a STORE, as the row check adds 16-bit row addresses bit
    by bit), else only those whose memory extent could reach 2**32 (14: the 13 bits of
    ``n_rows`` after the address); a LOAD takes :data:`SKEW` cycles more."""
    steps = 17 if config.axi_data_width == 32 else 14
    return steps + (SKEW if opcode is Opcode.LOAD else 0)


def _bit(value, index):
    """Bit ``index`` of ``value``, zero past its width (``index`` of at most 5 bits, a
    negative one wrapped around: zero as well for values of up to 25 bits)."""
    return Cat(value, Const(0, 32 - len(value))).bit_select(index[:5], 1)


class _ExtentWalk(wiring.Component):
    """The memory extent check of LOAD and STORE, one step per cycle, and with ``serial``
    also their on-chip row check ``addr + n_rows > limit``.

    The two opcodes keep ``n_rows``, ``addr``, ``stride`` and ``dram_addr`` at the same
    places but for a skew of :data:`SKEW` bits (LOAD's higher), so the walk reads one
    window of the word for both: LOAD's operands appear multiplied by ``2**SKEW``, and so
    do its bytes per row and its limit of ``2**32``. The extent check
    ``dram_addr + (rows - 1) * stride + row_bytes > 2**32`` becomes a shift-and-add from
    the least significant bit of ``rows - 1`` up: ``R <- (R + X + carry) >> 1`` once per
    cycle, with ``X = 2 * dram_addr`` first and then ``bit i of (rows - 1)`` times
    ``stride``, ``row_bytes - 1`` entering bit by bit as the carry. ``R`` ends as
    ``floor((2 * extent - 2) / 2**steps)`` (LOAD walks ``SKEW`` steps more), so the extent
    is beyond ``2**32`` exactly when ``R`` reaches ``2**(33 - steps)``. ``rows - 1``
    (``n_rows`` less the pads) and the row sum are read from the word one bit per step,
    with a borrow and a carry.
    """

    def __init__(self, config):
        self.config = config
        self.serial = config.axi_data_width == 32   # a word takes 16 cycles to fetch there
        self.steps = walk_steps(config, Opcode.STORE)
        super().__init__({
            "word": In(INSTR_BITS),
            "restart": In(1),
            "ready": Out(1),
            "extent_bad": Out(1),
            "rows_bad": Out(1),
        })

    def elaborate(self, platform):
        c = self.config
        m = Module()
        w = self.word
        code = w[:4]
        is_ld, is_st = code == Opcode.LOAD.value, code == Opcode.STORE.value
        ld = data.View(LAYOUTS[Opcode.LOAD], w[:data.Layout.cast(LAYOUTS[Opcode.LOAD]).size])
        st = data.View(LAYOUTS[Opcode.STORE], w[:data.Layout.cast(LAYOUTS[Opcode.STORE]).size])

        def window(name, width):
            lo = _offset(Opcode.STORE, name)
            return w[lo:_offset(Opcode.LOAD, name) + width], _offset(Opcode.LOAD, name) - lo

        stride, skew = window("stride", 24)
        addr_w, skew_a = window("dram_addr", 32)
        assert skew == skew_a == SKEW >= 0
        width = 32 + skew                       # of the shifting register R

        # LOAD walks SKEW steps more: its extent, 2**SKEW times larger, ends as small
        step = Signal(range(self.steps + skew + 1))
        first = Signal(init=1)                  # step 0 (m_prev is 0 then)
        done = Signal()
        m.d.comb += done.eq(step == self.steps + Mux(is_ld, skew, 0))
        if self.serial:
            run = is_ld | is_st
        else:   # extents that cannot reach 2**32 are not walked
            small = Mux(is_ld, (ld.stride[16:] == 0) & (ld.dram_addr[28:] != 0xF),
                        (st.stride[16:] == 0) & (st.dram_addr[28:] != 0xF))
            run = (is_ld | is_st) & ~small
        m.d.comb += self.ready.eq(~run | done)

        # rows - 1, bit-serially: n_rows less (LOAD) the pads, less one
        rows, skew_n = window("n_rows", 13)
        n_bit = Signal()
        m.d.comb += n_bit.eq((step < 13) & _bit(rows, step + Mux(is_ld, skew_n, 0)))
        borrow = Signal(2)
        sub = Signal(3)
        m.d.comb += sub.eq(borrow + (step == 0)
                           + (is_ld & _bit(ld.pad_top, step)) + (is_ld & _bit(ld.pad_bottom, step)))
        m_bit = n_bit ^ sub[0]
        diff = Signal(3)
        m.d.comb += diff.eq(sub + 1 - n_bit)
        m_prev = Signal()                       # bit step - 1 of rows - 1

        # row bytes (times 2**SKEW for LOAD), bit step - 1 of it as the carry: the bit of
        # one window over both opcodes' ``length``, at step plus a per-opcode offset
        at = {op: _offset(op, "length") for op in (Opcode.LOAD, Opcode.STORE)}
        lo, hi = min(at.values()), max(at.values()) + 7
        base = {op: at[op] - lo for op in at}
        own = Signal(hi - lo)                   # the word's bits of the opcode's length
        for i in range(hi - lo):
            owners = [is_ld if op is Opcode.LOAD else ~is_ld
                      for op in at if base[op] <= i < base[op] + 7]
            m.d.comb += own[i].eq(w[lo + i] & (owners[0] if len(owners) == 1 else 1))
        ld_shift = skew + Mux(ld.dest.as_value() == LoadDest.SP.value, 0, 2)
        st_shift = Mux(st.out_type == OutType.INT32, 2, 0)
        shift = Signal(5)                       # step - shift is the bit of own
        m.d.comb += shift.eq(Mux(is_ld, ld_shift + 1 - base[Opcode.LOAD],
                                 st_shift + 1 - base[Opcode.STORE]))
        carry = _bit(own, (step - shift)[:5])
        # the row bytes less one (bit step - 1 from step 1 on): the walk adds 2 * extent - 2
        owe = Signal(init=1)                    # the one is still to be subtracted
        less = Signal()
        m.d.comb += less.eq(Mux(first, 0, carry ^ owe))

        # the shift-and-add
        # x = 2 * dram_addr in the first step, stride in a step after a one of rows - 1; the
        # bits of the window that belong to another field of the opcode are masked
        gates = {}
        for name, on in (("a", first), ("s", m_prev)):
            for kind, cond in (("lo", ~is_ld), ("mid", 1), ("hi", is_ld)):
                gates[name, kind] = Signal(name=f"gate_{name}_{kind}")
                m.d.comb += gates[name, kind].eq(on & cond)

        def masked(value, name, hi_from):
            # LOAD: the bits below the skew belong to another field; STORE: the bits from
            # ``hi_from`` up do
            return Cat(value[:skew] & gates[name, "lo"].replicate(skew),
                       value[skew:hi_from] & gates[name, "mid"].replicate(hi_from - skew),
                       value[hi_from:] & gates[name, "hi"].replicate(len(value) - hi_from))

        r = Signal(width)
        x = Signal(width + 1)
        m.d.comb += x.eq(Cat(Const(0, 1), masked(addr_w, "a", 32)) | masked(stride, "s", 24))
        total = Signal(width + 1)
        m.d.comb += total.eq(r + x + less)

        # the row check, bit-serially: addr + n_rows against the limit of the memory
        addrs, skew_r = window("addr", 16)
        a_bit = (step < 16) & _bit(addrs, step + Mux(is_ld, skew_r, 0))
        row_carry = Signal()
        row_gt = Signal()                       # the sum's bits so far exceed the limit's
        limit = Signal(17)
        limits = {LoadDest.SP.value: c.sp_rows, LoadDest.ACC.value: c.acc_rows,
                  LoadDest.PARAM.value: c.param_rows}
        assert max(c.sp_rows, c.acc_rows, c.param_rows) < 1 << 17
        with m.If(is_ld):
            with m.Switch(ld.dest.as_value()):
                for dest, rows_limit in limits.items():
                    with m.Case(dest):
                        m.d.comb += limit.eq(rows_limit)
        with m.Else():
            m.d.comb += limit.eq(Mux(st.src.as_value() == StoreSrc.SP.value, c.sp_rows,
                                     c.acc_rows))
        sum_bit = a_bit ^ n_bit ^ row_carry
        lim_bit = _bit(limit, step)

        with m.If(self.restart):
            m.d.sync += [step.eq(0), r.eq(0), borrow.eq(0), m_prev.eq(0), owe.eq(1),
                         row_carry.eq(0), row_gt.eq(0), first.eq(1)]
        with m.Elif(run & ~done):
            m.d.sync += [
                step.eq(step + 1), r.eq(total[1:]), first.eq(0), owe.eq(owe & ~carry),
                borrow.eq(diff[1:]), m_prev.eq(m_bit),
                row_carry.eq((a_bit & n_bit) | (row_carry & (a_bit | n_bit))),
                row_gt.eq(Mux(sum_bit ^ lim_bit, sum_bit, row_gt)),
            ]

        # r ends as floor((2 * extent - 2) / 2**steps) for STORE, and as
        # floor((2**(SKEW + 1) * extent - 2) / 2**(steps + SKEW)) for LOAD (row bytes
        # not zero): the extent is above 2**32 exactly when r reaches 2**(33 - steps)
        m.d.comb += [
            self.extent_bad.eq((borrow == 0)
                               & Mux(is_ld, ld.length != 0, st.length != 0)
                               & (r[33 - self.steps:] != 0)),
            self.rows_bad.eq(row_gt),
        ]
        return m


class Decoder(wiring.Component):
    """Decoder of one instruction word: combinational but for the LOAD/STORE walk.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    word : In(128)
        The instruction, held while ``valid``.
    valid : In(1)
        ``word`` holds an instruction to decode.
    next : In(1)
        The instruction is consumed; the next cycle starts a new one.
    ready : Out(1)
        The outputs describe ``word``. Low for :func:`walk_steps` cycles after a new LOAD
        or STORE: every one on a 32-bit bus, else one whose extent could reach 2**32.
    error : Out(ErrorCode)
        The static-check result, exactly :func:`systolic.checks.static_check`.
    queue : Out(2)
        The queue the instruction runs in (:class:`~systolic.isa.Queue`), or
        :data:`NO_QUEUE` for NOP and HALT.
    halt : Out(1)
        The opcode is HALT.
    pops, pushes : Out(4)
        Token channels the instruction pops and pushes, bits in :data:`CHANNEL_ORDER`.
    uop_load, uop_exec, uop_store : Out(uop_layout(queue))
        The micro-op for each queue: opcode, token flags, and as body the word's bits 8
        and up. The fields of the word's opcode (CONFIG: ``reg``, ``value``) hold its
        values; the bits of other opcodes' fields are the word's bits, not zero (the
        controller's queues clear them, see :func:`body_leaks`).
    """

    def __init__(self, *, config):
        check_config(config, "Decoder")
        self.config = config
        super().__init__({
            "word": In(INSTR_BITS),
            "valid": In(1),
            "next": In(1),
            "ready": Out(1),
            "error": Out(ErrorCode),
            "queue": Out(2),
            "halt": Out(1),
            "pops": Out(4),
            "pushes": Out(4),
            "uop_load": Out(uop_layout(Queue.LOAD)),
            "uop_exec": Out(uop_layout(Queue.EXEC)),
            "uop_store": Out(uop_layout(Queue.STORE)),
        })

    def elaborate(self, platform):
        c = self.config
        m = Module()
        views = {op: data.View(LAYOUTS[op], self.word[:data.Layout.cast(LAYOUTS[op]).size])
                 for op in Opcode}
        code = self.word[:4]
        op_is = {op: code == op.value for op in Opcode}

        # -- ILLEGAL_OPCODE ------------------------------------------------------------------
        illegal = Signal()
        defined = 0
        for op in Opcode:
            defined = defined | op_is[op]
        m.d.comb += illegal.eq(~defined | (op_is[Opcode.VECTOR] & (not c.vector_unit)))

        # -- queue ---------------------------------------------------------------------------
        queue = Signal(2, init=NO_QUEUE)
        cfg = views[Opcode.CONFIG]
        sync = views[Opcode.SYNC]
        with m.Switch(code):
            with m.Case(Opcode.LOAD):
                m.d.comb += queue.eq(Queue.LOAD)
            with m.Case(Opcode.STORE):
                m.d.comb += queue.eq(Queue.STORE)
            with m.Case(Opcode.MATMUL, Opcode.VECTOR):
                m.d.comb += queue.eq(Queue.EXEC)
            with m.Case(Opcode.SYNC):
                m.d.comb += queue.eq(sync.queue.as_value())
            with m.Case(Opcode.CONFIG):
                with m.Switch(cfg.reg.as_value()):
                    for reg, q in CONFIG_QUEUE.items():
                        with m.Case(reg.value):
                            m.d.comb += queue.eq(q)
        m.d.comb += self.queue.eq(queue)

        # -- RESERVED_BITS -------------------------------------------------------------------
        # Every layout packs its fields from bit 8 up, so an opcode's reserved bits are the
        # bits above its layout: one OR per stretch between layout ends, shared by opcodes.
        ends = sorted({_used_mask(op).bit_length() for op in Opcode} | {INSTR_BITS})
        above = {INSTR_BITS: Const(0)}          # end -> any bit set at or above it
        for lo, hi in reversed(list(zip(ends, ends[1:], strict=False))):
            above[lo] = above[hi] | (self.word[lo:hi] != 0)
        reserved = Signal()
        with m.Switch(code):
            for op in Opcode:
                with m.Case(op):
                    m.d.comb += reserved.eq(above[_used_mask(op).bit_length()])
        flags = Signal(4)
        m.d.comb += flags.eq(self.word[4:8])
        pop_prev, pop_next, push_prev, push_next = (flags[i] for i in range(4))
        flags_bad = Signal()
        with m.If(op_is[Opcode.NOP] | op_is[Opcode.HALT]):
            m.d.comb += flags_bad.eq(flags != 0)
        with m.Elif(queue == Queue.LOAD):
            m.d.comb += flags_bad.eq(pop_prev | push_prev)
        with m.Elif(queue == Queue.STORE):
            m.d.comb += flags_bad.eq(pop_next | push_next)

        # -- BAD_FIELD -----------------------------------------------------------------------
        def rows_bad(n):
            return ~_within(n, 1, MAX_ROWS)

        bad = Signal()
        load_pads = Signal(5)
        m.d.comb += load_pads.eq(views[Opcode.LOAD].pad_top + views[Opcode.LOAD].pad_bottom)
        mmax = (1 << (c.requant_bits - 1)) - 1
        ld, st, mm, vec = (views[o] for o in (Opcode.LOAD, Opcode.STORE, Opcode.MATMUL,
                                              Opcode.VECTOR))
        with m.Switch(code):
            with m.Case(Opcode.CONFIG):
                value = cfg.value
                with m.Switch(cfg.reg.as_value()):
                    for reg in ConfigReg:
                        with m.Case(reg.value):
                            if reg is ConfigReg.PAD_VALUE:
                                ok = _signed_within(value, -128, 255)
                            elif reg in (ConfigReg.REQ_MULT, ConfigReg.VEC_MULT_A,
                                         ConfigReg.VEC_MULT_B):
                                ok = _signed_within(value, 0, mmax)
                            elif reg in (ConfigReg.REQ_SHIFT, ConfigReg.VEC_SHIFT_A,
                                         ConfigReg.VEC_SHIFT_B):
                                ok = _signed_within(value, 0, SHIFT_MAX)
                            elif reg is ConfigReg.ACTIVATION:
                                ok = _signed_within(value, 0, 2)
                            else:
                                ok = Const(1)
                            if reg.name.startswith("VEC_") and not c.vector_unit:
                                ok = Const(0)
                            m.d.comb += bad.eq(~ok)
                    with m.Default():
                        m.d.comb += bad.eq(1)
            with m.Case(Opcode.SYNC):
                m.d.comb += bad.eq(sync.queue.as_value() == NO_QUEUE)
            with m.Case(Opcode.LOAD):
                dest = ld.dest.as_value()
                n = ld.n_rows
                pads = load_pads
                span = ld.pad_left + ld.length
                m.d.comb += bad.eq((dest == 3) | rows_bad(n)
                                   | ((n[len(pads):] == 0) & (pads > n[:len(pads)]))
                                   | Mux(dest == LoadDest.SP.value, _above(span, c.sp_width),
                                         _above(span, c.cols)))
            with m.Case(Opcode.STORE):
                from_sp = st.src.as_value() == StoreSrc.SP.value
                sp_bad = ((st.out_type != OutType.INT8) | st.per_channel
                          | ~_within(st.length, 1, c.sp_width))
                acc_bad = ((st.per_channel & (st.out_type == OutType.INT32))
                           | ~_within(st.length, 1, c.cols))
                m.d.comb += bad.eq((st.out_type == 3) | rows_bad(st.n_rows)
                                   | Mux(from_sp, sp_bad, acc_bad))
            with m.Case(Opcode.MATMUL):
                m.d.comb += bad.eq(~(mm.compute | mm.preload)
                                   | (mm.compute & rows_bad(mm.n_rows)))
            if c.vector_unit:     # else VECTOR is an illegal opcode, checked first
                with m.Case(Opcode.VECTOR):
                    vop = vec.op.as_value()
                    n = vec.n_rows

                    def overlap(a, b):
                        return (a != b) & (a < b + n) & (b < a + n)

                    binary = 0
                    for v in BINARY_VECTOR_OPS:
                        binary = binary | (vop == v.value)
                    m.d.comb += bad.eq(
                        _above(vop, max(v.value for v in VectorOp)) | rows_bad(n)
                        | ((vop == VectorOp.SHIFT.value)
                           & ~_signed_within(vec.imm, -31, SHIFT_MAX))
                        | overlap(vec.dst, vec.src_a)
                        | (binary & overlap(vec.dst, vec.src_b)))

        # -- MISALIGNED ----------------------------------------------------------------------
        misaligned = Signal()
        with m.Switch(code):
            with m.Case(Opcode.LOAD):
                m.d.comb += misaligned.eq((ld.dest.as_value() != LoadDest.SP.value)
                                          & ((ld.dram_addr[:2] != 0) | (ld.stride[:2] != 0)))
            with m.Case(Opcode.STORE):
                m.d.comb += misaligned.eq((st.out_type == OutType.INT32)
                                          & ((st.dram_addr[:2] != 0) | (st.stride[:2] != 0)))

        # -- ADDRESS_RANGE -------------------------------------------------------------------
        # The memory extent of a LOAD or STORE (and, with a serial walk, its on-chip row
        # range) is checked by _ExtentWalk over a few cycles while ``ready`` is low.
        m.submodules.walk = walk = _ExtentWalk(c)
        m.d.comb += [walk.word.eq(self.word), walk.restart.eq(~self.valid | self.next),
                     self.ready.eq(walk.ready)]
        extent_bad = walk.extent_bad

        out_range = Signal()
        with m.Switch(code):
            with m.Case(Opcode.LOAD):
                dest = ld.dest.as_value()
                if walk.serial:
                    rows_out = walk.rows_bad
                else:
                    rows_out = Mux(dest == LoadDest.SP.value,
                                   _sum_above(ld.addr, ld.n_rows, c.sp_rows),
                                   Mux(dest == LoadDest.ACC.value,
                                       _sum_above(ld.addr, ld.n_rows, c.acc_rows),
                                       _sum_above(ld.addr, ld.n_rows, c.param_rows)))
                m.d.comb += out_range.eq(rows_out | extent_bad)
            with m.Case(Opcode.STORE):
                from_sp = st.src.as_value() == StoreSrc.SP.value
                rows_out = (walk.rows_bad if walk.serial else
                            Mux(from_sp, _sum_above(st.addr, st.n_rows, c.sp_rows),
                                _sum_above(st.addr, st.n_rows, c.acc_rows)))
                m.d.comb += out_range.eq(
                    rows_out
                    | (st.per_channel & _above(st.param_addr, c.param_rows - 2))
                    | extent_bad)
            with m.Case(Opcode.MATMUL):
                n = mm.n_rows
                m.d.comb += out_range.eq(
                    (mm.compute & (_sum_above(mm.a_addr, n, c.sp_rows)
                                   | _sum_above(mm.c_addr, n, c.acc_rows)))
                    | (mm.preload & _above(mm.w_addr, c.sp_rows - c.rows)))
            if c.vector_unit:     # else VECTOR is an illegal opcode, checked first
                with m.Case(Opcode.VECTOR):
                    n = vec.n_rows
                    binary = 0
                    for v in BINARY_VECTOR_OPS:
                        binary = binary | (vec.op.as_value() == v.value)
                    m.d.comb += out_range.eq(_sum_above(vec.dst, n, c.acc_rows)
                                             | _sum_above(vec.src_a, n, c.acc_rows)
                                             | (binary & _sum_above(vec.src_b, n, c.acc_rows)))

        # -- priority, in the order of the error codes ---------------------------------------
        with m.If(illegal):
            m.d.comb += self.error.eq(ErrorCode.ILLEGAL_OPCODE)
        with m.Elif(reserved | flags_bad):
            m.d.comb += self.error.eq(ErrorCode.RESERVED_BITS)
        with m.Elif(bad):
            m.d.comb += self.error.eq(ErrorCode.BAD_FIELD)
        with m.Elif(misaligned):
            m.d.comb += self.error.eq(ErrorCode.MISALIGNED)
        with m.Elif(out_range):
            m.d.comb += self.error.eq(ErrorCode.ADDRESS_RANGE)
        with m.Else():
            m.d.comb += self.error.eq(ErrorCode.NONE)

        # -- tokens --------------------------------------------------------------------------
        names = ("pop_prev", "pop_next", "push_prev", "push_next")
        by_name = dict(zip(names, (pop_prev, pop_next, push_prev, push_next), strict=True))
        for table, out in ((_POPS, self.pops), (_PUSHES, self.pushes)):
            for (q, flag), ch in table.items():
                bit = CHANNEL_ORDER.index(ch)
                m.d.comb += out[bit].eq(by_name[flag] & (queue == q.value))
        m.d.comb += self.halt.eq(op_is[Opcode.HALT])

        # -- micro-ops -----------------------------------------------------------------------
        for uop in (self.uop_load, self.uop_exec, self.uop_store):
            m.d.comb += [
                uop.opcode.eq(code),
                uop.pop_prev.eq(pop_prev), uop.pop_next.eq(pop_next),
                uop.push_prev.eq(push_prev), uop.push_next.eq(push_next),
            ]
            # the word's bits as they are: fields of other opcodes are not cleared here
            # (the controller's queues clear them when they store a micro-op)
            m.d.comb += uop.body.as_value().eq(self.word[8:])
        return m
