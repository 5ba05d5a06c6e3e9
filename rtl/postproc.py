"""STORE-path post-processing: requantization, activation and packing to bytes."""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from systolic.numerics import Activation, OutType

from .params import ParamBuffer
from .scratchpad import check_config

__all__ = ["PostProcessor", "settings_layout", "element_input", "LATENCY"]

LATENCY = 4  # cycles from a beat's issue to its output beat being valid
SERIAL_MBITS = 15       # bits of M in the serial engine (one lane, 16-bit M)
SERIAL_ZERO_SHIFT = 63  # largest shift; the serial engine has no shortcut for any


def element_input(config):
    """Whether the post-processor of ``config`` takes one element per input transfer (the
    serial engine: one lane, 16-bit M) rather than a whole accumulator row."""
    return config.lanes == 1 and config.requant_bits == 16


def settings_layout(config):
    """The per-row settings that travel with each accumulator row.

    Fields: ``out_type`` (:class:`~systolic.numerics.OutType`), ``activation``
    (:class:`~systolic.numerics.Activation`), ``per_channel``, ``param_addr`` (row of the
    per-channel multipliers; the shifts are the next row), ``multiplier`` (per-tensor M,
    ``requant_bits - 1`` bits), ``shift`` (per-tensor s, 0..63), ``zero_point``,
    ``clamp_lo``, ``clamp_hi`` (signed 10-bit: the store unit's narrowed bounds, see
    :func:`~systolic.rtl.store_unit.narrow_bound`) and ``length`` (elements to emit,
    1..cols).
    """
    return data.StructLayout({
        "out_type": unsigned(2),
        "activation": unsigned(2),
        "per_channel": unsigned(1),
        "param_addr": unsigned(max(1, bits_for(config.param_rows - 1))),
        "multiplier": unsigned(config.requant_bits - 1),
        "shift": unsigned(6),
        "zero_point": signed(32),
        "clamp_lo": signed(10),
        "clamp_hi": signed(10),
        "length": unsigned(bits_for(config.cols)),
    })


def wide_bounds(m, st):
    """The clamp bounds of the settings ``st`` sign-extended to 32 bits."""
    lo = Signal(signed(32))
    hi = Signal(signed(32))
    m.d.comb += [lo.eq(st.clamp_lo), hi.eq(st.clamp_hi)]
    return lo, hi


def row_bounds(m, st):
    """Combinational bounds of a row from its settings ``st``; returns ``(raw, lo, hi)``.

    ``raw`` is high for an INT32 row. Requantized outputs are bytes and the type's range
    lies in -128..255, so a non-empty range ``[lo, hi]`` fits in 10 bits (signed); an
    empty range (``lo > hi``) gives ``lo``, whose low byte becomes both bounds.
    """
    # `lower` (RELU: zp, CLAMP: clamp_lo) and `upper` (CLAMP: clamp_hi) are placed
    # against the type's range with sign and high-bit tests rather than 32-bit
    # comparators.
    int8 = st.out_type == OutType.INT8
    relu = st.activation == Activation.RELU
    clamp = st.activation == Activation.CLAMP
    clamp_lo, clamp_hi = wide_bounds(m, st)
    lower = Mux(relu, st.zero_point, clamp_lo)
    upper = clamp_hi

    def above_type(x):          # x > type_hi (127 or 255)
        return ~x[31] & Mux(int8, x[7:31].any(), x[8:31].any())

    def below_type(x):          # x < type_lo (-128 or 0)
        return x[31] & ~(int8 & x[7:31].all())

    type_lo = Mux(int8, -128, 0)
    type_hi = Mux(int8, 127, 255)
    raw = Signal()
    lower_above = Signal()
    upper_below = Signal()
    lo10 = Signal(signed(10))
    hi10 = Signal(signed(10))
    empty = Signal()
    m.d.comb += [
        raw.eq(st.out_type[1]),
        lower_above.eq((relu | clamp) & above_type(lower)),
        upper_below.eq(clamp & below_type(upper)),
        lo10.eq(Mux((relu | clamp) & ~below_type(lower), lower[:10], type_lo)),
        hi10.eq(Mux(clamp & ~above_type(upper), upper[:10], type_hi)),
        empty.eq(lower_above | upper_below | (lo10 > hi10)),
    ]
    empty_byte = Mux(lower_above, lower[:8], lo10[:8])
    lo = Signal(signed(10))
    hi = Signal(signed(10))
    m.d.comb += [lo.eq(Mux(empty, empty_byte, lo10)), hi.eq(Mux(empty, empty_byte, hi10))]
    return raw, lo, hi


