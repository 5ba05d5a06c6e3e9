"""The multiplier primitive inside a processing element, chosen by the platform.

A PE never writes ``a * b`` itself: it asks a *multiplier factory* for a component, so a
platform can swap in a vendor DSP block without touching the array. Three kinds exist:

``"generic"``
    Amaranth's ``*``; simulation and portable Verilog. Yosys still infers DSP blocks
    from it (``synth_ice40 -dsp``, ``synth_ecp5``).
``"ice40"``
    The iCE40 ``SB_MAC16`` in its dual 8x8 mode: two independent products per block.
    A mesh pairs its PEs' products through :meth:`ICE40Multiplier.pairing`, so 16 MACs
    take 8 blocks. Off iCE40 (simulation, portable Verilog) the block is replaced by
    :class:`SBMac16Dual`'s behavioral description of the same mode.
``"ecp5"``
    Hook for the ECP5 ``MULT18X18D`` (with its input/output registers).

The ECP5 hook still elaborates to the generic product. Every multiplier is
combinational (``latency == 0``) so far; a pipelined primitive must report its latency
and the mesh must then move its pipeline registers accordingly. The one exception is a
*registered* ``"ice40"`` multiplier (``ICE40Multiplier.pairing(registered=True)``): it
keeps its factors in the block's own input registers (``a`` every cycle, ``b`` when
``b_load``), which cost no logic cells, and a mesh that uses it takes those registers
for its input edge register and its PEs' weight registers.
"""

from amaranth.hdl import ClockSignal, Const, Instance, Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Multiplier", "ICE40Multiplier", "ECP5Multiplier", "SBMac16Dual", "MULTIPLIERS",
           "multiplier_factory", "is_ice40"]


def _product_shape(a_shape, b_shape):
    """Shape that holds every product of ``a_shape`` and ``b_shape`` values."""
    a, b = Shape.cast(a_shape), Shape.cast(b_shape)
    # |a * b| < 2**(width_a + width_b - 1) whenever a factor is signed, so one sign bit
    # on top of the magnitude bits is enough.
    return Shape(a.width + b.width, signed=a.signed or b.signed)


