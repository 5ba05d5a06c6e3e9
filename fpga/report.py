"""FPGA build reports: Yosys ``stat -json`` and nextpnr ``--report`` parsed into one dict,
the per-block LUT table, and the printed summary."""

__all__ = ["BLOCKS", "REQUIRED_FIELDS", "block_of", "parse_yosys_stat", "parse_nextpnr_report",
           "block_table", "check_report", "print_report", "estimate_ice40_cells"]

REQUIRED_FIELDS = ("board", "device", "preset", "luts", "luts_available", "ffs", "dsps",
                   "dsps_available", "brams", "fmax_mhz", "target_mhz")

# Module-name suffixes (Amaranth names modules by their hierarchy path) -> block, first match
BLOCKS = [
    ("array", (".core.xu",)),
    ("dma", (".core.dma",)),
    ("controller", (".core.ctrl", ".core.lu", ".core.su")),
    ("scratchpad", (".core.sp",)),
    ("accumulator", (".core.acc",)),
    ("csr", (".accelerator.csr",)),
    ("postproc", (".core.pp",)),
    ("bridge", (".system.bridge",)),
    ("memory", (".system.sysmem",)),
]
BLOCK_NOTES = {
    "array": "exec unit: the PE array and its issue logic",
    "controller": "fetch, decoder, token queues, load/store units",
    "memory": "system memory controller (SPRAM/BRAM cells counted apart)",
    "other": "board top, PLL reset, accelerator glue",
}

_LUT = {"ice40": ("SB_LUT4",), "ecp5": ("LUT4",)}
_DSP = {"ice40": ("SB_MAC16",), "ecp5": ("MULT18X18D", "ALU54B")}
# iCE40 block RAMs come in clock-edge variants (NW: written on the falling edge, NR: read)
_BRAM = {"ice40": ("SB_RAM40_4K", "SB_RAM40_4KNW", "SB_RAM40_4KNR", "SB_RAM40_4KNRNW"),
         "ecp5": ("DP16KD", "PDPW16KD")}
_SPRAM = ("SB_SPRAM256KA",)
_FF_PREFIX = {"ice40": ("SB_DFF",), "ecp5": ("TRELLIS_FF", "FD1")}


def _counts(cells, family):
    def total(names):
        return sum(v for k, v in cells.items() if k in names)
    return {
        "luts": total(_LUT[family]),
        "ffs": sum(v for k, v in cells.items() if k.startswith(_FF_PREFIX[family])),
        "dsps": total(_DSP[family]),
        "brams": total(_BRAM[family]),
        "sprams": total(_SPRAM),
        "carries": total(("SB_CARRY", "CCU2C")),
    }


def parse_yosys_stat(stat, family):
    """Cell counts of the flattened netlist from ``stat -json``, as ``synth_*`` keys."""
    counts = _counts(stat["design"]["num_cells_by_type"], family)
    return {f"synth_{k}": v for k, v in counts.items()}


def parse_nextpnr_report(report, family):
    """Utilization and Fmax from a nextpnr ``--report`` file.

    Returns ``luts`` (iCE40 logic cells, or ECP5 LUT4s), ``ffs``, ``dsps``, ``brams``,
    ``sprams``, ``utilization`` (every resource's used/available) and ``fmax_mhz`` /
    ``constraint_mhz`` per clock net.
    """
    util = {k: {"used": v["used"], "available": v["available"]}
            for k, v in report.get("utilization", {}).items()}

    def used(*names):
        return sum(util[n]["used"] for n in names if n in util)

    if family == "ice40":
        out = {"luts": used("ICESTORM_LC"), "dsps": used("ICESTORM_DSP"),
               "brams": used("ICESTORM_RAM"), "sprams": used("ICESTORM_SPRAM")}
    else:
        out = {"luts": used("TRELLIS_COMB"), "dsps": used("MULT18X18D"),
               "brams": used("DP16KD"), "sprams": 0}
        if "TRELLIS_FF" in util:
            out["ffs"] = used("TRELLIS_FF")
    fmax = report.get("fmax", {})
    out["fmax_mhz"] = {clk: round(v["achieved"], 2) for clk, v in fmax.items()}
    out["constraint_mhz"] = {clk: round(v["constraint"], 2) for clk, v in fmax.items()}
    out["utilization"] = util
    return out


