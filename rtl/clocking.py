"""Clock-domain helpers shared by the blocks."""

from amaranth.hdl import ClockDomain, ClockSignal

__all__ = ["falling_edge"]


def falling_edge(m, name):
    """Add to ``m`` the local clock domain ``name`` on the falling edge of the ``sync``
    clock (no reset); return ``name``.

    A block RAM write port in it lands a write presented in a cycle at that cycle's
    falling edge, so a read of the same row issued in the same cycle already returns the
    new data (the write's inputs have half a cycle to settle). A write port in the read
    port's domain would instead need soft logic (about 60 logic cells per RAM on the
    iCE40) to give such a read the old data; the iCE40 and ECP5 block RAMs take the
    inverted clock for free.
    """
    m.domains += ClockDomain(name, clk_edge="neg", local=True, reset_less=True)
    m.d.comb += ClockSignal(name).eq(ClockSignal("sync"))
    return name
