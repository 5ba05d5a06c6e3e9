"""The ``compile`` and ``run`` subcommands: an ONNX model to a ``.sysm`` file, and back to
outputs on a device.

Examples
--------
::

    systolic compile build/models/cnn_qdq_uint8.onnx -o build/cnn.sysm --preset default --batch 60
    systolic run build/cnn.sysm --device golden --input images.npy --output logits.npy
"""

import sys
import time
from pathlib import Path

import numpy as np

from .cli import CliError, add_config_arguments, config_from_args, subcommand

__all__ = ["read_inputs"]


def _compile_arguments(parser):
    parser.add_argument("model", metavar="MODEL", help="quantized ONNX model (QOperator or QDQ)")
    parser.add_argument("-o", "--output", metavar="OUT", required=True,
                        help="compiled model to write (.sysm)")
    parser.add_argument("--batch", metavar="N", type=int, default=1,
                        help="samples per program run (default: 1)")
    add_config_arguments(parser)


@subcommand("compile", "compile a quantized ONNX model into a .sysm file", _compile_arguments)
def _compile(args):
    from .compiler.onnx_compile import compile_onnx
    if args.batch < 1:
        raise CliError(f"--batch must be at least 1, not {args.batch}")
    config = config_from_args(args)
    model = compile_onnx(args.model, config, batch=args.batch)
    model.save(args.output)
    s = model.summary()
    host = f" ({', '.join(s['host_op_names'])})" if s["host_op_names"] else ""
    print(f"{args.output}: {config.name}, batch {model.batch}, {s['device_ops']} ops on the "
          f"accelerator, {s['host_ops']} on the host{host}, {s['instructions']} instructions, "
          f"{s['image_bytes']} bytes of memory image")


def _run_arguments(parser):
    parser.add_argument("model", metavar="MODEL", help="compiled model (.sysm)")
    parser.add_argument("--device", default="golden", metavar="DEV",
                        help="golden, verilator or serial:PORT (default: golden)")
    parser.add_argument("--input", action="append", required=True, metavar="[NAME=]FILE",
                        help="a .npy array of samples (first axis); NAME= for models with "
                             "several inputs; repeat per input")
    parser.add_argument("--output", metavar="OUT",
                        help="write the output as .npy (several outputs: .npz)")


def read_inputs(model, specs):
    """Input name -> array from ``[NAME=]FILE`` specs; one sample gains a batch axis."""
    feeds = {}
    names = [e.name for e in model.inputs]
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            if len(names) != 1:
                raise CliError(f"the model has inputs {', '.join(names)}: use --input NAME=FILE")
            name, path = names[0], spec
        if name not in names:
            raise CliError(f"the model has no input {name!r} (inputs: {', '.join(names)})")
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, EOFError) as exc:
            raise CliError(f"{path}: not a NumPy .npy array ({exc})") from None
        if not isinstance(arr, np.ndarray):
            raise CliError(f"{path}: holds several arrays; pass one .npy array per input")
        edge = next(e for e in model.inputs if e.name == name)
        sample = tuple(edge.shape[1:])
        if arr.ndim == len(sample):
            arr = arr[None]
        if arr.ndim >= 1 and arr.shape[1:] != sample and arr[0].size == int(np.prod(sample)):
            arr = arr.reshape(len(arr), *sample)   # e.g. flat 64-pixel rows for (1, 8, 8)
        feeds[name] = arr
    missing = [n for n in names if n not in feeds]
    if missing:
        raise CliError(f"missing --input for {', '.join(missing)}")
    return feeds


@subcommand("run", "run a compiled model (.sysm) on a device", _run_arguments)
def _run(args):
    from .compiler.package import load
    from .runtime.device import open_device
    model = load(args.model)
    feeds = read_inputs(model, args.input)
    n = len(next(iter(feeds.values())))
    start = time.perf_counter()
    with open_device(args.device, model.config) as device:
        try:
            outputs, info = model.run(feeds, device)
        except RuntimeError as exc:
            print(f"systolic: error: {args.device}: {exc}", file=sys.stderr)
            return 1
    seconds = time.perf_counter() - start
    for name, arr in outputs.items():
        line = f"{name}: {arr.dtype} {tuple(arr.shape)}"
        if arr.ndim == 2 and arr.shape[1] > 1:
            top = arr.argmax(axis=1)[:16]
            line += f", argmax {' '.join(map(str, top))}{' ...' if n > 16 else ''}"
        print(line)
    print(f"{n} samples on {args.device} in {info['runs']} program runs: "
          f"{info['instructions']} instructions, {info['macs']} MACs, {seconds:.2f} s")
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        if len(outputs) == 1:
            with out.open("wb") as f:
                np.save(f, next(iter(outputs.values())))
        else:
            with out.open("wb") as f:
                np.savez(f, **outputs)
