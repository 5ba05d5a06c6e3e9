# amaranth: UnusedElaboratable=no
"""The systolic array alone: MACs per cycle, fill/drain latency and synthesis resources.

* **Throughput and latency** (Amaranth's simulator, no build needed): for each size
  (default 2x2, 4x4, 8x8, 16x16) and ``pipeline_every`` (default 0, 1, 2) a
  weight-stationary array (:class:`systolic.rtl.array.WSArray`) gets one weight tile,
  then two tiles of ``2 * rows`` input rows back to back, the second tile's weights
  pushed while the first streams. Every output row is checked against NumPy (exit status
  1 on a mismatch). Measured: fill latency (first input row to first output row), drain
  (last input row to last output row), MACs per cycle in steady state (output rows x
  rows x cols over the cycles from the first to the last output row, across the tile
  swap), against :func:`systolic.rtl.array.array_latency` and the ``rows x cols`` peak.
* **Resources** (YoWASP yosys, ``synth_ice40 -dsp`` and ``synth_ecp5``) of 2x2, 4x4 and
  8x8 arrays (``pipeline_every`` 1 by default): LUT4, flip-flops, DSP blocks and carry
  cells, two syntheses at a time.

Writes ``build/reports/bench-array.json``, ``build/reports/array_resources.png`` and
``build/reports/array_latency.png``.

Usage: ``python scripts/bench_array.py [--sizes 2,4,8,16] [--pipeline 0,1,2]
[--synth-sizes 2,4,8] [--synth-pipeline 1] [--no-synth]``
"""

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from plots import REPO, REPORTS, line_plot, relpath, repo_on_path, write_json

repo_on_path()

FAMILIES = {
    "ice40": {"script": "synth_ice40 -dsp -top array",
              "cells": {"lut": ("SB_LUT4",), "ff": ("SB_DFF",), "dsp": ("SB_MAC16",),
                        "carry": ("SB_CARRY",)}},
    "ecp5": {"script": "synth_ecp5 -top array",
             "cells": {"lut": ("LUT4",), "ff": ("TRELLIS_FF",),
                       "dsp": ("MULT18X18D", "ALU54B"), "carry": ("CCU2C",)}},
}


def _pack(values, bits):
    mask = (1 << bits) - 1
    return sum((int(v) & mask) << (bits * i) for i, v in enumerate(values))


def _unpack_signed(word, bits, count):
    mask, sign = (1 << bits) - 1, 1 << (bits - 1)
    out = []
    for i in range(count):
        v = (word >> (bits * i)) & mask
        out.append(v - (1 << bits) if v & sign else v)
    return out