def serial_bounds(m, st, zp_high_sign):
    """Bounds of a row for ``max(lo, min(hi, z))``; returns ``(raw, lo, hi)`` (10 bits).

    ``lo = max(type_lo, lower)`` and ``hi = min(type_hi, upper)`` as 10-bit values with
    the order kept: a ``lower`` above the type gives ``256 + lower[:8]`` (above every
    ``hi``, and its low byte is what the model writes), an ``upper`` below the type gives
    -256 (below every ``lo``), so an empty range needs no case of its own.
    ``zp_high_sign`` tells whether bits 8..30 of the zero point all equal its sign (the
    serial engine finds it as the bits stream by).
    """
    int8 = st.out_type == OutType.INT8
    relu = st.activation == Activation.RELU
    clamp = st.activation == Activation.CLAMP

    def place(x, high_sign=None):       # (x < type_lo, x > type_hi)
        if high_sign is None:           # bits 8..30 all equal to the sign
            high_sign = ~(x[8:31] ^ x[31].replicate(23)).any()
        inside = high_sign & Mux(int8, x[7] == x[31], ~x[31])
        return x[31] & ~inside, ~x[31] & ~inside

    zp_below, zp_above = place(st.zero_point, zp_high_sign)
    clamp_lo, clamp_hi = wide_bounds(m, st)
    lo_below, lo_above = place(clamp_lo)
    hi_below, hi_above = place(clamp_hi)
    l_above = Mux(relu, zp_above, lo_above)
    l_bits = Mux(relu, st.zero_point[:10], st.clamp_lo[:10])
    raw = Signal()
    lo = Signal(signed(10))
    hi = Signal(signed(10))
    m.d.comb += [
        raw.eq(st.out_type[1]),
        lo.eq(Mux((relu | clamp) & ~Mux(relu, zp_below, lo_below),
                  Cat(l_bits[:8], l_above | l_bits[8], ~l_above & l_bits[9]),
                  Mux(int8, -128, 0))),
        hi.eq(Mux(clamp & ~hi_above, Mux(hi_below, -256, st.clamp_hi[:10]),
                  Mux(int8, 127, 255))),
    ]
    return raw, lo, hi