_PACKED = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}


def parse_nextpnr_log(text, family):
    """Logic cells the packed design needs, from nextpnr's log (``top.tim``).

    nextpnr prints the device utilisation after packing, before placement, so the figure
    exists even when placement fails. On the iCE40 a logic cell holds one LUT4 and one
    flip-flop whose input is that LUT's only load: a flip-flop loaded from another
    flip-flop, a memory or a shared LUT takes a cell of its own, so this count (not the
    synthesized LUTs) decides whether the design fits. Returns ``{"packed_luts": n}`` or
    ``{}`` when the log has no such line.
    """
    name = _PACKED[family]
    for line in text.splitlines():
        words = line.replace("/", " ").split()   # "Info:  ICESTORM_LC:  7135/  5280  135%"
        if name + ":" in words:
            used = words[words.index(name + ":") + 1:][:1]
            if used and used[0].isdigit():
                return {"packed_luts": int(used[0])}
    return {}


def estimate_ice40_cells(netlist):
    """Logic cells an iCE40 netlist (Yosys ``write_json`` of one flattened module) needs.

    An iCE40 logic cell holds one LUT4 and one flip-flop, and the flip-flop can share the
    cell only when its D input is driven by a LUT whose output has no other load. Every
    other flip-flop (loaded from a flip-flop, a block RAM, a DSP, a port, or a LUT that
    also drives other logic) takes a cell of its own, so the cells are about
    ``luts + ff_only``; nextpnr adds a few for carry chains and legalisation.

    Returns ``{"luts", "ff_with_lut", "ff_only", "cells"}``.
    """
    tops = [m for m in netlist["modules"].values()
            if m.get("attributes", {}).get("top")] or list(netlist["modules"].values())
    cells = tops[0]["cells"]
    driver, loads = {}, {}
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            output = cell["port_directions"].get(port) == "output"
            for bit in bits:
                if isinstance(bit, str):
                    continue
                if output:
                    driver[bit] = name
                else:
                    loads[bit] = loads.get(bit, 0) + 1
    luts = ff_lut = ff_only = 0
    for cell in cells.values():
        kind = cell["type"]
        if kind == "SB_LUT4":
            luts += 1
        elif kind.startswith("SB_DFF"):
            d = cell["connections"]["D"][0]
            src = driver.get(d)
            if src is not None and cells[src]["type"] == "SB_LUT4" and loads.get(d) == 1:
                ff_lut += 1
            else:
                ff_only += 1
    return {"luts": luts, "ff_with_lut": ff_lut, "ff_only": ff_only, "cells": luts + ff_only}


def block_of(module):
    """The block a module (hierarchical name such as ``top.system.bridge.uart_rx``)
    belongs to, or ``other``."""
    name = module.lstrip("\\")
    for block, suffixes in BLOCKS:
        for s in suffixes:
            if s in name and (name.endswith(s) or (s + ".") in name):
                return block
    return "other"


def block_table(stat, family):
    """Per-block resources from a ``stat -json`` of the unflattened netlist.

    Returns a list of ``{"block", "luts", "ffs", "dsps", "brams", "sprams", "modules"}``
    rows (every module counted once, in the block of its hierarchy path).
    """
    rows = {}
    for module, info in stat["modules"].items():
        block = block_of(module)
        cells = {k: v for k, v in info["num_cells_by_type"].items()}
        counts = _counts(cells, family)
        row = rows.setdefault(block, {"block": block, "luts": 0, "ffs": 0, "dsps": 0,
                                      "brams": 0, "sprams": 0, "modules": 0})
        for key in ("luts", "ffs", "dsps", "brams", "sprams"):
            row[key] += counts[key]
        row["modules"] += 1
    order = [b for b, _ in BLOCKS] + ["other"]
    return [rows[b] for b in order if b in rows]


