"""CSR block: the AXI4-Lite register slave generated from :data:`systolic.csr.CSR_MAP`."""

import operator
from functools import reduce

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from systolic.csr import CSR, CSR_MAP, id_words
from systolic.isa import ErrorCode

from .axi import AXI4LiteSignature
from .scratchpad import check_config

__all__ = ["CSR_ADDR_WIDTH", "PERF_EVENTS", "PerfEvents", "PerfCounters", "CsrBlock",
           "distinguishing_bits"]

CSR_ADDR_WIDTH = 8
_WORD_BITS = CSR_ADDR_WIDTH - 2

# Counter register -> event input that increments it (PERF_CYCLES counts BUSY cycles).
PERF_EVENTS = {
    "PERF_MAC_BUSY": "mac_busy", "PERF_STALL_TOKEN": "stall_token",
    "PERF_STALL_DMA": "stall_dma", "PERF_STALL_FETCH": "stall_fetch",
    "PERF_INSTRET": "instret", "PERF_LOAD_BUSY": "load_busy",
    "PERF_STORE_BUSY": "store_busy", "PERF_OVERLAP": "overlap",
}

PerfEvents = data.StructLayout({name: 1 for name in PERF_EVENTS.values()})

_PERF_REGS = [reg for reg in CSR_MAP if reg.perf]


def _field(reg, name):
    f = next(f for f in CSR[reg].fields if f.name == name)
    return slice(f.lsb, f.lsb + f.width)


def distinguishing_bits(group, others, width):
    """The fewest bits of a ``width``-bit word that tell the words of ``group`` apart from
    ``others``.

    Returns a bit mask ``mask`` on which all words of ``group`` agree and every word of
    ``others`` differs from them. Words in neither set are don't-cares: a comparison on
    ``mask`` may accept them, so it is exact only where the word is known to be in one of
    the two sets.
    """
    group = sorted(set(group))
    others = set(others) - set(group)
    best = (1 << width) - 1
    for mask in range(1 << width):
        if (bin(mask).count("1") < bin(best).count("1")
                and all((g ^ group[0]) & mask == 0 for g in group)
                and all((x ^ group[0]) & mask for x in others)):
            best = mask
    return best


def _matches(sig, value, mask):
    """``sig == value`` on the bits of ``mask`` only."""
    bits = [sig[i] if value >> i & 1 else ~sig[i] for i in range(len(sig)) if mask >> i & 1]
    return Cat(*bits).all() if bits else Const(1)


