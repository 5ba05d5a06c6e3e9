"""The multiplier primitive inside a processing element, chosen by the platform.

A PE never writes ``a * b`` itself: it asks a *multiplier factory* for a component, so a
platform can swap in a vendor DSP block without touching the array. Three kinds exist:

``"generic"``
    Amaranth's ``*``; simulation and portable Verilog. Yosys still infers DSP blocks
    from it (``synth_ice40 -dsp``, ``synth_ecp5``).
``"ice40"``
    Hook for the iCE40 ``SB_MAC16`` (two 8x8 products per block in dual mode).
``"ecp5"``
    Hook for the ECP5 ``MULT18X18D`` (with its input/output registers).

The vendor hooks currently elaborate to the generic product; the FPGA work replaces
their ``elaborate`` with an instance of the primitive. Every multiplier is
combinational (``latency == 0``) so far; a pipelined primitive must report its latency
and the mesh must then move its pipeline registers accordingly.
"""

from amaranth.hdl import Module, Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Multiplier", "ICE40Multiplier", "ECP5Multiplier", "MULTIPLIERS",
           "multiplier_factory"]


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

    def __init__(self, a_shape, b_shape):
        for name, shape in (("a_shape", a_shape), ("b_shape", b_shape)):
            try:
                width = Shape.cast(shape).width
            except TypeError:
                raise TypeError(f"Multiplier {name} must be a shape, not {shape!r}") from None
            if width < 1:
                raise ValueError(f"Multiplier {name} must be at least 1 bit wide, not {width}")
        super().__init__({
            "a": In(a_shape),
            "b": In(b_shape),
            "p": Out(_product_shape(a_shape, b_shape)),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.p.eq(self.a * self.b)
        return m


class ICE40Multiplier(Multiplier):
    """iCE40 ``SB_MAC16`` hook (dual 8x8 mode); generic product until the FPGA work
    instantiates the block."""

    kind = "ice40"


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
