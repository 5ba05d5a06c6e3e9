"""A grid of PEs with pipeline registers between groups of them (Gemmini's tile and mesh).

PEs are grouped into square tiles of ``group`` x ``group`` PEs (``group == 0``: the whole
grid is one tile). Inside a tile the moving operands and partial sums pass through the PEs
combinationally; between tiles every moving value crosses one register. The mesh works in
the *skewed* time frame: the operand for PE row ``k`` must arrive ``row_stage(k)`` cycles
after the one for row 0, that for column ``n`` ``col_stage(n)`` cycles later. The array
(:mod:`.array`) adds the skew and de-skew so that whole rows go in and come out.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .multiplier import multiplier_factory
from .pe import ACC_BITS, OSPE, WSPE, column_sum_bits

__all__ = ["Grouping", "WSMesh", "OSMesh"]


class Grouping:
    """Which pipeline stage each PE row and column belongs to.

    Parameters
    ----------
    rows, cols : int
        Size of the grid (1..64).
    group : int
        PEs per tile side; 0 makes the whole grid one tile.
    """

    def __init__(self, rows, cols, group):
        for name, value, lo in (("rows", rows, 1), ("cols", cols, 1), ("group", group, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= 64:
                raise ValueError(f"mesh {name} must be an integer in {lo}..64, not {value!r}")
        self.rows, self.cols, self.group = rows, cols, group

    def row_stage(self, k):
        """Pipeline registers a value crosses from row 0 down to row ``k``."""
        return k // self.group if self.group else 0

    def col_stage(self, n):
        """Pipeline registers a value crosses from column 0 right to column ``n``."""
        return n // self.group if self.group else 0

    def row_boundary(self, k):
        """A register sits between row ``k - 1`` and row ``k``."""
        return k > 0 and self.row_stage(k) != self.row_stage(k - 1)

    def col_boundary(self, n):
        """A register sits between column ``n - 1`` and column ``n``."""
        return n > 0 and self.col_stage(n) != self.col_stage(n - 1)

    @property
    def row_stages(self):
        """Tiles down a column (``G_r``)."""
        return self.row_stage(self.rows - 1) + 1

    @property
    def col_stages(self):
        """Tiles along a row (``G_c``)."""
        return self.col_stage(self.cols - 1) + 1


def _mesh_factory(multiplier):
    """The multiplier factory for one mesh: a kind that pairs products in shared blocks
    (``ICE40Multiplier.pairing``) gets one pairing factory for all the mesh's PEs."""
    factory = multiplier_factory(multiplier)
    pairing = getattr(factory, "pairing", None)
    return pairing() if pairing is not None else factory


def _stage(m, value, boundary, name):
    """``value`` itself, or ``value`` one cycle later if a pipeline register sits here."""
    if not boundary:
        return value
    reg = Signal.like(value, name=name)
    m.d.sync += reg.eq(value)
    return reg


