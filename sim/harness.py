"""Run programs on the accelerator RTL from cocotb: the bench, the runtime's RTL backend.

:class:`AcceleratorTB` wraps a Verilated ``Accelerator``: a clock, the reset, a
cocotbext-axi RAM on the ``m_axi`` master (accesses past the program's memory image get
SLVERR, like the golden model's AXI_ERROR), an AXI4-Lite master on ``s_axil``, and
optional random back-pressure on every AXI channel. :meth:`AcceleratorTB.run_program`
loads an image, starts the program through the CSRs and sleeps until the interrupt, so
Python wakes only when something happens.
"""

import logging
import random

from cocotb.clock import Clock
from cocotb.triggers import First, RisingEdge, Timer
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster
from cocotbext.axi.axi_ram import AxiRamRead, AxiRamWrite
from cocotbext.axi.memory import Memory

from systolic.csr import (
    CSR,
    CSR_MAP,
    CTRL_IRQ_ENABLE,
    CTRL_SOFT_RESET,
    CTRL_START,
    IRQ_DONE,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
    STATUS_RESETTING,
)

__all__ = ["AcceleratorTB", "CheckedAxiRam", "RunTimeout", "ScoreboardError", "check_run",
           "CTRL_START", "CTRL_SOFT_RESET", "CTRL_IRQ_ENABLE", "STATUS_BUSY",
           "STATUS_DONE", "STATUS_ERROR", "STATUS_RESETTING"]


class RunTimeout(AssertionError):
    """The interrupt did not come within the cycle budget (the CSRs are in the message)."""


class _Window:
    """Mixin: accesses at or past ``limit``, or inside an error range, fail (SLVERR)."""

    def _check(self, address, length):
        owner = self.owner
        if address + length > owner.limit or any(
                address < hi and lo < address + length for lo, hi in owner.error_ranges):
            owner.faults += 1
            raise ValueError(f"AXI access 0x{address:x}+{length} outside the memory")


class _Read(_Window, AxiRamRead):
    async def _read(self, address, length):
        self._check(address, length)
        return self.read(address, length)


class _Write(_Window, AxiRamWrite):
    async def _write(self, address, data):
        self._check(address, len(data))
        self.write(address, data)


class CheckedAxiRam(Memory):
    """An AXI4 RAM whose accesses past ``limit`` (or in ``error_ranges``) answer SLVERR.

    Parameters
    ----------
    bus : AxiBus
    clock, reset : cocotb handles
    size : int
        Bytes of backing store; ``limit`` starts there and can be lowered per program.
    """

    def __init__(self, bus, clock, reset=None, *, size):
        super().__init__(size, bytearray(size))
        self.limit = size
        self.error_ranges = []
        self.faults = 0
        self.write_if = _Write(bus.write, clock, reset, mem=self.mem)
        self.read_if = _Read(bus.read, clock, reset, mem=self.mem)
        self.write_if.owner = self.read_if.owner = self

    @property
    def channels(self):
        """The five AXI channel models (each has a ``pause`` attribute)."""
        w, r = self.write_if, self.read_if
        return [w.aw_channel, w.w_channel, w.b_channel, r.ar_channel, r.r_channel]


