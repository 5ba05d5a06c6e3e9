"""Run the hand-assembled tiled GEMM on the accelerator RTL and print its figures.

MAC utilization is useful MACs / (rows * cols * PERF_CYCLES); PERF_OVERLAP counts the
cycles a LOAD or STORE ran while the array computed. Usage::

    .venv/bin/python scripts/bench_gemm.py                      # default preset, 64 and 128
    .venv/bin/python scripts/bench_gemm.py --preset tiny --sizes 8,16 --buffers 2,2
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sim.build import build_dir, run_accelerator_bench  # noqa: E402
from systolic.config import preset  # noqa: E402

COLUMNS = [("m", "M"), ("n", "N"), ("k", "K"), ("w_buffers", "W bufs"),
           ("acc_buffers", "acc bufs"), ("instructions", "instr"),
           ("perf_cycles", "cycles"), ("perf_mac_busy", "MAC busy"),
           ("perf_load_busy", "load busy"), ("perf_overlap", "overlap"),
           ("perf_store_busy", "store busy"), ("perf_stall_token", "token stall"),
           ("mac_utilization", "MAC util")]


def table(figures):
    rows = [[h for _, h in COLUMNS]]
    for fig in figures:
        rows.append([f"{fig[k]:.3f}" if isinstance(fig.get(k), float) else str(fig.get(k, "-"))
                     for k, _ in COLUMNS])
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--sizes", default="64,128", help="cube sizes, comma-separated")
    parser.add_argument("--buffers", nargs="+", default=["2,2", "4,8"],
                        help="weight,accumulator buffer counts to compare (2,2: double "
                             "buffering)")
    args = parser.parse_args(argv)
    config = preset(args.preset)
    figures = []
    for buffers in args.buffers:
        out = build_dir(args.preset) / f"gemm-figures-{buffers.replace(',', '-')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        run_accelerator_bench(args.preset, testcase="gemm", env={
            "SYSTOLIC_GEMM": args.sizes, "SYSTOLIC_GEMM_BUFFERS": buffers,
            "SYSTOLIC_RESULTS": str(out)})
        figures += json.loads(out.read_text())
    print(f"Tiled GEMM on {args.preset} ({config.rows}x{config.cols}, "
          f"{config.axi_data_width}-bit AXI), bit-exact against NumPy:")
    print(table(figures))


if __name__ == "__main__":
    main()
