"""The systolic array: a mesh of PEs with input skew and output de-skew.

Whole rows go in and whole rows come out, qualified by ``valid``; there is no ``ready``.
Invalid slots travel through the array as bubbles and never corrupt a result; the consumer
makes room by credits (the controller issues a row only when it holds an accumulator
credit). Timing is fixed: with ``G_r`` tile rows and ``G_c`` tile columns
(``G = ceil(n / pipeline_every)``, or 1 when ``pipeline_every`` is 0) the array's latency
is ``G_r + G_c`` cycles.

Weight-stationary (:class:`WSArray`)
    An input row ``x`` (``rows`` elements, the reduction dimension K) leaves as the output
    row ``x @ W`` (``cols`` int32) exactly ``latency`` cycles later, together with the
    ``tag`` it came with. ``W`` is the active weight tile. Weight rows for the next tile
    are pushed on ``weight`` (row index ``k`` and ``cols`` elements, any order, any gaps)
    while the current tile streams; an input row with ``swap`` makes every weight pushed
    in earlier cycles active for itself and the rows after it. A weight pushed in the
    same cycle as the swap row, or later, belongs to the tile after. So tiles follow each
    other with no bubble as long as a tile has at least ``rows`` input rows. Built with
    ``shadow=False`` the PEs keep no shadow weights: a weight row pushed in cycle ``c``
    is used by the input rows pushed in cycle ``c`` and later (``swap`` is ignored), so
    the feeder pushes a tile only after the last input row of the tile before. Then
    the weights may sit in the multiplier blocks' own registers (``"ice40"``, one
    pipeline tile), which the mesh clears in the first cycle after a reset: a weight row
    pushed in that cycle is lost.

Output-stationary (:class:`OSArray`)
    A step brings a column of A (``rows`` elements) and a row of B (``cols`` elements);
    PE ``(i, n)`` accumulates ``a[i] * b[n]``, so after K steps the PEs hold ``A @ B``
    with A of shape (rows, K). A step with ``flush`` ends the tile: its sums drain out as
    ``rows`` output rows in consecutive cycles, row ``rows - 1`` first (``out.row`` names
    it), each with the ``tag`` of the flush step; the flush step's own product starts the
    next tile. The first drained row leaves ``latency`` cycles after the flush step.
    Flushes must be at least ``rows`` steps apart (pad with bubble steps).
"""

from amaranth.hdl import Module, Shape, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from systolic.config import AcceleratorConfig

from .mesh import Grouping, OSMesh, WSMesh
from .pe import ACC_BITS

__all__ = ["RowStream", "WSArray", "OSArray", "SystolicArray", "array_latency",
           "payload_layouts"]


class RowStream(wiring.Signature):
    """A stream without back-pressure: a payload qualified by ``valid``.

    Parameters
    ----------
    payload_shape : shape-castable
        Shape of the payload.

    Members
    -------
    valid : Out(1)
        The payload holds a row this cycle.
    payload : Out(payload_shape)
    """

    def __init__(self, payload_shape):
        super().__init__({"valid": Out(1), "payload": Out(payload_shape)})


def _delay(m, value, cycles, name):
    """``value`` seen ``cycles`` clock cycles later (a chain of registers)."""
    for i in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{i + 1}")
        m.d.sync += reg.eq(value)
        value = reg
    return value


def _taps(m, value, cycles, name):
    """``value`` delayed by 0, 1, ... ``cycles`` cycles (one shared chain)."""
    taps = [value]
    for i in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{i + 1}")
        m.d.sync += reg.eq(taps[-1])
        taps.append(reg)
    return taps


def array_latency(config):
    """Cycles from an input row (WS) or a flush step (OS) to its (first) output row:
    ``G_r + G_c``, the numbers of pipeline tiles down a column and along a row."""
    g = Grouping(config.rows, config.cols, config.pipeline_every)
    return g.row_stages + g.col_stages


def payload_layouts(config, tag_bits=0):
    """Payload layouts of the array's streams, by member name.

    Weight-stationary: ``inp`` (``data``: rows bytes, ``swap``, ``tag``), ``weight``
    (``data``: cols bytes, ``row``) and ``out`` (``data``: cols int32, ``tag``).
    Output-stationary: ``inp`` (``data``: rows bytes, ``weight``: cols bytes, ``flush``,
    ``tag``) and ``out`` (``data``: cols int32, ``row``, ``tag``).
    """
    rows, cols = config.rows, config.cols
    sums = data.ArrayLayout(signed(ACC_BITS), cols)
    if config.dataflow == "ws":
        return {
            "inp": data.StructLayout({"data": data.ArrayLayout(8, rows), "swap": 1,
                                      "tag": tag_bits}),
            "weight": data.StructLayout({"data": data.ArrayLayout(8, cols),
                                         "row": range(rows)}),
            "out": data.StructLayout({"data": sums, "tag": tag_bits}),
        }
    return {
        "inp": data.StructLayout({"data": data.ArrayLayout(8, rows),
                                  "weight": data.ArrayLayout(8, cols), "flush": 1,
                                  "tag": tag_bits}),
        "out": data.StructLayout({"data": sums, "row": range(rows), "tag": tag_bits}),
    }


