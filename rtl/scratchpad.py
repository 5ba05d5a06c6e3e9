"""Banked scratchpad: the int8 rows MATMUL reads and LOAD writes."""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolic.config import AcceleratorConfig

__all__ = ["ReadPortSignature", "Scratchpad", "check_config"]


def check_config(config, who):
    """Raise :class:`TypeError` unless ``config`` is an :class:`AcceleratorConfig`."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"{who} config must be an AcceleratorConfig, not {config!r}")


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

    Each bank is one 1R1W :class:`~amaranth.lib.memory.Memory`. A global row address is
    ``bank * sp_depth + row``: the bank is the high bits. Byte ``i`` of a row sits in bits
    ``[8*i+7 : 8*i]`` of ``data``.

    Ports and rules:

    * ``w`` (DMA LOAD): one write per cycle, always accepted (each bank has its own write
      port and no other client writes), with a byte enable per byte. A row is written at
      the end of the cycle its ``en`` is high.
    * ``rd_in`` (MATMUL input rows), ``rd_wt`` (MATMUL weight rows), ``rd_st`` (STORE from
      the scratchpad): read ports (:class:`ReadPortSignature`). Each bank serves one read
      per cycle; when several ports ask for the same bank in one cycle, the fixed priority
      ``rd_in`` > ``rd_wt`` > ``rd_st`` decides and the losers see ``ready`` low and must
      hold their request. Ports reading different banks are all granted in the same cycle,
      whatever the DMA writes.
    * Read latency is one cycle: the row of a request granted in cycle ``t`` is in ``data``
      with ``valid`` high in cycle ``t + 1``. A read of a row written in the same cycle
      returns the old row (reads are not transparent); a write is seen by reads granted in
      later cycles.
    * Addresses beyond ``sp_rows`` select no bank: writes are dropped, reads are granted
      and return zero. The decoder rejects such addresses before they get here.

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
        cfg = self.config
        m = Module()
        row_bits = ceil_log2(cfg.sp_depth)
        bank_bits = self.addr_width - row_bits
        names = self.READ_PORTS
        ports = [getattr(self, name) for name in names]
        w = self.w

        def bank_of(addr):
            return addr[row_bits:]

        def in_range(addr):
            if cfg.sp_banks == 1 << bank_bits:
                return 1    # every address selects a bank
            return bank_of(addr) < cfg.sp_banks

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
