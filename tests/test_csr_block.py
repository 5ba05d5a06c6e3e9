# amaranth: UnusedElaboratable=no
"""The CSR block in Amaranth simulation: every register of the map, access kinds, w1c,
write strobes, and the shared-adder performance counters against a cycle count."""

import random

import pytest
from amaranth.sim import Simulator

from systolic.config import preset
from systolic.csr import CSR, CSR_MAP, field_mask, id_words
from systolic.isa import ErrorCode
from systolic.rtl.csr import PERF_EVENTS, CsrBlock, PerfCounters, distinguishing_bits

START, SOFT_RESET = field_mask("CTRL", "START"), field_mask("CTRL", "SOFT_RESET")
IRQ_ENABLE = field_mask("CTRL", "IRQ_ENABLE")
PERF_REGS = [reg.name for reg in CSR_MAP if reg.perf]


async def axil_read(ctx, bus, addr, *, rready_delay=0):
    """One read, holding ARVALID until ARREADY (as AXI requires); returns the data."""
    ctx.set(bus.araddr, addr)
    ctx.set(bus.arvalid, 1)
    for _ in range(40):
        _, _, accepted = await ctx.tick().sample(bus.arready)
        if accepted:
            break
    else:
        raise AssertionError(f"read address 0x{addr:02x} not accepted")
    ctx.set(bus.arvalid, 0)
    assert ctx.get(bus.rvalid)
    data = ctx.get(bus.rdata)
    for _ in range(rready_delay):           # rdata holds while RREADY is low
        await ctx.tick()
        assert ctx.get(bus.rvalid) and ctx.get(bus.rdata) == data
    ctx.set(bus.rready, 1)
    await ctx.tick()
    ctx.set(bus.rready, 0)
    assert ctx.get(bus.rresp) == 0
    return data


async def axil_write(ctx, bus, addr, value, strb=0xF):
    ctx.set(bus.awaddr, addr)
    ctx.set(bus.wdata, value)
    ctx.set(bus.wstrb, strb)
    ctx.set(bus.awvalid, 1)
    ctx.set(bus.wvalid, 1)
    ctx.set(bus.bready, 1)
    for _ in range(10):
        await ctx.tick()
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        if ctx.get(bus.bvalid):
            break
    else:
        raise AssertionError(f"write of 0x{addr:02x} not answered")
    resp = ctx.get(bus.bresp)
    await ctx.tick()
    ctx.set(bus.bready, 0)
    assert resp == 0


def _run(dut, bench, *processes):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for process in processes:
        sim.add_process(process)
    sim.add_testbench(bench)
    sim.run()


def merge(old, new, strb):
    """The reference write-strobe rule: byte lane i comes from ``new`` when strobe bit i is set."""
    mask = sum(0xFF << 8 * i for i in range(4) if strb >> i & 1)
    return (old & ~mask) | (new & mask)


class Scoreboard:
    """Expected register contents; ``check`` raises on a readback that differs."""

    def __init__(self, rule=merge):
        self.rule = rule
        self.want = {"PROG_ADDR": 0, "PROG_LEN": 0, "CTRL": 0}
        self.mismatches = []

    def write(self, reg, value, strb):
        if reg == "CTRL":   # only IRQ_ENABLE is stored; START/SOFT_RESET read as zero
            value &= IRQ_ENABLE
        self.want[reg] = self.rule(self.want[reg], value, strb)

    def check(self, reg, got):
        if got != self.want[reg]:
            self.mismatches.append((reg, got, self.want[reg]))
        assert got == self.want[reg], f"{reg}: read 0x{got:08x}, expected 0x{self.want[reg]:08x}"


# -- register map and access kinds ----------------------------------------------------------

@pytest.mark.parametrize("name", ["tiny", "icebreaker"])
def test_id_and_config_registers(name):
    config = preset(name)
    dut = CsrBlock(config=config)
    got = {}

    async def bench(ctx):
        for reg in ("ID", "VERSION", "CONFIG0", "CONFIG1", "CONFIG2"):
            got[reg] = await axil_read(ctx, dut.bus, CSR[reg].offset)
            await axil_write(ctx, dut.bus, CSR[reg].offset, 0xFFFF_FFFF)   # ro: ignored
            assert await axil_read(ctx, dut.bus, CSR[reg].offset) == got[reg]

    _run(dut, bench)
    assert got == id_words(config)


