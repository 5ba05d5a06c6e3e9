"""GEMM on the RTL: cycles, MAC utilization and load/compute overlap against the cycle model.

Runs square GEMMs (default 32^3, 64^3, 128^3) on ``Accelerator(preset)`` in Verilator
through the runtime's :class:`~systolic.runtime.verilator.VerilatorDevice` (build folder
``build/sim/accel-<preset>``, one simulator process for the whole batch), in two forms:

* ``hand``: the hand-assembled double-buffered schedule of
  :func:`systolic.testing.gemm.tiled_gemm` (int8 x int8, raw int32 output);
* ``compiled``: a linear layer from the compiler core (:func:`systolic.compiler.compile_graph`:
  int8 input, int8 weights, int32 bias, per-tensor requantization to int8).

Every result must equal the golden model's output bit for bit, and the golden model the
NumPy reference (exit status 1 otherwise). Per run it reports the RTL's ``PERF_CYCLES``,
the MAC utilization ``M*N*K / (rows*cols*cycles)``, ``PERF_LOAD_BUSY`` /
``PERF_STORE_BUSY`` / ``PERF_OVERLAP`` (cycles a LOAD or STORE ran while the array
computed), the analytic model's estimate (:func:`systolic.perf.estimate`) with its error
against the RTL, and the simulation speed of the batch. Writes
``build/reports/bench-gemm-sweep.json`` and ``build/reports/gemm_utilization.png``.

Usage: ``python scripts/bench_gemm_sweep.py [--preset default] [--sizes 32,64,128]
[--kinds hand,compiled]``
"""

import argparse
import os
import sys
import time

import numpy as np
from plots import REPORTS, line_plot, relpath, repo_on_path, write_json

repo_on_path()

KINDS = ("hand", "compiled")


class Case:
    """One GEMM run: its job, how to read its output, and the expected values."""

    def __init__(self, kind, size, memory, prog_addr, prog_len, words, read, expected):
        self.kind, self.size = kind, size
        self.memory, self.prog_addr, self.prog_len = memory, prog_addr, prog_len
        self.words, self.read, self.expected = words, read, expected

    @property
    def macs(self):
        return self.size ** 3


def hand_case(config, size, seed):
    """The hand-built tiled GEMM (int32 output)."""
    from systolic.testing.gemm import tiled_gemm

    g = tiled_gemm(config, size, size, size, seed=seed)
    return Case("hand", size, g.image, g.prog_addr, g.prog_len, g.words, g.result,
                g.expected)


def compiled_case(config, size, seed):
    """A linear layer (bias, requantization to int8) through the compiler core."""
    from systolic.compiler import Graph, Requant, compile_graph

    rng = np.random.default_rng(seed)
    lo, hi = config.weight_range
    weight = rng.integers(lo, hi, (size, size), endpoint=True)
    bias = rng.integers(-2000, 2000, size)
    graph = Graph(f"gemm{size}")
    x = graph.input("x", (size, size), "int8", scale=1 / 64, zero_point=0)
    # A scale that keeps most outputs inside int8: sums of `size` products of about
    # 64 * 64 have a spread of about 4096 * sqrt(size).
    scale = 100 / (4096 * np.sqrt(size))
    requant = Requant.from_scale(scale, requant_bits=config.requant_bits, zero_point=3)
    graph.output(graph.gemm(x, weight, bias, requant, name="y"))
    program = compile_graph(graph, config)
    inputs = {"x": rng.integers(-128, 128, (size, size))}
    expected = graph.reference(inputs, config)["y"]
    memory = bytes(program.memory(inputs))
    return Case("compiled", size, memory, program.prog_addr, program.prog_len,
                program.words, lambda mem: program.read_output(mem, "y"), expected)


def quiet_simulator():
    """Keep the simulator's log to warnings (the progress bar shows the runs), unless the
    caller chose a level."""
    os.environ.setdefault("COCOTB_LOG_LEVEL", "WARNING")
    os.environ.setdefault("GPI_LOG_LEVEL", "WARNING")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")


