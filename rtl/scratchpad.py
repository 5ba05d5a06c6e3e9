"""Banked scratchpad: the int8 rows MATMUL reads and LOAD writes."""

from amaranth.hdl import Module, Mux, Signal, unsigned
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
        ports = [getattr(self, name) for name in self.READ_PORTS]

        def bank_of(addr):
            return addr[row_bits:]

        bank_data = []
        grants_by_port = [[] for _ in ports]
        for b in range(cfg.sp_banks):
            mem = Memory(shape=unsigned(self.row_bits), depth=cfg.sp_depth, init=[])
            m.submodules[f"bank{b}"] = mem
            wp = mem.write_port(granularity=8)
            rp = mem.read_port()
            m.d.comb += [
                wp.addr.eq(self.w.addr[:row_bits]),
                wp.data.eq(self.w.data),
                wp.en.eq(Mux(self.w.en & (bank_of(self.w.addr) == b), self.w.be, 0)),
            ]
            # Fixed priority among the read ports asking for this bank.
            taken = 0
            rp_addr = 0
            rp_en = 0
            for i, port in enumerate(ports):
                want = Signal(name=f"bank{b}_{self.READ_PORTS[i]}_want")
                grant = Signal(name=f"bank{b}_{self.READ_PORTS[i]}_grant")
                m.d.comb += [
                    want.eq(port.en & (bank_of(port.addr) == b)),
                    grant.eq(want & ~taken),
                ]
                grants_by_port[i].append(grant)
                rp_addr = Mux(grant, port.addr[:row_bits], rp_addr)
                rp_en = rp_en | grant
                taken = taken | want
            m.d.comb += [rp.addr.eq(rp_addr), rp.en.eq(rp_en)]
            bank_data.append(rp.data)

        for i, port in enumerate(ports):
            in_range = bank_of(port.addr) < cfg.sp_banks
            any_grant = 0
            for g in grants_by_port[i]:
                any_grant = any_grant | g
            m.d.comb += port.ready.eq(any_grant | ~in_range)
            bank_q = Signal(range(cfg.sp_banks + 1), name=f"{self.READ_PORTS[i]}_bank")
            hit_q = Signal(name=f"{self.READ_PORTS[i]}_hit")
            m.d.sync += port.valid.eq(port.en & port.ready)
            with m.If(port.en & port.ready):
                m.d.sync += [bank_q.eq(bank_of(port.addr)), hit_q.eq(in_range)]
            data = 0
            for b in range(cfg.sp_banks):
                data = Mux(bank_q == b, bank_data[b], data)
            m.d.comb += port.data.eq(Mux(hit_q, data, 0))
        return m