@pytest.mark.parametrize("perf", [True, False])
def test_rw_registers_ctrl_and_unmapped(perf):
    dut = CsrBlock(config=preset("tiny").replace(perf_counters=perf))

    async def bench(ctx):
        for reg in ("PROG_ADDR", "PROG_LEN"):
            await axil_write(ctx, dut.bus, CSR[reg].offset, 0x1234_5670)
            assert await axil_read(ctx, dut.bus, CSR[reg].offset) == 0x1234_5670
        assert ctx.get(dut.prog_addr) == 0x1234_5670
        assert ctx.get(dut.prog_len) == 0x1234_5670
        # unmapped offsets read as zero and never hang; writes to them change nothing
        mapped = {reg.offset for reg in CSR_MAP}
        for off in range(0, 256, 4):
            if off not in mapped:
                await axil_write(ctx, dut.bus, off, 0xFFFF_FFFF)
                assert await axil_read(ctx, dut.bus, off) == 0
        assert ctx.get(dut.prog_addr) == ctx.get(dut.prog_len) == 0x1234_5670
        for reg in ("CTRL", "IRQ_STATUS", "STATUS"):
            assert await axil_read(ctx, dut.bus, CSR[reg].offset) == 0
        # IRQ_ENABLE reads back; START and SOFT_RESET read as zero
        await axil_write(ctx, dut.bus, CSR["CTRL"].offset, 0b111)
        assert await axil_read(ctx, dut.bus, CSR["CTRL"].offset) == 0b100

    _run(dut, bench)


def _strobe_counter(dut):
    """``(counts, process)``: the process counts the START and SOFT_RESET strobes."""
    counts = {"start": 0, "soft_reset": 0}

    async def watch(ctx):
        async for _, _, start, soft in ctx.tick().sample(dut.start, dut.soft_reset):
            counts["start"] += start
            counts["soft_reset"] += soft

    return counts, watch


def test_start_done_error_irq_w1c():
    dut = CsrBlock(config=preset("tiny"))
    strobes, watch = _strobe_counter(dut)

    async def bench(ctx):
        status, irqs = CSR["STATUS"].offset, CSR["IRQ_STATUS"].offset
        await axil_write(ctx, dut.bus, CSR["CTRL"].offset, 0b101)   # start, irq enable
        assert strobes["start"] == 1
        ctx.set(dut.busy, 1)
        for _ in range(5):
            await ctx.tick()
        assert await axil_read(ctx, dut.bus, status) & 1 == 1
        # START while BUSY is ignored
        await axil_write(ctx, dut.bus, CSR["CTRL"].offset, 0b101)
        assert strobes["start"] == 1
        # the controller records an error during the run: held for it, hidden until done
        assert (ctx.get(dut.error_held), ctx.get(dut.error_held_index)) == (0, 0)
        ctx.set(dut.error_we, 1)
        ctx.set(dut.error_code, ErrorCode.DEADLOCK)
        ctx.set(dut.error_index, 7)
        await ctx.tick()
        ctx.set(dut.error_we, 0)
        ctx.set(dut.error_code, ErrorCode.NONE)
        ctx.set(dut.error_index, 0)
        assert (ctx.get(dut.error_held), ctx.get(dut.error_held_index)) == (1, 7)
        assert await axil_read(ctx, dut.bus, status) == 0b001
        assert await axil_read(ctx, dut.bus, CSR["ERROR_CODE"].offset) == 0
        assert await axil_read(ctx, dut.bus, CSR["ERROR_INDEX"].offset) == 0
        ctx.set(dut.busy, 0)
        ctx.set(dut.done, 1)
        await ctx.tick()
        ctx.set(dut.done, 0)
        assert ctx.get(dut.irq) == 1
        assert await axil_read(ctx, dut.bus, status) == 0b110
        assert await axil_read(ctx, dut.bus, CSR["ERROR_CODE"].offset) == ErrorCode.DEADLOCK.value
        assert await axil_read(ctx, dut.bus, CSR["ERROR_INDEX"].offset) == 7
        assert await axil_read(ctx, dut.bus, irqs) == 1
        await axil_write(ctx, dut.bus, irqs, 0)          # writing 0 does not clear
        assert await axil_read(ctx, dut.bus, irqs) == 1
        await axil_write(ctx, dut.bus, irqs, 1)          # write one to clear
        assert await axil_read(ctx, dut.bus, irqs) == 0
        assert ctx.get(dut.irq) == 0
        await axil_write(ctx, dut.bus, CSR["CTRL"].offset, 0b010)
        assert strobes["soft_reset"] == 1
        # a new START clears DONE, ERROR, ERROR_CODE and ERROR_INDEX
        await axil_write(ctx, dut.bus, CSR["CTRL"].offset, 0b001)
        assert await axil_read(ctx, dut.bus, status) == 0
        assert await axil_read(ctx, dut.bus, CSR["ERROR_CODE"].offset) == 0
        assert await axil_read(ctx, dut.bus, CSR["ERROR_INDEX"].offset) == 0
        assert (ctx.get(dut.error_held), ctx.get(dut.error_held_index)) == (0, 0)

    _run(dut, bench, watch)


