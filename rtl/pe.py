"""Processing elements: one multiply-accumulate cell of the systolic array.

A PE is combinational from its moving operands to its result; only its stationary state
(weights or partial sum) is held in registers inside it. The mesh around the PEs places
the pipeline registers between groups of PEs (``pipeline_every``); with a group size of
one, every PE has registered operands and registered results, the classic systolic cell.
"""

from amaranth.hdl import Module, Mux, Shape, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .multiplier import multiplier_factory

__all__ = ["WSPE", "OSPE", "column_sum_bits"]

ACC_BITS = 32


def column_sum_bits(a_shape, w_shape, rows):
    """Bits of a signed value that holds every sum of ``rows`` products of ``a_shape``
    and ``w_shape`` values exactly (at most ``ACC_BITS``).

    A product fits ``a.width + w.width`` bits, signed when a factor is (unsigned: one
    more bit for the sign); ``rows`` of them need ``ceil_log2(rows)`` bits more.
    """
    a, w = Shape.cast(a_shape), Shape.cast(w_shape)
    width = a.width + w.width + ceil_log2(rows) + (0 if a.signed or w.signed else 1)
    return min(width, ACC_BITS)


def _check_shape(who, name, shape):
    try:
        width = Shape.cast(shape).width
    except TypeError:
        raise TypeError(f"{who} {name} must be a shape, not {shape!r}") from None
    if not 1 <= width <= 8:
        raise ValueError(f"{who} {name} must be 1..8 bits wide, not {width}")


class WSPE(wiring.Component):
    """Weight-stationary PE: ``psum_out = psum_in + a * weight``.

    The active weight multiplies every input; a shadow register takes the next tile's
    weight meanwhile, and ``swap`` moves it into the active register at the end of the
    cycle, so the input of the following cycle already sees the new weight. Without the
    shadow register (``shadow=False``) ``w_load`` writes the active weight itself and
    ``swap`` is ignored: the feeder then orders weight loads after the inputs of the old
    tile. A *registered* multiplier (``multiplier.registered``, e.g. from
    ``ICE40Multiplier.pairing(registered=True)``; only without shadow) holds the weight
    and the input itself: the PE then has no register and no ``weight`` member, and
    ``psum_out = psum_in + a' * weight`` with ``a'`` the input of the cycle before; a
    cycle with ``clear`` zeroes both (the reset does not reach them).

    Parameters
    ----------
    a_shape, w_shape : shape-castable
        Shapes of the input element and of the weight (1..8 bits, signed or unsigned).
    multiplier : str or callable
        Multiplier kind or factory, see :func:`.multiplier.multiplier_factory`.
    shadow : bool
        Keep a shadow weight register (default) or load the active weight directly.
    psum_bits : int
        Width of the partial sums (signed, wrapping; default 32). A mesh narrows them to
        :func:`column_sum_bits`, which holds its column sums exactly.

    Members
    -------
    a : In(a_shape)
        Input element.
    psum_in : In(signed(psum_bits))
        Partial sum from the PE above (0 at the top row).
    psum_out : Out(signed(psum_bits))
        ``psum_in + a * weight``, combinational, wrapping at ``psum_bits``.
    swap : In(1)
        Make the shadow weight active from the next cycle on (unused without shadow).
    w_load : In(1)
        Write ``w_data`` into the shadow weight (without shadow: the active weight) at
        the end of the cycle.
    w_data : In(w_shape)
        Weight to preload.
    weight : Out(w_shape)
        The active weight (not with a registered multiplier).
    clear : In(1)
        Only with a registered multiplier: zero the weight and the held input.
    """

    def __init__(self, a_shape, w_shape, *, multiplier="generic", shadow=True,
                 psum_bits=ACC_BITS):
        _check_shape("WSPE", "a_shape", a_shape)
        _check_shape("WSPE", "w_shape", w_shape)
        # built here rather than in elaborate, so a pairing factory sees every PE of a mesh
        # before any of them is elaborated
        self._mul = multiplier_factory(multiplier)(a_shape, w_shape)
        self.shadow = bool(shadow)
        self.registered = bool(getattr(self._mul, "registered", False))
        if self.registered and self.shadow:
            self._mul._MustUse__silence = True     # never elaborated: no warning for it
            raise ValueError("WSPE with a registered multiplier keeps no shadow weight")
        if not isinstance(psum_bits, int) or not 2 <= psum_bits <= ACC_BITS:
            raise ValueError(f"WSPE psum_bits must be an integer in 2..{ACC_BITS}, "
                             f"not {psum_bits!r}")
        members = {
            "a": In(a_shape),
            "psum_in": In(signed(psum_bits)),
            "psum_out": Out(signed(psum_bits)),
            "swap": In(1),
            "w_load": In(1),
            "w_data": In(w_shape),
        }
        if self.registered:
            members["clear"] = In(1)
        else:
            members["weight"] = Out(w_shape)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mul = mul = self._mul
        # kept, so that synthesis builds each PE's adder on its own carry chain instead of
        # merging a column's adders into one multi-operand adder of plain LUTs
        total = Signal(signed(len(self.psum_out)), attrs={"keep": 1})
        m.d.comb += [total.eq(self.psum_in + mul.p), self.psum_out.eq(total),
                     mul.a.eq(self.a)]
        if self.registered:
            m.d.comb += [mul.b.eq(self.w_data), mul.b_load.eq(self.w_load),
                         mul.clear.eq(self.clear)]
            return m
        active = Signal.like(self.w_data, name="active")
        if self.shadow:
            shadow = Signal.like(self.w_data, name="shadow")
            with m.If(self.w_load):
                m.d.sync += shadow.eq(self.w_data)
            with m.If(self.swap):
                m.d.sync += active.eq(shadow)
        else:
            with m.If(self.w_load):
                m.d.sync += active.eq(self.w_data)
        m.d.comb += [mul.b.eq(active), self.weight.eq(active)]
        return m


