"""The board systems in Verilator driven by the real host code, and the serial device's
behaviour without a board.

BUILDS: ``build/sim/board-icebreaker`` (accelerator with the icebreaker preset, SPRAM
system memory model, UART bridge) and ``build/sim/board-ulx3s`` (ulx3s preset, block-RAM
system memory); UART at 4 clocks per bit.
"""

import pytest

from sim.verilator import BUILD, TB, emit_verilog, run_cocotb
from systolic.config import preset
from systolic.fpga.boards import (
    Spram,
    System,
    ecp5_pll_params,
    ice40_pll_params,
    uart_divisor,
)
from systolic.runtime import protocol as P
from systolic.runtime.device import DeviceError, open_device
from systolic.runtime.serial import SerialDevice

BUILDS = {"board-icebreaker": "iCEBreaker system, preset icebreaker, divisor 4",
          "board-ulx3s": "ULX3S system, preset ulx3s, divisor 4"}
DIVISOR = 4


@pytest.mark.verilator
@pytest.mark.xdist_group("board-icebreaker")
@pytest.mark.parametrize("testcase", ["test_gemm_over_the_uart", "test_bad_frames_get_naks"])
def test_board_icebreaker(testcase):
    out = BUILD / "sim" / "board-icebreaker"
    system = System(config=preset("icebreaker"), divisor=DIVISOR, mem_size=64 * 1024,
                    ram=Spram)
    source = emit_verilog(system, "board", out / "board.v")
    run_cocotb(sources=[source], toplevel="board", test_module="test_board", build_dir=out,
               testcase=testcase, test_dir=out,
               extra_env={"BOARD_PRESET": "icebreaker", "BOARD_DIVISOR": str(DIVISOR)})
    assert (TB / "test_board.py").exists()


@pytest.mark.verilator
@pytest.mark.xdist_group("board-ulx3s")
def test_board_ulx3s():
    """The ULX3S system (block-RAM system memory, 8x8 array): a compiled GEMM over the
    UART matches the golden model (the bridge is the same as the iCEBreaker's, whose
    bad-frame test above covers it)."""
    out = BUILD / "sim" / "board-ulx3s"
    system = System(config=preset("ulx3s"), divisor=DIVISOR, mem_size=64 * 1024)
    source = emit_verilog(system, "board", out / "board.v")
    run_cocotb(sources=[source], toplevel="board", test_module="test_board", build_dir=out,
               testcase="test_gemm_over_the_uart", test_dir=out,
               extra_env={"BOARD_PRESET": "ulx3s", "BOARD_DIVISOR": str(DIVISOR)})


# -- the serial device without a board ------------------------------------------------------

class SilentPort:
    """A port with nothing on the other end; time advances on every read."""

    def __init__(self):
        self.now = 0.0
        self.written = bytearray()

    def write(self, data):
        self.written += data

    def read(self, n):
        self.now += 0.01
        return b""

    def clock(self):
        return self.now


def test_no_board_is_a_clear_error():
    port = SilentPort()
    with pytest.raises(DeviceError, match="no answer from a board on .* after 3 attempts"):
        SerialDevice(preset("icebreaker"), port, timeout=0.1, retries=2, clock=port.clock)
    assert port.written.count(P.SOF) == 3   # the PING and two retries


def test_missing_port_is_a_clear_error():
    with pytest.raises(DeviceError, match="cannot open serial port /nonexistent/tty"):
        open_device("serial:/nonexistent/tty", preset("icebreaker"))


class WrongBoardPort:
    """Answers every request like a bridge whose CSRs all read 0x1234."""

    def __init__(self):
        self.decoder = P.Decoder("request")
        self.pending = bytearray()

    def write(self, data):
        for req in self.decoder.feed(data):
            payload = {P.Command.PING: P.PING_WORD.to_bytes(4, "little"),
                       P.Command.READ_CSR: (0x1234).to_bytes(4, "little")}[req.command]
            self.pending += P.encode_response(req.seq, req.command, P.Status.OK, payload)

    def read(self, n):
        out, self.pending = bytes(self.pending[:n]), self.pending[n:]
        return out


def test_wrong_configuration_is_refused():
    with pytest.raises(DeviceError, match="does not match config 'icebreaker': ID=0x00001234"):
        SerialDevice(preset("icebreaker"), WrongBoardPort(), timeout=0.1)


# -- clocking helpers of the board tops ------------------------------------------------------

@pytest.mark.parametrize("fout", [12e6, 24e6, 30e6, 48e6])
def test_ice40_pll_settings(fout):
    p = ice40_pll_params(12e6, fout)
    pfd = 12e6 / (p["DIVR"] + 1)
    vco = pfd * (p["DIVF"] + 1)
    assert 10e6 <= pfd <= 133e6 and 533e6 <= vco <= 1066e6
    assert p["freq"] == vco / 2 ** p["DIVQ"]
    assert abs(p["freq"] - fout) / fout < 0.01


@pytest.mark.parametrize("fout", [25e6, 50e6, 62.5e6, 100e6, 125e6])
def test_ecp5_pll_settings(fout):
    p = ecp5_pll_params(25e6, fout)
    out = 25e6 / p["CLKI_DIV"] * p["CLKFB_DIV"]
    assert out == p["freq"] and abs(out - fout) / fout < 0.01
    assert 400e6 <= out * p["CLKOP_DIV"] <= 800e6


def test_uart_divisor():
    assert uart_divisor(12e6, 1_000_000) == 12
    with pytest.raises(ValueError, match="baud rate 1000000 cannot be made from a 2.5 MHz"):
        uart_divisor(2.5e6, 1_000_000)


def test_spram_rejects_bad_depth():
    with pytest.raises(ValueError, match="Spram depth must be 16384 or 32768, not 1024"):
        Spram(width=32, depth=1024)
