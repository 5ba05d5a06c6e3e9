"""Synthesis smoke tests of a 4x4 array for iCE40 and ECP5 (YoWASP yosys), and a Verilator
lint of the emitted Verilog. Resource counts are printed (``pytest -s``), not asserted
beyond sanity: the design must not be optimised away, and every MAC must be there."""

import json
import os
import subprocess

import pytest

from sim.verilator import BUILD, VERILATOR_FLAGS, emit_verilog
from systolic.config import AcceleratorConfig
from systolic.rtl.array import SystolicArray

CONFIG = AcceleratorConfig(rows=4, cols=4, pipeline_every=1)

# Cell names per family: LUTs, DSP blocks, flip-flops (prefixes).
CELLS = {
    "ice40": {"lut": ("SB_LUT4",), "dsp": ("SB_MAC16",), "ff": ("SB_DFF",),
              "carry": ("SB_CARRY",)},
    "ecp5": {"lut": ("LUT4",), "dsp": ("MULT18X18D", "ALU54B"), "ff": ("TRELLIS_FF",),
             "carry": ("CCU2C",)},
}
SYNTH = {"ice40": "synth_ice40 -dsp -top array", "ecp5": "synth_ecp5 -top array"}


def synthesize(family, config, multiplier, name):
    """Synthesize the array; returns {"lut", "dsp", "ff", "carry"} cell counts."""
    folder = BUILD / "synth" / name
    emit_verilog(SystolicArray(config, multiplier=multiplier), "array", folder / "array.v")
    script = f"read_verilog array.v; {SYNTH[family]}; tee -q -o stat.json stat -json"
    subprocess.run([os.environ["YOSYS"], "-q", "-p", script], cwd=folder, check=True,
                   capture_output=True, timeout=900)
    stat = json.loads((folder / "stat.json").read_text())
    cells = stat["design"]["num_cells_by_type"]
    return {kind: sum(n for cell, n in cells.items() if cell.startswith(prefixes))
            for kind, prefixes in CELLS[family].items()}


@pytest.mark.fpga
@pytest.mark.parametrize("family", ["ice40", "ecp5"])
def test_synth_4x4(family):
    counts = synthesize(family, CONFIG, family, f"array_4x4_{family}")
    macs = CONFIG.rows * CONFIG.cols
    print(f"\n{family} 4x4 WS, pipeline_every=1: {counts['lut']} LUT4, {counts['dsp']} DSP, "
          f"{counts['ff']} FF, {counts['carry']} carry cells; per MAC: "
          f"{counts['lut'] / macs:.1f} LUT4, {counts['dsp'] / macs:.2f} DSP, "
          f"{counts['ff'] / macs:.1f} FF")
    assert counts["lut"] > 0 and counts["ff"] > 0
    assert counts["dsp"] > 0, "no multiplier reached a DSP block"
    # Each PE keeps at least its two 8-bit weight registers and its 32-bit partial sum.
    assert counts["ff"] >= macs * (8 + 8 + 32)


@pytest.mark.verilator
def test_verilator_lint_clean():
    """``verilator --lint-only`` reports nothing beyond the waived width warnings."""
    for dataflow in ("ws", "os"):
        folder = BUILD / "lint" / f"array_{dataflow}"
        config = CONFIG.replace(dataflow=dataflow, pipeline_every=2)
        src = emit_verilog(SystolicArray(config, tag_bits=3), "array", folder / "array.v")
        flags = [f for f in VERILATOR_FLAGS if f.startswith("-Wno-")]
        result = subprocess.run(["verilator", "--lint-only", *flags, "--top-module", "array",
                                 src.name], cwd=folder, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        assert "%Warning" not in result.stderr, result.stderr
