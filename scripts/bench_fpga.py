"""FPGA builds: resource utilization, Fmax against the clock target, LUTs per block.

Reads the reports ``build/reports/fpga-<board>.json`` that ``make fpga`` (``systolic fpga
build``, :func:`systolic.fpga.build.build_board`) writes. A missing report is built first:
iCEBreaker always, ULX3S only with ``--all`` (its place and route takes several minutes);
``--rebuild`` builds even when a report exists. Reports of other boards found in the folder
are shown too.

Prints LUT / FF / DSP / block-RAM (and SPRAM) utilization against the device, the
achieved Fmax of every clock against the target with their ratio, and the per-block LUT
table of the unflattened synthesis. Writes ``build/reports/bench-fpga.json``,
``build/reports/fpga_utilization.png`` and ``build/reports/fpga_blocks.png``.

Exit status 1 when a build gave no figures at all (nor placement nor synthesis); with
``--strict`` also when a design does not fit or misses its clock target.

Usage: ``python scripts/bench_fpga.py [--all] [--rebuild] [--strict]``
"""

import argparse
import json
import sys
import threading
import time

from plots import REPO, REPORTS, bar_chart, grouped_bars, relpath, repo_on_path, write_json

repo_on_path()

DEFAULT_BOARDS = ("icebreaker",)
ALL_BOARDS = ("icebreaker", "ulx3s")

# nextpnr utilization keys that give the flip-flop capacity of each family.
_FF_SITES = {"iCE40": "ICESTORM_LC", "ECP5": "TRELLIS_FF"}


