"""The analytic cycle model against the RTL: GEMMs and the digits networks, per program.

Every device program is run on the golden model and on ``Accelerator(preset)`` in
Verilator (:class:`~systolic.runtime.verilator.VerilatorDevice`), and its RTL cycle count
(``PERF_CYCLES``) is compared with :func:`systolic.perf.estimate` on the same program words
with the default :class:`~systolic.perf.PerfParams`:

* GEMMs (int8 input and weights, int32 bias, requantized to int8) compiled by the
  compiler core (``Graph.gemm`` + ``compile_graph``): the cubes of ``--sizes`` and the
  ragged shapes of ``--ragged``;
* the digits MLP and CNN of :mod:`systolic.zoo` (onnxruntime ``quantize_static``,
  QOperator, uint8 activations) compiled by ``compile_onnx`` at a batch of ``--batch``
  images: a :class:`~systolic.compiler.package.CompiledModel` runs several device
  programs, each is one row of the table.

Every output must equal the golden model's bit for bit (exit status 1 otherwise). Prints
the table (RTL cycles, model cycles, error ``(model - RTL) / RTL``, MAC utilization), the
largest GEMM's MAC utilization, and writes ``build/reports/bench-perf.json`` and
``build/reports/perf_model.png``. The RTL counts and programs are also kept in
``build/reports/bench-perf-programs.json``, so ``--model-only`` re-estimates the same
programs without a simulation (to calibrate ``PerfParams``).

``--calibrate`` adds the microbenchmarks (one kind of instruction per program: LOAD and
STORE row costs and overheads, fetch rate, back-to-back MATMULs with weights in or out of
the inputs' bank, token round trips, a STORE from the accumulator bank being
accumulated into) that the constants of :class:`~systolic.perf.PerfParams` were read from.

Usage: ``python scripts/bench_perf.py [--preset default] [--sizes 64,128,256]
[--ragged 100x300x130] [--networks mlp,cnn] [--build-root build/perfcal] [--calibrate]
[--model-only]``
"""

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from plots import REPO, REPORTS, relpath, repo_on_path, write_json

repo_on_path()

PROGRAMS = REPORTS / "bench-perf-programs.json"


class Case:
    """One device program: its job, the golden result, the RTL counters."""

    def __init__(self, name, group, job, macs):
        self.name, self.group, self.job, self.macs = name, group, job, macs
        self.golden = self.rtl = None

    @property
    def words(self):
        from systolic.isa import from_bytes

        lo = self.job.prog_addr
        return from_bytes(bytes(self.job.memory[lo:lo + 16 * self.job.prog_len]))

    @property
    def key(self):
        h = hashlib.sha1(bytes(self.job.memory))
        h.update(f"{self.job.prog_addr},{self.job.prog_len}".encode())
        return h.hexdigest()


def gemm_cases(config, shapes, seed):
    """One compiled linear layer per ``(m, k, n)``; returns cases and output checks."""
    from systolic.compiler import Graph, Requant, compile_graph
    from systolic.runtime.device import Job

    cases = []
    for m, k, n in shapes:
        rng = np.random.default_rng(seed + m + 7 * k + 13 * n)
        lo, hi = config.weight_range
        weight = rng.integers(lo, hi, (k, n), endpoint=True)
        graph = Graph(f"gemm{m}x{k}x{n}")
        x = graph.input("x", (m, k), "int8", scale=1 / 64, zero_point=0)
        requant = Requant.from_scale(100 / (4096 * np.sqrt(k)), zero_point=3,
                                     requant_bits=config.requant_bits)
        graph.output(graph.gemm(x, weight, rng.integers(-2000, 2000, n), requant, name="y"))
        program = compile_graph(graph, config)
        inputs = {"x": rng.integers(-128, 128, (m, k))}
        job = Job(bytes(program.memory(inputs)), program.prog_addr, program.prog_len)
        case = Case(f"gemm {m}x{k}x{n}", "gemm", job, m * k * n)
        case.check = (lambda mem, p=program: p.read_output(mem, "y"),
                      graph.reference(inputs, config)["y"])
        cases.append(case)
    return cases


class _Capture:
    """A device wrapper that keeps every job and result it passes on."""

    def __init__(self, inner):
        from systolic.runtime.device import Device

        class Wrapped(Device):
            def run_batch(inner_self, jobs, progress=None):
                results = inner.run_batch(jobs, progress=progress)
                self.runs.extend(zip(jobs, results, strict=True))
                return results

        self.runs = []
        self.device = Wrapped(inner.config)


