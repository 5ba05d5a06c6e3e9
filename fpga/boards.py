"""Board tops: the accelerator, on-chip system memory and the UART host bridge on a board.

:class:`System` is the board-independent part (a :class:`wiring.Component` with the UART
lines and status outputs); :class:`ICEBreakerTop` and :class:`ULX3STop` add the board's
clock (through a PLL when the target differs from the oscillator), reset, UART pins and
LEDs. ``BOARDS`` describes each board for :mod:`systolic.fpga.build`.
"""

from dataclasses import dataclass

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    Const,
    Elaboratable,
    Instance,
    Module,
    ResetSignal,
    Signal,
)
from amaranth.lib import io, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from systolic.config import AcceleratorConfig

from ..rtl.axi import flat_interface
from .bridge import AXIL_SIGNATURE, Bridge
from .sysmem import SystemMemory, ram_signature

__all__ = ["System", "Spram", "ice40_pll_params", "ecp5_pll_params", "ICEBreakerTop",
           "ULX3STop", "Board", "BOARDS", "uart_divisor"]

MHZ = 1_000_000


def uart_divisor(clock_hz, baud):
    """Clock cycles per UART bit, checked to be within 2% of ``baud``."""
    divisor = round(clock_hz / baud)
    if divisor < 4 or abs(clock_hz / divisor - baud) > 0.02 * baud:
        raise ValueError(f"baud rate {baud} cannot be made from a {clock_hz / MHZ:g} MHz clock "
                         f"within 2% (divisor {divisor})")
    return divisor


# -- memories ----------------------------------------------------------------------------

class Spram(wiring.Component):
    """System-memory RAM from iCE40UP5K SPRAM: SB_SPRAM256KA pairs, 16K rows of 32 bits each.

    On an iCE40 platform it instantiates the primitives; without a platform (simulation)
    it is a :class:`~amaranth.lib.memory.Memory` with the same timing (read data one cycle
    after ``re``, held while neither ``re`` nor ``we`` is set).

    Parameters
    ----------
    width : int
        32 (two 16-bit SPRAMs side by side).
    depth : int
        16384 or 32768 rows (one or two pairs; the UP5K has four SPRAMs).
    """

    ROWS = 16384

    def __init__(self, *, width, depth):
        if width != 32:
            raise ValueError(f"Spram width must be 32, not {width!r}")
        if depth not in (self.ROWS, 2 * self.ROWS):
            raise ValueError(f"Spram depth must be {self.ROWS} or {2 * self.ROWS}, not {depth!r}")
        self.width, self.depth = width, depth
        super().__init__(ram_signature(width=width, depth=depth))

    def elaborate(self, platform):
        m = Module()
        if platform is None:
            mem = Memory(shape=self.width, depth=self.depth, init=[])
            m.submodules.memory = mem
            rd, wr = mem.read_port(), mem.write_port(granularity=8)
            m.d.comb += [rd.addr.eq(self.addr), rd.en.eq(self.re), self.rdata.eq(rd.data),
                         wr.addr.eq(self.addr), wr.en.eq(self.we), wr.data.eq(self.wdata)]
            return m
        banks = self.depth // self.ROWS
        bank = Signal(range(max(2, banks)))
        if banks > 1:
            with m.If(self.re):
                m.d.sync += bank.eq(self.addr[14:])
        for b in range(banks):
            select = (self.addr[14:] == b) if banks > 1 else Const(1, 1)
            data = Signal(32, name=f"rdata{b}")
            for half in range(2):
                mask = self.we[2 * half:2 * half + 2]
                m.submodules[f"spram{b}_{half}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=self.addr[:14], i_DATAIN=self.wdata[16 * half:16 * half + 16],
                    i_MASKWREN=Const(0, 4) | mask[0].replicate(2) | mask[1].replicate(2) << 2,
                    i_WREN=mask.any(), i_CHIPSELECT=select & (self.re | mask.any()),
                    i_CLOCK=ClockSignal(), i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,
                    o_DATAOUT=data[16 * half:16 * half + 16])
            with m.If(bank == b):
                m.d.comb += self.rdata.eq(data)
        return m


# -- the board-independent system --------------------------------------------------------