class PerfCounters(wiring.Component):
    """The 32-bit performance counters, sharing one adder.

    Each counter keeps its low ``low_bits`` bits beside its event (a small incrementer)
    and a carry flag set when they wrap. The high bits of all counters circulate in a ring
    of registers that turns once every ``count`` cycles; the word at the head of the ring
    passes through the one shared adder, which adds that counter's pending carry. A
    counter's low bits wrap at most once per turn (``count <= 2 ** low_bits``), so one flag
    holds every carry not yet added.

    Parameters
    ----------
    count : int
        Number of counters (1..32).

    Attributes
    ----------
    clear : In(1)
        Zero every counter (wins over counting).
    enable : In(1)
        Count: counter ``k`` increments in each cycle ``enable & events[k]``.
    events : In(count)
    index : In(range(count))
        The counter to read.
    head : Out(range(count))
        The counter at the head of the ring in this cycle.
    at : Out(1)
        ``index == head``: ``value`` is counter ``index`` in this cycle.
    value : Out(32)
        The counter at the head: its count of the events before this cycle.
    """

    def __init__(self, *, count):
        if not isinstance(count, int) or not 1 <= count <= 32:
            raise ValueError(f"PerfCounters count must be an integer in 1..32, not {count!r}")
        self.count = count
        self.low_bits = max(1, (count - 1).bit_length())
        super().__init__({
            "clear": In(1),
            "enable": In(1),
            "events": In(count),
            "index": In(range(count)),
            "head": Out(range(count)),
            "at": Out(1),
            "value": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        n, lb = self.count, self.low_bits
        head = self.head
        low = [Signal(lb, name=f"low{k}") for k in range(n)]
        carry = [Signal(name=f"carry{k}") for k in range(n)]
        ring = [Signal(32 - lb, name=f"high{k}") for k in range(n)]
        # head only takes values 0..n-1: compare on the bits that tell them apart
        visit = [_matches(head, k, distinguishing_bits([k], range(n), len(head)))
                 for k in range(n)]

        if n > 1:
            with m.If(visit[n - 1]):
                m.d.sync += head.eq(0)
            with m.Else():
                m.d.sync += head.eq(head + 1)
        # the visit signals are one-hot: select the head's carry and low bits by AND-OR
        head_carry = Signal()
        head_low = Signal(lb)
        m.d.comb += [
            head_carry.eq(Cat(c & v for c, v in zip(carry, visit, strict=True)).any()),
            head_low.eq(reduce(operator.or_,
                               (Mux(v, lo, 0) for lo, v in zip(low, visit, strict=True)))),
        ]
        sum_ = Signal(32 - lb)
        m.d.comb += sum_.eq(ring[0] + head_carry)
        m.d.sync += [ring[i].eq(ring[i + 1]) for i in range(n - 1)]
        m.d.sync += ring[n - 1].eq(sum_)
        m.d.comb += [self.value.eq(Cat(head_low, sum_)), self.at.eq(self.index == head)]

        for k in range(n):
            inc = self.enable & self.events[k]
            with m.If(inc):
                m.d.sync += low[k].eq(low[k] + 1)
            m.d.sync += carry[k].eq((inc & low[k].all()) | (carry[k] & ~visit[k]))
        with m.If(self.clear):
            m.d.sync += [s.eq(0) for s in low + carry + ring]
        return m


class CsrBlock(wiring.Component):
    """AXI4-Lite slave with every register of the CSR map.

    Writes take the address and data channels together and answer OKAY one cycle later.
    Reads answer one cycle after the address handshake; the address of a performance
    counter is accepted only when that counter passes the head of the counter ring, up
    to ``len(PERF_EVENTS)`` cycles after ``arvalid`` (``arready`` depends on ``araddr``).
    Unmapped offsets read as zero and ignore writes; every access is answered, whatever
    state the accelerator is in. Performance counters exist only with
    ``config.perf_counters`` (otherwise they read 0); they clear at START and count while
    BUSY (see :class:`PerfCounters`).

    PROG_ADDR and PROG_LEN ignore writes while BUSY (the controller reads them during the
    run, so a program runs as it was started); the write is still answered OKAY.

    Write strobes: a bit of ``wdata`` takes part in a write only when the ``wstrb`` bit of
    its byte lane is set. A read-write register (PROG_ADDR, PROG_LEN, CTRL.IRQ_ENABLE)
    keeps its old value in the lanes whose strobe is clear. A write-one-to-clear bit
    (IRQ_STATUS.DONE) or a self-clearing strobe field (CTRL.START, CTRL.SOFT_RESET) acts
    only when it is 1 and its lane's strobe is set; a clear strobe reads as writing 0,
    so nothing happens. A write with ``wstrb == 0`` changes nothing and is answered OKAY.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    bus : In(AXI4LiteSignature(addr_width=8, data_width=32))
    start, soft_reset : Out(1)
        One-cycle strobes from CTRL (START only while not BUSY).
    prog_addr, prog_len : Out(32)
        PROG_ADDR and PROG_LEN, unchanged while ``busy``.
    irq : Out(1)
        IRQ_STATUS.DONE and CTRL.IRQ_ENABLE.
    busy, resetting, acc_overflow : In(1)
        Status from the controller.
    done : In(1)
        One-cycle strobe: the program finished.
    error_we : In(1)
        The controller records an error: ERROR_CODE and ERROR_INDEX take ``error_code``
        and ``error_index``. START clears them; they read as 0 (and STATUS.ERROR as 0)
        until STATUS.DONE, so they show the finished program's error only.
    error_code : In(ErrorCode)
    error_index : In(32)
    error_held, error_held_index : Out(1), Out(32)
        An error is recorded since START, and its index (for the controller).
    events : In(PerfEvents)
        One bit per performance event, counted in each cycle it is high.
    """

    def __init__(self, *, config):
        check_config(config, "CsrBlock")
        self.config = config
        super().__init__({
            "bus": In(AXI4LiteSignature(addr_width=CSR_ADDR_WIDTH, data_width=32)),
            "start": Out(1),
            "soft_reset": Out(1),
            "prog_addr": Out(32),
            "prog_len": Out(32),
            "irq": Out(1),
            "busy": In(1),
            "resetting": In(1),
            "acc_overflow": In(1),
            "done": In(1),
            "error_we": In(1),
            "error_code": In(ErrorCode),
            "error_index": In(32),
            "error_held": Out(1),
            "error_held_index": Out(32),
            "events": In(PerfEvents),
        })

    def elaborate(self, platform):
        c = self.config
        m = Module()
        bus = self.bus

        irq_enable = Signal()
        done = Signal()
        irq_pending = Signal()
        error_code = Signal(ErrorCode)
        error_index = Signal(32)

        # the controller's error record itself (no copy): written during the run, shown
        # once the program is done
        with m.If(self.start):
            m.d.sync += [done.eq(0), error_code.eq(ErrorCode.NONE), error_index.eq(0)]
        with m.If(self.error_we):
            m.d.sync += [error_code.eq(self.error_code), error_index.eq(self.error_index)]
        with m.If(self.done):
            m.d.sync += done.eq(1)
        m.d.comb += [self.error_held.eq(error_code != ErrorCode.NONE),
                     self.error_held_index.eq(error_index)]
        m.d.comb += self.irq.eq(irq_pending & irq_enable)

        status = Signal(32)
        m.d.comb += [
            status[_field("STATUS", "BUSY")].eq(self.busy),
            status[_field("STATUS", "DONE")].eq(done),
            status[_field("STATUS", "ERROR")].eq(done & (error_code != ErrorCode.NONE)),
            status[_field("STATUS", "ACC_OVERFLOW")].eq(self.acc_overflow),
            status[_field("STATUS", "RESETTING")].eq(self.resetting),
        ]
        ctrl = Signal(32)
        m.d.comb += ctrl[_field("CTRL", "IRQ_ENABLE")].eq(irq_enable)

        # readable registers: word offset -> value (constant or signal)
        values = {CSR[name].offset >> 2: Const(word, 32) for name, word in id_words(c).items()}
        values.update({CSR[name].offset >> 2: value for name, value in {
            "CTRL": ctrl, "STATUS": status,
            "ERROR_CODE": Mux(done, error_code.as_value(), 0),
            "ERROR_INDEX": Mux(done, error_index, 0), "PROG_ADDR": self.prog_addr,
            "PROG_LEN": self.prog_len, "IRQ_STATUS": irq_pending}.items()})
        missing = {reg.name for reg in CSR_MAP
                   if not reg.perf and reg.access != "wo" and reg.offset >> 2 not in values}
        assert not missing, f"CSR registers without hardware: {missing}"

        # -- read channel ---------------------------------------------------------------------
        word = bus.araddr[2:]
        perf_words = [reg.offset >> 2 for reg in _PERF_REGS] if c.perf_counters else []
        mapped = set(values) | set(perf_words)
        hit = Signal()
        m.d.comb += hit.eq(Cat(word == w for w in sorted(mapped)).any())
        # Once ``hit`` is known, a register is told apart from the other mapped words by a
        # few address bits only: each select compares just those.
        terms = []
        for w, value in values.items():
            sel = _matches(word, w, distinguishing_bits([w], mapped, _WORD_BITS))
            terms.append(Mux(sel, value, 0))
        accept = Signal()
        if perf_words:
            m.submodules.perf = perf = PerfCounters(count=len(perf_words))
            events = {reg: getattr(self.events, ev) for reg, ev in PERF_EVENTS.items()}
            m.d.comb += [
                perf.clear.eq(self.start),
                perf.enable.eq(self.busy),
                perf.events.eq(Cat(events.get(reg.name, 1) for reg in _PERF_REGS)),
            ]
            ib = len(perf.index)
            if perf_words[0] % (1 << ib) == 0:    # an aligned group: the low address bits
                m.d.comb += perf.index.eq(word[:ib])
            else:
                m.d.comb += perf.index.eq(word - perf_words[0])
            assert [reg.name for reg in _PERF_REGS if reg.name not in events] == \
                ["PERF_CYCLES"], "every counter but PERF_CYCLES needs an event"
            assert perf_words == list(range(perf_words[0], perf_words[0] + len(perf_words)))
            # the counters form one group, told apart from the other registers as a whole
            sel = _matches(word, perf_words[0],
                           distinguishing_bits(perf_words, values, _WORD_BITS))
            terms.append(Mux(sel, perf.value, 0))
            m.d.comb += accept.eq(~(sel & hit) | perf.at)   # wait only on a counter
        else:
            m.d.comb += accept.eq(1)

        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        m.d.comb += bus.arready.eq(~bus.rvalid & accept)
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += [bus.rvalid.eq(1), bus.rresp.eq(0),
                         bus.rdata.eq(Mux(hit, reduce(operator.or_, terms), 0))]

        # -- write channel --------------------------------------------------------------------
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        take = Signal()
        m.d.comb += [
            take.eq(bus.awvalid & bus.wvalid & ~bus.bvalid),
            bus.awready.eq(take),
            bus.wready.eq(take),
        ]
        with m.If(take):
            m.d.sync += [bus.bvalid.eq(1), bus.bresp.eq(0)]

        def write(name):
            return take & (bus.awaddr[2:] == CSR[name].offset >> 2)

        def lane(name, field):
            """Data bit of a one-bit field, taken only with the strobe of its byte lane."""
            bit = _field(name, field).start
            return bus.wdata[bit] & bus.wstrb[bit // 8]

        with m.If(write("CTRL")):
            m.d.comb += [
                self.start.eq(lane("CTRL", "START") & ~self.busy & ~self.resetting),
                self.soft_reset.eq(lane("CTRL", "SOFT_RESET")),
            ]
            ie = _field("CTRL", "IRQ_ENABLE").start
            with m.If(bus.wstrb[ie // 8]):
                m.d.sync += irq_enable.eq(bus.wdata[ie])
        # the controller fetches from these registers while BUSY: they hold still meanwhile
        for name, reg in (("PROG_ADDR", self.prog_addr), ("PROG_LEN", self.prog_len)):
            for i in range(4):
                with m.If(write(name) & bus.wstrb[i] & ~self.busy):
                    m.d.sync += reg[8 * i:8 * i + 8].eq(bus.wdata[8 * i:8 * i + 8])
        with m.If(write("IRQ_STATUS") & lane("IRQ_STATUS", "DONE")):
            m.d.sync += irq_pending.eq(0)
        # a new START clears the pending interrupt of the last run
        with m.If(self.start):
            m.d.sync += irq_pending.eq(0)
        with m.If(self.done):
            m.d.sync += irq_pending.eq(1)
        return m
