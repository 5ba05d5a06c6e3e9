"""The CSR block in Amaranth simulation: every register of the map, access kinds, w1c."""

import pytest
from amaranth.sim import Simulator

from systolic.config import preset
from systolic.csr import CSR, CSR_MAP, id_words
from systolic.isa import ErrorCode
from systolic.rtl.csr import PERF_EVENTS, CsrBlock


async def axil_read(ctx, bus, addr):
    ctx.set(bus.araddr, addr)
    ctx.set(bus.arvalid, 1)
    ctx.set(bus.rready, 1)
    for _ in range(10):
        await ctx.tick()
        if ctx.get(bus.rvalid):
            break
        ctx.set(bus.arvalid, 0)
    else:
        raise AssertionError(f"read of 0x{addr:02x} not answered")
    ctx.set(bus.arvalid, 0)
    data, resp = ctx.get(bus.rdata), ctx.get(bus.rresp)
    await ctx.tick()
    ctx.set(bus.rready, 0)
    assert resp == 0
    return data


async def axil_write(ctx, bus, addr, value):
    ctx.set(bus.awaddr, addr)
    ctx.set(bus.wdata, value)
    ctx.set(bus.wstrb, 0xF)
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


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


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


def test_rw_registers_ctrl_and_unmapped():
    dut = CsrBlock(config=preset("tiny"))

    async def bench(ctx):
        for reg in ("PROG_ADDR", "PROG_LEN"):
            await axil_write(ctx, dut.bus, CSR[reg].offset, 0x1234_5670)
            assert await axil_read(ctx, dut.bus, CSR[reg].offset) == 0x1234_5670
        assert ctx.get(dut.prog_addr) == 0x1234_5670
        # unmapped offsets read as zero and never hang
        mapped = {reg.offset for reg in CSR_MAP}
        for off in range(0, 256, 4):
            if off not in mapped:
                await axil_write(ctx, dut.bus, off, 0xFFFF_FFFF)
                assert await axil_read(ctx, dut.bus, off) == 0
        # IRQ_ENABLE reads back; START and SOFT_RESET read as zero
        await axil_write(ctx, dut.bus, CSR["CTRL"].offset, 0b111)
        assert await axil_read(ctx, dut.bus, CSR["CTRL"].offset) == 0b100

    _run(dut, bench)


def test_start_done_error_irq_w1c():
    dut = CsrBlock(config=preset("tiny"))
    strobes = {"start": 0, "soft_reset": 0}

    async def watch(ctx):
        async for _, _, start, soft in ctx.tick().sample(dut.start, dut.soft_reset):
            strobes["start"] += start
            strobes["soft_reset"] += soft

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
        ctx.set(dut.busy, 0)
        ctx.set(dut.done, 1)
        ctx.set(dut.error_code, ErrorCode.DEADLOCK)
        ctx.set(dut.error_index, 7)
        await ctx.tick()
        ctx.set(dut.done, 0)
        ctx.set(dut.error_code, ErrorCode.NONE)
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
        # a new START clears DONE and ERROR
        await axil_write(ctx, dut.bus, CSR["CTRL"].offset, 0b001)
        assert await axil_read(ctx, dut.bus, status) == 0

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(watch)
    sim.add_testbench(bench)
    sim.run()


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
