"""Vector unit: elementwise operations on accumulator rows, bit-exact with the golden model."""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from systolic.isa import VectorOp
from systolic.numerics import INT32_MAX, INT32_MIN

from .scratchpad import check_config

__all__ = ["VectorUnit"]


def _round_shift(m, x, s, width):
    """``(x + 2**(s-1)) >> s`` for ``s >= 1``, ``x`` for ``s == 0`` (arithmetic shift)."""
    half = Signal(signed(width))
    out = Signal(signed(width))
    m.d.comb += [
        half.eq(Mux(s == 0, 0, Const(1, unsigned(width - 1)) << (s - 1)[:len(s)])),
        out.eq((x + half) >> s),
    ]
    return out


class VectorUnit(wiring.Component):
    """Combinational: one result row from operand rows ``a`` and ``b``.

    Every operation of :class:`~systolic.isa.VectorOp` as in the golden model, results
    saturated to int32; ``overflow`` is high when any element saturated. The controller
    registers the result (one row per cycle at most).

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    op : In(4)
    imm : In(signed(32))
    mult_a, mult_b : In(31)
    shift_a, shift_b : In(6)
        The RESCALE_ADD registers (VEC_MULT_A ... VEC_SHIFT_B).
    a, b : In(ArrayLayout(signed(32), cols))
    result : Out(ArrayLayout(signed(32), cols))
    overflow : Out(1)
    """

    def __init__(self, *, config):
        check_config(config, "VectorUnit")
        self.config = config
        row = data.ArrayLayout(signed(32), config.cols)
        super().__init__({
            "op": In(4), "imm": In(signed(32)),
            "mult_a": In(31), "mult_b": In(31), "shift_a": In(6), "shift_b": In(6),
            "a": In(row), "b": In(row), "result": Out(row), "overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        imm = self.imm
        over = []
        for n in range(self.config.cols):
            a, b = self.a[n], self.b[n]
            wide = Signal(signed(72), name=f"wide{n}")
            # SHIFT
            sh_right = _round_shift(m, a, imm[:6], 72)
            k = Signal(5, name=f"k{n}")
            m.d.comb += k.eq(-imm)
            sh_left = Signal(signed(72), name=f"shl{n}")
            m.d.comb += sh_left.eq(a << k)
            # RESCALE_ADD
            pa = Signal(signed(72), name=f"pa{n}")
            pb = Signal(signed(72), name=f"pb{n}")
            m.d.comb += [pa.eq(a * self.mult_a), pb.eq(b * self.mult_b)]
            ra = _round_shift(m, pa, self.shift_a, 72)
            rb = _round_shift(m, pb, self.shift_b, 72)
            with m.Switch(self.op):
                with m.Case(VectorOp.ADD):
                    m.d.comb += wide.eq(a + b)
                with m.Case(VectorOp.MAX):
                    m.d.comb += wide.eq(Mux(a > b, a, b))
                with m.Case(VectorOp.MIN):
                    m.d.comb += wide.eq(Mux(a < b, a, b))
                with m.Case(VectorOp.ADDI):
                    m.d.comb += wide.eq(a + imm)
                with m.Case(VectorOp.MAXI):
                    m.d.comb += wide.eq(Mux(a > imm, a, imm))
                with m.Case(VectorOp.MINI):
                    m.d.comb += wide.eq(Mux(a < imm, a, imm))
                with m.Case(VectorOp.SHIFT):
                    m.d.comb += wide.eq(Mux(imm >= 0, sh_right, sh_left))
                with m.Case(VectorOp.MULI):
                    m.d.comb += wide.eq(a * imm)
                with m.Case(VectorOp.RESCALE_ADD):
                    m.d.comb += wide.eq(ra + rb)
            hi = wide > INT32_MAX
            lo = wide < INT32_MIN
            m.d.comb += self.result[n].eq(Mux(hi, INT32_MAX, Mux(lo, INT32_MIN, wide)))
            over.append(hi | lo)
        any_over = 0
        for o in over:
            any_over = any_over | o
        m.d.comb += self.overflow.eq(any_over)
        return m
