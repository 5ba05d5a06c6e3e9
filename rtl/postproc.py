"""STORE-path post-processing: requantization, activation and packing to bytes."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from systolic.numerics import INT32_MAX, INT32_MIN, Activation, OutType

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

    The pipeline issues one beat per cycle and stalls as a whole while ``o`` is
    back-pressured. A beat issued in cycle ``t`` is on ``o`` from cycle ``t + LATENCY``
    (4): parameter read, registered multiply, rounding shift, zero point and clamp.

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
    """

    def __init__(self, *, config):
        check_config(config, "PostProcessor")
        self.config = config
        self.lanes = config.lanes
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
        m = Module()
        m.submodules.params = params = self.params
        wiring.connect(m, wiring.flipped(self.param_w), params.w)

        adv = Signal()  # the whole pipeline moves
        m.d.comb += adv.eq(~self.o.valid | self.o.ready)

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
            self.i.ready.eq(adv & last),
            params.rd.en.eq(adv),
            params.rd.addr.eq(st.param_addr),
        ]
        with m.If(adv & self.i.valid):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))

        raw = Signal()
        type_lo = Signal(signed(32))
        type_hi = Signal(signed(32))
        lo = Signal(signed(32))
        hi = Signal(signed(32))
        m.d.comb += [
            raw.eq(st.out_type[1]),
            type_lo.eq(Mux(st.out_type == OutType.INT8, -128,
                           Mux(st.out_type == OutType.UINT8, 0, INT32_MIN))),
            type_hi.eq(Mux(st.out_type == OutType.INT8, 127,
                           Mux(st.out_type == OutType.UINT8, 255, INT32_MAX))),
            lo.eq(type_lo),
            hi.eq(type_hi),
        ]
        with m.If(st.activation == Activation.RELU):
            m.d.comb += lo.eq(Mux(st.zero_point > type_lo, st.zero_point, type_lo))
        with m.Elif(st.activation == Activation.CLAMP):
            m.d.comb += [
                lo.eq(Mux(st.clamp_lo > type_lo, st.clamp_lo, type_lo)),
                hi.eq(Mux(st.clamp_hi < type_hi, st.clamp_hi, type_hi)),
            ]

        def stage(name, shape):
            return Signal(shape, name=name)

        lane_row = data.ArrayLayout(signed(32), lanes)
        p1 = {k: stage(f"p1_{k}", s) for k, s in {
            "valid": 1, "acc": lane_row, "group": range(max(groups, 2)), "raw": 1,
            "per_channel": 1, "mult": mbits, "shift": 6, "zp": signed(32),
            "lo": signed(32), "hi": signed(32), "count": range(lanes + 1), "last": 1,
        }.items()}
        with m.If(adv):
            m.d.sync += [
                p1["valid"].eq(self.i.valid),
                p1["acc"].eq(self.i.payload.row.as_value().word_select(beat, 32 * lanes)),
                p1["group"].eq(beat),
                p1["raw"].eq(raw),
                p1["per_channel"].eq(st.per_channel),
                p1["mult"].eq(st.multiplier),
                p1["shift"].eq(st.shift),
                p1["zp"].eq(Mux(raw, 0, st.zero_point)),
                p1["lo"].eq(Mux(raw, INT32_MIN, lo)),
                p1["hi"].eq(Mux(raw, INT32_MAX, hi)),
                p1["count"].eq(count),
                p1["last"].eq(last),
            ]

        # Stage 1: per-lane M and s, registered multiply (up to 63 bits for 32-bit M).
        m_words = params.rd.m_row.as_value().word_select(p1["group"], 32 * lanes)
        s_words = params.rd.s_row.as_value().word_select(p1["group"], 32 * lanes)
        common = ("valid", "zp", "lo", "hi", "count", "last", "raw")
        p2 = {k: stage(f"p2_{k}", p1[k].shape()) for k in common}
        p2_prod = [stage(f"p2_prod{k}", signed(64)) for k in range(lanes)]
        p2_shift = [stage(f"p2_shift{k}", 6) for k in range(lanes)]
        with m.If(adv):
            m.d.sync += [p2[k].eq(p1[k]) for k in common]
            for k in range(lanes):
                mult = Mux(p1["per_channel"], m_words.word_select(k, 32)[:mbits], p1["mult"])
                shift = Mux(p1["per_channel"], s_words.word_select(k, 32)[:6], p1["shift"])
                acc = p1["acc"][k]
                m.d.sync += [
                    p2_prod[k].eq(Mux(p1["raw"], acc, acc * mult)),
                    p2_shift[k].eq(Mux(p1["raw"], 0, shift)),
                ]

        # Stage 2: round_shift(x, s) = ((x >> (s - 1)) + 1) >> 1 for s >= 1, which equals
        # (x + 2**(s-1)) >> s without building the 64-bit rounding constant.
        p3 = {k: stage(f"p3_{k}", p1[k].shape()) for k in common}
        p3_y = [stage(f"p3_y{k}", signed(64)) for k in range(lanes)]
        with m.If(adv):
            m.d.sync += [p3[k].eq(p2[k]) for k in common]
            for k in range(lanes):
                sm1 = Signal(6, name=f"shift_m1_{k}")
                m.d.comb += sm1.eq(p2_shift[k] - 1)
                halved = Signal(signed(64), name=f"halved{k}")
                m.d.comb += halved.eq((p2_prod[k] >> sm1) + 1)
                m.d.sync += p3_y[k].eq(Mux(p2_shift[k] == 0, p2_prod[k], halved >> 1))

        # Stage 3: zero point, clamp, pack into bytes.
        packed_words = []
        packed_bytes = []
        for k in range(lanes):
            z = Signal(signed(65), name=f"z{k}")
            t = Signal(signed(65), name=f"capped{k}")
            c = Signal(signed(32), name=f"clamped{k}")
            m.d.comb += [
                z.eq(p3_y[k] + p3["zp"]),
                t.eq(Mux(z > p3["hi"], p3["hi"], z)),
                c.eq(Mux(t < p3["lo"], p3["lo"], t)),
            ]
            packed_words.append(c[:32])
            packed_bytes.append(c[:8])
        out = self.o.payload
        with m.If(adv):
            m.d.sync += [
                self.o.valid.eq(p3["valid"]),
                out.data.eq(Mux(p3["raw"], Cat(*packed_words), Cat(*packed_bytes))),
                out.nbytes.eq(Mux(p3["raw"], p3["count"] * 4, p3["count"])),
                out.last.eq(p3["last"]),
            ]
        return m