class WSMesh(wiring.Component):
    """Weight-stationary grid: inputs move right, partial sums move down.

    PE ``(k, n)`` holds weight ``W[k][n]``; column ``n`` leaves ``sum_k a[k] * W[k][n]``.
    Weight rows travel down each column with their row index; PE row ``k`` keeps the one
    addressed to it.

    Parameters
    ----------
    grouping : Grouping
        Grid size and pipeline tiles.
    a_shape, w_shape : shape-castable
        Element shapes of inputs and weights.
    multiplier : str or callable
        Multiplier kind or factory for every PE.
    shadow : bool
        PEs keep a shadow weight (default), or weights load straight into the active
        registers (``swap`` unused).

    Attributes
    ----------
    registered : bool
        The multipliers hold the factors in their own registers: without shadow weights,
        with one pipeline tile and a multiplier kind that can (``"ice40"``, whose blocks
        then pair the PEs of one row, which load their weights together). ``a`` is then
        registered inside the PEs: it enters one cycle earlier than otherwise. Those
        registers are out of the reset's reach: the mesh clears them in the first cycle
        after any reset (when nothing can load a weight yet), so a reset still zeroes
        the weights.

    Members
    -------
    a : In(ArrayLayout(a_shape, rows))
        Element entering each PE row (row ``k`` skewed by ``row_stage(k)``).
    swap : In(rows)
        Swap flag entering each PE row, one cycle ahead of the first row of a tile.
    w_valid : In(cols)
        A weight is travelling down column ``n`` (skewed by ``col_stage(n)``).
    w_row : In(ArrayLayout(range(rows), cols))
        Row the weight belongs to.
    w_data : In(ArrayLayout(w_shape, cols))
        The weight.
    psum : Out(ArrayLayout(signed(psum_bits), cols))
        Sum leaving the bottom of each column (combinational from the last tile row),
        exact in ``psum_bits = column_sum_bits(a_shape, w_shape, rows)`` bits: partial
        sums and their pipeline registers are no wider.
    """

    def __init__(self, grouping, a_shape, w_shape, *, multiplier="generic", shadow=True):
        self.grouping = grouping
        rows, cols = grouping.rows, grouping.cols
        self._shapes = (a_shape, w_shape)
        self._multiplier = multiplier
        self.shadow = bool(shadow)
        self.psum_bits = column_sum_bits(a_shape, w_shape, rows)
        factory = multiplier_factory(multiplier)
        self.registered = (not self.shadow and grouping.row_stages == 1
                           and grouping.col_stages == 1
                           and getattr(factory, "can_register", False))
        super().__init__({
            "a": In(data.ArrayLayout(a_shape, rows)),
            "swap": In(rows),
            "w_valid": In(cols),
            "w_row": In(data.ArrayLayout(range(rows), cols)),
            "w_data": In(data.ArrayLayout(w_shape, cols)),
            "psum": Out(data.ArrayLayout(signed(self.psum_bits), cols)),
        })

    def elaborate(self, platform):
        m = Module()
        g = self.grouping
        a_shape, w_shape = self._shapes
        if self.registered:     # one pairing per PE row: a block's two PEs load together
            factory = multiplier_factory(self._multiplier)
            row_factory = [factory.pairing(registered=True) for _ in range(g.rows)]
        else:
            row_factory = [_mesh_factory(self._multiplier)] * g.rows
        clear = Signal()
        if self.registered:
            up = Signal()           # low in the first cycle after a reset
            m.d.sync += up.eq(1)
            m.d.comb += clear.eq(~up)
        a = [[None] * g.cols for _ in range(g.rows)]
        swap = [[None] * g.cols for _ in range(g.rows)]
        for k in range(g.rows):
            for n in range(g.cols):
                left_a = self.a[k] if n == 0 else a[k][n - 1]
                a[k][n] = _stage(m, left_a, g.col_boundary(n), f"a_{k}_{n}")
                if self.shadow:
                    left_s = self.swap[k] if n == 0 else swap[k][n - 1]
                    swap[k][n] = _stage(m, left_s, g.col_boundary(n), f"swap_{k}_{n}")
        for n in range(g.cols):
            psum = Signal(signed(self.psum_bits), name=f"psum_top_{n}")
            w_valid, w_row, w_data = self.w_valid[n], self.w_row[n], self.w_data[n]
            for k in range(g.rows):
                edge = g.row_boundary(k)
                psum = _stage(m, psum, edge, f"psum_{k}_{n}")
                w_valid = _stage(m, w_valid, edge, f"w_valid_{k}_{n}")
                w_row = _stage(m, w_row, edge, f"w_row_{k}_{n}")
                w_data = _stage(m, w_data, edge, f"w_data_{k}_{n}")
                pe = WSPE(a_shape, w_shape, multiplier=row_factory[k], shadow=self.shadow,
                          psum_bits=self.psum_bits)
                m.submodules[f"pe_{k}_{n}"] = pe
                m.d.comb += [
                    pe.a.eq(a[k][n]),
                    pe.psum_in.eq(psum),
                    pe.w_load.eq(w_valid & (w_row == k)),
                    pe.w_data.eq(w_data),
                ]
                if self.shadow:
                    m.d.comb += pe.swap.eq(swap[k][n])
                if self.registered:
                    m.d.comb += pe.clear.eq(clear)
                psum = pe.psum_out
            m.d.comb += self.psum[n].eq(psum)
        return m