class Multiplier(wiring.Component):
    """Combinational product ``p = a * b`` of two integers, exact.

    Parameters
    ----------
    a_shape, b_shape : shape-castable
        Shapes of the factors (signed or unsigned, any width).

    Attributes
    ----------
    latency : int
        Cycles from ``a``/``b`` to ``p``: 0 (combinational).
    kind : str
        Name of the platform primitive (``"generic"`` here).

    Members
    -------
    a : In(a_shape)
    b : In(b_shape)
    p : Out(product shape)
        The exact product; signed if either factor is.
    """

    latency = 0
    kind = "generic"
    registered = False
    can_register = False

    def __init__(self, a_shape, b_shape):
        for name, shape in (("a_shape", a_shape), ("b_shape", b_shape)):
            try:
                width = Shape.cast(shape).width
            except TypeError:
                raise TypeError(f"Multiplier {name} must be a shape, not {shape!r}") from None
            if width < 1:
                raise ValueError(f"Multiplier {name} must be at least 1 bit wide, not {width}")
        members = {
            "a": In(a_shape),
            "b": In(b_shape),
            "p": Out(_product_shape(a_shape, b_shape)),
        }
        if self.registered:
            members["b_load"] = In(1)
            members["clear"] = In(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.p.eq(self.a * self.b)
        return m


def is_ice40(platform):
    """Whether ``platform`` builds for an iCE40 device (its ``device`` names one)."""
    return str(getattr(platform, "device", "")).lower().startswith("ice40")


class SBMac16Dual(wiring.Component):
    """One ``SB_MAC16`` in dual 8x8 mode, combinational: ``o[16:32] = a[8:16] * b[8:16]``
    and ``o[0:16] = a[0:8] * b[0:8]``, each product taken modulo ``2**16``.

    On an iCE40 platform (:func:`is_ice40`) it instantiates the primitive with
    ``MODE_8x8``, no input, product or output registers, ``TOPOUTPUT_SELECT`` and
    ``BOTOUTPUT_SELECT`` on the 8x8 products; on any other platform (or none) it is a
    behavioral description of that mode: the bytes are sign-extended when ``a_signed``
    / ``b_signed``, else zero-extended, and multiplied.

    ``registered``: the products are of the block's input registers (``A_REG``,
    ``B_REG``): ``a`` is taken at every clock edge, ``b`` at the edges where ``b_hold``
    is low; ``clear`` empties both (the primitive's ``IRSTTOP``/``IRSTBOT``, which act at
    once; the model clears at the clock edge). The domain's reset does not reach them
    (neither does a reset added around the design), so the user clears them.

    Parameters
    ----------
    a_signed, b_signed : bool
        Signedness of the bytes of ``a`` and ``b`` (the primitive's ``A_SIGNED`` and
        ``B_SIGNED``; the same for both halves).
    registered : bool
        Multiply the registered factors (default: combinational).

    Members
    -------
    a, b : In(16)
        Two bytes each: high bytes for the top product, low bytes for the bottom one.
    o : Out(32)
        Top product in the high half, bottom product in the low half.
    b_hold : In(1)
        Only when ``registered``: keep the ``b`` register.
    clear : In(1)
        Only when ``registered``: zero both registers.
    """

    def __init__(self, *, a_signed, b_signed, registered=False):
        for name, value in (("a_signed", a_signed), ("b_signed", b_signed),
                            ("registered", registered)):
            if not isinstance(value, bool):
                raise TypeError(f"SBMac16Dual {name} must be a bool, not {value!r}")
        self.a_signed, self.b_signed = a_signed, b_signed
        self.registered = registered
        members = {"a": In(16), "b": In(16), "o": Out(32)}
        if registered:
            members["b_hold"] = In(1)
            members["clear"] = In(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        if is_ice40(platform):
            zero, one = Const(0, 1), Const(1, 1)
            if self.registered:
                reg, clk, rst, b_hold = one, ClockSignal(), self.clear, self.b_hold
            else:
                reg, clk, rst, b_hold = zero, zero, zero, zero
            m.submodules.mac = Instance(
                "SB_MAC16",
                p_MODE_8x8=Const(1, 1), p_A_SIGNED=Const(int(self.a_signed), 1),
                p_B_SIGNED=Const(int(self.b_signed), 1),
                p_TOPOUTPUT_SELECT=Const(0b10, 2), p_BOTOUTPUT_SELECT=Const(0b10, 2),
                p_A_REG=reg, p_B_REG=reg, p_C_REG=zero, p_D_REG=zero,
                p_TOP_8x8_MULT_REG=zero, p_BOT_8x8_MULT_REG=zero,
                p_PIPELINE_16x16_MULT_REG1=zero, p_PIPELINE_16x16_MULT_REG2=zero,
                i_CLK=clk, i_CE=reg, i_A=self.a, i_B=self.b,
                i_C=Const(0, 16), i_D=Const(0, 16),
                i_AHOLD=zero, i_BHOLD=b_hold, i_CHOLD=zero, i_DHOLD=zero,
                i_IRSTTOP=rst, i_IRSTBOT=rst, i_ORSTTOP=zero, i_ORSTBOT=zero,
                i_OLOADTOP=zero, i_OLOADBOT=zero, i_ADDSUBTOP=zero, i_ADDSUBBOT=zero,
                i_OHOLDTOP=zero, i_OHOLDBOT=zero, i_CI=zero, i_ACCUMCI=zero,
                i_SIGNEXTIN=zero, o_O=self.o)
            return m
        a, b = self.a, self.b
        if self.registered:
            a = Signal(16, name="a_reg", reset_less=True)
            b = Signal(16, name="b_reg", reset_less=True)
            m.d.sync += a.eq(self.a)
            with m.If(~self.b_hold):
                m.d.sync += b.eq(self.b)
            with m.If(self.clear):
                m.d.sync += [a.eq(0), b.eq(0)]
        for half in range(2):
            x, y = a[8 * half:8 * half + 8], b[8 * half:8 * half + 8]
            x = x.as_signed() if self.a_signed else x
            y = y.as_signed() if self.b_signed else y
            m.d.comb += self.o[16 * half:16 * half + 16].eq(x * y)
        return m


class ICE40Multiplier(Multiplier):
    """iCE40 multiplier: one 8x8 half of an ``SB_MAC16`` (:class:`SBMac16Dual`).

    Built alone, a multiplier owns a block and uses its bottom half. Multipliers built
    by one :meth:`pairing` factory share blocks two by two: the first of a pair (the
    host) owns the block and computes the second's product in the top half. Factors
    are at most 8 bits wide; narrower ones are extended by their signedness.

    A ``registered`` multiplier keeps its factors in the block's input registers: ``p``
    is the product of ``a`` one cycle earlier and the ``b`` taken in the last cycle with
    ``b_load``; a cycle with ``clear`` zeroes both (the reset does not). Its block loads
    and clears by the host's ``b_load`` and ``clear``: the user drives those of two
    shared multipliers alike.

    Parameters
    ----------
    a_shape, b_shape : shape-castable
    registered : bool
        Registered factors (member ``b_load``), or a combinational product (default).
    """

    kind = "ice40"
    can_register = True

    def __init__(self, a_shape, b_shape, *, registered=False):
        if not isinstance(registered, bool):
            raise TypeError(f"ICE40Multiplier registered must be a bool, not {registered!r}")
        self.registered = registered
        super().__init__(a_shape, b_shape)
        for name, shape in (("a_shape", a_shape), ("b_shape", b_shape)):
            if Shape.cast(shape).width > 8:
                raise ValueError(f"ICE40Multiplier {name} must be at most 8 bits wide, "
                                 f"not {Shape.cast(shape).width}")
        self.signedness = (Shape.cast(a_shape).signed, Shape.cast(b_shape).signed)
        self._guest = None      # the multiplier whose product is our block's top half
        self._host = None       # the multiplier whose block computes our product
        self._top = None

    def share(self, guest):
        """Compute ``guest``'s product in the top half of this multiplier's block."""
        if not isinstance(guest, ICE40Multiplier):
            raise TypeError(f"ICE40Multiplier can share its block only with an "
                            f"ICE40Multiplier, not {guest!r}")
        if self._guest is not None or self._host is not None or guest._host is not None \
                or guest._guest is not None:
            raise ValueError("ICE40Multiplier shares its block with one multiplier at most")
        if guest.registered != self.registered:
            raise ValueError("ICE40Multiplier can share its block only with a multiplier "
                             "that is registered alike")
        if guest.signedness != self.signedness:
            raise ValueError(f"ICE40Multiplier can share its block only with factors of the "
                             f"same signedness, not {guest.signedness} with {self.signedness}")
        self._guest, guest._host = guest, self
        self._top = Signal(16, name="top_product")

    @classmethod
    def pairing(cls, *, registered=False):
        """A factory ``(a_shape, b_shape) -> ICE40Multiplier`` that pairs the multipliers
        it builds, in order, two per block (a multiplier whose factors' signedness
        differs from the open one's starts a new block); ``registered`` multipliers if
        asked."""
        pending = []

        def factory(a_shape, b_shape):
            mul = cls(a_shape, b_shape, registered=registered)
            if pending and pending[0].signedness == mul.signedness:
                pending.pop().share(mul)
            else:
                pending[:] = [mul]
            return mul

        factory.kind = cls.kind
        return factory

    def elaborate(self, platform):
        m = Module()
        if self._host is not None:
            m.d.comb += self.p.eq(self._host._top)
            return m
        a_signed, b_signed = self.signedness
        m.submodules.mac = mac = SBMac16Dual(a_signed=a_signed, b_signed=b_signed,
                                             registered=self.registered)
        m.d.comb += [mac.a[:8].eq(self.a), mac.b[:8].eq(self.b), self.p.eq(mac.o[:16])]
        if self.registered:
            m.d.comb += [mac.b_hold.eq(~self.b_load), mac.clear.eq(self.clear)]
        if self._guest is not None:
            g = self._guest
            m.d.comb += [mac.a[8:].eq(g.a), mac.b[8:].eq(g.b), self._top.eq(mac.o[16:])]
        return m


class ECP5Multiplier(Multiplier):
    """ECP5 ``MULT18X18D`` hook; generic product until the FPGA work instantiates the
    block."""

    kind = "ecp5"


MULTIPLIERS = {
    "generic": Multiplier,
    "ice40": ICE40Multiplier,
    "ecp5": ECP5Multiplier,
}


def multiplier_factory(kind="generic"):
    """The multiplier class for a platform.

    Parameters
    ----------
    kind : str or callable
        ``"generic"``, ``"ice40"`` or ``"ecp5"``; or a callable ``(a_shape, b_shape)``
        returning a component with members ``a``, ``b`` and ``p`` and an integer
        ``latency`` attribute of 0, which is returned unchanged.

    Returns
    -------
    callable
        ``factory(a_shape, b_shape)`` building one multiplier.
    """
    if callable(kind):
        return kind
    try:
        return MULTIPLIERS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"multiplier kind must be one of {', '.join(MULTIPLIERS)} "
                         f"or a callable, not {kind!r}") from None