class AcceleratorTB:
    """Clock, reset, system memory and CSR access around a Verilated ``Accelerator``.

    Parameters
    ----------
    dut : cocotb handle of the ``accelerator`` top
    config : AcceleratorConfig
    mem_size : int
        Bytes of system memory behind ``m_axi``.
    period_ns : int
        Clock period.
    """

    def __init__(self, dut, config, *, mem_size=1 << 20, period_ns=10):
        if mem_size <= 0:
            raise ValueError(f"mem_size must be positive, not {mem_size}")
        self.dut = dut
        self.config = config
        self.period = period_ns
        for bus in ("m_axi", "s_axil"):     # the bus models log every burst at INFO
            logging.getLogger(f"cocotb.{dut._name}.{bus}").setLevel(logging.WARNING)
        Clock(dut.clk, period_ns, unit="ns").start()
        self.ram = CheckedAxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst,
                                 size=mem_size)
        self.csr = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        self._pause_tasks = []
        self.runs = 0

    # -- clock and reset -------------------------------------------------------------------

    async def cycles(self, n):
        """Sleep ``n`` clock cycles in one timer (no per-cycle wake-up)."""
        await Timer(n * self.period, unit="ns")

    async def reset(self, cycles=8):
        """Hold the hardware reset for ``cycles`` clock cycles."""
        self.dut.rst.value = 1
        await self.cycles(cycles)
        await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await self.cycles(2)

    def set_backpressure(self, probability, seed=0, max_run=16):
        """Pause every AXI channel at random: each channel stalls with ``probability`` for
        runs of 1..``max_run`` cycles (0 turns back-pressure off)."""
        import cocotb

        for task in self._pause_tasks:
            task.cancel()
        self._pause_tasks = []
        for ch in self.ram.channels:
            ch.pause = False
        if probability <= 0:
            return
        rng = random.Random(seed)
        for ch in self.ram.channels:
            self._pause_tasks.append(cocotb.start_soon(
                self._pause(ch, random.Random(rng.random()), probability, max_run)))

    async def _pause(self, channel, rng, probability, max_run):
        while True:
            channel.pause = rng.random() < probability
            await self.cycles(rng.randint(1, max_run))

    # -- CSRs ------------------------------------------------------------------------------

    async def read_csr(self, name):
        return await self.csr.read_dword(CSR[name].offset)

    async def write_csr(self, name, value):
        await self.csr.write_dword(CSR[name].offset, value)

    async def read_csrs(self):
        """Every readable CSR (perf counters only with ``perf_counters``) as a dict."""
        out = {}
        for reg in CSR_MAP:
            if reg.access == "wo" or (reg.perf and not self.config.perf_counters):
                continue
            out[reg.name] = await self.csr.read_dword(reg.offset)
        return out

    async def wait_idle(self, timeout_cycles=100_000, poll=64):
        """Poll STATUS (every ``poll`` cycles) until neither BUSY nor RESETTING."""
        for _ in range(max(1, timeout_cycles // poll)):
            status = await self.read_csr("STATUS")
            if not status & (STATUS_BUSY | STATUS_RESETTING):
                return status
            await self.cycles(poll)
        raise RunTimeout(f"still busy after {timeout_cycles} cycles: {await self.read_csrs()}")

    async def soft_reset(self, timeout_cycles=100_000):
        """CTRL.SOFT_RESET, then wait until the device is idle again."""
        await self.write_csr("CTRL", CTRL_SOFT_RESET)
        return await self.wait_idle(timeout_cycles)

    # -- programs --------------------------------------------------------------------------

    def load_image(self, image, error_ranges=()):
        """Copy ``image`` to address 0; accesses past its end answer SLVERR."""
        if len(image) > self.ram.size:
            raise ValueError(f"memory image of {len(image)} bytes exceeds the "
                             f"{self.ram.size}-byte RAM")
        self.ram.mem[:len(image)] = image
        self.ram.limit = len(image)
        self.ram.error_ranges = [tuple(r) for r in error_ranges]

    async def start(self, prog_addr, prog_len):
        """Clear the interrupt, write PROG_ADDR/PROG_LEN and start with the interrupt on."""
        await self.write_csr("IRQ_STATUS", IRQ_DONE)
        await self.write_csr("PROG_ADDR", prog_addr)
        await self.write_csr("PROG_LEN", prog_len)
        await self.write_csr("CTRL", CTRL_IRQ_ENABLE | CTRL_START)

    async def wait_irq(self, timeout_cycles):
        """Sleep until the interrupt rises; :class:`RunTimeout` after ``timeout_cycles``."""
        if int(self.dut.irq.value):
            return
        timer = Timer(timeout_cycles * self.period, unit="ns")
        fired = await First(RisingEdge(self.dut.irq), timer)
        if fired is timer:
            raise RunTimeout(f"no interrupt within {timeout_cycles} cycles; CSRs: "
                             f"{await self.read_csrs()}")

    async def run_program(self, memory_image, prog_addr, prog_len, timeout_cycles=200_000,
                          *, error_ranges=()):
        """Run one program to its interrupt.

        Returns
        -------
        (bytes, dict)
            System memory (the image's length) after the run, and the CSRs (STATUS,
            ERROR_CODE, ERROR_INDEX, the perf counters ...).
        """
        self.load_image(memory_image, error_ranges)
        await self.start(prog_addr, prog_len)
        await self.wait_irq(timeout_cycles)
        csrs = await self.read_csrs()
        await self.write_csr("IRQ_STATUS", IRQ_DONE)
        self.runs += 1
        return bytes(self.ram.mem[:len(memory_image)]), csrs


# -- scoreboard ----------------------------------------------------------------------------

class ScoreboardError(AssertionError):
    """The RTL's result differs from the golden model's."""


def check_run(expected, memory, csrs, *, image=None, what="program"):
    """Compare one RTL run with the golden model's :class:`~systolic.model.RunResult`.

    Error code and index always; after an AXI error nothing else (memory is then
    implementation-defined); otherwise system memory byte for byte, STATUS (done, error,
    accumulator overflow) and, with perf counters, instructions retired and MAC-busy
    cycles (one per input row the array accepted). Raises :class:`ScoreboardError` with
    the first differences.
    """
    from systolic.isa import ErrorCode

    problems = []
    got = (csrs["ERROR_CODE"], csrs["ERROR_INDEX"])
    want = (expected.error.value, expected.error_index)
    if got != want:
        name = ErrorCode(got[0]).name if got[0] in ErrorCode._value2member_map_ else got[0]
        problems.append(f"error {name}@{got[1]}, expected {expected.error.name}@{want[1]}")
    status = csrs["STATUS"]
    if not status & STATUS_DONE or status & STATUS_BUSY:
        problems.append(f"STATUS 0x{status:x}: not done, or still busy")
    if bool(status & STATUS_ERROR) != (not expected.ok):
        problems.append(f"STATUS.ERROR is {int(bool(status & STATUS_ERROR))}")
    if expected.error is not ErrorCode.AXI_ERROR:
        want_mem = expected.memory.tobytes()
        if len(memory) != len(want_mem):
            problems.append(f"memory of {len(memory)} bytes, expected {len(want_mem)}")
        elif memory != want_mem:
            diff = [i for i in range(len(want_mem)) if memory[i] != want_mem[i]]
            shown = ", ".join(f"0x{a:x}: 0x{memory[a]:02x} (expected 0x{want_mem[a]:02x}"
                              + (f", was 0x{image[a]:02x}" if image is not None else "") + ")"
                              for a in diff[:6])
            problems.append(f"{len(diff)} memory bytes differ: {shown}")
        overflow = bool(status & 1 << next(f.lsb for f in CSR["STATUS"].fields
                                           if f.name == "ACC_OVERFLOW"))
        if overflow != expected.acc_overflow:
            problems.append(f"STATUS.ACC_OVERFLOW is {int(overflow)}, expected "
                            f"{int(expected.acc_overflow)}")
        if expected.ok and "PERF_INSTRET" in csrs:
            if csrs["PERF_INSTRET"] != expected.retired:
                problems.append(f"PERF_INSTRET {csrs['PERF_INSTRET']}, expected "
                                f"{expected.retired}")
            macs_per_row = (csrs["CONFIG0"] & 0xFF) * (csrs["CONFIG0"] >> 8 & 0xFF)
            if csrs["PERF_MAC_BUSY"] * macs_per_row != expected.macs:
                problems.append(f"PERF_MAC_BUSY {csrs['PERF_MAC_BUSY']}, expected "
                                f"{expected.macs // macs_per_row} input rows")
    if problems:
        raise ScoreboardError(f"{what}: " + "; ".join(problems))
