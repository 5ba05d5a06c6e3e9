"""Test bench of the iCEBreaker board system: the real host code drives the UART pins.

``SerialDevice`` and the protocol ``Link`` run unchanged in a thread (``cocotb.bridge``);
:class:`SimSerial` is their serial port: ``write`` queues bytes that a coroutine shifts
onto ``rx`` bit by bit, a second coroutine decodes ``tx``, and ``read`` lets simulated time
pass (``cocotb.resume``) until bytes arrive. The link's clock is simulated time, so its
timeouts and retries behave as on a board. ``tests/test_board.py`` builds the Verilog and
passes the preset (``BOARD_PRESET``) and UART divisor (``BOARD_DIVISOR``) in the
environment.
"""

import os
from collections import deque

import cocotb
import numpy as np
import pytest
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, FallingEdge

from systolic.compiler import compile_gemm
from systolic.config import preset
from systolic.isa import ErrorCode, assemble, to_bytes
from systolic.runtime import protocol as P
from systolic.runtime.device import GoldenDevice, Job
from systolic.runtime.serial import SerialDevice

PERIOD_NS = 10
DIVISOR = int(os.environ.get("BOARD_DIVISOR", "4"))
CONFIG = preset(os.environ.get("BOARD_PRESET", "icebreaker"))
BYTE_NS = 10 * DIVISOR * PERIOD_NS
FRAME_TIMEOUT_NS = 2560 * DIVISOR * PERIOD_NS   # the bridge's default inter-byte timeout


def sim_seconds():
    return get_sim_time("ns") * 1e-9