def test_program_registers_hold_while_busy():
    """PROG_ADDR and PROG_LEN ignore writes while BUSY (answered OKAY), take them again after."""
    dut = CsrBlock(config=preset("tiny"))
    board = Scoreboard()

    async def bench(ctx):
        for reg in ("PROG_ADDR", "PROG_LEN"):
            await axil_write(ctx, dut.bus, CSR[reg].offset, 0x1234_5670)
            board.write(reg, 0x1234_5670, 0xF)
        ctx.set(dut.busy, 1)
        for reg in ("PROG_ADDR", "PROG_LEN"):
            await axil_write(ctx, dut.bus, CSR[reg].offset, 0xDEAD_BEE0)
            board.check(reg, await axil_read(ctx, dut.bus, CSR[reg].offset))
        assert (ctx.get(dut.prog_addr), ctx.get(dut.prog_len)) == (0x1234_5670, 0x1234_5670)
        ctx.set(dut.busy, 0)
        await axil_write(ctx, dut.bus, CSR["PROG_LEN"].offset, 0x0000_00A0, 0b0001)
        board.write("PROG_LEN", 0x0000_00A0, 0b0001)
        board.check("PROG_LEN", await axil_read(ctx, dut.bus, CSR["PROG_LEN"].offset))

    _run(dut, bench)
    assert not board.mismatches


def test_scoreboard_catches_a_write_taken_while_busy():
    """Expected fail: a reference that lets writes through while BUSY disagrees."""
    dut = CsrBlock(config=preset("tiny"))
    board = Scoreboard()

    async def bench(ctx):
        ctx.set(dut.busy, 1)
        await axil_write(ctx, dut.bus, CSR["PROG_ADDR"].offset, 0xDEAD_BEE0)
        board.write("PROG_ADDR", 0xDEAD_BEE0, 0xF)
        board.check("PROG_ADDR", await axil_read(ctx, dut.bus, CSR["PROG_ADDR"].offset))

    with pytest.raises(AssertionError, match="PROG_ADDR: read 0x00000000, expected 0xdeadbee0"):
        _run(dut, bench)
    assert board.mismatches


# -- write strobes --------------------------------------------------------------------------

def _strobe_bench(dut, board, strobes, *, rready_delay=0):
    """Write PROG_ADDR/PROG_LEN/CTRL with each strobe pattern, checking every readback."""
    async def bench(ctx):
        for reg in ("PROG_ADDR", "PROG_LEN"):
            await axil_write(ctx, dut.bus, CSR[reg].offset, 0xA5C3_E10F)
            board.write(reg, 0xA5C3_E10F, 0xF)
            for strb in strobes:
                value = 0x0102_0304 * (strb + 1) ^ 0xFFFF_FFFF
                await axil_write(ctx, dut.bus, CSR[reg].offset, value, strb)
                board.write(reg, value, strb)
                got = await axil_read(ctx, dut.bus, CSR[reg].offset, rready_delay=rready_delay)
                board.check(reg, got)
                assert ctx.get(dut.prog_addr if reg == "PROG_ADDR" else dut.prog_len) == got
        for value in (IRQ_ENABLE, 0):   # IRQ_ENABLE lives in lane 0
            for strb in strobes:
                await axil_write(ctx, dut.bus, CSR["CTRL"].offset, value, strb)
                board.write("CTRL", value, strb)
                board.check("CTRL", await axil_read(ctx, dut.bus, CSR["CTRL"].offset))
    return bench


