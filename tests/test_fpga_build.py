"""Bitstream builds of the board tops and their reports.

The iCE40 builds run in ``make test`` (marked ``fpga``); the ECP5 build is long and runs
in ``make fpga BOARD=ulx3s`` or ``make test-long`` (marked ``slow``). Every build prints
its report table; the figures are in ``build/reports/fpga-<board>.json``.
"""

import json
from pathlib import Path

import pytest

from systolic.fpga.build import build_board
from systolic.fpga.report import (
    REQUIRED_FIELDS,
    block_of,
    block_table,
    check_report,
    estimate_ice40_cells,
    parse_nextpnr_log,
    parse_nextpnr_report,
)

MARGIN = 0.1   # the top must leave 10% of the LUTs free


def _print(report):
    fmax = ", ".join(f"{k} {v:.1f} MHz" for k, v in report["fmax_mhz"].items())
    print(f"\n{report['board']} {report['preset']}: {report['luts']}/{report['luts_available']}"
          f" LUTs, {report['ffs']} FFs, {report['dsps']}/{report['dsps_available']} DSPs, "
          f"{report['brams']} BRAMs, Fmax {fmax or '-'} (target {report['target_mhz']} MHz)")
    for row in report.get("blocks", []):
        print(f"  {row['block']:<12} {row['luts']:>6} LUTs {row['dsps']:>3} DSPs "
              f"{row['brams']:>3} BRAMs")


@pytest.mark.fpga
@pytest.mark.xdist_group("fpga-icebreaker")
def test_icebreaker_link_bitstream(tmp_path):
    """The iCEBreaker top with the UART bridge and SPRAM memory (no accelerator) builds,
    fits with margin and closes timing at 12 MHz."""
    report = build_board("icebreaker", "none", tmp_path / "fpga", progress=False,
                         blocks=False, report_dir=tmp_path)
    _print(report)
    check_report(report, MARGIN)
    assert report["bitstream"] and report["bitstream"].endswith(".bin")
    assert report["sprams"] == 2 and report["uart_divisor"] == 12
    assert json.loads((tmp_path / "fpga-icebreaker.json").read_text()) == report


@pytest.mark.fpga
@pytest.mark.xdist_group("fpga-icebreaker")
def test_icebreaker_accelerator_fits():
    """The full iCEBreaker top (accelerator, bridge, SPRAM memory) fits with 10% margin and
    closes timing; the per-block table names what is too big."""
    report = build_board("icebreaker", progress=False)
    _print(report)
    assert {row["block"] for row in report["blocks"]} >= {
        "array", "dma", "controller", "csr", "postproc", "bridge", "memory"}
    check_report(report, MARGIN)
    assert report["placed"] and report["timing_closed"]
    # an iCE40 bitstream: the configuration sync word near its start, and the UP5K's
    # whole configuration (about 104 kB whatever the design)
    bitstream = (Path(__file__).parents[1] / report["bitstream"]).read_bytes()
    assert bytes.fromhex("7eaa997e") in bitstream[:32] and len(bitstream) > 100_000


@pytest.mark.fpga
@pytest.mark.slow
def test_ulx3s_accelerator_bitstream():
    report = build_board("ulx3s", progress=False)
    _print(report)
    check_report(report, MARGIN)
    assert report["bitstream"] and report["bitstream"].endswith(".bit")


# -- report parsing and judging (no tools) ---------------------------------------------------

GOOD = {"board": "b", "device": "d", "preset": "p", "luts": 4000, "luts_available": 5280,
        "ffs": 900, "dsps": 8, "dsps_available": 8, "brams": 12, "brams_available": 30,
        "fmax_mhz": {"clk": 20.5}, "target_mhz": 12.0}


def test_check_report_accepts_a_good_report():
    assert check_report(dict(GOOD)) == GOOD


@pytest.mark.parametrize("change, message", [
    ({"luts": 4800}, "4800 LUTs exceed 4752 \\(90% of 5280\\)"),
    ({"dsps": 9}, "9 dsps exceed 8"),
    ({"fmax_mhz": {"clk": 11.9}}, "clock clk: Fmax 11.9 MHz below the target 12.0 MHz"),
    ({"fmax_mhz": {}}, "no clock was timed"),
])
def test_check_report_catches_each_failure(change, message):
    with pytest.raises(AssertionError, match=message):
        check_report({**GOOD, **change})


def test_check_report_names_missing_fields():
    for name in REQUIRED_FIELDS:
        report = dict(GOOD)
        del report[name]
        with pytest.raises(AssertionError, match=f"missing field '{name}'"):
            check_report(report)


