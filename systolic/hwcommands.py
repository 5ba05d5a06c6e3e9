"""Hardware subcommands: ``systolic generate`` and ``systolic bench``."""

import subprocess
import sys
from pathlib import Path

from .cli import CliError, add_config_arguments, config_from_args, subcommand

REPO = Path(__file__).resolve().parent.parent


def _generate_arguments(parser):
    add_config_arguments(parser)
    parser.add_argument("-o", "--output", default="build/verilog", metavar="DIR",
                        help="output folder (default: build/verilog)")


@subcommand("generate", "emit the Verilog top, an instantiation template, the C header "
            "and the CSR map", _generate_arguments)
def _generate(args):
    from .generate import generate

    config = config_from_args(args)
    if config.dataflow != "ws":
        raise CliError("the accelerator top supports dataflow 'ws' only "
                       "(output-stationary exists at the array level)")
    written = generate(config, args.output)
    items = written.items() if isinstance(written, dict) else enumerate(written)
    for kind, path in items:
        print(f"{kind}: {path}")


BENCHES = {
    "dma": "scripts/bench_dma.py",
    "gemm": "scripts/bench_gemm.py",
    "gemm-sweep": "scripts/bench_gemm_sweep.py",
    "perf": "scripts/bench_perf.py",
    "array": "scripts/bench_array.py",
    "fpga": "scripts/bench_fpga.py",
    "timing": "scripts/bench_timing.py",
}


def _bench_arguments(parser):
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all of {', '.join(BENCHES)})")


@subcommand("bench", "run the benchmarks (figures, ratios and plots under build/reports)",
            _bench_arguments)
def _bench(args):
    names = args.names or list(BENCHES)
    for name in names:
        if name not in BENCHES:
            raise CliError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHES)}")
    failed = []
    for name in names:
        script = REPO / BENCHES[name]
        if not script.exists():
            raise CliError(f"benchmark {name!r} needs {BENCHES[name]}, which is missing")
        print(f"== bench {name}: {BENCHES[name]}", flush=True)
        if subprocess.call([sys.executable, str(script)], cwd=REPO):
            failed.append(name)
    if failed:
        print(f"systolic: error: benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _fpga_arguments(parser):
    from .fpga.build import fpga_arguments

    fpga_arguments(parser)


@subcommand("fpga", "build an FPGA board's bitstream and write its report", _fpga_arguments)
def _fpga(args):
    from .fpga.build import fpga_command

    return fpga_command(args)