def network_runs(config, names, batch, make_device):
    """Run each zoo network on one device; returns ``{name: (outputs, [(job, result)])}``."""
    from systolic.compiler.onnx_compile import compile_onnx
    from systolic.zoo import build_models, digits_split

    zoo = build_models(REPO / "build" / "models", names=tuple(names))
    _, _, x_test, _ = digits_split()
    out = {}
    for name in names:
        model = zoo[name]
        x = x_test[:batch].reshape(batch, *model.input_shape[1:])
        compiled = compile_onnx(str(model.quantized["qoperator_uint8"]), config, batch=batch)
        cap = _Capture(make_device())
        outputs, _ = compiled.run({compiled.inputs[0].name: x}, cap.device)
        out[name] = (outputs[compiled.outputs[0].name], cap.runs)
    return out


def run_all(config, args, console):
    """Golden model and RTL runs of every case; returns ``(cases, failures, stats)``."""
    from systolic.runtime.device import GoldenDevice
    from systolic.runtime.verilator import VerilatorDevice
    from systolic.sim import build, verilator

    # The runtime imports the make fix from sim.build, which no longer defines it
    # (run_cocotb applies it itself): give it the same value.
    if not hasattr(build, "MAKE_FIX"):
        build.MAKE_FIX = verilator.MAKE_FIX
    failures = []
    rtl_dev = VerilatorDevice(config, build_root=args.build_root)
    with console.status("GEMMs: golden model and RTL"):
        cases = gemm_cases(config, args.shapes, args.seed)
        micro = micro_cases(config) if args.calibrate else []
        golden = GoldenDevice(config).run_batch([c.job for c in cases + micro])
        rtl = rtl_dev.run_batch([c.job for c in cases + micro]) if cases + micro else []
    stats = dict(rtl_dev.last_stats)
    for c, g, r in zip(cases + micro, golden, rtl, strict=True):
        c.golden, c.rtl = g, r
        if c.group == "micro":
            if not r.ok or r.error != g.error:
                failures.append(f"{c.name}: RTL stopped with {r.error}, golden with {g.error}")
            continue
        read, expected = c.check
        if not np.array_equal(read(g.memory), expected):
            failures.append(f"{c.name}: golden model differs from the NumPy reference")
        if not r.ok or not np.array_equal(read(r.memory), read(g.memory)):
            failures.append(f"{c.name}: RTL differs from the golden model ({r.error})")
    if args.networks:
        with console.status(f"networks {', '.join(args.networks)}: golden model and RTL"):
            gold = network_runs(config, args.networks, args.batch, lambda: GoldenDevice(config))
            real = network_runs(config, args.networks, args.batch,
                                lambda: VerilatorDevice(config, build_root=args.build_root))
        for name in args.networks:
            (g_out, g_runs), (r_out, r_runs) = gold[name], real[name]
            if not np.array_equal(np.asarray(g_out), np.asarray(r_out)):
                failures.append(f"{name}: RTL outputs differ from the golden model's")
            for i, ((job, g), (_, r)) in enumerate(zip(g_runs, r_runs, strict=True)):
                c = Case(f"{name} program {i}", name, job, int(g.perf.get("macs", 0)))
                c.golden, c.rtl = g, r
                if not r.ok:
                    failures.append(f"{c.name}: RTL stopped with {r.error}")
                cases.append(c)
    return cases + micro, failures, stats