class OSPE(wiring.Component):
    """Output-stationary PE: accumulates ``a * b`` in place, drains on ``flush``.

    A step with ``flush`` starts a new sum: the finished one moves into the PE's drain
    register (a link of the column's drain chain) and the accumulator restarts with this
    step's product. Steps without ``valid`` add nothing, so bubbles never corrupt a sum.

    Parameters
    ----------
    a_shape, b_shape : shape-castable
        Shapes of the two factors (1..8 bits, signed or unsigned).
    multiplier : str or callable
        Multiplier kind or factory, see :func:`.multiplier.multiplier_factory`.

    Members
    -------
    a : In(a_shape)
        Element from the left (input activation).
    b : In(b_shape)
        Element from above (weight).
    valid : In(1)
        The step carries data; otherwise the product is not added.
    flush : In(1)
        This step starts a new sum; the finished sum enters the drain register.
    acc : Out(signed(32))
        The running sum (registered), wrapping at 32 bits.
    drain_in : In(signed(32))
        Drain chain from above.
    drain_out : Out(signed(32))
        Drain register: the finished sum after a flush, else ``drain_in`` one cycle later.
    """

    def __init__(self, a_shape, b_shape, *, multiplier="generic"):
        _check_shape("OSPE", "a_shape", a_shape)
        _check_shape("OSPE", "b_shape", b_shape)
        self._mul = multiplier_factory(multiplier)(a_shape, b_shape)
        super().__init__({
            "a": In(a_shape),
            "b": In(b_shape),
            "valid": In(1),
            "flush": In(1),
            "acc": Out(signed(ACC_BITS)),
            "drain_in": In(signed(ACC_BITS)),
            "drain_out": Out(signed(ACC_BITS)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mul = mul = self._mul
        m.d.comb += [mul.a.eq(self.a), mul.b.eq(self.b)]
        base = Mux(self.flush, 0, self.acc)
        m.d.sync += self.acc.eq(base + Mux(self.valid, mul.p, 0))
        m.d.sync += self.drain_out.eq(Mux(self.flush, self.acc, self.drain_in))
        return m