def build(console, boards):
    """Build each board's bitstream (one at a time; nextpnr uses both cores)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from systolic.fpga.build import build_board

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[state]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        for board in boards:
            task = bar.add_task(f"FPGA build {board}", total=None, state="yosys + nextpnr")
            result, errors = {}, []

            def work(board=board, result=result, errors=errors):
                try:
                    result.update(build_board(board, out_dir=REPO / "build" / "fpga",
                                              progress=False, report_dir=REPORTS))
                except Exception as exc:  # reported below, with the board's name
                    errors.append(exc)

            worker = threading.Thread(target=work, daemon=True)
            worker.start()
            while worker.is_alive():
                worker.join(0.5)
            if errors:
                bar.update(task, total=1, completed=1, state="[red]failed[/]")
                console.print(f"[red]FPGA build of {board} failed: {errors[0]}[/]")
            else:
                bar.update(task, total=1, completed=1,
                           state=f"done in {result.get('seconds', 0):.0f} s")


def _share(used, available):
    return 100 * used / available if used is not None and available else None


def summarize(report):
    """The figures of one report: used, available and percent per resource; clocks."""
    util = report.get("utilization", {})
    family = "iCE40" if "ICESTORM_LC" in util or report["device"].lower().startswith(
        ("ice", "up5k")) else "ECP5"
    placed = report.get("placed", False)

    def pick(key):
        if placed and report.get(key) is not None:
            return report[key]
        if key == "luts" and report.get("packed_luts") is not None:
            return report["packed_luts"]   # not placed: the cells the packed design needs
        return report.get(f"synth_{key}")

    ff_site = util.get(_FF_SITES[family], {})
    resources = {
        "LUT": (pick("luts"), report.get("luts_available")),
        # A logic cell (iCE40) or slice half (ECP5) pairs each LUT4 with one flip-flop.
        "FF": (pick("ffs"), ff_site.get("available", report.get("luts_available"))),
        "DSP": (pick("dsps"), report.get("dsps_available")),
        "BRAM": (pick("brams"), report.get("brams_available")),
    }
    if family == "iCE40":
        resources["SPRAM"] = (pick("sprams"), util.get("ICESTORM_SPRAM", {}).get("available", 4))
    target = report.get("target_mhz")
    clocks = [{"clock": clk, "fmax_mhz": f, "target_mhz": target,
               "ratio": f / target if target else None}
              for clk, f in report.get("fmax_mhz", {}).items()]
    total_luts = sum(r["luts"] for r in report.get("blocks", [])) or None
    blocks = [dict(row, lut_share=(100 * row["luts"] / total_luts if total_luts else None))
              for row in report.get("blocks", [])]
    return {
        "board": report["board"], "device": report["device"], "family": family,
        "preset": report["preset"], "clock_mhz": report.get("clock_mhz"),
        "target_mhz": target,
        "placed": placed, "fits": report.get("fits", False),
        "timing_closed": report.get("timing_closed", False),
        "source": "nextpnr" if placed else "yosys (not placed)",
        "resources": {k: {"used": u, "available": a, "percent": _share(u, a)}
                      for k, (u, a) in resources.items()},
        "clocks": clocks, "blocks": blocks, "failure": report.get("failure"),
        "blocks_failure": report.get("blocks_failure"),
        "build_seconds": report.get("seconds"), "command": report.get("command"),
    }


def print_tables(console, summaries):
    from rich.table import Table

    for s in summaries:
        title = (f"{s['board']} ({s['device']}), preset {s['preset']}, "
                 f"{s['clock_mhz']:g} MHz clock: figures from {s['source']}")
        table = Table(title=title)
        for col in ("resource", "used", "available", "utilization"):
            table.add_column(col, justify="left" if col == "resource" else "right")
        for name, r in s["resources"].items():
            if r["used"] is None:
                continue
            pct = r["percent"]
            text = "-" if pct is None else (f"[red]{pct:.1f}%[/]" if pct > 100 else f"{pct:.1f}%")
            table.add_row(name, f"{r['used']:,}", f"{r['available']:,}" if r["available"]
                          else "-", text)
        if not s["clocks"]:
            table.add_row("Fmax", "not placed", f"target {s['target_mhz']:g} MHz", "-")
        for c in s["clocks"]:
            ok = c["ratio"] is not None and c["ratio"] >= 1
            ratio = f"[green]{c['ratio']:.2f}x[/]" if ok else f"[red]{c['ratio']:.2f}x[/]"
            table.add_row(f"Fmax {c['clock']}", f"{c['fmax_mhz']:.1f} MHz",
                          f"target {c['target_mhz']:g} MHz", ratio)
        console.print(table)
        if s["blocks"]:
            bt = Table(title=f"{s['board']}: LUTs per block (unflattened synthesis)")
            for col in ("block", "LUTs", "share", "FFs", "DSPs", "BRAMs"):
                bt.add_column(col, justify="left" if col == "block" else "right")
            for row in s["blocks"]:
                share = f"{row['lut_share']:.1f}%" if row["lut_share"] is not None else "-"
                bt.add_row(row["block"], f"{row['luts']:,}", share, str(row["ffs"]),
                           str(row["dsps"]), str(row["brams"]))
            bt.add_row("total", f"{sum(r['luts'] for r in s['blocks']):,}", "", "", "", "")
            console.print(bt)
        elif s["blocks_failure"] is not None:
            console.print(f"{s['board']}: no per-block table (the unflattened synthesis of "
                          f"the build failed: {s['blocks_failure'].strip()[-200:]!r})")
        verdict = ("[green]fits[/]" if s["fits"] else "[red]does not fit[/]") + ", timing " + (
            "[green]closed[/]" if s["timing_closed"] else "[red]not closed[/]")
        console.print(f"{s['board']}: {verdict}" + (f"; {s['failure']}" if s["failure"] else ""))


def plots(summaries):
    written = []
    names = ["LUT", "FF", "DSP", "BRAM", "SPRAM"]
    used = [n for n in names if any(s["resources"].get(n, {}).get("percent") is not None
                                    for s in summaries)]
    series = {f"{s['board']} ({s['device']})": [
        s["resources"].get(n, {}).get("percent") or 0.0 for n in used] for s in summaries}
    if series:
        written.append(grouped_bars(REPORTS / "fpga_utilization.png", used, series,
                                    title="FPGA resource utilization (accelerator + UART "
                                          "bridge + memory)",
                                    ylabel="% of the device", limit=100))
    blocks = [s for s in summaries if s["blocks"]]
    if blocks:
        s = blocks[0]
        written.append(bar_chart(REPORTS / "fpga_blocks.png", [r["block"] for r in s["blocks"]],
                                 [r["luts"] for r in s["blocks"]],
                                 title=f"LUTs per block on {s['board']} ({s['device']})",
                                 ylabel="LUT4", fmt="{:.0f}"))
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true",
                        help="also build ULX3S when its report is missing")
    parser.add_argument("--rebuild", action="store_true",
                        help="build the boards even when their reports exist")
    parser.add_argument("--strict", action="store_true",
                        help="fail when a design does not fit or misses its clock target")
    parser.add_argument("--reports", default=str(REPORTS), help="folder of fpga-*.json")
    args = parser.parse_args(argv)

    from pathlib import Path

    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 132)
    folder = Path(args.reports)
    wanted = ALL_BOARDS if args.all else DEFAULT_BOARDS
    missing = [b for b in wanted if args.rebuild or not (folder / f"fpga-{b}.json").exists()]
    started = time.perf_counter()
    if missing:
        if folder.resolve() != (REPO / "build" / "reports").resolve():
            console.print(f"[red]bench_fpga: error: reports missing in {folder} "
                          f"({', '.join(missing)}); builds write to build/reports[/]")
            return 2
        build(console, missing)
    reports = []
    for path in sorted(folder.glob("fpga-*.json")):
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            console.print(f"[red]unreadable report {relpath(path)}: {exc}[/]")
    order = {b: i for i, b in enumerate(ALL_BOARDS)}
    reports.sort(key=lambda r: order.get(r.get("board"), len(order)))
    summaries = [summarize(r) for r in reports]
    failures = [f"{b}: no report" for b in wanted
                if not any(s["board"] == b for s in summaries)]
    failures += [f"{s['board']}: no resource figures ({s['failure'] or 'build failed'})"
                 for s in summaries if s["resources"]["LUT"]["used"] is None]
    if args.strict:
        failures += [f"{s['board']}: does not fit" for s in summaries if not s["fits"]]
        failures += [f"{s['board']}: misses its clock target" for s in summaries
                     if not s["timing_closed"]]
    print_tables(console, summaries)
    written = plots(summaries)
    path = write_json("fpga", {"boards": summaries, "built": missing,
                               "wall_s": round(time.perf_counter() - started, 1),
                               "failures": failures,
                               "plots": [str(relpath(p)) for p in written]})
    console.print(f"report: {relpath(path)}; plots: "
                  + ", ".join(str(relpath(p)) for p in written))
    for f in failures:
        console.print(f"[red]FAIL {f}[/]")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