class System(wiring.Component):
    """Accelerator, system memory and UART bridge in one clock domain.

    The bridge reaches system memory through its word port and the accelerator's CSRs
    through AXI4-Lite (CSR addresses are taken modulo the CSR block's address space);
    the accelerator reaches system memory through its AXI4 master.

    Parameters
    ----------
    config : AcceleratorConfig or None
        The accelerator; ``None`` builds the bridge and memory alone (the CSR bus then
        answers every access with an error), to bring up a board's link.
    divisor : int
        UART clock cycles per bit.
    mem_size : int
        System memory bytes (a power of two).
    ram : callable, optional
        RAM factory for :class:`SystemMemory` (e.g. :class:`Spram`).

    Attributes
    ----------
    rx : In(1)
        UART line from the host.
    tx : Out(1)
        UART line to the host.
    irq : Out(1)
        The accelerator's interrupt (program finished, when enabled).
    active : Out(1)
        The accelerator has an AXI4 transfer in progress this cycle.
    link_error : Out(1)
        High for one cycle when the bridge sees a UART framing error.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    irq: Out(1)
    active: Out(1)
    link_error: Out(1)

    def __init__(self, *, config, divisor, mem_size, ram=None, multiplier="generic"):
        if config is not None and not isinstance(config, AcceleratorConfig):
            raise TypeError(f"System config must be an AcceleratorConfig or None, "
                            f"not {config!r}")
        self.config = config
        self.divisor, self.mem_size = divisor, mem_size
        self.bridge = Bridge(divisor=divisor)
        data_width = 32 if config is None else config.axi_data_width
        id_width = 4 if config is None else config.axi_id_width
        self.sysmem = SystemMemory(size=mem_size, data_width=data_width, id_width=id_width,
                                   ram=ram)
        self.accelerator = None
        if config is not None:
            from ..rtl.top import Accelerator
            self.accelerator = Accelerator(config, multiplier=multiplier)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = self.bridge
        m.submodules.sysmem = sysmem = self.sysmem
        wiring.connect(m, bridge.mem, sysmem.bridge)
        m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx)]
        errors = Signal.like(bridge.framing_errors)
        m.d.sync += errors.eq(bridge.framing_errors)
        m.d.comb += self.link_error.eq(errors != bridge.framing_errors)
        host = flat_interface(bridge, "m_axil", Out(AXIL_SIGNATURE))
        if self.accelerator is None:
            self._no_csrs(m, host)
            return m

        m.submodules.accelerator = acc = self.accelerator
        # AXI4: accelerator master -> system memory slave, member by member
        for name, member in sysmem.axi_signature.members.items():
            ours, theirs = getattr(acc, f"m_axi_{name}"), getattr(sysmem, f"s_axi_{name}")
            if member.flow == Out:
                m.d.comb += theirs.eq(ours)
            else:
                m.d.comb += ours.eq(theirs)
        # AXI4-Lite: bridge master -> accelerator CSR slave (address truncated)
        for name, member in AXIL_SIGNATURE.members.items():
            ours, theirs = getattr(host, name), getattr(acc, f"s_axil_{name}")
            if member.flow == Out:
                m.d.comb += theirs.eq(ours)
            else:
                m.d.comb += ours.eq(theirs)
        m.d.comb += [
            self.irq.eq(acc.irq),
            self.active.eq(acc.m_axi_arvalid | acc.m_axi_rvalid | acc.m_axi_wvalid
                           | acc.m_axi_bvalid),
        ]
        return m

    @staticmethod
    def _no_csrs(m, host):
        """Answer every CSR access with SLVERR (no accelerator present)."""
        with m.FSM():
            with m.State("IDLE"):
                with m.If(host.arvalid):
                    m.d.comb += host.arready.eq(1)
                    m.next = "R"
                with m.Elif(host.awvalid & host.wvalid):
                    m.d.comb += [host.awready.eq(1), host.wready.eq(1)]
                    m.next = "B"
            with m.State("R"):
                m.d.comb += [host.rvalid.eq(1), host.rresp.eq(0b10)]
                with m.If(host.rready):
                    m.next = "IDLE"
            with m.State("B"):
                m.d.comb += [host.bvalid.eq(1), host.bresp.eq(0b10)]
                with m.If(host.bready):
                    m.next = "IDLE"


# -- PLLs ---------------------------------------------------------------------------------

def ice40_pll_params(fin_hz, fout_hz):
    """SB_PLL40 divider settings (SIMPLE feedback) closest to ``fout_hz``.

    Returns a dict with ``DIVR``, ``DIVF``, ``DIVQ``, ``FILTER_RANGE`` and the achieved
    ``freq`` in Hz. Ranges: PFD 10..133 MHz, VCO 533..1066 MHz.
    """
    best = None
    for divr in range(16):
        pfd = fin_hz / (divr + 1)
        if not 10 * MHZ <= pfd <= 133 * MHZ:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533 * MHZ <= vco <= 1066 * MHZ:
                continue
            for divq in range(1, 7):
                out = vco / 2 ** divq
                if best is None or abs(out - fout_hz) < abs(best["freq"] - fout_hz):
                    filt = next(i + 1 for i, lim in enumerate((17, 26, 44, 66, 101, 1e9))
                                if pfd < lim * MHZ)
                    best = {"DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filt,
                            "freq": out}
    if best is None:
        raise ValueError(f"no iCE40 PLL setting makes {fout_hz / MHZ:g} MHz "
                         f"from {fin_hz / MHZ:g} MHz")
    return best


def ecp5_pll_params(fin_hz, fout_hz):
    """EHXPLLL divider settings (CLKOP feedback) closest to ``fout_hz``.

    Returns a dict with ``CLKI_DIV``, ``CLKFB_DIV``, ``CLKOP_DIV`` and the achieved
    ``freq`` in Hz. Ranges: PFD 3.125..400 MHz, VCO 400..800 MHz.
    """
    best = None
    for clki in range(1, 129):
        pfd = fin_hz / clki
        if not 3.125 * MHZ <= pfd <= 400 * MHZ:
            continue
        for clkfb in range(1, 81):
            out = pfd * clkfb
            for clkop in range(1, 129):
                if not 400 * MHZ <= out * clkop <= 800 * MHZ:
                    continue
                if best is None or abs(out - fout_hz) < abs(best["freq"] - fout_hz):
                    best = {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop,
                            "freq": out}
    if best is None:
        raise ValueError(f"no ECP5 PLL setting makes {fout_hz / MHZ:g} MHz "
                         f"from {fin_hz / MHZ:g} MHz")
    return best


def _reset_after_lock(m, lock, cycles=1024):
    """Hold the ``sync`` reset until the PLL locked and ``cycles`` clocks passed (which
    also covers the iCE40 block RAMs' 3 us of reading zeros after configuration)."""
    count = Signal(range(cycles + 1))
    locked = Signal()
    m.domains.pll_por = ClockDomain(reset_less=True)
    m.d.comb += ClockSignal("pll_por").eq(ClockSignal())
    m.d.pll_por += locked.eq(lock)
    with m.If(~locked):
        m.d.pll_por += count.eq(0)
    with m.Elif(count != cycles):
        m.d.pll_por += count.eq(count + 1)
    m.d.comb += ResetSignal().eq(count != cycles)


# -- board tops ---------------------------------------------------------------------------

class _BoardTop(Elaboratable):
    """Common part of the board tops: the system, its clock and its pins."""

    osc_hz = None
    multiplier = "generic"   # the array's multiplier primitive on this board

    def __init__(self, *, config, target_hz, baud=1_000_000, mem_size=64 * 1024):
        self.config, self.target_hz, self.baud, self.mem_size = config, target_hz, baud, mem_size
        self.clock_hz = self._clock(target_hz)
        self.divisor = uart_divisor(self.clock_hz, baud)

    def _clock(self, target_hz):
        return target_hz

    def _system(self, ram=None):
        return System(config=self.config, divisor=self.divisor, mem_size=self.mem_size, ram=ram,
                      multiplier=self.multiplier)


class ICEBreakerTop(_BoardTop):
    """iCEBreaker (iCE40UP5K): 12 MHz oscillator, SB_PLL40_PAD to the target clock when it
    is not 12 MHz, system memory in SPRAM, UART on the FTDI's second channel, red LED:
    accelerator busy (AXI activity, stretched), green LED: interrupt (program done).
    """

    osc_hz = 12 * MHZ
    multiplier = "ice40"     # SB_MAC16 in dual 8x8 mode: two PEs per DSP block

    def _clock(self, target_hz):
        if target_hz == self.osc_hz:
            return target_hz
        return ice40_pll_params(self.osc_hz, target_hz)["freq"]

    def elaborate(self, platform):
        m = Module()
        if self.clock_hz != self.osc_hz:
            p = ice40_pll_params(self.osc_hz, self.target_hz)
            clk12 = platform.request("clk12", dir="-")
            m.domains.sync = ClockDomain()
            lock, clk = Signal(), Signal()
            m.d.comb += ClockSignal().eq(clk)
            m.submodules.pll = Instance(
                "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_DIVR=p["DIVR"], p_DIVF=p["DIVF"],
                p_DIVQ=p["DIVQ"], p_FILTER_RANGE=p["FILTER_RANGE"],
                i_PACKAGEPIN=clk12.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=clk, o_LOCK=lock)
            platform.add_clock_constraint(clk, self.clock_hz)
            _reset_after_lock(m, lock)
        depth = self.mem_size // 4
        m.submodules.system = system = self._system(ram=Spram if depth >= Spram.ROWS else None)
        uart = platform.request("uart", 0, dir="-")
        m.d.comb += [system.rx.eq(_pin(m, "uart_rx", "i", uart.rx).i),
                     _pin(m, "uart_tx", "o", uart.tx).o.eq(system.tx)]
        busy = _stretch(m, system.active, self.clock_hz)
        m.d.comb += [_pin(m, "led_r", "o", platform.request("led_r", 0, dir="-")).o.eq(busy),
                     _pin(m, "led_g", "o", platform.request("led_g", 0, dir="-")).o.eq(
                         system.irq)]
        return m


class ULX3STop(_BoardTop):
    """ULX3S (ECP5-85F): 25 MHz oscillator, EHXPLLL to the target clock, system memory in
    block RAM, UART on the FTDI, LED 0: busy, LED 1: interrupt, LED 7: UART framing error."""

    osc_hz = 25 * MHZ

    def _clock(self, target_hz):
        if target_hz == self.osc_hz:
            return target_hz
        return ecp5_pll_params(self.osc_hz, target_hz)["freq"]

    def elaborate(self, platform):
        m = Module()
        if self.clock_hz != self.osc_hz:
            p = ecp5_pll_params(self.osc_hz, self.target_hz)
            clk25 = _pin(m, "clk25", "i", platform.request("clk25", 0, dir="-")).i
            m.domains.sync = ClockDomain()
            lock, clk = Signal(), Signal()
            m.d.comb += ClockSignal().eq(clk)
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{self.osc_hz / MHZ:g}",
                a_FREQUENCY_PIN_CLKOP=f"{self.clock_hz / MHZ:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"],
                p_CLKOP_DIV=p["CLKOP_DIV"], p_CLKOP_CPHASE=p["CLKOP_DIV"] - 1,
                p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                i_RST=0, i_STDBY=0, i_CLKI=clk25, i_CLKFB=clk, o_CLKOP=clk,
                i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
                i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=lock)
            platform.add_clock_constraint(clk, self.clock_hz)
            _reset_after_lock(m, lock)
        m.submodules.system = system = self._system()
        uart = platform.request("uart", 0, dir="-")
        m.d.comb += [system.rx.eq(_pin(m, "uart_rx", "i", uart.rx).i),
                     _pin(m, "uart_tx", "o", uart.tx).o.eq(system.tx)]
        link = _stretch(m, system.link_error, self.clock_hz)
        busy = _stretch(m, system.active, self.clock_hz)
        for index, value in ((0, busy), (1, system.irq), (7, link)):
            led = _pin(m, f"led{index}", "o", platform.request("led", index, dir="-"))
            m.d.comb += led.o.eq(value)
        return m


