"""Ping-pong accumulator: int32 rows written by the array, LOAD and the vector unit."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolic.numerics import INT32_MAX, INT32_MIN

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
    :class:`~amaranth.lib.memory.Memory` with its own two-stage write pipeline.

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

    def elaborate(self, platform):
        cfg = self.config
        cols = cfg.cols
        m = Module()
        rb = ceil_log2(cfg.acc_depth)
        row_layout = data.ArrayLayout(signed(32), cols)
        writers = [getattr(self, n) for n in self.WRITE_PORTS]
        readers = [getattr(self, n) for n in self.READ_PORTS]
        read_grants = [[] for _ in readers]
        write_grants = [[] for _ in writers]
        bank_rdata = []
        overflow_now = []

        for b in range(cfg.acc_banks):
            mem = Memory(shape=unsigned(32 * cols), depth=cfg.acc_depth, init=[])
            m.submodules[f"bank{b}"] = mem
            wp = mem.write_port()
            rp = mem.read_port()

            # Stage 0: pick a writer, and the reader of the bank's read port.
            s0_en = Signal(name=f"bank{b}_s0_en")
            s0_row = Signal(rb, name=f"bank{b}_s0_row")
            s0_data = Signal(row_layout, name=f"bank{b}_s0_data")
            s0_acc = Signal(name=f"bank{b}_s0_acc")
            taken = 0
            for i, port in enumerate(writers):
                name = self.WRITE_PORTS[i]
                want = Signal(name=f"bank{b}_{name}_want")
                grant = Signal(name=f"bank{b}_{name}_grant")
                m.d.comb += [want.eq(port.en & (port.addr[rb:] == b)), grant.eq(want & ~taken)]
                write_grants[i].append(grant)
                acc = port.accumulate if hasattr(port, "accumulate") else 0
                with m.If(grant):
                    m.d.comb += [s0_en.eq(1), s0_row.eq(port.addr[:rb]),
                                 s0_data.eq(port.data), s0_acc.eq(acc)]
                taken = taken | want

            rd_addr = Signal(rb, name=f"bank{b}_rd_addr")
            rd_en = Signal(name=f"bank{b}_rd_en")
            m.d.comb += [rd_addr.eq(s0_row), rd_en.eq(s0_en & s0_acc)]
            busy = s0_en & s0_acc
            for i, port in enumerate(readers):
                name = self.READ_PORTS[i]
                want = Signal(name=f"bank{b}_{name}_want")
                grant = Signal(name=f"bank{b}_{name}_grant")
                m.d.comb += [want.eq(port.en & (port.addr[rb:] == b)), grant.eq(want & ~busy)]
                read_grants[i].append(grant)
                with m.If(grant):
                    m.d.comb += [rd_addr.eq(port.addr[:rb]), rd_en.eq(1)]
                busy = busy | want
            m.d.comb += [rp.addr.eq(rd_addr), rp.en.eq(rd_en)]

            # Stage 1: add (or not) and commit; forward the committed row to the read
            # issued in the same cycle, which the memory would answer with the old row.
            s1_en = Signal(name=f"bank{b}_s1_en")
            s1_row = Signal(rb, name=f"bank{b}_s1_row")
            s1_data = Signal(row_layout, name=f"bank{b}_s1_data")
            s1_acc = Signal(name=f"bank{b}_s1_acc")
            m.d.sync += [s1_en.eq(s0_en), s1_row.eq(s0_row), s1_data.eq(s0_data),
                         s1_acc.eq(s0_acc)]
            result = Signal(row_layout, name=f"bank{b}_result")
            fwd_hit = Signal(name=f"bank{b}_fwd_hit")
            fwd_row = Signal(row_layout, name=f"bank{b}_fwd_row")
            with m.If(rd_en):
                m.d.sync += [fwd_hit.eq(s1_en & (s1_row == rd_addr)), fwd_row.eq(result)]
            old = Signal(row_layout, name=f"bank{b}_old")
            m.d.comb += old.eq(Mux(fwd_hit, fwd_row.as_value(), rp.data))
            bank_rdata.append(old)

            sat = []
            for c in range(cols):
                total = Signal(signed(33), name=f"bank{b}_sum{c}")
                m.d.comb += total.eq(old[c] + s1_data[c])
                hi = total > INT32_MAX
                lo = total < INT32_MIN
                sat.append(hi | lo)
                m.d.comb += result[c].eq(
                    Mux(~s1_acc, s1_data[c], Mux(hi, INT32_MAX, Mux(lo, INT32_MIN, total))))
            overflow_now.append(s1_en & s1_acc & Cat(*sat).any())
            m.d.comb += [wp.en.eq(s1_en), wp.addr.eq(s1_row), wp.data.eq(result),
                         self.busy[b].eq(s1_en)]

        for i, port in enumerate(writers):
            if hasattr(port, "ready"):
                m.d.comb += port.ready.eq(Cat(*write_grants[i]).any())
        for i, port in enumerate(readers):
            m.d.comb += port.ready.eq(Cat(*read_grants[i]).any())
            bank_q = Signal(range(cfg.acc_banks), name=f"{self.READ_PORTS[i]}_bank")
            m.d.sync += port.valid.eq(port.en & port.ready)
            with m.If(port.en & port.ready):
                m.d.sync += bank_q.eq(port.addr[rb:])
            m.d.comb += port.data.eq(
                Mux(bank_q, bank_rdata[1].as_value(), bank_rdata[0].as_value()))

        with m.If(Cat(*overflow_now).any()):
            m.d.sync += self.overflow.eq(1)
        with m.Elif(self.overflow_clear):
            m.d.sync += self.overflow.eq(0)
        return m
