"""Fmax of each accelerator block alone: synthesis and out-of-context place and route.

Every block of one configuration (controller, DMA, execute unit with the array, load and
store units, post-processor, vector unit, scratchpad, accumulator, CSRs) is synthesized
for the family of ``--board`` and placed and routed by nextpnr with
``--out-of-context`` (no IO buffers, no global clock), one at a time. Paths between
blocks are not timed here (the board build does that), but a block slower than the
target shows where the whole design will miss it, in a minute instead of the half hour
the ULX3S board build takes.

Prints a table of LUTs, FFs, DSPs and achieved Fmax against ``--target-mhz`` with their
ratio and the first and last cell of each block's critical path; writes
``build/reports/bench-timing-<board>.json``. Exit status 1 when no block gave figures.
nextpnr-ice40 has no out-of-context mode: on iCE40 only the synthesis figures are given.

Usage: ``python scripts/bench_timing.py [--board ulx3s] [--preset NAME] [--target-mhz 50]
[--only BLOCK,...]``
"""

import argparse
import json
import os
import subprocess
import sys
import time

from plots import REPO, relpath, repo_on_path, write_json

repo_on_path()

FAMILIES = {  # board -> (family, multiplier, yosys synth, nextpnr, device options)
    "ulx3s": ("ecp5", "ecp5", "synth_ecp5", "NEXTPNR_ECP5",
              ["--85k", "--package", "CABGA381", "--speed", "6"]),
    "icebreaker": ("ice40", "ice40", "synth_ice40 -dsp -dff", "NEXTPNR_ICE40",
                   ["--up5k", "--package", "sg48"]),
}


DEVICES = {"ulx3s": "LFE5U-85F", "icebreaker": "iCE40UP5K"}


def blocks(config, multiplier):
    """``{name: component}`` of the accelerator's blocks for ``config``."""
    from systolic.rtl.accumulator import Accumulator
    from systolic.rtl.controller import Controller
    from systolic.rtl.csr import CsrBlock
    from systolic.rtl.dma import DMA
    from systolic.rtl.exec_unit import ExecUnit
    from systolic.rtl.load_unit import LoadUnit
    from systolic.rtl.postproc import PostProcessor
    from systolic.rtl.scratchpad import Scratchpad
    from systolic.rtl.store_unit import StoreUnit
    from systolic.rtl.vector import VectorUnit

    c = config
    pp = PostProcessor(config=c)
    out = {
        "controller": Controller(config=c),
        "dma": DMA(c),
        "exec unit + array": ExecUnit(config=c, multiplier=multiplier),
        "load unit": LoadUnit(config=c),
        "store unit": StoreUnit(config=c, pp_signature=pp.signature),
        "postproc": pp,
        "scratchpad": Scratchpad(config=c),
        "accumulator": Accumulator(config=c),
        "csr": CsrBlock(config=c),
    }
    if c.vector_unit:
        out["vector"] = VectorUnit(config=c)
    # The board system's own blocks: the UART bridge (clock divisor of 1 Mbaud at 12 MHz)
    # and the 64 KiB system memory (SPRAM on the iCE40, block RAM on the ECP5).
    from systolic.fpga.boards import Spram
    from systolic.fpga.bridge import Bridge
    from systolic.fpga.sysmem import SystemMemory
    out["bridge"] = Bridge(divisor=12)
    out["memory"] = SystemMemory(size=64 * 1024, data_width=c.axi_data_width,
                                 id_width=c.axi_id_width,
                                 ram=Spram if multiplier == "ice40" else None)
    return out


class DeviceStandIn:
    """Stands in for the board's platform when a block is elaborated alone: the blocks that
    choose vendor primitives by the device (the iCE40 multipliers, the SPRAM) see it."""

    def __init__(self, device):
        self.device = device


def _critical(report):
    paths = report.get("critical_paths") or []
    if not paths:
        return ""
    path = paths[0].get("path") or []
    if not path:
        return ""
    first = path[0].get("from", {}).get("cell", "?")
    last = path[-1].get("to", {}).get("cell", "?")
    return f"{first} -> {last}"


