"""The ``systolic`` command line: one registry of subcommands, one way to report bad input.

Subcommands register themselves with :func:`subcommand`; a subcommand that builds on an
accelerator configuration adds the shared options with :func:`add_config_arguments` and
reads them back with :func:`config_from_args`. Bad input (a missing file, a bad field
value, an assembler error) is reported as one line on standard error with exit status 2:
every :class:`ValueError` or :class:`OSError` a subcommand raises becomes that line.

Examples
--------
::

    systolic asm prog.s -o prog.bin
    systolic disasm prog.bin
    systolic header --preset icebreaker --rows 2 -o build/systolic.h
    systolic isa-doc -o docs/isa.md
"""

import argparse
import dataclasses
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import csr, isa
from .config import PRESETS, AcceleratorConfig, preset
from .runtime.device import DeviceError

__all__ = [
    "PROG", "EXIT_BAD_INPUT", "CliError", "Subcommand", "SUBCOMMANDS", "SUBCOMMAND_MODULES",
    "subcommand", "add_config_arguments", "config_from_args", "build_parser", "main",
]

PROG = "systolic"
EXIT_BAD_INPUT = 2

# Modules imported before the parser is built; each registers its subcommands with
# @subcommand at import time (e.g. the compiler's ``compile`` and the runtime's ``run``).
SUBCOMMAND_MODULES: tuple[str, ...] = ("systolic.commands", "systolic.hwcommands")


class CliError(ValueError):
    """Bad command-line input; reported as ``systolic: error: <message>``, exit status 2."""


@dataclass(frozen=True)
class Subcommand:
    """One registered subcommand.

    Attributes
    ----------
    name : str
        What the user types (``asm``).
    help : str
        One line for ``systolic --help``.
    run : callable
        ``run(args) -> int | None``; ``None`` means success (exit status 0).
    arguments : callable
        ``arguments(parser)`` adds the subcommand's arguments to its parser.
    """
    name: str
    help: str
    run: Callable[[argparse.Namespace], int | None]
    arguments: Callable[[argparse.ArgumentParser], None]


SUBCOMMANDS: dict[str, Subcommand] = {}


def _no_arguments(parser):
    pass


def subcommand(name, help, arguments=_no_arguments):
    """Register the decorated function as subcommand ``name``.

    Parameters
    ----------
    name : str
        The subcommand's name on the command line.
    help : str
        One-line description.
    arguments : callable, optional
        ``arguments(parser)`` adds the subcommand's own arguments.

    Raises
    ------
    ValueError
        If a subcommand of that name is already registered.
    """
    def register(run):
        if name in SUBCOMMANDS:
            raise ValueError(f"subcommand {name!r} is already registered")
        SUBCOMMANDS[name] = Subcommand(name, help, run, arguments)
        return run
    return register


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors become one-line :class:`CliError` reports."""

    def error(self, message):
        raise CliError(message)


# -- accelerator configuration from the command line --------------------------------------

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_CONFIG_DEST = "cfg_"


def _config_fields():
    return [f for f in dataclasses.fields(AcceleratorConfig) if f.name != "name"]


def _field_metavar(field):
    if isinstance(field.default, bool):
        return "{true,false}"
    if field.name == "dataflow":
        return "{ws,os}"
    if field.default is None:
        return "{N,none}"
    return "N"


def add_config_arguments(parser):
    """Add ``--preset NAME`` and one override option per :class:`AcceleratorConfig` field
    (``--rows 4``, ``--sp-depth 512``, ``--vector-unit false``, ``--postproc-lanes none``).
    """
    group = parser.add_argument_group(
        "accelerator configuration", "a named preset, then any fields to change")
    group.add_argument("--preset", default="default", metavar="NAME",
                       help=f"one of {', '.join(PRESETS)} (default: default)")
    for field in _config_fields():
        group.add_argument(f"--{field.name.replace('_', '-')}", dest=_CONFIG_DEST + field.name,
                           metavar=_field_metavar(field), default=None,
                           help=f"override {field.name}")


def _convert(field, text):
    """The value a command-line string stands for. Text that is not a value of the field's
    kind is passed on unchanged, so that the configuration's own check names the field."""
    low = text.strip().lower()
    if isinstance(field.default, bool):
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        return text
    if field.name == "dataflow":
        return low
    if field.default is None and low == "none":
        return None
    try:
        return int(low, 0)
    except ValueError:
        return text


