"""The UART bridge with system memory and a register file, driven by the real host `Link`.

The Amaranth simulator runs inside an in-process serial port: `write` queues bytes for a
host-side UART transmitter, `read` advances the simulation and returns what the host-side
UART receiver got. Link's clock is the simulated time, so its timeouts and retries behave
as on a board.
"""

import random
from collections import deque

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from systolic.fpga.bridge import AXIL_SIGNATURE, Bridge
from systolic.fpga.sysmem import AXI_OKAY, AXI_SLVERR, GenericRam, SystemMemory
from systolic.fpga.uart import UartRx, UartTx
from systolic.rtl.axi import flat_interface
from systolic.runtime import protocol as P

DIVISOR = 4
BYTE_CYCLES = 10 * DIVISOR
PERIOD = 1e-6                     # simulated seconds per cycle
FRAME_TIMEOUT = 12 * BYTE_CYCLES  # bridge inter-byte timeout
MEM_SIZE = 2048
N_REGS = 8
HOLE = 0x1000                     # CSR addresses with this bit never answer


class RegFile(wiring.Component):
    """AXI4-Lite register file stand-in: ``N_REGS`` words at 0; other addresses answer
    SLVERR, except addresses with the ``HOLE`` bit, which never answer."""

    bus: In(AXIL_SIGNATURE)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        regs = [Signal(32, name=f"reg{i}") for i in range(N_REGS)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(bus.arvalid & ~bus.araddr[12]):
                    m.d.comb += bus.arready.eq(1)
                    with m.Switch(bus.araddr[2:12]):
                        for i in range(N_REGS):
                            with m.Case(i):
                                m.d.sync += [bus.rdata.eq(regs[i]), bus.rresp.eq(AXI_OKAY)]
                        with m.Default():
                            m.d.sync += [bus.rdata.eq(0xBAD0BAD0), bus.rresp.eq(AXI_SLVERR)]
                    m.next = "R"
                with m.Elif(bus.awvalid & bus.wvalid & ~bus.awaddr[12]):
                    m.d.comb += [bus.awready.eq(1), bus.wready.eq(1)]
                    m.d.sync += bus.bresp.eq(AXI_SLVERR)
                    with m.Switch(bus.awaddr[2:12]):
                        for i in range(N_REGS):
                            with m.Case(i):
                                m.d.sync += bus.bresp.eq(AXI_OKAY)
                                for lane in range(4):
                                    with m.If(bus.wstrb[lane]):
                                        m.d.sync += regs[i].word_select(lane, 8).eq(
                                            bus.wdata.word_select(lane, 8))
                    m.next = "B"
            with m.State("R"):
                m.d.comb += bus.rvalid.eq(1)
                with m.If(bus.rready):
                    m.next = "IDLE"
            with m.State("B"):
                m.d.comb += bus.bvalid.eq(1)
                with m.If(bus.bready):
                    m.next = "IDLE"
        return m


class Board(wiring.Component):
    """Bridge, system memory and register file, with a host-side UART pair."""

    tx_data: In(8)
    tx_valid: In(1)
    tx_ready: Out(1)
    rx_data: Out(8)
    rx_valid: Out(1)

    def __init__(self, data_width=32):
        self.bridge = Bridge(divisor=DIVISOR, timeout=FRAME_TIMEOUT, bus_timeout=64)
        self.sysmem = SystemMemory(size=MEM_SIZE, data_width=data_width)
        self.regs = RegFile()
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = self.bridge
        m.submodules.sysmem = self.sysmem
        m.submodules.regs = self.regs
        m.submodules.host_tx = host_tx = UartTx(divisor=DIVISOR)
        m.submodules.host_rx = host_rx = UartRx(divisor=DIVISOR)
        wiring.connect(m, bridge.mem, self.sysmem.bridge)
        wiring.connect(m, flat_interface(bridge, "m_axil", Out(AXIL_SIGNATURE)), self.regs.bus)
        m.d.comb += [
            bridge.rx.eq(host_tx.tx), host_rx.rx.eq(bridge.tx),
            host_tx.i.payload.eq(self.tx_data), host_tx.i.valid.eq(self.tx_valid),
            self.tx_ready.eq(host_tx.i.ready),
            self.rx_data.eq(host_rx.o.payload), self.rx_valid.eq(host_rx.o.valid),
            host_rx.o.ready.eq(1),
        ]
        return m


class SimSerialPort:
    """A serial port whose far end is the simulated board.

    ``write`` queues bytes; ``read(n)`` advances the simulation by one byte time at a time
    until a byte has arrived (or one step passed) and returns at most ``n`` bytes.
    """

    name = "sim-uart"

    def __init__(self, board):
        self.board = board
        self.cycles = 0
        self.outgoing = deque()
        self.incoming = bytearray()
        self.sim = Simulator(board)
        self.sim.add_clock(PERIOD)
        self.sim.add_testbench(self._feed, background=True)
        self.sim.add_testbench(self._collect, background=True)

    async def _feed(self, ctx):
        while True:
            if self.outgoing:
                ctx.set(self.board.tx_data, self.outgoing.popleft())
                ctx.set(self.board.tx_valid, 1)
                await ctx.tick().until(self.board.tx_ready)
                ctx.set(self.board.tx_valid, 0)
            else:
                await ctx.tick()

    async def _collect(self, ctx):
        async for _, _, valid, data in ctx.tick().sample(self.board.rx_valid,
                                                          self.board.rx_data):
            if valid:
                self.incoming.append(data)

    def clock(self):
        return self.cycles * PERIOD

    def run(self, cycles):
        self.cycles += cycles
        self.sim.run_until(self.cycles * PERIOD)

    def write(self, data):
        self.outgoing.extend(bytes(data))

    def read(self, n):
        if not self.incoming:
            self.run(BYTE_CYCLES)
        out = bytes(self.incoming[:n])
        del self.incoming[:n]
        return out

    def drain(self, cycles):
        """Run ``cycles`` and return everything received."""
        self.run(cycles)
        return self.read(len(self.incoming))



def _simulate(dut, *benches):
    """Run ``benches`` as testbenches of ``dut`` on the bridge's clock until they end."""
    sim = Simulator(dut)
    sim.add_clock(PERIOD)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run()

def make_link(data_width=32, retries=2):
    port = SimSerialPort(Board(data_width))
    link = P.Link(port, timeout=700 * BYTE_CYCLES * PERIOD, retries=retries, clock=port.clock)
    return port, link


def check_memory(link, model, address=0):
    """Scoreboard: the device's memory equals ``model`` (bytes at ``address``)."""
    got = link.read_mem(address, len(model))
    for i, (g, e) in enumerate(zip(got, model, strict=True)):
        assert g == e, f"memory byte 0x{address + i:04X}: read 0x{g:02X}, expected 0x{e:02X}"


def raw_exchange(port, frame, cycles):
    """Send raw bytes and decode the responses that come back within ``cycles``."""
    port.write(frame)
    return P.Decoder().feed(port.drain(cycles))


# -- tests ---------------------------------------------------------------------------------

def test_ping_and_status():
    port, link = make_link()
    assert link.ping() == P.PROTOCOL_VERSION
    print(f"PING round trip: {port.cycles} cycles at {DIVISOR} clocks per bit "
          f"(read in steps of one byte time)")
    assert link.status() == P.DeviceStatus(0, 0, 0, 0)


@pytest.mark.parametrize("data_width", [32, 64])
def test_memory_write_read_various_lengths(data_width):
    port, link = make_link(data_width)
    rng = random.Random(data_width)
    model = bytearray(MEM_SIZE)
    cases = [(0, 4), (8, 1), (13, 3), (21, 6), (64, 257), (1024, P.MAX_PAYLOAD),
             (MEM_SIZE - 7, 7)]
    for address, length in cases:
        data = bytes(rng.randrange(256) for _ in range(length))
        link.write_mem(address, data)
        model[address:address + length] = data
        assert link.read_mem(address, length) == data
    check_memory(link, model[:512])
    check_memory(link, model[1024:1024 + 260], 1024)
    assert link.naks == 0 and link.timeouts == 0
    print(f"memory test: {port.cycles} cycles")


def test_memory_scoreboard_catches_one_corrupted_byte():
    _, link = make_link()
    model = bytes(range(1, 33))
    link.write_mem(0x40, model)
    check_memory(link, model, 0x40)
    link.write_mem(0x40 + 17, b"\x00")     # one byte changes behind the model's back
    with pytest.raises(AssertionError, match="memory byte 0x0051"):
        check_memory(link, model, 0x40)


def test_csr_write_read():
    _, link = make_link()
    values = [0x1234_5678, 0xFFFF_FFFF, 0, 0xA5A5_5A5A]
    for i, value in enumerate(values):
        link.write_csr(4 * i, value)
    assert [link.read_csr(4 * i) for i in range(len(values))] == values
    # several registers in one frame
    payload = b"".join(v.to_bytes(4, "little") for v in (11, 22, 33))
    link.transact(P.Command.WRITE_CSR, 0x10, payload=payload)
    assert link.transact(P.Command.READ_CSR, 0x0C, length=16) == \
        (0xA5A5_5A5A).to_bytes(4, "little") + payload


def test_csr_bus_errors_are_naked_and_the_bridge_recovers():
    _, link = make_link()
    with pytest.raises(P.NakError, match="BUS_ERROR") as err:
        link.read_csr(4 * N_REGS)
    assert err.value.status == P.Status.BUS_ERROR
    with pytest.raises(P.NakError, match="BUS_ERROR"):
        link.write_csr(0x100, 1)
    with pytest.raises(P.NakError, match="BUS_TIMEOUT"):
        link.read_csr(HOLE)
    with pytest.raises(P.NakError, match="BUS_TIMEOUT"):
        link.write_csr(HOLE, 7)
    link.write_csr(8, 99)
    assert link.read_csr(8) == 99


def test_bad_requests_are_naked():
    port, link = make_link()
    cases = [
        (P.encode_request(1, 0x55), P.Status.BAD_COMMAND),
        (P.encode_request(2, P.Command.READ_MEM, 0, length=6), P.Status.BAD_LENGTH),
        (P.encode_request(3, P.Command.READ_MEM, 0, length=P.MAX_PAYLOAD + 4),
         P.Status.BAD_LENGTH),
        (P.encode_request(4, P.Command.WRITE_MEM, 0, payload=bytes(P.MAX_PAYLOAD + 4)),
         P.Status.BAD_LENGTH),
        (P.encode_request(5, P.Command.PING, 0, length=4), P.Status.BAD_LENGTH),
        (P.encode_request(6, P.Command.WRITE_MEM, 2, payload=bytes(4)), P.Status.BAD_ADDRESS),
        (P.encode_request(7, P.Command.READ_MEM, MEM_SIZE, length=4), P.Status.BAD_ADDRESS),
    ]
    for frame, status in cases:
        responses = raw_exchange(port, frame, (len(frame) + 20) * BYTE_CYCLES)
        assert [(r.seq, r.status) for r in responses] == [(frame_seq(frame), status)]
    with pytest.raises(P.NakError, match="BAD_ADDRESS"):
        link.write_mem(MEM_SIZE - 4, bytes(8))
    assert link.status().bad_requests == len(cases) + 1
    assert link.ping() == P.PROTOCOL_VERSION


def frame_seq(frame):
    return P.Decoder("request").feed(frame)[0].seq


def test_corrupted_crc_is_naked_and_the_next_frame_works():
    port, link = make_link()
    rng = random.Random(7)
    for trial in range(3):
        frame = bytearray(P.encode_request(40 + trial, P.Command.WRITE_MEM, 0x80,
                                           payload=bytes(range(16))))
        # flip one bit of the payload (bytes 10.. hold no SOF/ESC here)
        frame[10 + rng.randrange(16)] ^= 1 << rng.randrange(8)
        responses = raw_exchange(port, frame, (len(frame) + 20) * BYTE_CYCLES)
        assert [(r.seq, r.status) for r in responses] == [(40 + trial, P.Status.BAD_CRC)]
    assert link.read_mem(0x80, 16) == bytes(16)       # nothing was written
    link.write_mem(0x80, bytes(range(16)))
    assert link.read_mem(0x80, 16) == bytes(range(16))
    assert link.status().crc_errors == 3


def test_truncated_frame_times_out_with_a_nak():
    port, link = make_link()
    frame = P.encode_request(9, P.Command.WRITE_MEM, 0x100, payload=bytes(range(32)))
    responses = raw_exchange(port, frame[:20], FRAME_TIMEOUT + 30 * BYTE_CYCLES)
    assert [(r.seq, r.status) for r in responses] == [(9, P.Status.TIMEOUT)]
    # a frame cut short by the next SOF is dropped silently and the new one is served
    responses = raw_exchange(port, frame[:15] + P.encode_request(10, P.Command.PING),
                             (15 + 40) * BYTE_CYCLES)
    assert [(r.seq, r.status) for r in responses] == [(10, P.Status.OK)]
    assert link.read_mem(0x100, 32) == bytes(32)
    assert link.status().truncated == 2


def test_garbage_between_frames_is_dropped_and_counted():
    port, link = make_link()
    rng = random.Random(3)
    garbage = bytes(rng.choice([b for b in range(256) if b != P.SOF]) for _ in range(25))
    port.write(garbage)
    link.write_mem(0x20, b"\x01\x02\x03\x04")
    assert link.read_mem(0x20, 4) == b"\x01\x02\x03\x04"
    assert link.status().discarded_bytes == len(garbage)
    # garbage that holds a SOF starts a bogus frame; the real frame's SOF resynchronizes
    port.write(b"\x11" + bytes([P.SOF]) + b"\x22\x33")
    assert link.read_mem(0x20, 4) == b"\x01\x02\x03\x04"
    assert link.naks == 0 and link.timeouts == 0


class MutePort:
    """A port whose far end never answers (no board, wrong baud rate, no bitstream)."""
    port = "/dev/ttyUSB9"

    def __init__(self):
        self.now = 0.0
        self.written = 0

    def write(self, data):
        self.written += 1

    def read(self, n):
        self.now += 0.05
        return b""


def test_no_board_raises_a_clear_error():
    port = MutePort()
    link = P.Link(port, timeout=0.2, retries=2, clock=lambda: port.now)
    with pytest.raises(P.NoResponseError, match=r"no answer from a board on /dev/ttyUSB9 to "
                                                r"PING at 0x00000000 after 3 attempts"):
        link.ping()
    assert port.written == 3


# -- system memory: AXI4 slave and bridge port ---------------------------------------------

AXI_SIZE = 1024


def axi_beat_lanes(address, size, nbytes):
    """Byte lanes of one beat at an aligned ``address`` with ``1 << size`` bytes."""
    first = address % nbytes
    return range(first, first + (1 << size))


def beat_addresses(address, count, size, burst):
    step = 0 if burst == 0 else 1 << size
    return [address + i * step for i in range(count)]


async def axi_write(ctx, dut, rng, address, count, size, burst, model):
    nbytes = len(dut.s_axi_wdata) // 8
    ident = rng.randrange(16)
    for name, value in (("awaddr", address), ("awlen", count - 1), ("awsize", size),
                        ("awburst", burst), ("awid", ident), ("awvalid", 1)):
        ctx.set(getattr(dut, "s_axi_" + name), value)
    await ctx.tick().until(dut.s_axi_awready)
    ctx.set(dut.s_axi_awvalid, 0)
    any_outside = False
    for i, beat in enumerate(beat_addresses(address, count, size, burst)):
        data = rng.getrandbits(8 * nbytes)
        strobe = sum(rng.randrange(2) << lane for lane in axi_beat_lanes(beat, size, nbytes))
        if rng.randrange(3) == 0:
            await ctx.tick().repeat(1 + rng.randrange(3))
        ctx.set(dut.s_axi_wdata, data)
        ctx.set(dut.s_axi_wstrb, strobe)
        ctx.set(dut.s_axi_wlast, i == count - 1)
        ctx.set(dut.s_axi_wvalid, 1)
        await ctx.tick().until(dut.s_axi_wready)
        ctx.set(dut.s_axi_wvalid, 0)
        row = beat - beat % nbytes
        if row >= AXI_SIZE:
            any_outside = True
            continue
        for lane in range(nbytes):
            if strobe >> lane & 1:
                model[row + lane] = data >> (8 * lane) & 0xFF
    await ctx.tick().repeat(rng.randrange(1, 4))
    ctx.set(dut.s_axi_bready, 1)
    resp, bid = await ctx.tick().sample(dut.s_axi_bresp, dut.s_axi_bid).until(dut.s_axi_bvalid)
    ctx.set(dut.s_axi_bready, 0)
    assert bid == ident
    assert resp == (0b11 if any_outside else 0b00)


async def axi_read(ctx, dut, rng, address, count, size, burst, model):
    nbytes = len(dut.s_axi_rdata) // 8
    ident = rng.randrange(16)
    for name, value in (("araddr", address), ("arlen", count - 1), ("arsize", size),
                        ("arburst", burst), ("arid", ident), ("arvalid", 1)):
        ctx.set(getattr(dut, "s_axi_" + name), value)
    await ctx.tick().until(dut.s_axi_arready)
    ctx.set(dut.s_axi_arvalid, 0)
    for i, beat in enumerate(beat_addresses(address, count, size, burst)):
        if rng.randrange(3) == 0:
            await ctx.tick().repeat(1 + rng.randrange(3))
        ctx.set(dut.s_axi_rready, 1)
        data, resp, last, rid = await ctx.tick().sample(
            dut.s_axi_rdata, dut.s_axi_rresp, dut.s_axi_rlast, dut.s_axi_rid).until(
            dut.s_axi_rvalid)
        ctx.set(dut.s_axi_rready, 0)
        assert (rid, last) == (ident, i == count - 1)
        row = beat - beat % nbytes
        assert resp == (0b11 if row >= AXI_SIZE else 0b00), f"beat {i} at 0x{beat:X}"
        if row < AXI_SIZE:
            for lane in axi_beat_lanes(beat, size, nbytes):
                got, want = data >> (8 * lane) & 0xFF, model[row + lane]
                assert got == want, f"beat {i} byte 0x{row + lane:X}: 0x{got:02X} != 0x{want:02X}"


async def bridge_access(ctx, port, address, we=0, wdata=0):
    ctx.set(port.valid, 1)
    ctx.set(port.addr, address)
    ctx.set(port.we, we)
    ctx.set(port.wdata, wdata)
    rdata, error = await ctx.tick().sample(port.rdata, port.error).until(port.ack)
    ctx.set(port.valid, 0)
    return rdata, error


def run_sysmem(data_width, seed, *, corrupt=None):
    """Random AXI bursts and bridge accesses at once on disjoint regions, then read-back."""
    rng = random.Random(seed)
    init = bytes(rng.randrange(256) for _ in range(AXI_SIZE))
    nbytes = data_width // 8
    rows = [int.from_bytes(init[i:i + nbytes], "little") for i in range(0, AXI_SIZE, nbytes)]
    dut = SystemMemory(size=AXI_SIZE, data_width=data_width,
                       ram=lambda width, depth: GenericRam(width=width, depth=depth, init=rows))
    model = bytearray(init)
    max_size = nbytes.bit_length() - 1
    finished = []

    def burst_params(lo, hi):
        size = rng.randrange(max_size + 1)
        burst = rng.choice([0, 1, 1, 1])
        count = rng.randrange(1, 17)
        start = rng.randrange(lo, hi - count * (1 << size) + 1) >> size << size
        return start, count, size, burst

    async def axi_writer(ctx):        # region [0, 512)
        for _ in range(12):
            await axi_write(ctx, dut, rng, *burst_params(0, 512), model)
        # a burst running off the end: DECERR, in-range beats still written
        await axi_write(ctx, dut, rng, AXI_SIZE - 2 * nbytes, 4, max_size, 1, model)
        finished.append("writer")

    async def axi_reader(ctx):        # region [768, 1024), initial contents only
        for _ in range(12):
            await axi_read(ctx, dut, rng, *burst_params(768, AXI_SIZE - 2 * nbytes), model)
        finished.append("reader")

    async def bridge_user(ctx):       # region [512, 768), 32-bit words
        for _ in range(40):
            address = rng.randrange(512, 768) & ~3
            if rng.randrange(2):
                word = rng.getrandbits(32)
                _, error = await bridge_access(ctx, dut.bridge, address, 1, word)
                model[address:address + 4] = word.to_bytes(4, "little")
            else:
                word, error = await bridge_access(ctx, dut.bridge, address)
                assert word == int.from_bytes(model[address:address + 4], "little")
            assert error == 0
        _, error = await bridge_access(ctx, dut.bridge, AXI_SIZE, 1, 0)
        assert error == 1
        finished.append("bridge")

    async def check_all(ctx):
        while len(finished) < 3:        # after the concurrent phase
            await ctx.tick()
        if corrupt is not None:
            model[corrupt] ^= 0x01
        for address in range(0, AXI_SIZE, 16 * nbytes):
            await axi_read(ctx, dut, rng, address, 16, max_size, 1, model)
        for address in range(0, AXI_SIZE, 4):
            word, _ = await bridge_access(ctx, dut.bridge, address)
            assert word == int.from_bytes(model[address:address + 4], "little"), hex(address)

    _simulate(dut, axi_writer, axi_reader, bridge_user, check_all)


@pytest.mark.parametrize("data_width", [32, 64])
def test_sysmem_bursts_strobes_and_bridge_port(data_width):
    run_sysmem(data_width, seed=data_width)


def test_sysmem_scoreboard_catches_one_corrupted_byte():
    with pytest.raises(AssertionError, match="byte 0x155"):
        run_sysmem(32, seed=5, corrupt=0x155)


def test_sysmem_checks_its_arguments():
    with pytest.raises(ValueError, match="size must be a power of two of at least 64 bytes, "
                                         "not 1000"):
        SystemMemory(size=1000)
    with pytest.raises(ValueError, match="data_width must be 32 or 64, not 128"):
        SystemMemory(size=1024, data_width=128)


# -- pieces of the bridge --------------------------------------------------------------------

def test_serial_crc_matches_the_host_crc():
    """Byte by byte against the host CRC; then the frame's own CRC, which the response
    sends from ``crc[8:]`` twice, and the zero residue the parser checks."""
    from systolic.fpga.bridge import SerialCrc16
    dut = SerialCrc16()
    rng = random.Random(11)
    messages = [b"123456789", bytes(range(256)), bytes([0xFF] * 5), b"\x00",
                *(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
                  for _ in range(20))]

    async def feed(ctx, byte):
        ctx.set(dut.byte, byte)
        ctx.set(dut.feed, 1)
        await ctx.tick()
        ctx.set(dut.feed, 0)
        assert ctx.get(dut.busy)
        await ctx.tick().until(~dut.busy)
        return ctx.get(dut.crc)

    async def bench(ctx):
        for message in messages:
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            assert ctx.get(dut.crc) == P.CRC_INIT
            for i, byte in enumerate(message):
                assert await feed(ctx, byte) == P.crc16(message[:i + 1]), (message, i)
            expected = P.crc16(message)
            assert ctx.get(dut.crc) >> 8 == expected >> 8
            assert await feed(ctx, expected >> 8) >> 8 == expected & 0xFF
            assert await feed(ctx, expected & 0xFF) == 0
        assert P.crc16(b"123456789") == 0x29B1

    _simulate(dut, bench)


def run_counters(seed, *, corrupt=None):
    """Random events on the four STATUS counters (each at least 16 cycles apart, several
    counters at once), then the counters and the PING word read as their rows pass."""
    from systolic.fpga.bridge import EventCounters
    dut = EventCounters()
    rng = random.Random(seed)
    model = [0, 0, 0, 0, P.PING_WORD & 0xFFFF, P.PING_WORD >> 16]

    async def bench(ctx):
        for _ in range(300):
            inc = rng.randrange(16)
            ctx.set(dut.inc, inc)
            await ctx.tick()
            ctx.set(dut.inc, 0)
            for k in range(4):
                model[k] += inc >> k & 1
            await ctx.tick().repeat(15 + rng.randrange(3))
        await ctx.tick().repeat(17)
        if corrupt is not None:
            model[corrupt] += 1
        for row, count in enumerate(model):
            *_, data = await ctx.tick().sample(dut.data).until(dut.phase[:4] == 2 * row + 1)
            assert data == count & 0xFFFF, f"row {row}: {data} != {count}"

    _simulate(dut, bench)
    return model


def test_event_counters_count_every_event():
    model = run_counters(1)
    assert min(model[:4]) > 120      # every counter saw many events, and wrapped none


def test_event_counters_scoreboard_catches_one_lost_event():
    with pytest.raises(AssertionError, match="row 2"):
        run_counters(2, corrupt=2)


def test_bridge_checks_its_arguments():
    with pytest.raises(ValueError, match=r"Bridge timeout must be an integer of at least two "
                                         r"byte times \(80 cycles\), not 10"):
        Bridge(divisor=4, timeout=10)
    with pytest.raises(ValueError, match="Bridge bus_timeout must be an integer of at least 2, "
                                         "not 0"):
        Bridge(divisor=4, bus_timeout=0)


def run_framing_errors(stop_bits):
    """Bit-bang bytes into the bridge's RX line with the given stop bit values; return the
    values of ``framing_errors`` seen after each byte."""
    dut = Bridge(divisor=DIVISOR, timeout=FRAME_TIMEOUT)
    seen = []

    async def bench(ctx):
        for stop in stop_bits:
            for bit in [0, *((0x55 >> i) & 1 for i in range(8)), stop]:
                ctx.set(dut.rx, bit)
                await ctx.tick().repeat(DIVISOR)
            ctx.set(dut.rx, 1)
            await ctx.tick().repeat(3 * DIVISOR)
            seen.append(ctx.get(dut.framing_errors))

    _simulate(dut, bench)
    return seen


def test_framing_errors_toggle_bit_0():
    """Each byte with a low stop bit toggles bit 0 (the board's link LED watches for a
    change); good bytes leave it alone."""
    assert run_framing_errors([0, 1, 0, 0, 1]) == [1, 1, 0, 1, 1]