def time_block(name, component, board, target_mhz, folder):
    """Synthesize and place-and-route one block; returns its row of figures."""
    from amaranth.back import rtlil

    family, _, synth, nextpnr, device = FAMILIES[board]
    folder.mkdir(parents=True, exist_ok=True)
    platform = DeviceStandIn(DEVICES[board])
    (folder / "block.il").write_text(rtlil.convert(component, name="block", platform=platform,
                                                   emit_src=False))
    row = {"block": name}
    start = time.monotonic()
    # ``rename -hide w:*]``: Amaranth names a wire per element of an array-shaped port
    # (``x[0]``), and ABC9 reintegration creates per-bit wires under the same names when
    # such a port is a plain feedthrough (a Yosys assertion); hidden names avoid the clash.
    result = subprocess.run(
        [os.environ["YOSYS"], "-q", "-l", "synth.log", "-p",
         f"read_rtlil block.il; rename -hide w:*]; {synth} -top block -json block.json; "
         f"tee -q -o stat.json stat -json"],
        cwd=folder, capture_output=True, text=True)
    if result.returncode:
        row["failure"] = "synthesis: " + (result.stderr.strip().splitlines() or ["?"])[-1]
        return row
    from systolic.fpga.report import parse_nextpnr_report, parse_yosys_stat
    synth_counts = parse_yosys_stat(json.loads((folder / "stat.json").read_text()),
                                    family)
    row.update(luts=synth_counts["synth_luts"], ffs=synth_counts["synth_ffs"],
               dsps=synth_counts["synth_dsps"], brams=synth_counts["synth_brams"])
    if family == "ice40":       # nextpnr-ice40 has no out-of-context mode
        from systolic.fpga.report import estimate_ice40_cells
        netlist = json.loads((folder / "block.json").read_text())
        row["cells"] = estimate_ice40_cells(netlist)["cells"]
        row["seconds"] = round(time.monotonic() - start, 1)
        return row
    result = subprocess.run(
        [os.environ[nextpnr], "--quiet", "--out-of-context", "--json", "block.json",
         "--freq", str(target_mhz), "--timing-allow-fail", "--report", "report.json",
         "--log", "pnr.log", *device], cwd=folder, capture_output=True, text=True)
    row["seconds"] = round(time.monotonic() - start, 1)
    if result.returncode or not (folder / "report.json").exists():
        row["failure"] = "nextpnr: " + (result.stderr.strip().splitlines() or ["?"])[-1]
        return row
    report = json.loads((folder / "report.json").read_text())
    fmax = parse_nextpnr_report(report, family).get("fmax_mhz") or {}
    row.update(fmax_mhz=round(min(fmax.values()), 1) if fmax else None,
               critical_path=_critical(report))
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", choices=sorted(FAMILIES), default="ulx3s")
    parser.add_argument("--preset", default=None, help="default: the board's preset")
    parser.add_argument("--target-mhz", type=float, default=50.0)
    parser.add_argument("--only", default="", help="comma-separated block names")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from systolic.config import PRESETS
    from systolic.toolchain import setup_env

    setup_env()
    preset_name = args.preset or args.board
    if preset_name not in PRESETS:
        print(f"bench_timing: unknown preset {preset_name!r}", file=sys.stderr)
        return 2
    config = PRESETS[preset_name]
    _, multiplier, *_ = FAMILIES[args.board]
    todo = blocks(config, multiplier)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",")]
        todo = {k: v for k, v in todo.items() if any(w in k for w in wanted)}
    root = REPO / "build" / "timing" / f"{args.board}-{preset_name}"
    rows = []
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("place and route", total=len(todo))
        for name, component in todo.items():
            progress.update(task, description=f"{name}")
            rows.append(time_block(name, component, args.board, args.target_mhz,
                                   root / name.replace(" ", "_").replace("+", "")))
            progress.advance(task)

    table = Table(title=f"{args.board} ({preset_name}), out of context, target "
                        f"{args.target_mhz:g} MHz")
    for col in ("block", "LUTs", "FFs", "cells", "DSPs", "BRAMs", "Fmax MHz", "/ target",
                "critical path"):
        table.add_column(col, justify="left" if col in ("block", "critical path") else "right")
    for r in rows:
        if "luts" not in r:
            table.add_row(r["block"], "", "", "", "", "", "", "", r.get("failure", ""))
            continue
        fmax = r.get("fmax_mhz")
        table.add_row(r["block"], str(r["luts"]), str(r["ffs"]), str(r.get("cells", "-")),
                      str(r["dsps"]),
                      str(r["brams"]), f"{fmax}" if fmax else "-",
                      f"{fmax / args.target_mhz:.2f}" if fmax else "",
                      r.get("critical_path", r.get("failure", ""))[:70])
    Console().print(table)
    out = write_json(f"timing-{args.board}", {"board": args.board, "preset": preset_name,
                                              "target_mhz": args.target_mhz, "blocks": rows})
    print(f"wrote {relpath(out)}")
    # A block Yosys cannot synthesize alone (an internal assertion) is listed with the
    # message; its logic is still timed in the board build. No figures at all: failure.
    return 0 if any("luts" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