class OSMesh(wiring.Component):
    """Output-stationary grid: inputs move right, weights move down, sums stay.

    PE ``(i, n)`` accumulates ``a[i] * b[n]`` over the steps of a tile. A ``flush`` step
    moves every sum into the column's drain chain, which carries the sums out of the bottom
    of each column, row ``rows - 1`` first, one row per cycle. A pipeline register between
    two tile rows adds one link to the drain chain, so the sums of later tile rows, which
    flush one cycle later, still leave in consecutive cycles.

    Parameters
    ----------
    grouping : Grouping
        Grid size and pipeline tiles.
    a_shape, b_shape : shape-castable
        Element shapes of inputs and weights.
    multiplier : str or callable
        Multiplier kind or factory for every PE.

    Members
    -------
    a : In(ArrayLayout(a_shape, rows))
        Element entering each PE row (row ``k`` skewed by ``row_stage(k)``).
    valid : In(rows)
        The step carries data (travels with ``a``).
    flush : In(rows)
        The step starts a new tile (travels with ``a``).
    b : In(ArrayLayout(b_shape, cols))
        Element entering each PE column (column ``n`` skewed by ``col_stage(n)``).
    drain : Out(ArrayLayout(signed(32), cols))
        Drain chain leaving the bottom of each column (registered).
    """

    def __init__(self, grouping, a_shape, b_shape, *, multiplier="generic"):
        self.grouping = grouping
        rows, cols = grouping.rows, grouping.cols
        self._shapes = (a_shape, b_shape)
        self._multiplier = multiplier
        super().__init__({
            "a": In(data.ArrayLayout(a_shape, rows)),
            "valid": In(rows),
            "flush": In(rows),
            "b": In(data.ArrayLayout(b_shape, cols)),
            "drain": Out(data.ArrayLayout(signed(ACC_BITS), cols)),
        })

    def elaborate(self, platform):
        m = Module()
        g = self.grouping
        a_shape, b_shape = self._shapes
        multiplier = _mesh_factory(self._multiplier)
        pes = [[None] * g.cols for _ in range(g.rows)]
        for k in range(g.rows):
            a, valid, flush = self.a[k], self.valid[k], self.flush[k]
            for n in range(g.cols):
                edge = g.col_boundary(n)
                a = _stage(m, a, edge, f"a_{k}_{n}")
                valid = _stage(m, valid, edge, f"valid_{k}_{n}")
                flush = _stage(m, flush, edge, f"flush_{k}_{n}")
                pe = pes[k][n] = OSPE(a_shape, b_shape, multiplier=multiplier)
                m.submodules[f"pe_{k}_{n}"] = pe
                m.d.comb += [pe.a.eq(a), pe.valid.eq(valid), pe.flush.eq(flush)]
        for n in range(g.cols):
            b = self.b[n]
            drain = Signal(signed(ACC_BITS), name=f"drain_top_{n}")
            for k in range(g.rows):
                edge = g.row_boundary(k)
                b = _stage(m, b, edge, f"b_{k}_{n}")
                drain = _stage(m, drain, edge, f"drain_{k}_{n}")
                pe = pes[k][n]
                m.d.comb += [pe.b.eq(b), pe.drain_in.eq(drain)]
                drain = pe.drain_out
            m.d.comb += self.drain[n].eq(drain)
        return m