def measure_array(rows, cols, pipeline_every, *, seed=0):
    """Stream two weight tiles of ``2 * rows`` input rows each through a WS array.

    Returns
    -------
    dict
        ``latency_formula``, ``fill`` and ``drain`` (cycles), ``macs_per_cycle`` in steady
        state, ``peak``, ``efficiency`` of the whole run (useful MACs over peak x cycles
        from the first input to the last output), ``errors`` (rows that differ from NumPy)
        and ``sim_s`` (wall time of the simulation).
    """
    from amaranth.sim import Simulator

    from systolic.config import AcceleratorConfig
    from systolic.rtl.array import WSArray, array_latency

    config = AcceleratorConfig(rows=rows, cols=cols, pipeline_every=pipeline_every)
    dut = WSArray(config)
    rng = np.random.default_rng(seed)
    n = 2 * rows                                   # input rows per tile
    weights = [rng.integers(-128, 128, (rows, cols)) for _ in range(2)]
    inputs = [rng.integers(-128, 128, (n, rows)) for _ in range(2)]
    expected = [x @ w for x, w in zip(inputs, weights, strict=True)]
    expected = [list(map(int, row)) for row in np.concatenate(expected)]
    # Cycle plan: tile 0 weights in cycles 0..rows-1; tile 0 inputs from cycle `rows`,
    # with tile 1 weights pushed under them; tile 1 inputs right after.
    first_in = rows
    last_in = first_in + 2 * n - 1
    horizon = last_in + array_latency(config) + 8
    seen = []                                      # (cycle, row values)
    in_data, w_data = dut.inp.payload.data.as_value(), dut.weight.payload.data.as_value()
    out_data = dut.out.payload.data.as_value()

    async def bench(ctx):
        for cycle in range(horizon):
            w_tile, w_row = divmod(cycle if cycle < rows else cycle - first_in + rows, rows)
            pushing = cycle < rows or (first_in <= cycle < first_in + rows)
            ctx.set(dut.weight.valid, pushing)
            if pushing:
                ctx.set(dut.weight.payload.row, w_row)
                ctx.set(w_data, _pack(weights[w_tile][w_row], 8))
            streaming = first_in <= cycle <= last_in
            ctx.set(dut.inp.valid, streaming)
            ctx.set(dut.inp.payload.swap, streaming and (cycle - first_in) % n == 0)
            if streaming:
                tile, i = divmod(cycle - first_in, n)
                ctx.set(in_data, _pack(inputs[tile][i], 8))
            if ctx.get(dut.out.valid):
                seen.append((cycle, _unpack_signed(ctx.get(out_data), 32, cols)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    started = time.perf_counter()
    sim.run()
    sim_s = time.perf_counter() - started

    errors = sum(1 for (_, got), want in zip(seen, expected, strict=False) if got != want)
    errors += abs(len(seen) - len(expected))
    peak = rows * cols
    if seen:
        first_out, last_out = seen[0][0], seen[-1][0]
        steady = len(seen) * peak / (last_out - first_out + 1)
        efficiency = len(expected) * peak / (peak * (last_out - first_in + 1))
    else:
        first_out = last_out = first_in
        steady = efficiency = 0.0
    return {
        "rows": rows, "cols": cols, "pipeline_every": pipeline_every, "peak": peak,
        "latency_formula": array_latency(config), "fill": first_out - first_in,
        "drain": last_out - last_in, "input_rows": len(expected), "output_rows": len(seen),
        "macs_per_cycle": steady, "efficiency": efficiency, "errors": errors,
        "sim_s": round(sim_s, 3),
    }


def synthesize(family, rows, cols, pipeline_every):
    """Yosys synthesis of a WS array with the family's multiplier; cell counts."""
    from systolic.config import AcceleratorConfig
    from systolic.rtl.array import WSArray
    from systolic.sim.verilator import BUILD, emit_verilog

    config = AcceleratorConfig(rows=rows, cols=cols, pipeline_every=pipeline_every)
    folder = BUILD / "synth" / f"bench-array-{rows}x{cols}-p{pipeline_every}-{family}"
    emit_verilog(WSArray(config, multiplier=family), "array", folder / "array.v")
    spec = FAMILIES[family]
    script = f"read_verilog array.v; {spec['script']}; tee -q -o stat.json stat -json"
    started = time.perf_counter()
    result = subprocess.run([os.environ["YOSYS"], "-q", "-p", script], cwd=folder,
                            capture_output=True, text=True, timeout=900)
    if result.returncode:
        raise RuntimeError(f"yosys failed for {family} {rows}x{cols}: "
                           f"{result.stderr.strip()[-300:]}")
    cells = json.loads((folder / "stat.json").read_text())["design"]["num_cells_by_type"]
    counts = {kind: sum(v for cell, v in cells.items() if cell.startswith(prefixes))
              for kind, prefixes in spec["cells"].items()}
    return {"family": family, "rows": rows, "cols": cols, "pipeline_every": pipeline_every,
            "macs": rows * cols, **counts, "seconds": round(time.perf_counter() - started, 1)}


def _progress(console):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


def run_sims(console, sizes, pipelines):
    runs = []
    with _progress(console) as bar:
        task = bar.add_task("array in Amaranth's simulator", total=len(sizes) * len(pipelines))
        for size in sizes:
            for p in pipelines:
                bar.update(task, description=f"array in Amaranth's simulator: {size}x{size}, "
                                             f"pipeline_every={p}")
                runs.append(measure_array(size, size, p))
                bar.advance(task)
        bar.update(task, description="array in Amaranth's simulator")
    return runs


def run_synth(console, sizes, pipeline_every):
    jobs = [(fam, s) for s in sizes for fam in FAMILIES]
    results = []
    with _progress(console) as bar, ThreadPoolExecutor(max_workers=2) as pool:
        task = bar.add_task("yosys synthesis (2 at a time)", total=len(jobs))
        futures = [pool.submit(synthesize, fam, s, s, pipeline_every) for fam, s in jobs]
        for future in futures:
            results.append(future.result())
            bar.advance(task)
    return results


def print_sims(console, runs):
    from rich.table import Table

    table = Table(title="WS array in Amaranth's simulator: two tiles of 2 x rows input "
                        "rows, weights preloaded under the first")
    for col in ("array", "pipeline_every", "latency (formula)", "fill", "drain",
                "MACs/cycle steady", "peak", "run efficiency", "rows checked"):
        table.add_column(col, justify="left" if col == "array" else "right")
    for r in runs:
        ok = "[green]ok[/]" if not r["errors"] else f"[red]{r['errors']} wrong[/]"
        table.add_row(f"{r['rows']}x{r['cols']}", str(r["pipeline_every"]),
                      str(r["latency_formula"]), str(r["fill"]), str(r["drain"]),
                      f"{r['macs_per_cycle']:.1f}", str(r["peak"]), f"{r['efficiency']:.0%}",
                      f"{r['output_rows']} {ok}")
    console.print(table)


def print_synth(console, results):
    from rich.table import Table

    table = Table(title="WS array synthesis (YoWASP yosys)")
    for col in ("family", "array", "MACs", "LUT4", "FF", "DSP", "carry", "LUT4/MAC",
                "FF/MAC", "DSP/MAC", "time"):
        table.add_column(col, justify="left" if col in ("family", "array") else "right")
    for r in results:
        m = r["macs"]
        table.add_row(r["family"], f"{r['rows']}x{r['cols']}", str(m), str(r["lut"]),
                      str(r["ff"]), str(r["dsp"]), str(r["carry"]), f"{r['lut'] / m:.1f}",
                      f"{r['ff'] / m:.1f}", f"{r['dsp'] / m:.2f}", f"{r['seconds']:.0f} s")
    console.print(table)


def plots(runs, synth):
    written = []
    series = {}
    for color, p in enumerate(sorted({r["pipeline_every"] for r in runs})):
        mine = [r for r in runs if r["pipeline_every"] == p]
        xs = [r["rows"] for r in mine]
        series[f"pipeline_every={p}: measured"] = (xs, [r["fill"] for r in mine], f"o-C{color}")
        series[f"pipeline_every={p}: formula"] = (xs, [r["latency_formula"] for r in mine],
                                                  f"x:C{color}")
    if series:
        written.append(line_plot(
            REPORTS / "array_latency.png", series, title="WS array fill latency (N x N)",
            xlabel="N (rows = cols)", ylabel="cycles from input row to output row",
            xticks=sorted({r["rows"] for r in runs}), logx=True))
    series = {}
    styles = {"lut": "o-", "ff": "s-", "dsp": "^-"}
    for color, fam in enumerate(FAMILIES):
        mine = sorted((r for r in synth if r["family"] == fam), key=lambda r: r["macs"])
        for kind, style in styles.items():
            if mine:
                series[f"{fam} {kind.upper()}"] = ([r["macs"] for r in mine],
                                                   [r[kind] for r in mine],
                                                   f"{style}C{color}" if kind != "dsp"
                                                   else f"^--C{color}")
    if series:
        path = line_plot(REPORTS / "array_resources.png", series,
                         title=f"WS array resources vs MACs (yosys, pipeline_every="
                               f"{synth[0]['pipeline_every']})", xlabel="MACs (rows x cols)",
                         ylabel="cells", xticks=sorted({r["macs"] for r in synth}), logx=True,
                         logy=True, annotate=True, value_fmt="{:.0f}")
        written.append(path)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,4,8,16", help="N of the N x N arrays simulated")
    parser.add_argument("--pipeline", default="0,1,2", help="pipeline_every values simulated")
    parser.add_argument("--synth-sizes", default="2,4,8", help="N of the arrays synthesized")
    parser.add_argument("--synth-pipeline", type=int, default=1,
                        help="pipeline_every of the synthesized arrays")
    parser.add_argument("--no-synth", action="store_true", help="skip the yosys runs")
    args = parser.parse_args(argv)

    from rich.console import Console

    from systolic.toolchain import setup_env

    setup_env()
    console = Console(width=None if sys.stdout.isatty() else 132)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        pipelines = [int(p) for p in args.pipeline.split(",") if p]
        synth_sizes = [] if args.no_synth else [int(s) for s in args.synth_sizes.split(",") if s]
    except ValueError as exc:
        console.print(f"[red]bench_array: error: {exc}[/]")
        return 2
    started = time.perf_counter()
    runs = run_sims(console, sizes, pipelines)
    print_sims(console, runs)
    synth = run_synth(console, synth_sizes, args.synth_pipeline) if synth_sizes else []
    if synth:
        print_synth(console, synth)
    written = plots(runs, synth)
    failures = [f"{r['rows']}x{r['cols']} pipeline_every={r['pipeline_every']}: "
                f"{r['errors']} wrong or missing output rows" for r in runs if r["errors"]]
    failures += [f"{r['rows']}x{r['cols']} pipeline_every={r['pipeline_every']}: fill "
                 f"{r['fill']} cycles, array_latency says {r['latency_formula']}"
                 for r in runs if r["fill"] != r["latency_formula"]]
    path = write_json("array", {
        "simulation": runs, "synthesis": synth, "synth_pipeline_every": args.synth_pipeline,
        "wall_s": round(time.perf_counter() - started, 1), "failures": failures,
        "plots": [str(relpath(p)) for p in written],
    })
    console.print(f"report: {relpath(path)}; plots: "
                  + ", ".join(str(relpath(p)) for p in written))
    for f in failures:
        console.print(f"[red]FAIL {f}[/]")
    return 1 if failures else 0


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