class PostProcessor(wiring.Component):
    """Turns accumulator rows into the bytes a STORE writes, ``config.lanes`` per beat.

    Per element, bit-exact with :func:`systolic.numerics.requantize`::

        out = clamp(round_shift(acc * M, s) + zp, lo, hi)

    with ``(lo, hi)`` from :func:`systolic.numerics.activation_bounds` (the clamp is
    ``max(min(x, hi), lo)``, so ``lo > hi`` gives ``lo``, as the model does). ``M`` and
    ``s`` come from the settings (per tensor) or, with ``per_channel``, from parameter
    rows ``param_addr`` (the low ``requant_bits - 1`` bits of each word) and
    ``param_addr + 1`` (the low 6 bits). INT8 and UINT8 emit the low byte of ``out``;
    INT32 emits the accumulator unchanged (no requantization, no activation), four
    bytes little-endian per element. The out-type code 3 behaves as INT32.

    Streams:

    * ``i``: one accumulator row with its settings; held until the row's last beat is
      issued (``ready`` comes with the last beat).
    * ``o``: one beat per ``lanes`` elements; ``data`` holds ``nbytes`` valid bytes from
      byte 0 up; ``last`` marks the last beat of a row. A row of ``length`` elements gives
      ``ceil(length / lanes)`` beats.

    Bytes of ``data`` above ``nbytes`` are 0 (the store unit ORs beats into its rows).

    With more than one lane or a 32-bit M, a pipeline issues one beat per cycle
    (``beat_cycles`` 1) and stalls as a whole while ``o`` holds a beat not taken; a beat
    issued in cycle ``t`` is on ``o`` from cycle ``t + latency`` (``LATENCY``, 4):
    parameter read, registered multiply, rounding shift, zero point and clamp.

    With one lane and a 16-bit M (``icebreaker``) there is no multiplier and no barrel
    shifter: a shift-and-add engine forms ``acc * M`` one bit per cycle, least
    significant first, and the rounding shift, the zero point and the range check
    follow the bits as they come out (see :meth:`elaborate_serial`). It takes one
    element at a time: ``i`` carries ``elem`` (the accumulator value), ``index`` (its
    column, which picks the per-channel parameter words) and the settings, and is held
    until the element's beat is taken on ``o`` (``ready`` comes with that beat, whose
    ``last`` is always 1; ``settings.length`` is not used). The parameter rows live in
    block RAM: the multipliers' row is read as the element starts, the shifts' row the
    cycle after. An element started in cycle ``t`` is on ``o`` from ``t + latency`` and
    the next element starts the cycle after it is taken, where
    ``(beat_cycles, latency) = serial_cycles(s)``: ``latency = 3 + max(47, s + 32)``,
    e.g. 50 for ``s <= 15``, 59 at ``s = 24``, 98 at ``s = 63`` (the worst case, the
    value of the attributes ``beat_cycles`` and ``latency``: 99 and 98). An INT32
    element takes 4 cycles (``serial_cycles(s, raw=True)``).

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    i : In(stream.Signature(StructLayout({"row": ArrayLayout(signed(32), cols),
        "settings": settings_layout(config)})))
        With the serial engine ``{"elem": signed(32), "index": ..., "settings": ...}``.
    o : Out(stream.Signature(StructLayout({"data": 32 * lanes, "nbytes": ..., "last": 1})))
    param_w : In(...)
        Write port of the parameter rows (a :class:`~systolic.rtl.params.ParamBuffer`,
        or a block RAM read a row at a time in the serial engine); same signature.
    beat_cycles : int
        Cycles per output beat (at most, for the serial engine).
    latency : int
        Cycles from a beat's issue to its output beat (at most, for the serial engine).
    """

    def __init__(self, *, config):
        check_config(config, "PostProcessor")
        self.config = config
        self.lanes = config.lanes
        self.serial = element_input(config)
        if self.serial:
            self.beat_cycles, self.latency = self.serial_cycles(SERIAL_ZERO_SHIFT)
        else:
            self.beat_cycles, self.latency = 1, LATENCY
        self.params = None if self.serial else ParamBuffer(config=config)
        row = data.ArrayLayout(signed(32), config.cols)
        param_w = wiring.Signature({
            "en": Out(1), "addr": Out(max(1, ceil_log2(config.param_rows))),
            "data": Out(data.ArrayLayout(unsigned(32), config.cols)),
        })
        out = data.StructLayout({
            "data": unsigned(32 * self.lanes),
            "nbytes": unsigned(bits_for(4 * self.lanes)),
            "last": unsigned(1),
        })
        if self.serial:
            # One element and its column (which picks the per-channel parameters).
            inp = {"elem": signed(32), "index": unsigned(max(1, ceil_log2(config.cols)))}
        else:
            inp = {"row": row}
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                **inp, "settings": settings_layout(config)}))),
            "o": Out(stream.Signature(out)),
            "param_w": In(param_w),
        })

    @staticmethod
    def serial_cycles(shift, raw=False):
        """``(beat_cycles, latency)`` of one element of the serial engine (one lane,
        16-bit M): requantized with the shift ``shift``, or an INT32 element (``raw``)."""
        if raw:
            return 4, 3
        latency = 3 + max(SERIAL_MBITS + 32, shift + 32)
        return latency + 1, latency

    def elaborate(self, platform):
        if self.serial:
            return self.elaborate_serial()
        cfg = self.config
        lanes = self.lanes
        groups = cfg.cols // lanes
        mbits = cfg.requant_bits - 1
        pbits = 32 + mbits                   # signed product of acc and M
        m = Module()
        m.submodules.params = params = self.params
        wiring.connect(m, wiring.flipped(self.param_w), params.w)

        # The whole pipeline moves with `step`; it stalls while `o` holds an unaccepted
        # beat.
        step = Signal()
        m.d.comb += step.eq(~self.o.valid | self.o.ready)

        # Issue: one beat (lane group) of the row at the input.
        st = self.i.payload.settings
        beat = Signal(range(max(groups, 2)))
        remaining = Signal(signed(bits_for(cfg.cols) + 2))
        last = Signal()
        count = Signal(range(lanes + 1))
        m.d.comb += [
            remaining.eq(st.length - beat * lanes),
            last.eq((beat == groups - 1) | (remaining <= lanes)),
            count.eq(Mux(remaining > lanes, lanes, Mux(remaining < 0, 0, remaining))),
            self.i.ready.eq(step & last),
            params.rd.en.eq(step),
            params.rd.addr.eq(st.param_addr),
        ]
        with m.If(step & self.i.valid):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))

        raw, lo_b, hi_b = row_bounds(m, st)

        def stage(name, shape):
            return Signal(shape, name=name)

        lane_row = data.ArrayLayout(signed(32), lanes)
        p1 = {k: stage(f"p1_{k}", s) for k, s in {
            "valid": 1, "acc": lane_row, "group": range(max(groups, 2)), "raw": 1,
            "per_channel": 1, "mult": mbits, "shift": 6, "zp": signed(32),
            "lo": signed(10), "hi": signed(10), "count": range(lanes + 1), "last": 1,
        }.items()}
        with m.If(step):
            m.d.sync += [
                p1["valid"].eq(self.i.valid),
                p1["acc"].eq(self.i.payload.row.as_value().word_select(beat, 32 * lanes)),
                p1["group"].eq(beat),
                p1["raw"].eq(raw),
                p1["per_channel"].eq(st.per_channel),
                p1["mult"].eq(st.multiplier),
                p1["shift"].eq(st.shift),
                p1["zp"].eq(st.zero_point),
                p1["lo"].eq(lo_b),
                p1["hi"].eq(hi_b),
                p1["count"].eq(count),
                p1["last"].eq(last),
            ]

        # Stage 1: per-lane M and s (M = 1 and s = 0 pass a raw INT32 row unchanged) and
        # the registered product.
        m_words = params.rd.m_row.as_value().word_select(p1["group"], 32 * lanes)
        s_words = params.rd.s_row.as_value().word_select(p1["group"], 32 * lanes)
        common = ("valid", "zp", "lo", "hi", "count", "last", "raw")
        p2 = {k: stage(f"p2_{k}", p1[k].shape()) for k in common}
        p2_prod = [stage(f"p2_prod{k}", signed(pbits)) for k in range(lanes)]
        p2_shift = [stage(f"p2_shift{k}", 6) for k in range(lanes)]
        with m.If(step):
            m.d.sync += [p2[k].eq(p1[k]) for k in common]
        for k in range(lanes):
            mult = Signal(mbits, name=f"mult{k}")
            m.d.comb += mult.eq(Mux(p1["raw"], 1, Mux(
                p1["per_channel"], m_words.word_select(k, 32)[:mbits], p1["mult"])))
            shift = Mux(p1["raw"], 0,
                        Mux(p1["per_channel"], s_words.word_select(k, 32)[:6], p1["shift"]))
            acc = p1["acc"][k]
            with m.If(step):
                m.d.sync += p2_shift[k].eq(shift)
            with m.If(step):
                m.d.sync += p2_prod[k].eq(acc * mult)

        # Stage 2: round_shift(x, s) = ((x >> (s - 1)) + 1) >> 1 for s >= 1, which equals
        # (x + 2**(s-1)) >> s without building the rounding constant.
        p3 = {k: stage(f"p3_{k}", p1[k].shape()) for k in common}
        p3_y = [stage(f"p3_y{k}", signed(pbits)) for k in range(lanes)]
        with m.If(step):
            m.d.sync += [p3[k].eq(p2[k]) for k in common]
            for k in range(lanes):
                sm1 = Signal(6, name=f"shift_m1_{k}")
                m.d.comb += sm1.eq(p2_shift[k] - 1)
                halved = Signal(signed(pbits), name=f"halved{k}")
                m.d.comb += halved.eq((p2_prod[k] >> sm1) + 1)
                m.d.sync += p3_y[k].eq(Mux(p2_shift[k] == 0, p2_prod[k], halved >> 1))

        # Stage 3: zero point, clamp, pack. A raw row is y itself (M = 1, s = 0). For a
        # byte, only whether z = y + zp lies below, inside or above -512..511 and its low
        # 10 bits matter; a y beyond +-2**33 is outside on its own side whatever zp is,
        # otherwise z is the 35-bit sum of y's low 34 bits and zp.
        packed_words = []
        packed_bytes = []

        def all_equal(bits):
            return (bits == 0) | (bits == (1 << len(bits)) - 1)

        for k in range(lanes):
            y = p3_y[k]
            z = Signal(signed(35), name=f"z{k}")
            y_out = Signal(name=f"y_out{k}")
            z_in = Signal(name=f"z_in{k}")
            c = Signal(8, name=f"clamped{k}")
            m.d.comb += [
                z.eq(y[:34].as_signed() + p3["zp"]),
                y_out.eq(~all_equal(y[33:])),
                z_in.eq(~y_out & all_equal(z[9:])),
            ]
            neg = Mux(y_out, y[-1], z[-1])
            above = Mux(z_in, z[:10].as_signed() > p3["hi"], ~neg)
            below = Mux(z_in, z[:10].as_signed() < p3["lo"], neg)
            m.d.comb += c.eq(Mux(above, p3["hi"], Mux(below, p3["lo"], z)))
            packed_words.append(Mux(p3["raw"], y[:32], c))
            packed_bytes.append(c)
        out = self.o.payload
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(step):
            m.d.sync += [
                self.o.valid.eq(p3["valid"]),
                out.data.eq(Mux(p3["raw"], Cat(*packed_words), Cat(*packed_bytes))),
                out.nbytes.eq(Mux(p3["raw"], p3["count"] * 4, p3["count"])),
                out.last.eq(p3["last"]),
            ]
        return m

    def elaborate_serial(self):
        """One lane, 16-bit M: no multiplier and no barrel shifter. A shift-and-add
        engine forms the product one bit per cycle, least significant first; the rounding
        shift, the zero point and the range check follow the bits as they come out."""
        cfg = self.config
        cols = cfg.cols
        mbits = SERIAL_MBITS
        m = Module()
        st = self.i.payload.settings
        zp_high_sign = Signal()
        raw, lo, hi = serial_bounds(m, st, zp_high_sign)

        # Parameter rows in a memory (block RAM), written a row at a time; the row of the
        # multipliers is read in START, that of the shifts in MULT (held from then on in
        # the read register, which becomes the block RAM's own), and the element's column
        # picks the word. Only the low `mbits` bits of a word are kept (6 used for a
        # shift). ``no_rw_check``: a row is not read while LOAD writes it (the tokens
        # order them), so no read-during-write emulation is added; ``ram_style``: the
        # memory is small, but block RAM is what the iCE40 has spare.
        params = Memory(shape=data.ArrayLayout(unsigned(mbits), cols), depth=cfg.param_rows,
                        init=[], attrs={"no_rw_check": 1, "ram_style": "block"})
        m.submodules.params = params
        w = self.param_w
        wp = params.write_port()
        rp = params.read_port(domain="comb")
        m.d.comb += [wp.en.eq(w.en), wp.addr.eq(w.addr),
                     wp.data.eq(Cat(*(word[:mbits] for word in w.data)))]
        k = self.i.payload.index                 # column of the element
        read_shift = Signal()                    # read row param_addr + 1 (the shifts)
        read = Signal()
        prow = Signal(data.ArrayLayout(unsigned(mbits), cols), reset_less=True)
        m.d.comb += rp.addr.eq(st.param_addr + read_shift)
        with m.If(read):
            m.d.sync += prow.eq(rp.data)
        word = Signal(mbits)
        m.d.comb += word.eq(Array(prow[c] for c in range(cols))[k])

        acc = self.i.payload.elem

        # The multiplier: R = (R + (M bit ? acc : 0)) >> 1 every step, with M's register
        # shifting right (zeros in), so once M's bits are used R just shifts out the
        # product's high bits. R holds floor(partial product / 2**t) (32 bits suffice)
        # and the bit shifted out in step t is bit t of P = acc * M.
        r = Signal(signed(32))
        q = Signal(mbits)
        total = Signal(signed(33))
        pbit = total[0]
        m.d.comb += total.eq(r + Mux(q[0] | raw, acc, 0))

        # The tail, one bit of P per step: bits below s are dropped, the last of them
        # (bit s - 1) becomes the carry in, so the stream from bit s on is
        # floor(P / 2**s) + bit s-1 = round_shift(P, s); a serial adder adds zp to it.
        # z = y + zp has at most max(47 - s, 32) + 1 significant bits: its bit
        # j = t - s is made in step t, up to j = max(47 - s, 32), i.e. t = max(47, s + 32).
        # Bits 0..9 of z are kept; `ovf` records that a higher bit differed from bit 9
        # (z outside -512..511), and `zsign` is the last bit made (z's sign).
        # An INT32 element makes one step as if M were 1: R = acc >> 1 and bit 0 of acc in
        # zlow[9] form the output word; a byte element clears R at its end, so the
        # word's high bytes are 0 without a mask.
        t = Signal(range(SERIAL_ZERO_SHIFT + 34))
        j = Signal(6)                            # bit of z, saturating at 32
        carry = Signal()
        zlow = Signal(10)
        ovf = Signal()
        zsign = Signal()
        zp = st.zero_point
        zp_bit = ~raw & Mux(j[5], zp[31], zp.bit_select(j[:5], 1))
        zsum = Signal(2)
        m.d.comb += zsum.eq(pbit + zp_bit + carry)
        done = raw | ((t >= SERIAL_MBITS + 32) & j[5])

        shift = Mux(st.per_channel, word[:6], st.shift)
        multiplier = Mux(st.per_channel, word, st.multiplier)
        with m.FSM():
            with m.State("START"):
                m.d.comb += read.eq(1)
                m.d.sync += [r.eq(0), t.eq(0), j.eq(0), carry.eq(0),
                             ovf.eq(0), zp_high_sign.eq(1)]
                with m.If(self.i.valid):
                    m.next = "MULT"
            with m.State("MULT"):
                m.d.comb += [read.eq(1), read_shift.eq(1)]
                m.d.sync += q.eq(multiplier)
                m.next = "RUN"
            with m.State("RUN"):
                m.d.sync += [r.eq(total >> 1), q.eq(q >> 1), t.eq(t + 1)]
                with m.If(~raw & (t < shift)):
                    m.d.sync += carry.eq(pbit)
                with m.Else():
                    m.d.sync += [carry.eq(zsum[1]), zsign.eq(zsum[0])]
                    with m.If((j >= 8) & (zp_bit != zp[31])):
                        m.d.sync += zp_high_sign.eq(0)
                    with m.If(~j[5]):
                        m.d.sync += j.eq(j + 1)
                    with m.If(j < 10):
                        m.d.sync += zlow.eq(Cat(zlow[1:], zsum[0]))
                    with m.Elif(zsum[0] != zlow[9]):
                        m.d.sync += ovf.eq(1)
                    with m.If(done):
                        m.next = "OUT"
                        with m.If(~raw):
                            m.d.sync += r.eq(0)             # the output word's high bytes
            with m.State("OUT"):
                m.d.comb += [self.o.valid.eq(1), self.i.ready.eq(self.o.ready)]
                with m.If(self.o.ready):
                    m.next = "START"

        # Clamp to the 10-bit bounds: only whether z lies below, inside or above
        # -512..511 and its low 10 bits matter.
        byte = Signal(8)
        above = Signal()
        upper = Signal(signed(10))
        m.d.comb += [
            above.eq(Mux(ovf, ~zsign, zlow.as_signed() > hi)),
            upper.eq(Mux(above, hi, zlow)),
        ]
        below = (ovf & zsign) | (upper < lo)
        m.d.comb += byte.eq(Mux(below, lo, upper))
        out = self.o.payload
        m.d.comb += [
            out.data.eq(Cat(Mux(raw, Cat(zlow[9], r[:7]), byte), r[7:31])),
            out.nbytes.eq(Mux(raw, 4, 1)),
            out.last.eq(1),
        ]
        return m