def config_from_args(args):
    """The :class:`AcceleratorConfig` the options of :func:`add_config_arguments` describe.

    A preset with no overrides keeps its name; with overrides the name becomes
    ``<preset>-custom``.

    Raises
    ------
    ValueError
        For an unknown preset, or a field value the configuration rejects (the message
        names the field and the value).
    """
    base = preset(args.preset)
    changes = {}
    for field in _config_fields():
        text = getattr(args, _CONFIG_DEST + field.name, None)
        if text is not None:
            changes[field.name] = _convert(field, text)
    if not changes:
        return base
    return base.replace(name=f"{base.name}-custom", **changes)


# -- input and output -----------------------------------------------------------------------

def _read_text(path):
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _write(path, data):
    """Write text or bytes to ``path``; to standard output when ``path`` is None or ``-``."""
    if path is None or str(path) == "-":
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(data)
            sys.stdout.flush()
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8", newline="\n")


def _output_argument(parser, default_help="standard output", required=False):
    parser.add_argument("-o", "--output", metavar="OUT", required=required,
                        help=f"file to write ('-': standard output; default: {default_help})")


# -- subcommands ----------------------------------------------------------------------------

def _asm_arguments(parser):
    parser.add_argument("src", metavar="SRC", help="assembly source, one instruction a line")
    _output_argument(parser, required=True)


@subcommand("asm", "assemble a program into 16-byte little-endian words", _asm_arguments)
def _asm(args):
    try:
        words = isa.assemble(_read_text(args.src))
    except isa.AsmError as exc:
        raise CliError(f"{args.src}: {exc}") from None
    _write(args.output, isa.to_bytes(words))


def _disasm_arguments(parser):
    parser.add_argument("bin", metavar="BIN", help="program image (16 bytes an instruction)")
    _output_argument(parser)


@subcommand("disasm", "disassemble a program image into assembly text", _disasm_arguments)
def _disasm(args):
    image = Path(args.bin).read_bytes()
    try:
        words = isa.from_bytes(image)
    except ValueError as exc:
        raise CliError(f"{args.bin}: {exc}") from None
    lines = []
    for index, word in enumerate(words):
        try:
            lines.append(isa.disassemble_one(word) + "\n")
        except ValueError as exc:
            raise CliError(f"{args.bin}: instruction {index}: {exc}") from None
    _write(args.output, "".join(lines))


@subcommand("isa-doc", "write the ISA reference (Markdown)", _output_argument)
def _isa_doc(args):
    _write(args.output, isa.isa_markdown())


@subcommand("csr-doc", "write the CSR map (Markdown)", _output_argument)
def _csr_doc(args):
    _write(args.output, csr.csr_markdown())


def _header_arguments(parser):
    add_config_arguments(parser)
    _output_argument(parser)


@subcommand("header", "write the C header of a configuration", _header_arguments)
def _header(args):
    _write(args.output, config_from_args(args).to_c_header())


# -- entry point ----------------------------------------------------------------------------

def build_parser():
    """The argument parser with every registered subcommand."""
    for module in SUBCOMMAND_MODULES:
        importlib.import_module(module)
    parser = _Parser(prog=PROG, allow_abbrev=False,
                     description="Systolic: a generator of systolic-array accelerators.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for sub in SUBCOMMANDS.values():
        sub_parser = commands.add_parser(sub.name, help=sub.help, description=sub.help,
                                         allow_abbrev=False)
        sub.arguments(sub_parser)
    return parser


def _one_line(exc):
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        message = f"{exc.filename}: {exc.strerror}"
    else:
        message = str(exc) or type(exc).__name__
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def main(argv=None):
    """Run the command line; returns the exit status (0, or 2 for bad input).

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when omitted.
    """
    try:
        args = build_parser().parse_args(argv)
        return SUBCOMMANDS[args.command].run(args) or 0
    except (ValueError, OSError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DeviceError as exc:
        # the input was fine; the device (a board, the simulator) failed
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
