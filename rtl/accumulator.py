"""Ping-pong accumulator: int32 rows written by the array, LOAD and the vector unit."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

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
    controller ping-pongs by flipping that bit: MATMUL accumulates into one bank while
    STORE drains the other, both at full rate. Each bank is one 1R1W
    :class:`~amaranth.lib.memory.Memory` whose read port is transparent for its write
    port (that is the forwarding below). Every accepted write is registered per writer;
    the one add-and-saturate stage belongs to ``array_w``, the only accumulating writer.

    Writes (one per bank per cycle; fixed priority ``array_w`` > ``vec_w`` > ``load_w``):

    * ``array_w``: the array's result rows, overwrite or accumulate. Always accepted (it
      has no ``ready``); the controller's credits keep the other clients off its bank.
    * ``vec_w``: vector-unit results, overwrite; ``ready`` low while the array writes the
      same bank.
    * ``load_w``: LOAD bias rows, overwrite; ``ready`` low while a higher-priority writer
      uses the same bank.

    Write pipeline: a write accepted in cycle ``t`` reads the old row (accumulate only) in
    ``t``, adds and writes in ``t + 1``. The sum saturates to int32 per element; any
    saturation sets the sticky ``overflow`` flag, which ``overflow_clear`` resets (a
    saturation in the same cycle as the clear wins). Back-to-back writes to one row are
    forwarded: a write accepted in ``t + 1`` or later sees the row written by ``t``.
    ``busy[b]`` is high in the cycle a write of bank ``b`` is committed; a write has
    landed once a cycle after its acceptance shows ``busy[b]`` low.

    Reads (one per bank per cycle; an accumulating ``array_w`` takes the bank's read port
    first, then ``store_rd`` > ``vec_rd_a`` > ``vec_rd_b``): :class:`ReadPortSignature`
    ports with a latency of one cycle. A read granted in cycle ``t`` returns the row as
    left by every write accepted before ``t`` (forwarded when the write is still in the
    pipeline); a write accepted in the same cycle ``t`` is not seen.

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
        A write is being committed in that bank this cycle.
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

    def elaborate(self, platform):
        cfg = self.config
        cols = cfg.cols
        m = Module()
        rb = ceil_log2(cfg.acc_depth)
        banks = range(cfg.acc_banks)
        row_layout = data.ArrayLayout(signed(32), cols)
        writer_names = self.active_writers
        reader_names = self.active_readers
        writers = [getattr(self, n) for n in writer_names]
        readers = [getattr(self, n) for n in reader_names]

        def bank_of(addr):
            return addr[rb:]

        mems = []
        for b in banks:
            mem = Memory(shape=unsigned(32 * cols), depth=cfg.acc_depth, init=[])
            m.submodules[f"bank{b}"] = mem
            wp = mem.write_port()
            # Transparent for its own write port: a read in the cycle a row is committed
            # returns the committed row (the forwarding of back-to-back writes).
            rp = mem.read_port(transparent_for=(wp,))
            mems.append((wp, rp))

        # Stage 0: one write per bank per cycle, by priority. Every accepted write is
        # registered per writer (not per bank): each writer targets one bank at a time.
        taken = [0 for _ in banks]
        stage1 = []
        for name, port in zip(writer_names, writers, strict=True):
            grant = Signal(name=f"{name}_grant")
            m.d.comb += grant.eq(port.en & ~Cat(*(
                t & (bank_of(port.addr) == b) for b, t in zip(banks, taken, strict=True))).any())
            taken = [t | (port.en & (bank_of(port.addr) == b))
                     for b, t in zip(banks, taken, strict=True)]
            if hasattr(port, "ready"):
                m.d.comb += port.ready.eq(grant)
            q_en = Signal(name=f"{name}_q_en")
            q_addr = Signal.like(port.addr, name=f"{name}_q_addr", reset_less=True)
            q_data = Signal(row_layout, name=f"{name}_q_data", reset_less=True)
            m.d.sync += q_en.eq(grant)
            with m.If(grant):
                m.d.sync += [q_addr.eq(port.addr), q_data.eq(port.data)]
            stage1.append((q_en, q_addr, q_data))

        # The array's accumulating write reads its row in stage 0; the bank's read port is
        # then not free for the clients.
        arr = self.array_w
        arr_read = arr.en & arr.accumulate
        arr_acc = Signal()
        m.d.sync += arr_acc.eq(arr_read)

        read_taken = [arr_read & (bank_of(arr.addr) == b) for b in banks]
        # A bank's read address: the first port that asks for it, else the array's (the
        # address is unused when nobody reads).
        read_addr = [arr.addr[:rb] for b in banks]
        read_en = list(read_taken)
        for name, port in zip(reader_names, readers, strict=True):
            want = [port.en & (bank_of(port.addr) == b) for b in banks]
            grant = Signal(name=f"{name}_grant")
            m.d.comb += grant.eq(port.en & ~Cat(*(
                w & t for w, t in zip(want, read_taken, strict=True))).any())
            m.d.comb += port.ready.eq(grant)
            for b in banks:
                read_addr[b] = Mux(want[b] & ~read_taken[b], port.addr[:rb], read_addr[b])
                read_en[b] = read_en[b] | want[b]
            read_taken = [t | w for t, w in zip(read_taken, want, strict=True)]
            bank_q = Signal(range(cfg.acc_banks), name=f"{name}_bank", reset_less=True)
            m.d.sync += port.valid.eq(grant)
            with m.If(grant):
                m.d.sync += bank_q.eq(bank_of(port.addr))
            m.d.comb += port.data.eq(
                Mux(bank_q, mems[1][1].data, mems[0][1].data))
        for b in banks:
            m.d.comb += [mems[b][1].addr.eq(read_addr[b]), mems[b][1].en.eq(read_en[b])]
        # Ports of an absent vector unit: never granted, never valid (outputs stay 0).

        # Stage 1: one shared add-and-saturate for the array's row (only the array
        # accumulates, into one bank per cycle); the old row comes from its bank's port.
        a_en, a_addr, a_data = stage1[0]
        old = Signal(row_layout)
        m.d.comb += old.eq(Mux(arr_acc, Mux(bank_of(a_addr), mems[1][1].data,
                                            mems[0][1].data), 0))
        result = Signal(row_layout)
        sat = []
        for c in range(cols):
            total = Signal(signed(33), name=f"sum{c}")
            m.d.comb += total.eq(old[c] + a_data[c])
            # The sum left int32 when its two top bits differ; it then saturates towards
            # its sign (bit 32), which is also bit 31 of the result in every case.
            over = total[31] ^ total[32]
            sat.append(over)
            m.d.comb += result[c].eq(Cat(Mux(over, (~total[32]).replicate(31), total[:31]),
                                         total[32]))
        overflow_now = a_en & arr_acc & Cat(*sat).any()

        # A bank's write: the first registered writer that targets it (the data and
        # address are unused when none does).
        for b in banks:
            wp = mems[b][0]
            commit = 0
            wdata = stage1[-1][2].as_value() if len(stage1) > 1 else result.as_value()
            waddr = stage1[-1][1][:rb]
            for i, (q_en, q_addr, q_data) in enumerate(reversed(stage1)):
                hit = q_en & (bank_of(q_addr) == b)
                value = result if i == len(stage1) - 1 else q_data
                if i:
                    wdata = Mux(hit, value.as_value(), wdata)
                    waddr = Mux(hit, q_addr[:rb], waddr)
                commit = commit | hit
            m.d.comb += [wp.en.eq(commit), wp.addr.eq(waddr), wp.data.eq(wdata),
                         self.busy[b].eq(commit)]

        with m.If(overflow_now):
            m.d.sync += self.overflow.eq(1)
        with m.Elif(self.overflow_clear):
            m.d.sync += self.overflow.eq(0)
        return m