def micro_programs(config):
    """Small programs of one kind of instruction each, the measurements the constants of
    :class:`~systolic.perf.PerfParams` come from: ``{name: assembly}``."""
    c, d = config, 0x10000
    wb, ab = (c.sp_banks - 1) * c.sp_depth, c.acc_depth    # last scratchpad bank, acc bank 1
    n8 = c.sp_width
    progs = {"halt": "", "nop x32": "NOP\n" * 32}
    for n in (8, 128):
        progs[f"load sp {n} rows"] = (f"LOAD dest=sp n_rows={n} length={n8} stride={n8} "
                                      f"dram_addr={d}")
        progs[f"load acc {n} rows broadcast"] = (f"LOAD dest=acc n_rows={n} length={c.cols} "
                                                  f"stride=0 dram_addr={d}")
        progs[f"store int8 {n} rows"] = (f"STORE src=acc out_type=int8 n_rows={n} "
                                         f"length={c.cols} stride=256 dram_addr={d}")
        progs[f"store int32 {n} rows"] = (f"STORE src=acc out_type=int32 n_rows={n} "
                                          f"length={c.cols} stride={4 * c.cols} dram_addr={d}")
        progs[f"vector add {n} rows"] = f"VECTOR op=add dst=0 src_a=0 src_b={ab} n_rows={n}"
    progs["load 8 rows, unaligned"] = (f"LOAD dest=sp n_rows=8 length={n8} stride=100 "
                                       f"dram_addr={d + 3}")
    progs["load padding only"] = "LOAD dest=sp n_rows=8 length=1 pad_top=8"
    progs["8 loads of 8 rows"] = "\n".join(
        f"LOAD dest=sp addr={8 * k} n_rows=8 length={n8} stride={n8} dram_addr={d + 64 * k}"
        for k in range(8))
    progs["8 stores of 16 int8 rows"] = "\n".join(
        f"STORE src=acc out_type=int8 addr={16 * k} n_rows=16 length={c.cols} stride={c.cols} "
        f"dram_addr={d + 128 * k}" for k in range(8))
    progs["vector max 64 rows, one bank"] = "VECTOR op=max dst=0 src_a=0 src_b=100 n_rows=64"
    for where, w in (("weights in another bank", wb), ("weights in the inputs' bank", 1000)):
        progs[f"8 MATMULs of 128 rows, {where}"] = f"MATMUL preload=1 w_addr={w}\n" + "\n".join(
            f"MATMUL compute=1 preload=1 w_addr={w + 8 * (k % 4)} n_rows=128 accumulate=1"
            for k in range(8))
    progs["LOAD -> MATMUL token"] = (f"LOAD dest=sp n_rows=8 length={n8} stride={n8} "
                                     f"dram_addr={d} push_next\nMATMUL compute=1 n_rows=8 pop_prev")
    progs["MATMUL -> STORE token"] = (f"MATMUL preload=1 w_addr={wb}\nMATMUL compute=1 n_rows=128 "
                                      f"push_next\nSTORE src=acc out_type=int8 n_rows=8 "
                                      f"length={c.cols} stride={c.cols} dram_addr={d} pop_prev")
    for where, addr in (("the other bank", ab + 88), ("the bank being accumulated", 256)):
        progs[f"STORE from {where}"] = (
            f"MATMUL preload=1 w_addr={wb}\nMATMUL compute=1 n_rows=512 accumulate=1\n"
            f"STORE src=acc addr={addr} out_type=int8 n_rows=128 length={c.cols} "
            f"stride={c.cols} dram_addr={d}")
    return progs


def micro_cases(config):
    from systolic.isa import assemble, to_bytes
    from systolic.runtime.device import Job

    cases = []
    for name, text in micro_programs(config).items():
        words = assemble(text + "\nHALT\n")
        image = bytearray(0x30000)
        image[:16 * len(words)] = to_bytes(words)
        cases.append(Case(name, "micro", Job(bytes(image), 0, len(words)), 0))
    return cases


def estimate_rows(config, measured, params):
    """Model estimates of measured programs (``[{name, group, words, perf, macs}]``)."""
    from systolic.perf import estimate

    peak = config.rows * config.cols
    rows = []
    for m in measured:
        est = estimate(config, m["words"], params)
        cycles = int(m["perf"]["cycles"])
        rows.append({
            "name": m["name"], "group": m["group"], "instructions": len(m["words"]),
            "macs": m["macs"], "cycles": cycles, "utilization": m["macs"] / (peak * cycles),
            "mac_busy": int(m["perf"].get("mac_busy", 0)),
            "load_busy": int(m["perf"].get("load_busy", 0)),
            "store_busy": int(m["perf"].get("store_busy", 0)),
            "model_cycles": est.cycles, "model_utilization": est.mac_utilization,
            "model_busy": est.busy, "error": (est.cycles - cycles) / cycles,
        })
    return rows


def print_table(console, config, rows):
    from rich.table import Table

    table = Table(title=f"Cycle model vs RTL on '{config.name}' ({config.rows}x{config.cols}, "
                        f"{config.axi_data_width}-bit AXI)")
    for col in ("program", "instr", "RTL cycles", "MAC util.", "load busy", "store busy",
                "model cycles", "error"):
        table.add_column(col, justify="left" if col == "program" else "right")
    for r in rows:
        err = f"{r['error']:+.1%}"
        table.add_row(r["name"], str(r["instructions"]), f"{r['cycles']:,}",
                      f"{r['utilization']:.1%}", f"{r['load_busy']:,}", f"{r['store_busy']:,}",
                      f"{r['model_cycles']:,}", err if abs(r["error"]) <= 0.05 else
                      f"[red]{err}[/]")
    console.print(table)