@pytest.mark.parametrize("strobes", [[0b0001], [0b0010], [0b0100], [0b1000], [0b0000],
                                     list(range(16))],
                         ids=["lane0", "lane1", "lane2", "lane3", "none", "all-patterns"])
def test_partial_strobe_writes(strobes):
    dut = CsrBlock(config=preset("tiny"))
    board = Scoreboard()
    _run(dut, _strobe_bench(dut, board, strobes, rready_delay=2))
    assert not board.mismatches


def test_scoreboard_catches_a_block_that_ignores_strobes():
    """Expected fail: a model of full-word writes (the old behaviour) disagrees with the RTL."""
    dut = CsrBlock(config=preset("tiny"))
    board = Scoreboard(rule=lambda old, new, strb: new)
    with pytest.raises(AssertionError, match="PROG_ADDR: read"):
        _run(dut, _strobe_bench(dut, board, [0b0010]))
    assert board.mismatches


def test_scoreboard_catches_one_wrong_byte():
    """Expected fail: one corrupted expected byte is caught."""
    dut = CsrBlock(config=preset("tiny"))
    board = Scoreboard(rule=lambda old, new, strb: merge(old, new, strb) ^ (0x100 if strb == 5
                                                                            else 0))
    with pytest.raises(AssertionError, match="expected"):
        _run(dut, _strobe_bench(dut, board, [1, 5, 15]))
    assert len(board.mismatches) == 1


def test_strobe_and_w1c_fields_act_only_with_their_lane():
    dut = CsrBlock(config=preset("tiny"))
    seen, watch = _strobe_counter(dut)

    async def bench(ctx):
        ctrl, irqs = CSR["CTRL"].offset, CSR["IRQ_STATUS"].offset
        everything = 0xFFFF_FFFF
        for strb in (0b0000, 0b0010, 0b0100, 0b1000, 0b1110):   # lane 0 clear: no action
            await axil_write(ctx, dut.bus, ctrl, everything, strb)
        assert seen == {"start": 0, "soft_reset": 0}
        await axil_write(ctx, dut.bus, ctrl, SOFT_RESET | 0xFFFF_FF00, 0b0001)
        assert seen == {"start": 0, "soft_reset": 1}
        await axil_write(ctx, dut.bus, ctrl, START, 0b0001)
        assert seen == {"start": 1, "soft_reset": 1}
        ctx.set(dut.done, 1)
        await ctx.tick()
        ctx.set(dut.done, 0)
        for strb in (0b0000, 0b0010, 0b0100, 0b1000, 0b1110):   # w1c without its lane
            await axil_write(ctx, dut.bus, irqs, everything, strb)
            assert await axil_read(ctx, dut.bus, irqs) == 1
        await axil_write(ctx, dut.bus, irqs, 0xFFFF_FF00, 0b0001)   # lane 0, bit 0 clear
        assert await axil_read(ctx, dut.bus, irqs) == 1
        await axil_write(ctx, dut.bus, irqs, 1, 0b0001)
        assert await axil_read(ctx, dut.bus, irqs) == 0

    _run(dut, bench, watch)


def test_random_writes_and_reads_against_the_reference():
    rng = random.Random(7)
    dut = CsrBlock(config=preset("icebreaker"))
    board = Scoreboard()

    async def bench(ctx):
        for _ in range(150):
            reg = rng.choice(["PROG_ADDR", "PROG_LEN", "CTRL"])
            if rng.random() < 0.6:
                value, strb = rng.getrandbits(32) & ~(START | SOFT_RESET), rng.getrandbits(4)
                await axil_write(ctx, dut.bus, CSR[reg].offset, value, strb)
                board.write(reg, value, strb)
            else:
                got = await axil_read(ctx, dut.bus, CSR[reg].offset,
                                      rready_delay=rng.randrange(3))
                board.check(reg, got)

    _run(dut, bench)
    assert not board.mismatches