def _pin(m, name, direction, port):
    """A buffer of ``direction`` on a raw platform ``port``, added to ``m``."""
    m.submodules[f"{name}_buffer"] = buffer = io.Buffer(direction, port)
    return buffer


def _stretch(m, pulse, clock_hz, seconds=0.05):
    """A signal that stays high ``seconds`` after the last cycle ``pulse`` was high."""
    cycles = int(clock_hz * seconds)
    count = Signal(range(cycles + 1))
    with m.If(pulse):
        m.d.sync += count.eq(cycles)
    with m.Elif(count != 0):
        m.d.sync += count.eq(count - 1)
    return count != 0


# -- board table ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Board:
    """A supported board: its top, platform class name, default preset and clock."""
    name: str
    top: type
    platform: str
    device: str
    preset: str
    target_mhz: float
    family: str
    luts_available: int
    dsps_available: int
    brams_available: int

    def make_platform(self):
        import amaranth_boards.icebreaker as ice
        import amaranth_boards.ulx3s as ulx
        return {"ICEBreakerPlatform": ice.ICEBreakerPlatform,
                "ULX3S_85F_Platform": ulx.ULX3S_85F_Platform}[self.platform]()


BOARDS = {
    "icebreaker": Board("icebreaker", ICEBreakerTop, "ICEBreakerPlatform", "iCE40UP5K-SG48",
                        "icebreaker", 12.0, "ice40", 5280, 8, 30),
    "ulx3s": Board("ulx3s", ULX3STop, "ULX3S_85F_Platform", "LFE5U-85F-6BG381C",
                   "ulx3s", 40.0, "ecp5", 83640, 156, 208),
}
