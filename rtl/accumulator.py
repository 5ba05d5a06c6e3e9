"""Ping-pong accumulator: int32 rows written by the array, LOAD and the vector unit."""

from amaranth.hdl import C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .clocking import falling_edge
from .scratchpad import ReadPortSignature, check_config

__all__ = ["Accumulator", "WritePortSignature"]


class WritePortSignature(wiring.Signature):
    """An accumulator write port, seen from the writer.

    Parameters
    ----------
    addr_width : int
    cols : int
        Elements per row.
    accumulate : bool
        Whether the port has an ``accumulate`` input (else it always overwrites).
    ready : bool
        Whether the port has a ``ready`` answer (else every request is accepted).

    Members
    -------
    en : Out(1)
    addr : Out(addr_width)
    data : Out(ArrayLayout(signed(32), cols))
    accumulate : Out(1), optional
        Add ``data`` to the row (saturating) instead of overwriting it.
    ready : In(1), optional
        The request is accepted this cycle.
    """

    def __init__(self, addr_width, cols, *, accumulate=False, ready=True):
        members = {
            "en": Out(1),
            "addr": Out(addr_width),
            "data": Out(data.ArrayLayout(signed(32), cols)),
        }
        if accumulate:
            members["accumulate"] = Out(1)
        if ready:
            members["ready"] = In(1)
        super().__init__(members)


