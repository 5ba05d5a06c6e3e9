"""STORE-path post-processing: requantization, activation and packing to bytes."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from systolic.numerics import Activation, OutType

from .params import ParamBuffer
from .scratchpad import check_config

__all__ = ["PostProcessor", "settings_layout", "LATENCY"]

LATENCY = 4  # cycles from a beat's issue to its output beat being valid


def settings_layout(config):
    """The per-row settings that travel with each accumulator row.

    Fields: ``out_type`` (:class:`~systolic.numerics.OutType`), ``activation``
    (:class:`~systolic.numerics.Activation`), ``per_channel``, ``param_addr`` (row of the
    per-channel multipliers; the shifts are the next row), ``multiplier`` (per-tensor M,
    ``requant_bits - 1`` bits), ``shift`` (per-tensor s, 0..63), ``zero_point``,
    ``clamp_lo``, ``clamp_hi`` (signed 32-bit) and ``length`` (elements to emit, 1..cols).
    """
    return data.StructLayout({
        "out_type": unsigned(2),
        "activation": unsigned(2),
        "per_channel": unsigned(1),
        "param_addr": unsigned(max(1, bits_for(config.param_rows - 1))),
        "multiplier": unsigned(config.requant_bits - 1),
        "shift": unsigned(6),
        "zero_point": signed(32),
        "clamp_lo": signed(32),
        "clamp_hi": signed(32),
        "length": unsigned(bits_for(config.cols)),
    })


class PostProcessor(wiring.Component):
    """Turns accumulator rows into the bytes a STORE writes, ``config.lanes`` per cycle.

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

    The pipeline issues one beat every ``beat_cycles`` cycles and stalls as a whole while
    ``o`` holds a beat not taken. A beat issued in cycle ``t`` is on ``o`` from cycle
    ``t + latency``: parameter read, registered multiply, rounding shift, zero point and
    clamp. ``beat_cycles`` is 1 and ``latency`` is ``LATENCY`` (4), except with one lane
    and a 16-bit M, where each product is made of two 16 x 16-bit halves on one
    multiplier (one SB_MAC16 on iCE40): ``beat_cycles`` 2, ``latency`` 6.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    i : In(stream.Signature(StructLayout({"row": ArrayLayout(signed(32), cols),
        "settings": settings_layout(config)})))
    o : Out(stream.Signature(StructLayout({"data": 32 * lanes, "nbytes": ..., "last": 1})))
    param_w : In(...)
        Write port of the parameter buffer (:class:`~systolic.rtl.params.ParamBuffer`).
    beat_cycles : int
        Cycles per output beat (1 or 2).
    latency : int
        Cycles from a beat's issue to its output beat.
    """

    def __init__(self, *, config):
        check_config(config, "PostProcessor")
        self.config = config
        self.lanes = config.lanes
        self.beat_cycles = 2 if (config.lanes == 1 and config.requant_bits == 16) else 1
        self.latency = LATENCY if self.beat_cycles == 1 else 6
        self.params = ParamBuffer(config=config)
        row = data.ArrayLayout(signed(32), config.cols)
        out = data.StructLayout({
            "data": unsigned(32 * self.lanes),
            "nbytes": unsigned(bits_for(4 * self.lanes)),
            "last": unsigned(1),
        })
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "row": row, "settings": settings_layout(config)}))),
            "o": Out(stream.Signature(out)),
            "param_w": self.params.signature.members["w"],
        })

    def elaborate(self, platform):
        cfg = self.config
        lanes = self.lanes
        groups = cfg.cols // lanes
        mbits = cfg.requant_bits - 1
        split = self.beat_cycles == 2
        pbits = 32 + mbits                   # signed product of acc and M
        m = Module()
        m.submodules.params = params = self.params
        wiring.connect(m, wiring.flipped(self.param_w), params.w)

        # The whole pipeline moves with `adv`; it stalls while `o` holds an unaccepted
        # beat. `step` marks the cycles in which the stage registers load: every cycle,
        # or every second one (`half` marks the first) with the split multiplier.
        adv = Signal()
        step = Signal()
        half = Signal()
        m.d.comb += adv.eq(~self.o.valid | self.o.ready)
        if split:
            phase = Signal()
            with m.If(adv):
                m.d.sync += phase.eq(~phase)
            m.d.comb += [step.eq(adv & phase), half.eq(adv & ~phase)]
        else:
            m.d.comb += step.eq(adv)

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

        # Output bounds of the row. Requantized outputs are bytes and the type's range
        # lies in -128..255, so a non-empty range [lo, hi] fits in 10 bits; an empty range
        # (lo > hi) gives lo, whose low byte becomes both bounds. `lower` (RELU: zp, CLAMP:
        # clamp_lo) and `upper` (CLAMP: clamp_hi) are placed against the type's range with
        # sign and high-bit tests rather than 32-bit comparators.
        int8 = st.out_type == OutType.INT8
        relu = st.activation == Activation.RELU
        clamp = st.activation == Activation.CLAMP
        lower = Mux(relu, st.zero_point, st.clamp_lo)
        upper = st.clamp_hi

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
                p1["lo"].eq(Mux(empty, empty_byte, lo10)),
                p1["hi"].eq(Mux(empty, empty_byte, hi10)),
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
            if not split:
                with m.If(step):
                    m.d.sync += p2_prod[k].eq(acc * mult)
                continue
            # Split multiply: acc * M = (hi * M) * 2**16 + lo * M with hi = acc[16:]
            # (signed) and lo = acc[:16] (unsigned), one signed 16 x 16 product per
            # cycle (lo in the first cycle of the step, hi in the second). Seen as
            # signed, lo is 2**16 too small when its bit 15 is set: add M * 2**16 back.
            operand = Signal(signed(16), name=f"operand{k}")
            product = Signal(signed(32), name=f"product{k}")
            lo_prod = Signal(signed(32), name=f"lo_prod{k}")
            m.d.comb += [
                operand.eq(Mux(step, acc[16:], acc[:16])),
                product.eq(operand * Cat(mult, 0).as_signed()),
            ]
            with m.If(half):
                m.d.sync += lo_prod.eq(product)
            lo_full = Signal(unsigned(31), name=f"lo_full{k}")      # lo * M, unsigned
            hi_prod = Signal(signed(32), name=f"hi_prod{k}")
            with m.If(half):   # first cycle of stage 2: put the halves together
                m.d.sync += p2_prod[k].eq(Cat(lo_full[:16], hi_prod + lo_full[16:]))
            with m.If(step):
                m.d.sync += [
                    lo_full.eq(Cat(lo_prod[:16],
                                   lo_prod[16:31] + Mux(acc[15], mult, 0))),
                    hi_prod.eq(product),
                ]

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
        load = half if split else step
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(load):
            m.d.sync += [
                self.o.valid.eq(p3["valid"]),
                out.data.eq(Mux(p3["raw"], Cat(*packed_words), Cat(*packed_bytes))),
                out.nbytes.eq(Mux(p3["raw"], p3["count"] * 4, p3["count"])),
                out.last.eq(p3["last"]),
            ]
        return m