class _ArrayBase(wiring.Component):
    def __init__(self, config, *, tag_bits, multiplier, dataflow, shadow=True):
        who = type(self).__name__
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"{who} config must be an AcceleratorConfig, not {config!r}")
        if config.dataflow != dataflow:
            raise ValueError(f"{who} needs config.dataflow {dataflow!r}, "
                             f"not {config.dataflow!r}")
        if not isinstance(tag_bits, int) or isinstance(tag_bits, bool) or not \
                0 <= tag_bits <= 64:
            raise ValueError(f"{who} tag_bits must be an integer in 0..64, not {tag_bits!r}")
        self.config = config
        self.tag_bits = tag_bits
        self.multiplier = multiplier
        self.shadow = bool(shadow)
        self.grouping = Grouping(config.rows, config.cols, config.pipeline_every)
        self.a_shape = Shape(config.input_bits, signed=config.input_signed)
        self.w_shape = Shape(config.weight_bits, signed=config.weight_signed)
        layouts = payload_layouts(config, tag_bits)
        super().__init__({
            name: (Out if name == "out" else In)(RowStream(layout))
            for name, layout in layouts.items()
        })

    @property
    def latency(self):
        """Cycles from an input row (WS) or flush step (OS) to its first output row."""
        return array_latency(self.config)

    @property
    def macs(self):
        """Multiply-accumulates per cycle when the array is full."""
        return self.config.rows * self.config.cols

    def _elements(self, m, row, count, shape, name):
        """The low bits of each byte of ``row``, registered, as ``shape`` values."""
        out = []
        for i in range(count):
            reg = Signal(shape, name=f"{name}_{i}")
            m.d.sync += reg.eq(row[i][:shape.width])
            out.append(reg)
        return out

    def _deskew(self, m, columns, extra):
        """Align the mesh's column outputs; ``extra`` more registers on every column."""
        g = self.grouping
        for n in range(self.config.cols):
            lag = g.col_stages - 1 - g.col_stage(n) + extra
            m.d.comb += self.out.payload.data[n].eq(_delay(m, columns[n], lag, f"deskew_{n}"))


class WSArray(_ArrayBase):
    """Weight-stationary systolic array of ``config.rows`` x ``config.cols`` PEs.

    Parameters
    ----------
    config : AcceleratorConfig
        Array size, element widths and signedness, ``pipeline_every``; ``dataflow`` must
        be ``"ws"``.
    tag_bits : int
        Width of the tag that travels with every row (0..64), e.g. the accumulator
        address and an accumulate flag, so the consumer needs no delay line of its own.
    multiplier : str or callable
        Multiplier kind (``"generic"``, ``"ice40"``, ``"ecp5"``) or factory.
    shadow : bool
        PEs keep shadow weights for a preload under the streaming tile (default), or
        weight rows load straight into the active weights.

    Attributes
    ----------
    latency : int
        Cycles from an input row to its output row: ``G_r + G_c``.
    grouping : Grouping
        Pipeline tiles of the mesh.

    Members
    -------
    inp : In(RowStream)
        Payload ``data`` (``rows`` bytes; each element is the low ``input_bits``), ``swap``
        (this row is the first of a tile: the weights pushed before it become active) and
        ``tag``. ``swap`` acts even on a bubble (without shadow weights it is ignored).
    weight : In(RowStream)
        Payload ``row`` (0..rows-1) and ``data`` (``cols`` bytes, low ``weight_bits``):
        one row of the next weight tile (without shadow weights: of the active tile, for
        the input rows pushed in this cycle and later).
    out : Out(RowStream)
        Payload ``data`` (``cols`` signed 32-bit sums) and ``tag``.
    """

    def __init__(self, config, *, tag_bits=0, multiplier="generic", shadow=True):
        super().__init__(config, tag_bits=tag_bits, multiplier=multiplier, dataflow="ws",
                         shadow=shadow)

    def elaborate(self, platform):
        m = Module()
        g, rows, cols = self.grouping, self.config.rows, self.config.cols
        m.submodules.mesh = mesh = WSMesh(g, self.a_shape, self.w_shape,
                                          multiplier=self.multiplier, shadow=self.shadow)
        # Input row: one edge register, then row k waits row_stage(k) cycles. The swap
        # flag skips the edge register, so it reaches every PE one cycle ahead of the row.
        # Multipliers that register their factors hold the edge register themselves.
        if mesh.registered:
            a = [self.inp.payload.data[k][:self.a_shape.width] for k in range(rows)]
        else:
            a = self._elements(m, self.inp.payload.data, rows, self.a_shape, "a_edge")
        for k in range(rows):
            m.d.comb += mesh.a[k].eq(_delay(m, a[k], g.row_stage(k), f"a_skew_{k}"))
        if self.shadow:
            swap = _taps(m, self.inp.payload.swap, g.row_stages - 1, "swap")
            for k in range(rows):
                m.d.comb += mesh.swap[k].eq(swap[g.row_stage(k)])
        # Weight rows: column n waits col_stage(n) cycles, like the input reaching it.
        w_valid = _taps(m, self.weight.valid, g.col_stages - 1, "w_valid")
        w_row = _taps(m, self.weight.payload.row, g.col_stages - 1, "w_row")
        for n in range(cols):
            w = self.weight.payload.data[n][:self.w_shape.width]
            m.d.comb += [
                mesh.w_valid[n].eq(w_valid[g.col_stage(n)]),
                mesh.w_row[n].eq(w_row[g.col_stage(n)]),
                mesh.w_data[n].eq(_delay(m, w, g.col_stage(n), f"w_skew_{n}")),
            ]
        # Outputs: de-skew the columns and register them; valid and tag wait alongside.
        self._deskew(m, mesh.psum, extra=1)
        m.d.comb += [
            self.out.valid.eq(_delay(m, self.inp.valid, self.latency, "valid")),
            self.out.payload.tag.eq(_delay(m, self.inp.payload.tag, self.latency, "tag")),
        ]
        return m