class Accumulator(wiring.Component):
    """``acc_banks`` (2) banks of ``acc_depth`` rows of ``cols`` int32 elements.

    A global row address is ``bank * acc_depth + row`` (the bank is the high bit), so the
    controller ping-pongs by flipping that bit. Memory: with a vector unit each bank is
    one 1R1W :class:`~amaranth.lib.memory.Memory`, so the array accumulating into one bank
    and STORE draining the other both run at one row per cycle. Without one (the FPGA
    presets) both banks share one memory of ``acc_rows`` rows, half the block RAM: the
    array still writes one row per cycle, and the clients' reads take the cycles in which
    the array reads no old row.

    Writes (fixed priority ``array_w`` > ``vec_w`` > ``load_w``, one per cycle):

    * ``array_w``: the array's result rows, overwrite or accumulate. Always accepted (it
      has no ``ready``).
    * ``vec_w``: vector-unit results, overwrite; ``ready`` low while the array writes.
    * ``load_w``: LOAD bias rows, overwrite; ``ready`` low while the array or the vector
      unit writes.

    Write pipeline (every writer): a write accepted in cycle ``t`` goes into the stage
    register ``w_data`` (an accumulating array write also reads its old row in ``t``); in
    ``t + 1`` the old row (or 0: overwrite) is added element by element and saturated to
    int32 into the result register; in ``t + 2`` the result is written to its memory on
    the falling clock edge, so a read issued in ``t + 2`` already sees it. Any saturation
    of an accumulation sets the sticky ``overflow`` flag from ``t + 2``; ``overflow_clear``
    resets it (a saturation in the same cycle as the clear wins). Only the row computed in
    ``t + 1`` is not yet in its memory when the next cycle's write reads: an accumulating
    array write accepted in ``t + 1`` onto the row of a write accepted in ``t`` takes that
    row from the result register (forwarding). ``busy[b]`` is high while a write of bank
    ``b`` accepted in one of the two previous cycles is in the pipeline.

    Reads (an accumulating ``array_w`` takes its memory's read port first, then
    ``store_rd`` > ``vec_rd_a`` > ``vec_rd_b``): :class:`ReadPortSignature` ports with a
    latency of one cycle. A read granted in cycle ``t`` returns the row as left by every
    write accepted before ``t``: a client's read of the row of the write accepted in
    ``t - 1`` is not granted (``ready`` low); rows are compared by address and never
    forwarded to a client. A write accepted in ``t`` itself is not seen.

    Addresses beyond the banks cannot occur (the address is exactly bank bit + row).

    Without a vector unit (``config.vector_unit`` false) ``vec_w``, ``vec_rd_a`` and
    ``vec_rd_b`` keep their signatures but have no logic: they are never granted
    (``ready`` low) and their ``valid`` and ``data`` stay 0.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    array_w : In(WritePortSignature(accumulate=True, ready=False))
    vec_w, load_w : In(WritePortSignature())
    store_rd, vec_rd_a, vec_rd_b : In(ReadPortSignature)
    overflow : Out(1)
        Sticky: an accumulation saturated.
    overflow_clear : In(1)
    busy : Out(acc_banks)
        A write of that bank accepted in one of the two previous cycles has not yet
        been written.
    split : bool
        One memory per bank (with a vector unit), else one shared memory.
    """

    WRITE_PORTS = ("array_w", "vec_w", "load_w")          # in priority order
    READ_PORTS = ("store_rd", "vec_rd_a", "vec_rd_b")    # in priority order

    def __init__(self, *, config):
        check_config(config, "Accumulator")
        self.config = config
        self.addr_width = ceil_log2(config.acc_rows)
        row = data.ArrayLayout(signed(32), config.cols)
        aw = self.addr_width
        super().__init__({
            "array_w": In(WritePortSignature(aw, config.cols, accumulate=True, ready=False)),
            "vec_w": In(WritePortSignature(aw, config.cols)),
            "load_w": In(WritePortSignature(aw, config.cols)),
            "store_rd": In(ReadPortSignature(aw, row)),
            "vec_rd_a": In(ReadPortSignature(aw, row)),
            "vec_rd_b": In(ReadPortSignature(aw, row)),
            "overflow": Out(1),
            "overflow_clear": In(1),
            "busy": Out(config.acc_banks),
        })
        vec = ("vec_w", "vec_rd_a", "vec_rd_b")
        #: The ports with logic behind them; without a vector unit its ports stay unused.
        self.active_writers = tuple(n for n in self.WRITE_PORTS
                                    if config.vector_unit or n not in vec)
        self.active_readers = tuple(n for n in self.READ_PORTS
                                    if config.vector_unit or n not in vec)
        self.split = config.vector_unit

    def elaborate(self, platform):
        cfg = self.config
        cols = cfg.cols
        m = Module()
        aw = self.addr_width
        rb = ceil_log2(cfg.acc_depth)
        row_layout = data.ArrayLayout(signed(32), cols)
        arr, load = self.array_w, self.load_w
        vec = self.vec_w if "vec_w" in self.active_writers else None
        n_mems = cfg.acc_banks if self.split else 1
        ma = rb if self.split else aw      # address bits inside one memory

        def on_mem(addr, k):
            """``addr`` lies in memory ``k``."""
            return addr[rb:] == k if self.split else C(1, 1)

        # The memories are written on the falling clock edge, from registers: a row written
        # in cycle t is in the memory before the rising edge that ends t, so a read issued
        # in t already sees it.
        write_domain = falling_edge(m, "acc_write")

        mems = []   # (write port, read port, read enable, read data) per memory
        for k in range(n_mems):
            # Reads and writes are on opposite clock edges, so a read never meets a write
            # of the same edge. The read port's register is the block RAM's own (its
            # power-up value is undefined, and no read is used before it is issued).
            mem = Memory(shape=unsigned(32 * cols), depth=cfg.acc_rows // n_mems, init=[])
            m.submodules[f"mem{k}"] = mem
            rp = mem.read_port()
            mems.append((mem.write_port(domain=write_domain), rp, rp.en, rp.data))

        # Stage 0 (acceptance, cycle t): the write's row into ``w_data``; an accumulating
        # array write reads its old row.
        w_en = Signal()                    # stage 1 holds a write
        w_acc = Signal()                   # ... that accumulates
        w_addr = Signal(aw, reset_less=True)
        w_data = Signal(row_layout, reset_less=True)
        vec_en = vec.en if vec is not None else C(0, 1)
        load_go = Signal()
        m.d.comb += [load_go.eq(load.en & ~arr.en & ~vec_en), load.ready.eq(load_go)]
        if vec is not None:
            m.d.comb += vec.ready.eq(vec.en & ~arr.en)
        m.d.sync += [w_en.eq(arr.en | vec_en | load.en), w_acc.eq(arr.en & arr.accumulate)]
        with m.If(arr.en):
            m.d.sync += [w_addr.eq(arr.addr), w_data.eq(arr.data)]
        if vec is not None:
            with m.Elif(vec.en):
                m.d.sync += [w_addr.eq(vec.addr), w_data.eq(vec.data)]
        with m.Elif(load.en):
            m.d.sync += [w_addr.eq(load.addr), w_data.eq(load.data)]

        # Stage 2 (cycle t + 2): the result register, written to its memory.
        r_en = Signal()
        r_addr = Signal(aw, reset_less=True)
        r_data = Signal(row_layout, reset_less=True)
        m.d.sync += [r_en.eq(w_en), r_addr.eq(w_addr)]

        # The row that stage 1 computes in t + 1 is written in t + 2, after the read that
        # an accumulating array write accepted in t + 1 issued: that write takes it from
        # ``r_data`` instead (forwarding). One cycle later the memory has it.
        arr_read = arr.en & arr.accumulate
        fwd = Signal()
        m.d.sync += fwd.eq(arr_read & w_en & (arr.addr == w_addr))

        # Read ports: an accumulating array write takes its memory's port first, then the
        # clients by priority; a client waits while stage 1 holds a write of its row.
        read_taken = [arr_read & on_mem(arr.addr, k) for k in range(n_mems)]
        read_addr = [arr.addr[:ma] for _ in range(n_mems)]
        for name in self.active_readers:
            port = getattr(self, name)
            ask = Signal(name=f"{name}_ask")
            m.d.comb += ask.eq(port.en & ~(w_en & (port.addr == w_addr)))
            want = [ask & on_mem(port.addr, k) for k in range(n_mems)]
            m.d.comb += port.ready.eq(ask & ~Cat(*(
                w & t for w, t in zip(want, read_taken, strict=True))).any())
            for k in range(n_mems):
                read_addr[k] = Mux(want[k] & ~read_taken[k], port.addr[:ma], read_addr[k])
            read_taken = [t | w for t, w in zip(read_taken, want, strict=True)]
            m.d.sync += port.valid.eq(port.ready)
            if self.split:
                bank_q = Signal(name=f"{name}_bank", reset_less=True)
                with m.If(port.ready):
                    m.d.sync += bank_q.eq(port.addr[rb:])
                m.d.comb += port.data.eq(Mux(bank_q, mems[1][3], mems[0][3]))
            else:
                m.d.comb += port.data.eq(mems[0][3])
        for (_, rp, rd_en, _), addr, taken in zip(mems, read_addr, read_taken, strict=True):
            m.d.comb += [rp.addr.eq(addr), rd_en.eq(taken)]
        # Ports of an absent vector unit: never granted, never valid (outputs stay 0).

        # Stage 1 (cycle t + 1): add-and-saturate into ``r_data``. The old row is the
        # memory's, the forwarded one, or 0 (overwrite): one LUT per bit picks it.
        mem_row = (Mux(w_addr[rb:], mems[1][3], mems[0][3]) if self.split else mems[0][3])
        old = Signal(row_layout)
        m.d.comb += old.eq(Mux(fwd, r_data, Mux(w_acc, mem_row, 0)))
        sat = []
        for c in range(cols):
            total = Signal(signed(33), name=f"sum{c}")
            m.d.comb += total.eq(old[c] + w_data[c])
            # The sum left int32 when its two top bits differ; it then saturates towards
            # its sign (bit 32): bits 30..0 take the inverse of the sign.
            over = Signal(name=f"over{c}")
            m.d.comb += over.eq(total[31] ^ total[32])
            sat.append(over)
            low = Mux(over, (~total[32]).replicate(31), total[:31])
            m.d.sync += r_data[c].eq(Cat(low, total[32]))

        for k, (wp, _, _, _) in enumerate(mems):
            m.d.comb += [wp.en.eq(r_en & on_mem(r_addr, k)), wp.addr.eq(r_addr[:ma]),
                         wp.data.eq(r_data)]
        for b in range(cfg.acc_banks):
            m.d.comb += self.busy[b].eq((w_en & (w_addr[rb:] == b)) |
                                        (r_en & (r_addr[rb:] == b)))

        # Only an accumulation can leave int32 (an overwrite adds 0).
        with m.If(w_acc & Cat(*sat).any()):
            m.d.sync += self.overflow.eq(1)
        with m.Elif(self.overflow_clear):
            m.d.sync += self.overflow.eq(0)
        return m