# -- performance counters -------------------------------------------------------------------

def test_distinguishing_bits():
    assert distinguishing_bits([8], range(9), 4) == 0b1000
    assert distinguishing_bits(range(16, 25), range(12), 6) == 0b10000
    mask = distinguishing_bits([0], range(9), 4)
    assert all((x & mask) != 0 for x in range(1, 9))


@pytest.mark.parametrize("perf", [True, False])
def test_perf_counters(perf):
    config = preset("tiny").replace(perf_counters=perf)
    dut = CsrBlock(config=config)

    async def bench(ctx):
        await axil_write(ctx, dut.bus, CSR["CTRL"].offset, 1)
        ctx.set(dut.busy, 1)
        for n in range(12):
            for i, event in enumerate(PERF_EVENTS.values()):
                ctx.set(getattr(dut.events, event), (n % (i + 2)) == 0)
            await ctx.tick()
        ctx.set(dut.busy, 0)
        ctx.set(dut.events.as_value(), 0)
        await ctx.tick()
        expect = {reg: sum((n % (i + 2)) == 0 for n in range(12))
                  for i, reg in enumerate(PERF_EVENTS)}
        expect["PERF_CYCLES"] = 12
        for reg, want in expect.items():
            got = await axil_read(ctx, dut.bus, CSR[reg].offset)
            assert got == (want if perf else 0), (reg, got, want)

    _run(dut, bench)


def _perf_run(cycles, seed, corrupt=None):
    """Random events for ``cycles`` cycles with counter reads while counting; every read
    is compared with the count of events before its address handshake."""
    rng = random.Random(seed)
    dut = CsrBlock(config=preset("icebreaker").replace(perf_counters=True))
    count = dict.fromkeys(PERF_REGS, 0)
    snapshots = []
    waits = [0]

    async def model(ctx):
        async for _, _, busy, events, arvalid, arready in ctx.tick().sample(
                dut.busy, dut.events.as_value(), dut.bus.arvalid, dut.bus.arready):
            if arvalid and arready:
                snapshots.append(dict(count))
                waits.append(0)
            elif arvalid:
                waits[-1] += 1
            if busy:
                count["PERF_CYCLES"] += 1
                for i, reg in enumerate(PERF_EVENTS):
                    count[reg] += events >> i & 1

    events = random.Random(seed + 1)

    async def drive(ctx):
        async for _ in ctx.tick():
            ctx.set(dut.events.as_value(), events.getrandbits(len(PERF_EVENTS)))

    async def bench(ctx):
        await axil_write(ctx, dut.bus, CSR["CTRL"].offset, START)
        ctx.set(dut.busy, 1)
        done = 0
        while done < cycles:
            reg = rng.choice(PERF_REGS)
            before = len(snapshots)
            got = await axil_read(ctx, dut.bus, CSR[reg].offset)
            want = snapshots[before][reg] + (corrupt == reg)
            assert got == want, f"{reg}: read {got}, expected {want}"
            done += 1
            for _ in range(rng.randrange(20)):
                await ctx.tick()
        ctx.set(dut.busy, 0)
        await ctx.tick()
        for reg in PERF_REGS:
            got = await axil_read(ctx, dut.bus, CSR[reg].offset)
            assert got == count[reg] + (corrupt == reg), f"{reg}: read {got}"
        assert count["PERF_CYCLES"] > 16 * 8   # every counter carried out of its low bits
        assert min(count.values()) > 16 * 4

    _run(dut, bench, model, drive)
    print(f"counter reads: ARVALID to ARREADY waited at most {max(waits)} cycles")


def test_perf_counters_carry_through_the_ring_while_read():
    _perf_run(40, seed=3)


def test_perf_scoreboard_catches_a_wrong_count():
    """Expected fail: an expected count off by one is caught."""
    with pytest.raises(AssertionError, match="PERF_STALL_DMA: read"):
        _perf_run(40, seed=3, corrupt="PERF_STALL_DMA")


def test_perf_counters_component_checks_its_count():
    with pytest.raises(ValueError, match="count must be an integer in 1..32, not 0"):
        PerfCounters(count=0)