class OSArray(_ArrayBase):
    """Output-stationary systolic array of ``config.rows`` x ``config.cols`` PEs.

    Parameters
    ----------
    config : AcceleratorConfig
        As for :class:`WSArray`; ``dataflow`` must be ``"os"``.
    tag_bits : int
        Width of the tag given with a flush step and returned with the drained rows.
    multiplier : str or callable
        Multiplier kind or factory.

    Attributes
    ----------
    latency : int
        Cycles from a flush step to the first drained row: ``G_r + G_c``; the drain
        then takes ``rows`` cycles.

    Members
    -------
    inp : In(RowStream)
        Payload ``data`` (``rows`` bytes: one column of A), ``weight`` (``cols`` bytes:
        one row of B), ``flush`` and ``tag``. ``valid`` low: a bubble step, adds nothing.
    out : Out(RowStream)
        Payload ``data`` (``cols`` signed 32-bit sums: one row of the finished tile),
        ``row`` (which row, ``rows - 1`` first) and ``tag``.
    """

    def __init__(self, config, *, tag_bits=0, multiplier="generic"):
        super().__init__(config, tag_bits=tag_bits, multiplier=multiplier, dataflow="os")

    def elaborate(self, platform):
        m = Module()
        g, rows, cols = self.grouping, self.config.rows, self.config.cols
        m.submodules.mesh = mesh = OSMesh(g, self.a_shape, self.w_shape,
                                          multiplier=self.multiplier)
        p = self.inp.payload
        a = self._elements(m, p.data, rows, self.a_shape, "a_edge")
        b = self._elements(m, p.weight, cols, self.w_shape, "b_edge")
        valid = Signal()
        flush = Signal()
        m.d.sync += [valid.eq(self.inp.valid), flush.eq(p.flush)]
        valid_taps = _taps(m, valid, g.row_stages - 1, "valid")
        flush_taps = _taps(m, flush, g.row_stages - 1, "flush")
        for k in range(rows):
            m.d.comb += [
                mesh.a[k].eq(_delay(m, a[k], g.row_stage(k), f"a_skew_{k}")),
                mesh.valid[k].eq(valid_taps[g.row_stage(k)]),
                mesh.flush[k].eq(flush_taps[g.row_stage(k)]),
            ]
        for n in range(cols):
            m.d.comb += mesh.b[n].eq(_delay(m, b[n], g.col_stage(n), f"b_skew_{n}"))
        self._deskew(m, mesh.drain, extra=0)

        # Drain sequencer: rows leave in consecutive cycles from `latency` cycles after
        # the flush step, last row first.
        start = _delay(m, p.flush, self.latency, "drain_start")
        start_tag = _delay(m, p.tag, self.latency, "drain_tag")
        row = Signal(range(rows))
        tag = Signal(self.tag_bits)
        busy = Signal()
        with m.If(start):
            m.d.comb += [self.out.valid.eq(1), self.out.payload.row.eq(rows - 1),
                         self.out.payload.tag.eq(start_tag)]
            m.d.sync += [row.eq(rows - 2), tag.eq(start_tag), busy.eq(rows > 1)]
        with m.Else():
            m.d.comb += [self.out.valid.eq(busy), self.out.payload.row.eq(row),
                         self.out.payload.tag.eq(tag)]
            with m.If(busy):
                m.d.sync += [row.eq(row - 1), busy.eq(row != 0)]
        return m


def SystolicArray(config, *, tag_bits=0, multiplier="generic"):
    """The array for ``config.dataflow``: a :class:`WSArray` or an :class:`OSArray`."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"SystolicArray config must be an AcceleratorConfig, not {config!r}")
    cls = WSArray if config.dataflow == "ws" else OSArray
    return cls(config, tag_bits=tag_bits, multiplier=multiplier)