def check_report(report, margin=0.1):
    """Raise :class:`AssertionError` listing every way ``report`` fails: a missing field,
    LUTs above ``1 - margin`` of the device, DSPs or block RAMs above the device, a clock
    below the target. Returns the report when it passes."""
    problems = [f"missing field {name!r}" for name in REQUIRED_FIELDS if name not in report]
    if not problems:
        budget = int(report["luts_available"] * (1 - margin))
        if report["luts"] > budget:
            problems.append(f"{report['luts']} LUTs exceed {budget} "
                            f"({100 * (1 - margin):.0f}% of {report['luts_available']})")
        for key in ("dsps", "brams"):
            if report[key] > report[f"{key}_available"]:
                problems.append(f"{report[key]} {key} exceed {report[f'{key}_available']}")
        if not report["fmax_mhz"]:
            problems.append("no clock was timed")
        for clk, fmax in report["fmax_mhz"].items():
            if fmax < report["target_mhz"]:
                problems.append(f"clock {clk}: Fmax {fmax} MHz below the target "
                                f"{report['target_mhz']} MHz")
    if problems:
        raise AssertionError(f"{report.get('board')} ({report.get('preset')}): "
                             + "; ".join(problems))
    return report


def print_report(report):
    """Print the report as rich tables: totals against the device, then the blocks."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    title = (f"{report['board']} ({report['device']}), preset {report['preset']}, "
             f"{report['clock_mhz']:g} MHz")
    table = Table(title=title)
    for col in ("resource", "used", "available", "use"):
        table.add_column(col, justify="left" if col == "resource" else "right")
    pairs = [("LUTs", "luts", "luts_available"), ("DSPs", "dsps", "dsps_available"),
             ("block RAMs", "brams", "brams_available")]
    for label, key, avail in pairs:
        used = report.get(key, report.get(f"synth_{key}"))
        if used is None:
            continue
        share = f"{100 * used / report[avail]:.0f}%" if report[avail] else "-"
        table.add_row(label, str(used), str(report[avail]), share)
    ffs = report.get("ffs", report.get("synth_ffs"))
    if ffs is not None:
        table.add_row("flip-flops", str(ffs), "", "")
    if report.get("sprams"):
        table.add_row("SPRAMs", str(report["sprams"]), "4", "")
    for clk, fmax in report.get("fmax_mhz", {}).items():
        ok = "[green]met[/]" if fmax >= report["target_mhz"] else "[red]missed[/]"
        table.add_row(f"Fmax {clk}", f"{fmax:.1f} MHz", f"{report['target_mhz']:g} MHz", ok)
    console.print(table)
    if report.get("blocks"):
        bt = Table(title="per block (unflattened synthesis)")
        for col in ("block", "LUTs", "FFs", "DSPs", "BRAMs", "note"):
            bt.add_column(col, justify="left" if col in ("block", "note") else "right")
        for row in report["blocks"]:
            bt.add_row(row["block"], str(row["luts"]), str(row["ffs"]), str(row["dsps"]),
                       str(row["brams"]), BLOCK_NOTES.get(row["block"], ""))
        bt.add_row("total", str(sum(r["luts"] for r in report["blocks"])), "", "", "", "")
        console.print(bt)
    verdict = ("fits" if report["fits"] else "[red]does not fit[/]") + ", timing " + (
        "closed" if report["timing_closed"] else "[red]not closed[/]")
    console.print(f"{verdict}; report: {report.get('report', '')}")
    if report.get("failure"):
        console.print(f"[red]{report['failure']}[/]")