def plot(rows):
    from plots import _save, plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = [r["name"] for r in rows]
    xs = np.arange(len(rows))
    ax.bar(xs - 0.2, [r["cycles"] for r in rows], 0.4, label="RTL (PERF_CYCLES)")
    ax.bar(xs + 0.2, [r["model_cycles"] for r in rows], 0.4, label="model (systolic.perf)")
    for x, r in zip(xs, rows, strict=True):
        ax.annotate(f"{r['error']:+.1%}", (x, max(r["cycles"], r["model_cycles"])),
                    ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(xs, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("cycles")
    ax.set_title("Cycle model vs RTL, per device program")
    ax.legend()
    return _save(fig, REPORTS / "perf_model.png")


def parse_shapes(sizes, ragged):
    shapes = [(s, s, s) for s in (int(v) for v in sizes.split(",") if v)]
    for text in (v for v in ragged.split(",") if v):
        m, k, n = (int(v) for v in text.lower().split("x"))
        shapes.append((m, k, n))
    return shapes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--sizes", default="64,128,256", help="cube GEMMs M = N = K")
    parser.add_argument("--ragged", default="100x300x130,33x70x17",
                        help="more GEMMs as MxKxN, comma-separated")
    parser.add_argument("--networks", default="mlp,cnn")
    parser.add_argument("--batch", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--build-root", default=None,
                        help="folder of the Verilator build (default build/sim)")
    parser.add_argument("--calibrate", action="store_true",
                        help="also run the microbenchmarks the PerfParams come from")
    parser.add_argument("--model-only", action="store_true",
                        help="re-estimate the programs of the last run without simulating")
    args = parser.parse_args(argv)

    from dataclasses import replace

    from rich.console import Console

    from systolic.config import preset
    from systolic.perf import PerfParams
    from systolic.toolchain import setup_env

    os.environ.setdefault("COCOTB_LOG_LEVEL", "WARNING")
    os.environ.setdefault("GPI_LOG_LEVEL", "WARNING")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    setup_env()
    console = Console(width=None if sys.stdout.isatty() else 132)
    config = preset(args.preset)
    if not config.perf_counters:
        # PERF_CYCLES is what the model is compared with; the counters only observe, so a
        # build with them has the preset's timing
        config = replace(config, perf_counters=True)
        console.print(f"{args.preset}: measured with performance counters added "
                      "(they do not change its timing)")
    args.shapes = parse_shapes(args.sizes, args.ragged)
    args.networks = [n for n in args.networks.split(",") if n]
    if args.build_root:  # the simulator runs in another folder
        args.build_root = str(Path(args.build_root).resolve())
    started = time.perf_counter()
    failures, stats = [], {}
    if args.model_only:
        saved = json.loads(PROGRAMS.read_text())
        measured = [dict(m, words=[int(w, 16) for w in m["words"]]) for m in saved["runs"]]
    else:
        cases, failures, stats = run_all(config, args, console)
        measured = [{"name": c.name, "group": c.group, "words": c.words, "macs": c.macs,
                     "key": c.key, "perf": {k: int(v) for k, v in c.rtl.perf.items()}}
                    for c in cases]
        PROGRAMS.parent.mkdir(parents=True, exist_ok=True)
        PROGRAMS.write_text(json.dumps({"preset": config.name, "runs": [
            dict(m, words=[f"{w:032x}" for w in m["words"]]) for m in measured]}) + "\n")
    params = PerfParams()
    rows = estimate_rows(config, measured, params)
    print_table(console, config, rows)
    errors = [abs(r["error"]) for r in rows if r["group"] != "micro"]
    console.print(f"cycle model vs RTL: mean |error| {np.mean(errors):.1%}, "
                  f"max {max(errors):.1%} over {len(errors)} programs (microbenchmarks "
                  f"apart)")
    gemms = [r for r in rows if r["group"] == "gemm"]
    largest = max(gemms, key=lambda r: r["macs"]) if gemms else None
    if largest:
        console.print(f"{largest['name']}: MAC utilization {largest['utilization']:.1%} "
                      f"({largest['macs']:,} MACs in {largest['cycles']:,} cycles)")
    if stats.get("sim_wall_s"):
        console.print(f"simulation: {stats['sim_cycles']:,.0f} cycles of GEMMs in "
                      f"{stats['sim_wall_s']:.1f} s")
    png = plot([r for r in rows if r["group"] != "micro"])
    report = {
        "preset": config.name, "params": vars(params), "runs": rows,
        "mean_abs_error": float(np.mean(errors)), "max_abs_error": float(max(errors)),
        "largest_gemm": largest, "failures": failures, "plots": [str(relpath(png))],
        "wall_s": time.perf_counter() - started,
    }
    path = write_json("perf", report)
    console.print(f"report: {relpath(path)}, plot: {relpath(png)}")
    for f in failures:
        console.print(f"[red]FAIL {f}[/]")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
