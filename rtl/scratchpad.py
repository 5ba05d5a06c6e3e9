"""Banked scratchpad: the int8 rows MATMUL reads and LOAD writes."""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolic.config import AcceleratorConfig

__all__ = ["ReadPortSignature", "Scratchpad", "check_config", "shared_read_path"]


def check_config(config, who):
    """Raise :class:`TypeError` unless ``config`` is an :class:`AcceleratorConfig`."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"{who} config must be an AcceleratorConfig, not {config!r}")


def shared_read_path(config):
    """Whether the scratchpad of ``config`` serves one read per cycle over all its ports.

    A small array (``rows`` at most 4) preloads a weight tile in so few rows that reading
    them after the input rows, instead of beside them, costs little, while one memory and
    one read path save the per-bank address and per-port bank multiplexers.
    """
    return config.rows <= 4


class ReadPortSignature(wiring.Signature):
    """A banked memory read port, seen from the requester.

    The requester holds ``en`` and ``addr``; the memory answers ``ready`` in the same cycle
    when the request is granted. The row comes back in ``data`` in the next cycle, flagged
    by ``valid``; it is valid only in that cycle (no back-pressure on responses).

    Parameters
    ----------
    addr_width : int
        Width of the global row address.
    data_shape : shape-castable
        Shape of one row.

    Members
    -------
    en : Out(1)
        Request a read this cycle.
    addr : Out(addr_width)
        Global row address (bank in the high bits).
    ready : In(1)
        The request is granted this cycle.
    valid : In(1)
        ``data`` holds the row granted in the previous cycle.
    data : In(data_shape)
        The row read.
    """

    def __init__(self, addr_width, data_shape):
        super().__init__({
            "en": Out(1),
            "addr": Out(addr_width),
            "ready": In(1),
            "valid": In(1),
            "data": In(data_shape),
        })


class Scratchpad(wiring.Component):
    """``config.sp_banks`` banks of ``config.sp_depth`` rows of ``config.sp_width`` bytes.

    A global row address is ``bank * sp_depth + row``: the bank is the high bits. Byte
    ``i`` of a row sits in bits
    ``[8*i+7 : 8*i]`` of ``data``.

    Ports and rules:

    * ``w`` (DMA LOAD): one write per cycle, always accepted (no other client writes),
      with a byte enable per byte. A row is written at the end of the cycle its ``en`` is
      high.
    * ``rd_in`` (MATMUL input rows), ``rd_wt`` (MATMUL weight rows), ``rd_st`` (STORE from
      the scratchpad): read ports (:class:`ReadPortSignature`) with the fixed priority
      ``rd_in`` > ``rd_wt`` > ``rd_st``; the losers see ``ready`` low and must hold their
      request.
    * Banked (:func:`shared_read_path` false): each bank is one 1R1W memory and serves one
      read per cycle; only ports asking for the same bank compete, so ports reading
      different banks are all granted in the same cycle, whatever the DMA writes.
    * Shared (:func:`shared_read_path` true): one 1R1W memory of ``sp_rows`` rows serves
      one read per cycle over all ports, whatever the banks; every port's ``data`` is that
      read's row (meaningful only with the port's ``valid``).
    * Read latency is one cycle: the row of a request granted in cycle ``t`` is in ``data``
      with ``valid`` high in cycle ``t + 1``. A write is seen by reads granted in later
      cycles. A read of a row written in the same cycle returns the old row in simulation;
      banked, also on the FPGA (a bypass keeps it so); shared, the block RAM's value is
      undefined then (the ISA's tokens keep LOAD and the readers of its rows apart, so a
      correct program never does it).
    * Addresses beyond ``sp_rows`` select no row: writes are dropped, reads return zero
      (banked: they are granted and block nobody; shared: they take the read by priority).
      The decoder rejects such addresses before they get here.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    w : In(...)
        ``en``, ``addr``, ``data`` (``8 * sp_width`` bits), ``be`` (``sp_width`` bits).
    rd_in, rd_wt, rd_st : In(ReadPortSignature)
    """

    READ_PORTS = ("rd_in", "rd_wt", "rd_st")  # in priority order

    def __init__(self, *, config):
        check_config(config, "Scratchpad")
        self.config = config
        self.addr_width = ceil_log2(config.sp_rows)
        self.row_bits = 8 * config.sp_width
        write = wiring.Signature({
            "en": Out(1),
            "addr": Out(self.addr_width),
            "data": Out(self.row_bits),
            "be": Out(config.sp_width),
        })
        members = {"w": In(write)}
        for name in self.READ_PORTS:
            members[name] = In(ReadPortSignature(self.addr_width, unsigned(self.row_bits)))
        super().__init__(members)

    def elaborate(self, platform):
        if shared_read_path(self.config):
            return self._elaborate_shared()
        return self._elaborate_banked()

    def _in_range(self, addr):
        """The row ``addr`` exists (a constant 1 when ``sp_banks`` is a power of two)."""
        cfg = self.config
        if cfg.sp_rows == 1 << self.addr_width:
            return 1
        return addr < cfg.sp_rows

    def _elaborate_shared(self):
        """One memory of ``sp_rows`` rows and one read per cycle over all ports."""
        cfg = self.config
        m = Module()
        ports = [getattr(self, name) for name in self.READ_PORTS]
        w = self.w

        # An asynchronous read port with its data registered right behind it, which yosys
        # folds into the block RAM; ``no_rw_check``: what that register holds in the cycle
        # its row is written may be undefined (the tokens order LOAD against the readers
        # of its rows), so no read-during-write emulation is added.
        mem = Memory(shape=unsigned(self.row_bits), depth=cfg.sp_rows, init=[],
                     attrs={"no_rw_check": 1})
        m.submodules.mem = mem
        wp = mem.write_port(granularity=8)
        rp = mem.read_port(domain="comb")
        w_ok = w.en & self._in_range(w.addr)
        m.d.comb += [
            wp.addr.eq(w.addr),
            wp.data.eq(w.data),
            wp.en.eq(Mux(w_ok, w.be, 0)),
        ]

        # Fixed priority over all ports: the first requester takes the one read.
        sel = ports[-1].addr
        for port in reversed(ports[:-1]):
            sel = Mux(port.en, port.addr, sel)
        m.d.comb += rp.addr.eq(sel)
        before = 0
        for port in ports:
            m.d.comb += port.ready.eq(port.en & ~before)
            m.d.sync += port.valid.eq(port.en & ~before)
            before = before | port.en
        # The register's initial value costs a LUT per bit (yosys emulates it; the block
        # RAM's output register has none), the price of keeping the port in Amaranth.
        data = Signal(self.row_bits, reset_less=True)
        m.d.sync += data.eq(rp.data)
        if cfg.sp_rows < 1 << self.addr_width:
            hit_q = Signal()
            m.d.sync += hit_q.eq(self._in_range(sel))
            data = Mux(hit_q, data, 0)
        for port in ports:
            m.d.comb += port.data.eq(data)
        return m

    def _elaborate_banked(self):
        """One memory per bank, each with its own read arbitration."""
        cfg = self.config
        m = Module()
        row_bits = ceil_log2(cfg.sp_depth)
        bank_bits = self.addr_width - row_bits
        names = self.READ_PORTS
        ports = [getattr(self, name) for name in names]
        w = self.w

        def bank_of(addr):
            return addr[row_bits:]

        in_range = self._in_range

        # Writes are committed one cycle late, from a copy of the request, so a bank's
        # read and write in one cycle never need the memory's read-during-write
        # behaviour: a read of the row being committed takes the written bytes from
        # ``bypass_data`` (below), every other byte from the memory. Address and data are
        # one copy for all banks (there is one writer); the byte enables are decoded per
        # bank before the register.
        w_q_addr = Signal.like(w.addr, reset_less=True)
        w_q_data = Signal.like(w.data, reset_less=True)
        w_q_be = [Signal.like(w.be, name=f"bank{b}_w_be") for b in range(cfg.sp_banks)]
        bypass_data = Signal.like(w.data, reset_less=True)
        m.d.sync += bypass_data.eq(w_q_data)
        m.d.sync += [be.eq(Mux(w.en & (bank_of(w.addr) == b), w.be, 0))
                     for b, be in enumerate(w_q_be)]
        with m.If(w.en):
            m.d.sync += [w_q_addr.eq(w.addr), w_q_data.eq(w.data)]

        # Fixed read priority per bank: a port loses only to a higher-priority port
        # asking for the same bank. Out-of-range requests select no bank, are granted and
        # block nobody.
        want = [[p.en & (bank_of(p.addr) == b) for b in range(cfg.sp_banks)] for p in ports]
        for i, port in enumerate(ports):
            lost = 0
            for j in range(i):
                lost = lost | (ports[j].en & (bank_of(ports[j].addr) == bank_of(port.addr)))
            ok = in_range(port.addr)
            m.d.comb += port.ready.eq((port.en & ~lost) | ~ok)

        bank_data = []
        for b in range(cfg.sp_banks):
            # ``no_rw_check``: the data register below may become the block RAM's read
            # register without read-during-write emulation; the bypass makes the value
            # read in a cycle the same row is committed unused.
            mem = Memory(shape=unsigned(self.row_bits), depth=cfg.sp_depth, init=[],
                         attrs={"no_rw_check": 1})
            m.submodules[f"bank{b}"] = mem
            wp = mem.write_port(granularity=8)
            rp = mem.read_port(domain="comb")
            m.d.comb += [
                wp.addr.eq(w_q_addr[:row_bits]),
                wp.data.eq(w_q_data),
                wp.en.eq(w_q_be[b]),
            ]
            rp_addr = ports[-1].addr[:row_bits]
            for i in reversed(range(len(ports) - 1)):
                rp_addr = Mux(want[i][b], ports[i].addr[:row_bits], rp_addr)
            rp_en = Signal(name=f"bank{b}_rd_en")
            m.d.comb += [rp.addr.eq(rp_addr), rp_en.eq(Cat(*(wt[b] for wt in want)).any())]
            q = Signal(self.row_bits, name=f"bank{b}_rd_data", reset_less=True)
            # Bytes of the row read that this bank commits in the read cycle.
            hit_be = Signal.like(w.be, name=f"bank{b}_bypass", reset_less=True)
            with m.If(rp_en):
                m.d.sync += q.eq(rp.data)
            m.d.sync += hit_be.eq(Mux(rp_addr == w_q_addr[:row_bits], w_q_be[b], 0))
            bank_data.append(Cat(*(Mux(hit_be[i], bypass_data.word_select(i, 8),
                                       q.word_select(i, 8)) for i in range(cfg.sp_width))))

        for name, port in zip(names, ports, strict=True):
            granted = port.en & port.ready
            bank_q = Signal(max(bank_bits, 1), name=f"{name}_bank", reset_less=True)
            m.d.sync += port.valid.eq(granted)
            with m.If(granted):
                m.d.sync += bank_q.eq(bank_of(port.addr))
            data = _select(bank_q, bank_data)
            if cfg.sp_banks < 1 << bank_bits:
                hit_q = Signal(name=f"{name}_hit")
                with m.If(granted):
                    m.d.sync += hit_q.eq(in_range(port.addr))
                data = Mux(hit_q, data, 0)
            m.d.comb += port.data.eq(data)
        return m


def _select(sel, values):
    """``values[sel]`` as a tree of 2:1 multiplexers (indices beyond ``values`` give any
    of them)."""
    for bit in range(len(sel)):
        values = [Mux(sel[bit], values[k + 1], values[k]) if k + 1 < len(values) else values[k]
                  for k in range(0, len(values), 2)]
    return values[0]
