"""On-chip system memory: an AXI4 slave and a host-bridge word port over one single-port RAM."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from systolic.rtl.axi import AXI4Signature

__all__ = ["MemPortSignature", "ram_signature", "GenericRam", "SystemMemory",
           "AXI_OKAY", "AXI_SLVERR", "AXI_DECERR", "BURST_FIXED", "BURST_INCR"]

AXI_OKAY = 0b00
AXI_SLVERR = 0b10
AXI_DECERR = 0b11
BURST_FIXED = 0b00
BURST_INCR = 0b01

BRIDGE_DATA_WIDTH = 32


class MemPortSignature(wiring.Signature):
    """A 32-bit word port, from the requester's side.

    The requester raises ``valid`` with ``addr`` (a byte address; bits 1..0 are ignored),
    ``we`` and ``wdata`` and holds them until ``ack``, a one-cycle pulse; in that cycle
    ``rdata`` holds the word read and ``error`` is high when ``addr`` is outside the
    memory (writes there are dropped). The cycle after ``ack`` the requester drops
    ``valid`` or presents its next request.

    Members
    -------
    valid, addr, we, wdata : Out
    ack, rdata, error : In
    """

    def __init__(self):
        super().__init__({
            "valid": Out(1),
            "addr": Out(32),
            "we": Out(1),
            "wdata": Out(BRIDGE_DATA_WIDTH),
            "ack": In(1),
            "rdata": In(BRIDGE_DATA_WIDTH),
            "error": In(1),
        })


def ram_signature(*, width, depth):
    """Signature of a single-port RAM, from the RAM's side.

    One access per cycle: ``re`` reads row ``addr`` into ``rdata`` on the next cycle (held
    until the next read); ``we`` is a byte-lane write enable for ``wdata``.
    """
    return wiring.Signature({
        "addr": In(range(depth)),
        "re": In(1),
        "we": In(width // 8),
        "wdata": In(width),
        "rdata": Out(width),
    })


class GenericRam(wiring.Component):
    """Single-port RAM on a generic :class:`amaranth.lib.memory.Memory` (block RAM).

    Parameters
    ----------
    width : int
        Row width in bits (a multiple of 8).
    depth : int
        Rows.
    init : list of int, optional
        Initial contents.
    """

    def __init__(self, *, width, depth, init=()):
        self.width, self.depth = width, depth
        self.memory = Memory(shape=width, depth=depth, init=init)
        super().__init__(ram_signature(width=width, depth=depth))

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = self.memory
        rd = self.memory.read_port()
        wr = self.memory.write_port(granularity=8)
        m.d.comb += [
            rd.addr.eq(self.addr), rd.en.eq(self.re), self.rdata.eq(rd.data),
            wr.addr.eq(self.addr), wr.en.eq(self.we), wr.data.eq(self.wdata),
        ]
        return m


class SystemMemory(wiring.Component):
    """System memory shared by an AXI4 master (the accelerator) and the host bridge.

    One single-port RAM serves one transaction at a time: a bridge access when the bridge
    asks (it asks for one word now and then), otherwise an AXI4 read or write burst, reads
    and writes taking turns when both wait. A burst holds the memory until its last beat.
    Bursts are INCR or FIXED (WRAP is treated as INCR), with narrow sizes and byte
    strobes; as AXI4 requires, a burst stays within one 4 KiB page, so only the address
    bits below the page boundary count up. An address outside the memory answers DECERR
    (read data undefined) and drops the write.

    Timing: a read burst's first R beat comes two cycles after the AR handshake, then one
    beat per cycle while ``rready`` is high; a write burst takes one W beat per cycle from
    the cycle after the AW handshake and raises B the cycle after the last W beat; a
    bridge access is acknowledged the cycle after the memory takes it (at once when idle).

    Parameters
    ----------
    size : int
        Bytes, a power of two, at least 64.
    data_width : int
        AXI data width and RAM row width: 32 or 64.
    id_width : int
        AXI ID width (1..8).
    ram : callable, optional
        ``ram(width=, depth=)`` returning a component with :func:`ram_signature` (for
        example SPRAM primitives); by default a :class:`GenericRam`.

    Attributes
    ----------
    s_axi_* : AXI4 slave, flat ports of ``In(self.axi_signature)`` (an
        :class:`~systolic.rtl.axi.AXI4Signature`); ``*lock``, ``*cache``, ``*prot`` and
        ``*qos`` are ignored.
    bridge : In(MemPortSignature())
        The host bridge's word port.
    """

    def __init__(self, *, size, data_width=32, id_width=4, ram=None):
        if not isinstance(size, int) or size < 64 or size & (size - 1):
            raise ValueError(f"SystemMemory size must be a power of two of at least 64 bytes, "
                             f"not {size!r}")
        if data_width not in (32, 64):
            raise ValueError(f"SystemMemory data_width must be 32 or 64, not {data_width!r}")
        if not isinstance(id_width, int) or not 1 <= id_width <= 8:
            raise ValueError(f"SystemMemory id_width must be in 1..8, not {id_width!r}")
        self.size, self.data_width, self.id_width = size, data_width, id_width
        self.depth = size // (data_width // 8)
        self.ram = (ram or GenericRam)(width=data_width, depth=self.depth)
        expected = ram_signature(width=data_width, depth=self.depth)
        if self.ram.signature != expected:
            raise ValueError(f"SystemMemory ram must have signature {expected!r}, "
                             f"not {self.ram.signature!r}")
        self.axi_signature = AXI4Signature(addr_width=32, data_width=data_width,
                                           id_width=id_width)
        # flat slave ports: the members of In(signature), i.e. the flipped master signature
        members = {f"s_axi_{name}": member
                   for name, member in In(self.axi_signature).signature.members.items()}
        members["bridge"] = In(MemPortSignature())
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.ram = ram = self.ram
        nbytes = self.data_width // 8
        lsb = nbytes.bit_length() - 1           # byte-offset bits within a row
        size_bits = self.size.bit_length() - 1
        # a burst stays inside one 4 KiB page: only the address bits below the page (or
        # below the memory's top, whichever is higher) ever change, and whether the bits
        # above them are zero is decided once, at the address handshake
        addr_bits = max(12, size_bits)

        def row(address):
            return address[lsb:size_bits]

        addr = Signal(addr_bits)
        high_ok = Signal()                      # address bits above addr_bits are zero
        beats = Signal(8)
        size = Signal(range(lsb + 1))
        fixed = Signal()
        ident = Signal(self.id_width)
        error = Signal()                        # a write beat fell outside the memory
        beat_ok = Signal()                      # the read beat on rdata is inside it
        in_range = Signal()
        m.d.comb += in_range.eq(high_ok & (addr[size_bits:] == 0))
        # the next beat's address: + (1 << size) within the page, + 0 for FIXED
        next_addr = Signal(addr_bits)
        step = Mux(fixed, 0, Const(1, lsb + 1) << size)
        m.d.comb += next_addr.eq(Cat((addr[:12] + step)[:12], addr[12:]))

        # the bridge first (a word now and then), then AXI reads and writes in turn
        bridge = self.bridge
        write_turn = Signal()
        take_read = Signal()
        m.d.comb += take_read.eq(self.s_axi_arvalid & ~(self.s_axi_awvalid & write_turn))

        lane = Signal(range(max(2, nbytes // 4)))
        if nbytes > 4:
            m.d.comb += bridge.rdata.eq(ram.rdata.word_select(lane, 32))
        else:
            m.d.comb += bridge.rdata.eq(ram.rdata)

        m.d.comb += [
            self.s_axi_bid.eq(ident), self.s_axi_rid.eq(ident),
            self.s_axi_bresp.eq(Mux(error, AXI_DECERR, AXI_OKAY)),
            self.s_axi_rresp.eq(Mux(beat_ok, AXI_OKAY, AXI_DECERR)),
            self.s_axi_rdata.eq(ram.rdata),
            self.s_axi_rlast.eq(beats == 0),
        ]

        # one address unit for both channels: loaded at the address handshake, stepped
        # after each beat; the beat count likewise
        load, step, count = Signal(), Signal(), Signal()
        with m.If(load):
            ar, aw = self.s_axi_araddr, self.s_axi_awaddr
            m.d.sync += [
                addr.eq(Mux(take_read, ar[:addr_bits], aw[:addr_bits])),
                beats.eq(Mux(take_read, self.s_axi_arlen, self.s_axi_awlen)),
            ]
        with m.Else():
            with m.If(step):
                m.d.sync += addr.eq(next_addr)
            with m.If(count):
                m.d.sync += beats.eq(beats - 1)

        def read_beat():
            m.d.comb += [ram.re.eq(1), step.eq(1)]
            m.d.sync += beat_ok.eq(in_range)

        with m.FSM() as fsm:
            # address and data need no more than a 2:1 choice: only the enables depend on
            # who is served
            m.d.comb += [
                ram.addr.eq(Mux(fsm.ongoing("IDLE"), row(bridge.addr), row(addr))),
                ram.wdata.eq(Mux(fsm.ongoing("WRITE"), self.s_axi_wdata,
                                 bridge.wdata.replicate(nbytes // 4))),
            ]
            with m.State("IDLE"):
                with m.If(bridge.valid):
                    ok = bridge.addr[size_bits:] == 0
                    sel = bridge.addr[2:lsb] if nbytes > 4 else Const(0, 1)
                    m.d.comb += [
                        ram.re.eq(~bridge.we),
                        ram.we.eq(Mux(bridge.we & ok, Const(0xF, nbytes) << (sel * 4), 0)),
                    ]
                    m.d.sync += [lane.eq(sel), bridge.error.eq(~ok)]
                    m.next = "BRIDGE_ACK"
                with m.Elif(self.s_axi_arvalid | self.s_axi_awvalid):
                    ar, aw = self.s_axi_araddr, self.s_axi_awaddr
                    m.d.comb += load.eq(1)
                    m.d.sync += [
                        high_ok.eq(Mux(take_read, ar[addr_bits:] == 0, aw[addr_bits:] == 0)),
                        size.eq(Mux(take_read, self.s_axi_arsize, self.s_axi_awsize)),
                        fixed.eq(Mux(take_read, self.s_axi_arburst, self.s_axi_awburst)
                                 == BURST_FIXED),
                        ident.eq(Mux(take_read, self.s_axi_arid, self.s_axi_awid)),
                        error.eq(0), write_turn.eq(take_read),
                    ]
                    with m.If(take_read):
                        m.d.comb += self.s_axi_arready.eq(1)
                        m.next = "READ_ISSUE"
                    with m.Else():
                        m.d.comb += self.s_axi_awready.eq(1)
                        m.next = "WRITE"

            with m.State("BRIDGE_ACK"):
                m.d.comb += bridge.ack.eq(1)
                m.next = "IDLE"

            with m.State("READ_ISSUE"):
                read_beat()
                m.next = "READ_DATA"

            with m.State("READ_DATA"):
                m.d.comb += self.s_axi_rvalid.eq(1)
                with m.If(self.s_axi_rready):
                    with m.If(beats == 0):
                        m.next = "IDLE"
                    with m.Else():
                        read_beat()
                        m.d.comb += count.eq(1)

            with m.State("WRITE"):
                m.d.comb += self.s_axi_wready.eq(1)
                with m.If(self.s_axi_wvalid):
                    m.d.comb += ram.we.eq(Mux(in_range, self.s_axi_wstrb, 0))
                    m.d.comb += [step.eq(1), count.eq(1)]
                    m.d.sync += error.eq(error | ~in_range)
                    with m.If(beats == 0):
                        m.next = "RESPOND"

            with m.State("RESPOND"):
                m.d.comb += self.s_axi_bvalid.eq(1)
                with m.If(self.s_axi_bready):
                    m.next = "IDLE"
        return m