class SimSerial:
    """A serial port whose far end is the simulated board's UART pins."""

    name = "sim-uart"

    def __init__(self, dut):
        self.dut = dut
        self.outgoing = deque()
        self.incoming = bytearray()
        self.sent = 0

    async def drive(self):
        """Shift queued bytes onto ``rx``: start bit, 8 data bits LSB first, stop bit."""
        dut = self.dut
        dut.rx.value = 1
        while True:
            if not self.outgoing:
                await ClockCycles(dut.clk, 10 * DIVISOR)
                continue
            byte = self.outgoing.popleft()
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                dut.rx.value = bit
                await ClockCycles(dut.clk, DIVISOR)
            self.sent += 1

    async def collect(self):
        """Decode bytes from ``tx``, sampling each bit in its middle."""
        dut = self.dut
        while True:
            await FallingEdge(dut.tx)
            await ClockCycles(dut.clk, DIVISOR + DIVISOR // 2)
            byte = 0
            for i in range(8):
                byte |= int(dut.tx.value) << i
                await ClockCycles(dut.clk, DIVISOR)
            self.incoming.append(byte)   # now in the stop bit

    # -- the port API the host code uses (called from its thread) ----------------------

    @property
    def in_waiting(self):
        return len(self.incoming)

    def write(self, data):
        self.outgoing.extend(bytes(data))

    def read(self, n):
        if not self.incoming:
            _wait_ns(16 * BYTE_NS)
        out = bytes(self.incoming[:n])
        del self.incoming[:n]
        return out

    def drain(self, seconds):
        """Let ``seconds`` of simulated time pass; everything received."""
        _wait_ns(seconds * 1e9)
        return self.read(len(self.incoming))


@resume
async def _wait_ns(ns):
    await ClockCycles(cocotb.top.clk, max(1, int(ns // PERIOD_NS)))


def _sleep(seconds):
    _wait_ns(seconds * 1e9)


async def start(dut):
    """Clock, reset, UART coroutines; returns the serial adapter."""
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    port = SimSerial(dut)
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)
    cocotb.start_soon(port.drive())
    cocotb.start_soon(port.collect())
    return port


def open_device(port):
    return SerialDevice(CONFIG, port, timeout=4 * FRAME_TIMEOUT_NS * 1e-9, retries=2,
                        run_timeout=0.05, poll_interval=20e-6, clock=sim_seconds,
                        sleep=_sleep)


def check_result(got, want):
    """Scoreboard: a board result equals the golden model's, byte for byte."""
    assert (got.error, got.error_index) == (want.error, want.error_index), \
        f"error {got.error.name}@{got.error_index}, expected {want.error.name}@{want.error_index}"
    assert len(got.memory) == len(want.memory), "memory image length differs"
    for addr, (g, w) in enumerate(zip(got.memory, want.memory, strict=True)):
        assert g == w, f"memory byte 0x{addr:04X}: board 0x{g:02X}, model 0x{w:02X}"


def gemm_job(seed, m=6, k=8, n=8):
    rng = np.random.default_rng(seed)
    lo, hi = CONFIG.weight_range
    weight = rng.integers(lo, hi + 1, size=(k, n))
    bias = rng.integers(-500, 500, size=n)
    prog = compile_gemm(CONFIG, m, k, n, weight, bias)
    a = rng.integers(*CONFIG.input_range, size=(m, k), endpoint=True)
    return Job(bytes(prog.memory({"a": a})), prog.prog_addr, prog.prog_len), prog


@cocotb.test()
async def test_gemm_over_the_uart(dut):
    """A compiled GEMM runs through SerialDevice and matches the golden model."""
    port = await start(dut)

    @bridge
    def host():
        dev = open_device(port)
        job, prog = gemm_job(1)
        got = dev.run_batch([job])[0]
        want = GoldenDevice(CONFIG).run_batch([job])[0]
        assert want.ok
        check_result(got, want)
        y = prog.read_tensor(bytearray(got.memory), "y")
        dut._log.info(f"GEMM {prog.tensors['a'].shape} x {prog.tensors['y'].shape[1]}: "
                      f"y[0] = {[int(v) for v in y[0]]}; perf {got.perf}; link NAKs {dev.link.naks}, "
                      f"{port.sent} bytes sent by the host")
        # the scoreboard catches one corrupted byte of the result
        bad = type(got)(memory=bytes([got.memory[0] ^ 1]) + got.memory[1:], error=got.error,
                        error_index=got.error_index)
        with pytest.raises(AssertionError, match="memory byte 0x0000"):
            check_result(bad, want)
        # a program error is reported with the model's code and index
        program = assemble("nop\nload n_rows=0\nhalt")
        image = bytearray(256)
        image[0x80:0x80 + 16 * len(program)] = to_bytes(program)
        err_job = Job(bytes(image), 0x80, len(program))
        got = dev.run_batch([err_job])[0]
        want = GoldenDevice(CONFIG).run_batch([err_job])[0]
        assert want.error is ErrorCode.BAD_FIELD
        check_result(got, want)

    await host()


def _exchange(port, frame, seconds):
    """Send raw ``frame``; the responses that arrive while it is sent and ``seconds`` more."""
    port.write(frame)
    return P.Decoder().feed(port.drain(len(frame) * BYTE_NS * 1e-9 + seconds))


@cocotb.test()
async def test_bad_frames_get_naks(dut):
    """Corrupted and truncated frames are NAKed; the next good frame works."""
    port = await start(dut)

    @bridge
    def host():
        link = P.Link(port, timeout=4 * FRAME_TIMEOUT_NS * 1e-9, retries=0,
                      clock=sim_seconds)
        assert link.ping() == P.PROTOCOL_VERSION
        link.write_mem(0x100, bytes(range(16)))
        turnaround = 40 * BYTE_NS * 1e-9

        # a payload byte flipped in transit: BAD_CRC, and the write does not land
        frame = bytearray(P.encode_request(7, P.Command.WRITE_MEM, 0x100, payload=bytes(16)))
        frame[12] ^= 0x01
        assert frame[12] not in (P.SOF, P.ESC)
        (resp,) = _exchange(port, frame, turnaround)
        assert (resp.seq, resp.status) == (7, P.Status.BAD_CRC)
        assert link.read_mem(0x100, 16) == bytes(range(16))

        # a frame cut short: the bridge's inter-byte timeout NAKs it
        frame = P.encode_request(9, P.Command.WRITE_MEM, 0x100, payload=bytes(16))
        (resp,) = _exchange(port, frame[:10], FRAME_TIMEOUT_NS * 1e-9 + turnaround)
        assert (resp.seq, resp.status) == (9, P.Status.TIMEOUT)

        # a frame cut short by the next frame's SOF: dropped silently, the next one runs
        good = P.encode_request(10, P.Command.READ_MEM, 0x100, length=16)
        frames = _exchange(port, frame[:10] + good, turnaround)
        assert [(f.seq, f.status, f.payload) for f in frames] == \
            [(10, P.Status.OK, bytes(range(16)))]

        # garbage between frames is dropped and counted; the frame after it runs
        before = link.status()
        good = P.encode_request(11, P.Command.READ_MEM, 0x104, length=4)
        frames = _exchange(port, b"\x00\x55\xff" + good, turnaround)
        assert [(f.seq, f.status, f.payload) for f in frames] == \
            [(11, P.Status.OK, bytes(range(4, 8)))]
        assert link.status().discarded_bytes - before.discarded_bytes == 3

        # the next good frames work, and the bridge counted what it dropped
        assert link.ping() == P.PROTOCOL_VERSION
        assert link.read_mem(0x100, 16) == bytes(range(16))
        status = link.status()
        assert (status.crc_errors, status.truncated) == (1, 2), status

    await host()
