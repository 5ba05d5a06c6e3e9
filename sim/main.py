"""``make sim``: a real quantized network on the default accelerator in Verilator.

The path a user takes: networks trained in NumPy on scikit-learn's digits, exported to
ONNX, quantized with onnxruntime's ``quantize_static``, compiled, then run on the golden
model and on the RTL; the two must agree bit for bit. Writes ``build/reports/sim.json``.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from systolic.config import preset
from systolic.runtime.device import Device, GoldenDevice
from systolic.toolchain import setup_env

from .verilator import BUILD, REPO

__all__ = ["main", "run_network"]


class _Recorder(Device):
    """Passes jobs through to a device and sums its performance counters."""

    def __init__(self, inner):
        super().__init__(inner.config)
        self.inner = inner
        self.totals = {}
        self.jobs = 0
        self.sim_cycles = 0.0
        self.sim_wall_s = 0.0

    def run_batch(self, jobs, progress=None):
        results = self.inner.run_batch(jobs, progress=progress)
        for r in results:
            for k, v in r.perf.items():
                self.totals[k] = self.totals.get(k, 0) + int(v)
        self.jobs += len(results)
        stats = getattr(self.inner, "last_stats", {})
        self.sim_cycles += stats.get("sim_cycles", 0.0)
        self.sim_wall_s += stats.get("sim_wall_s", 0.0)
        return results


def _device_jobs(compiled, n_samples):
    from systolic.compiler.compiled import HostStep

    chunks = -(-n_samples // compiled.batch)
    steps = sum(1 for s in compiled.stages if s.kind == "device"
                for step in s.program.steps if not isinstance(step, HostStep))
    return chunks * steps


def run_network(name, onnx_path, x, y, config, *, batch, waves=False, console=None):
    """Compile one ONNX model and run ``x`` on the golden model and the RTL."""
    import onnxruntime as ort
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from systolic.compiler.onnx_compile import compile_onnx
    from systolic.runtime.verilator import VerilatorDevice

    compiled = compile_onnx(str(onnx_path), config, batch=batch)
    feeds = {compiled.inputs[0].name: x}
    out_name = compiled.outputs[0].name
    golden = _Recorder(GoldenDevice(config))
    gold_out, gold_info = compiled.run(feeds, golden)
    session = ort.InferenceSession(str(onnx_path))
    ort_out = np.concatenate([session.run(None, {session.get_inputs()[0].name: x[i:i + 1]})[0]
                              for i in range(len(x))])

    rtl = _Recorder(VerilatorDevice(config, waves=waves))
    if waves:  # a waveform of every image would be huge: one batch is enough to look at
        x, y = x[:batch], y[:batch]
        feeds = {compiled.inputs[0].name: x}
    total = _device_jobs(compiled, len(x))
    columns = (TextColumn(f"[bold]{name}[/] on RTL"), BarColumn(), MofNCompleteColumn(),
               TextColumn("programs"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(name, total=total)
        rtl_out, _ = compiled.run(feeds, rtl, progress=lambda: bar.advance(task))
    g = np.asarray(gold_out[out_name])[:len(x)]
    r = np.asarray(rtl_out[out_name])
    cycles = rtl.totals.get("cycles", 0)
    # MACs the array executed: the golden model's count per program run, times the runs
    macs = gold_info["macs"] * rtl.jobs // max(1, gold_info["runs"])
    return {
        "model": name,
        "onnx": str(Path(onnx_path).relative_to(REPO)) if Path(onnx_path).is_relative_to(REPO)
        else str(onnx_path),
        "images": int(len(x)),
        "accuracy_golden": float((g.argmax(1) == y).mean()),
        "accuracy_rtl": float((r.argmax(1) == y).mean()),
        "accuracy_onnxruntime": float((ort_out[:len(y)].argmax(1) == y).mean()),
        "agreement_onnxruntime": float((g.argmax(1) == ort_out[:len(g)].argmax(1)).mean()),
        "bit_exact": bool(g.shape == r.shape and np.array_equal(g, r)),
        "programs": rtl.jobs,
        "cycles": int(cycles),
        "macs": int(macs),
        "mac_utilization": macs / (config.rows * config.cols * cycles) if cycles else 0.0,
        "sim_cycles": rtl.sim_cycles,
        "sim_cycles_per_s": rtl.sim_cycles / rtl.sim_wall_s if rtl.sim_wall_s else 0.0,
        "waveform": str(rtl.inner.waveform) if waves else None,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="make sim", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--variant", default="qoperator_uint8",
                        help="quantized variant of the zoo (qoperator|qdq)_(uint8|int8)")
    parser.add_argument("--batch", type=int, default=60, help="images per program run")
    parser.add_argument("--images", type=int, default=0, help="limit (0: all test images)")
    parser.add_argument("--waves", action="store_true", help="dump a VCD of the first batch")
    parser.add_argument("-o", "--output", default=str(BUILD / "reports" / "sim.json"))
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from systolic.zoo import build_models, digits_split

    setup_env()
    console = Console(width=None if sys.stdout.isatty() else 120)
    try:
        config = preset(args.preset)
        names = tuple(n for n in args.models.split(",") if n)
        with console.status("training / loading the digits networks and quantizing them"):
            zoo = build_models(BUILD / "models", names=names)
    except (ValueError, OSError) as exc:
        print(f"make sim: error: {exc}", file=sys.stderr)
        return 2
    _, _, x_test, y_test = digits_split()
    if args.images:
        x_test, y_test = x_test[:args.images], y_test[:args.images]
    runs = []
    started = time.perf_counter()
    for name in names:
        model = zoo[name]
        x = x_test.reshape(len(x_test), *model.input_shape[1:])
        result = run_network(name, model.quantized[args.variant], x, y_test, config,
                             batch=args.batch, waves=args.waves, console=console)
        result["accuracy_float"] = model.accuracy_float
        runs.append(result)
    wall = time.perf_counter() - started

    table = Table(title=f"Digits on the '{config.name}' accelerator ({config.rows}x"
                        f"{config.cols}), RTL in Verilator vs golden model")
    for col in ("model", "images", "float", "int8 golden", "RTL", "bit-exact", "cycles",
                "MAC util.", "sim cycles/s"):
        table.add_column(col, justify="right")
    for r in runs:
        table.add_row(r["model"], str(r["images"]), f"{r['accuracy_float']:.2%}",
                      f"{r['accuracy_golden']:.2%}", f"{r['accuracy_rtl']:.2%}",
                      "yes" if r["bit_exact"] else "[red]NO[/]", f"{r['cycles']:,}",
                      f"{r['mac_utilization']:.1%}", f"{r['sim_cycles_per_s']:,.0f}")
    console.print(table)
    first = runs[0]
    report = {
        "preset": config.name,
        "variant": args.variant,
        "accuracy_float": first["accuracy_float"],
        "accuracy_golden": first["accuracy_golden"],
        "accuracy_rtl": first["accuracy_rtl"],
        "bit_exact": all(r["bit_exact"] for r in runs),
        "images": first["images"],
        "cycles": sum(r["cycles"] for r in runs),
        "mac_utilization": (sum(r["macs"] for r in runs)
                            / max(1, config.rows * config.cols * sum(r["cycles"] for r in runs))),
        "sim_cycles_per_s": (sum(r["sim_cycles"] for r in runs)
                             / max(1e-9, sum(r["sim_cycles"] / r["sim_cycles_per_s"]
                                             for r in runs if r["sim_cycles_per_s"]))),
        "wall_s": wall,
        "networks": runs,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"report: {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    if args.waves:
        for r in runs:
            console.print(f"waveform ({r['model']}, first {r['images']} images): {r['waveform']}")
    if not report["bit_exact"]:
        console.print("[red]RTL and golden model disagree[/]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