def test_nextpnr_report_parsing():
    raw = {"utilization": {"ICESTORM_LC": {"used": 1270, "available": 5280},
                           "ICESTORM_DSP": {"used": 2, "available": 8},
                           "ICESTORM_RAM": {"used": 3, "available": 30},
                           "ICESTORM_SPRAM": {"used": 2, "available": 4}},
           "fmax": {"clk": {"achieved": 17.3456, "constraint": 12.0}}}
    out = parse_nextpnr_report(raw, "ice40")
    assert (out["luts"], out["dsps"], out["brams"], out["sprams"]) == (1270, 2, 3, 2)
    assert out["fmax_mhz"] == {"clk": 17.35} and out["constraint_mhz"] == {"clk": 12.0}


@pytest.mark.parametrize("module, block", [
    ("\\top.system.accelerator.core.xu", "array"),
    ("top.system.accelerator.core.dma.read.split", "dma"),
    ("top.system.accelerator.core.ctrl.decoder", "controller"),
    ("top.system.accelerator.core.su", "controller"),
    ("top.system.accelerator.csr", "csr"),
    ("top.system.accelerator.core.pp.params", "postproc"),
    ("top.system.bridge.uart_rx", "bridge"),
    ("top.system.sysmem.ram", "memory"),
    ("top.system.accelerator.core.sp", "scratchpad"),
    ("top.system.accelerator.core.sps", "other"),
    ("top", "other"),
])
def test_block_of(module, block):
    assert block_of(module) == block


def test_block_table_sums_modules_per_block():
    stat = {"modules": {
        "\\top.system.bridge": {"num_cells_by_type": {"SB_LUT4": 10, "SB_DFFE": 3}},
        "\\top.system.bridge.uart_tx": {"num_cells_by_type": {"SB_LUT4": 5, "SB_DFF": 2}},
        "\\top.system.sysmem.ram": {"num_cells_by_type": {"SB_SPRAM256KA": 2, "SB_LUT4": 1}},
    }}
    rows = {r["block"]: r for r in block_table(stat, "ice40")}
    assert (rows["bridge"]["luts"], rows["bridge"]["ffs"], rows["bridge"]["modules"]) == (15, 5, 2)
    assert (rows["memory"]["luts"], rows["memory"]["sprams"]) == (1, 2)


def test_command_line_arguments():
    import argparse

    from systolic.fpga.build import fpga_arguments

    parser = argparse.ArgumentParser(prog="systolic fpga")
    fpga_arguments(parser)
    args = parser.parse_args(["build", "--board", "ulx3s", "--target-mhz", "62.5"])
    assert (args.fpga_action, args.board, args.preset, args.target_mhz, args.baud) == \
        ("build", "ulx3s", None, 62.5, 1_000_000)
    with pytest.raises(SystemExit):
        parser.parse_args(["build", "--board", "arty"])


def test_packed_cells_come_from_the_log_even_without_placement():
    log = ("Info: Packing LUT-FFs..\nInfo: Device utilisation:\n"
           "Info: \t         ICESTORM_LC:    7135/   5280   135%\n"
           "Info: \t        ICESTORM_RAM:      19/     30    63%\n"
           "ERROR: Unable to place cell 'x', no BELs remaining\n")
    assert parse_nextpnr_log(log, "ice40") == {"packed_luts": 7135}
    assert parse_nextpnr_log(log.replace("ICESTORM_LC", "TRELLIS_COMB"), "ecp5") == {
        "packed_luts": 7135}
    assert parse_nextpnr_log("Info: nothing packed\n", "ice40") == {}
    with pytest.raises(AssertionError, match="7135 LUTs exceed 4752"):
        check_report({**GOOD, "luts": parse_nextpnr_log(log, "ice40")["packed_luts"]})


def _netlist(cells):
    """A one-module Yosys JSON netlist of ``{name: (type, {port: (direction, bits)})}``."""
    return {"modules": {"block": {"attributes": {"top": 1}, "cells": {
        name: {"type": kind, "connections": {p: bits for p, (_, bits) in ports.items()},
               "port_directions": {p: d for p, (d, _) in ports.items()}}
        for name, (kind, ports) in cells.items()}}}}


def test_cell_estimate_counts_flip_flops_that_cannot_share_a_lut():
    lut = {"I0": ("input", [2]), "O": ("output", [10])}
    cells = {
        "lut": ("SB_LUT4", lut),                                           # feeds ff_a only
        "ff_a": ("SB_DFF", {"D": ("input", [10]), "Q": ("output", [11])}),
        "ff_b": ("SB_DFFE", {"D": ("input", [11]), "Q": ("output", [12])}),   # from a FF
        "ff_c": ("SB_DFF", {"D": ("input", [3]), "Q": ("output", [13])}),     # from a port
    }
    assert estimate_ice40_cells(_netlist(cells)) == {
        "luts": 1, "ff_with_lut": 1, "ff_only": 2, "cells": 3}
    # A second load on the LUT's output: its flip-flop needs a cell of its own.
    cells["other"] = ("SB_LUT4", {"I0": ("input", [10]), "O": ("output", [14])})
    assert estimate_ice40_cells(_netlist(cells)) == {
        "luts": 2, "ff_with_lut": 0, "ff_only": 3, "cells": 5}