def run_cases(config, cases, console):
    """Run every case on the golden model and on the RTL (one Verilator batch)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from systolic.runtime.device import GoldenDevice, Job
    from systolic.runtime.verilator import VerilatorDevice
    from systolic.sim import build, verilator

    # The runtime imports the precompiled-header make fix from sim.build, which no longer
    # defines it (run_cocotb applies it itself): give it the same value.
    if not hasattr(build, "MAKE_FIX"):
        build.MAKE_FIX = verilator.MAKE_FIX

    jobs = [Job(c.memory, c.prog_addr, c.prog_len) for c in cases]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("programs"), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("golden model", total=len(jobs))
        golden = GoldenDevice(config).run_batch(jobs, progress=lambda: bar.advance(task))
        device = VerilatorDevice(config)
        task = bar.add_task(f"RTL in Verilator ({relpath(device.build_dir())})",
                            total=len(jobs))
        rtl = device.run_batch(jobs, progress=lambda: bar.advance(task))
    return golden, rtl, device.last_stats


def measure(config, cases, golden, rtl):
    """Rows of figures, one per case, and the list of failures."""
    from systolic.perf import estimate

    rows, failures = [], []
    peak = config.rows * config.cols
    for case, g, r in zip(cases, golden, rtl, strict=True):
        name = f"{case.kind} {case.size}^3"
        if not r.ok:
            failures.append(f"{name}: RTL stopped with {r.error} at {r.error_index}")
            continue
        got, ref = np.asarray(case.read(r.memory)), np.asarray(case.read(g.memory))
        if not np.array_equal(ref, np.asarray(case.expected)):
            failures.append(f"{name}: golden model differs from the NumPy reference")
        if not np.array_equal(got, ref):
            bad = int(np.count_nonzero(got != ref))
            failures.append(f"{name}: RTL differs from the golden model in {bad} elements")
        p = r.perf
        cycles = int(p["cycles"])
        model = estimate(config, case.words)
        rows.append({
            "kind": case.kind, "size": case.size, "m": case.size, "n": case.size,
            "k": case.size, "bit_exact": bool(np.array_equal(got, ref)),
            "macs": case.macs, "instructions": len(case.words),
            "cycles": cycles, "utilization": case.macs / (peak * cycles),
            "mac_busy": int(p["mac_busy"]), "array_busy": int(p["mac_busy"]) / cycles,
            "load_busy": int(p["load_busy"]), "store_busy": int(p["store_busy"]),
            "overlap": int(p["overlap"]), "overlap_share": int(p["overlap"]) / cycles,
            "stall_token": int(p["stall_token"]), "stall_dma": int(p["stall_dma"]),
            "stall_fetch": int(p["stall_fetch"]), "instret": int(p["instret"]),
            "model_cycles": model.cycles, "model_utilization": model.mac_utilization,
            "model_error": (model.cycles - cycles) / cycles,
            "model_busy": model.busy,
        })
    return rows, failures


def print_table(console, config, rows, stats):
    from rich.table import Table

    table = Table(title=f"GEMM on the '{config.name}' accelerator ({config.rows}x"
                        f"{config.cols}, {config.axi_data_width}-bit AXI), RTL in Verilator")
    for col in ("GEMM", "form", "bit-exact", "cycles", "MAC util.", "load busy",
                "store busy", "overlap", "model cycles", "model util.", "model/RTL",
                "error"):
        table.add_column(col, justify="left" if col in ("GEMM", "form") else "right")
    for r in rows:
        table.add_row(f"{r['size']}^3", r["kind"], "yes" if r["bit_exact"] else "[red]NO[/]",
                      f"{r['cycles']:,}", f"{r['utilization']:.1%}", f"{r['load_busy']:,}",
                      f"{r['store_busy']:,}", f"{r['overlap']:,}", f"{r['model_cycles']:,}",
                      f"{r['model_utilization']:.1%}",
                      f"{r['model_cycles'] / r['cycles']:.2f}", f"{r['model_error']:+.0%}")
    console.print(table)
    rate = stats["sim_cycles"] / stats["sim_wall_s"] if stats.get("sim_wall_s") else 0.0
    console.print(f"simulation: {stats.get('sim_cycles', 0):,.0f} cycles in "
                  f"{stats.get('sim_wall_s', 0):.1f} s ({rate:,.0f} simulated cycles per "
                  f"second); batch wall time with start-up {stats.get('total_wall_s', 0):.1f} s")
    return rate


def plot(rows, sizes, peak):
    series = {}
    for color, kind in enumerate(KINDS):
        mine = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["size"])
        if not mine:
            continue
        xs = [r["size"] for r in mine]
        series[f"{kind}: RTL"] = (xs, [100 * r["utilization"] for r in mine], f"o-C{color}")
        series[f"{kind}: model"] = (xs, [100 * r["model_utilization"] for r in mine],
                                    f"s--C{color}")
    return line_plot(REPORTS / "gemm_utilization.png", series,
                     title=f"MAC utilization of square GEMMs ({peak} MACs/cycle peak)",
                     xlabel="M = N = K", ylabel="MAC utilization (%)", xticks=sizes,
                     logx=True, ylim=(0, 100), annotate=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--sizes", default="32,64,128",
                        help="comma-separated M = N = K values (multiples of the array size)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="hand, compiled or both")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    from rich.console import Console

    from systolic.config import preset
    from systolic.toolchain import setup_env

    setup_env()
    quiet_simulator()
    console = Console(width=None if sys.stdout.isatty() else 132)
    try:
        config = preset(args.preset)
        sizes = [int(s) for s in args.sizes.split(",") if s]
        kinds = [k for k in args.kinds.split(",") if k]
        for k in kinds:
            if k not in KINDS:
                raise ValueError(f"unknown GEMM form {k!r}; choose from {', '.join(KINDS)}")
        with console.status("building the GEMM programs"):
            make = {"hand": hand_case, "compiled": compiled_case}
            cases = [make[k](config, s, args.seed + s) for s in sizes for k in kinds]
    except ValueError as exc:
        console.print(f"[red]bench_gemm_sweep: error: {exc}[/]")
        return 2

    started = time.perf_counter()
    golden, rtl, stats = run_cases(config, cases, console)
    rows, failures = measure(config, cases, golden, rtl)
    rate = print_table(console, config, rows, stats)
    errors = [abs(r["model_error"]) for r in rows]
    if errors:
        console.print(f"cycle model vs RTL: mean |error| {np.mean(errors):.0%}, "
                      f"max {max(errors):.0%}")
    png = plot(rows, sizes, config.rows * config.cols) if rows else None
    report = {
        "preset": config.name, "rows": config.rows, "cols": config.cols,
        "axi_data_width": config.axi_data_width, "sizes": sizes,
        "sim_cycles": stats.get("sim_cycles"), "sim_wall_s": stats.get("sim_wall_s"),
        "sim_cycles_per_s": rate, "wall_s": time.perf_counter() - started,
        "model_mean_abs_error": float(np.mean(errors)) if errors else None,
        "runs": rows, "failures": failures,
        "plots": [str(relpath(png))] if png else [],
    }
    path = write_json("gemm-sweep", report)
    console.print(f"report: {relpath(path)}" + (f", plot: {relpath(png)}" if png else ""))
    for f in failures:
        console.print(f"[red]FAIL {f}[/]")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
