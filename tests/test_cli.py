"""The ``systolic`` command line, in-process and as the installed program."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from systolic import cli
from systolic.cli import add_config_arguments, config_from_args, main, subcommand
from systolic.config import PRESETS
from systolic.csr import csr_markdown
from systolic.isa import assemble, disassemble, isa_markdown, to_bytes

PROGRAM = """\
# load a tile, multiply, store
LOAD dest=sp n_rows=4 length=4 stride=4 dram_addr=0x100 push_next
MATMUL compute=1 preload=1 n_rows=4 pop_prev push_next
STORE out_type=int8 n_rows=4 length=4 dram_addr=0x200 pop_prev
HALT
"""

BAD_PROGRAM = "NOP\nHALT\n      LAOD x=1\n"


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, message=None):
    assert code == 2
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("systolic: error: "), err
    if message is not None:
        assert lines[0] == f"systolic: error: {message}"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("prog.s").write_text(PROGRAM)
    return tmp_path


# -- success -------------------------------------------------------------------------------

def test_asm_writes_little_endian_words_and_disasm_reads_them_back(workdir, capsys):
    code, out, err = run(["asm", "prog.s", "-o", "out/prog.bin"], capsys)
    assert (code, out, err) == (0, "", "")
    image = Path("out/prog.bin").read_bytes()
    assert image == to_bytes(assemble(PROGRAM))
    assert len(image) == 16 * 4
    code, out, err = run(["disasm", "out/prog.bin"], capsys)
    assert (code, err) == (0, "")
    assert out == disassemble(assemble(PROGRAM))
    assert assemble(out) == assemble(PROGRAM)
    assert run(["disasm", "out/prog.bin", "-o", "prog2.s"], capsys) == (0, "", "")
    assert Path("prog2.s").read_text() == out


@pytest.mark.parametrize("command, generate", [("isa-doc", isa_markdown),
                                               ("csr-doc", csr_markdown)])
def test_docs_to_a_file_and_to_stdout(workdir, capsys, command, generate):
    assert run([command, "-o", "docs/ref.md"], capsys) == (0, "", "")
    assert Path("docs/ref.md").read_text() == generate()
    assert run([command], capsys) == (0, generate(), "")


def test_header_of_a_preset(workdir, capsys):
    assert run(["header", "--preset", "icebreaker"], capsys) == (
        0, PRESETS["icebreaker"].to_c_header(), "")
    assert run(["header", "--preset", "tiny", "-o", "inc/systolic.h"], capsys) == (0, "", "")
    assert Path("inc/systolic.h").read_text() == PRESETS["tiny"].to_c_header()


def test_header_with_field_overrides(workdir, capsys):
    argv = ["header", "--preset", "icebreaker", "--rows", "2", "--sp-depth", "0x200",
            "--vector-unit", "true", "--input-signed", "no", "--postproc-lanes", "none",
            "--dataflow", "OS"]
    code, out, err = run(argv, capsys)
    expected = PRESETS["icebreaker"].replace(
        name="icebreaker-custom", rows=2, sp_depth=512, vector_unit=True, input_signed=False,
        postproc_lanes=None, dataflow="os")
    assert (code, out, err) == (0, expected.to_c_header(), "")
    assert "/* preset: icebreaker-custom */" in out


def _config_parser():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return parser


def test_config_from_args_is_the_preset_without_overrides():
    args = _config_parser().parse_args(["--preset", "ulx3s"])
    assert config_from_args(args) is PRESETS["ulx3s"]
    assert config_from_args(_config_parser().parse_args([])) is PRESETS["default"]


def test_config_from_args_offers_every_field():
    args = _config_parser().parse_args([])
    fields = set(PRESETS["default"].to_dict()) - {"name"}
    assert {name for name in fields if hasattr(args, "cfg_" + name)} == fields


def test_config_from_args_applies_overrides():
    args = _config_parser().parse_args(["--preset", "tiny", "--cols", "4", "--perf-counters",
                                        "off", "--requant-bits", "16", "--pipeline-every", "1"])
    config = config_from_args(args)
    assert config == PRESETS["tiny"].replace(cols=4, perf_counters=False, requant_bits=16,
                                             pipeline_every=1)
    assert config.name == "tiny-custom"


def test_registered_subcommands_join_the_parser(capsys):
    seen = []

    def arguments(parser):
        parser.add_argument("--what")
        add_config_arguments(parser)

    @subcommand("probe-test", "a subcommand registered by a test", arguments)
    def probe(args):
        seen.append((args.what, config_from_args(args).rows))
        if args.what == "oserror":
            raise FileNotFoundError(2, "No such file or directory", "weights.npz")
        if args.what == "device":
            from systolic.runtime.device import DeviceError
            raise DeviceError("no answer from a board on /dev/ttyUSB1\nafter 3 attempts")
        return 0

    try:
        with pytest.raises(ValueError, match=r"^subcommand 'probe-test' is already registered$"):
            subcommand("probe-test", "again")(probe)
        assert run(["probe-test", "--what", "x", "--preset", "tiny", "--rows", "5"],
                   capsys) == (0, "", "")
        assert seen == [("x", 5)]
        code, out, err = run(["probe-test", "--what", "oserror"], capsys)
        assert_one_line_error(code, err, "weights.npz: No such file or directory")
        code, out, err = run(["probe-test", "--what", "device"], capsys)
        assert code == 1 and out == "" and "Traceback" not in err
        assert err == "systolic: error: no answer from a board on /dev/ttyUSB1 after 3 attempts\n"
    finally:
        del cli.SUBCOMMANDS["probe-test"]


# -- bad input: one line on stderr, exit status 2 ------------------------------------------

ERRORS = [
    (["header", "--preset", "huge"],
     "unknown preset 'huge'; choose one of tiny, default, icebreaker, ulx3s"),
    (["header", "--rows", "0"], "AcceleratorConfig.rows must be in 1..64, not 0"),
    (["header", "--rows", "four"], "AcceleratorConfig.rows must be an integer, not 'four'"),
    (["header", "--vector-unit", "maybe"],
     "AcceleratorConfig.vector_unit must be a bool, not 'maybe'"),
    (["header", "--dataflow", "xs"], "AcceleratorConfig.dataflow must be 'ws' or 'os', not 'xs'"),
    (["header", "--postproc-lanes", "3"],
     "AcceleratorConfig.postproc_lanes must divide cols (8), not 3"),
    (["asm", "bad.s", "-o", "bad.bin"], "bad.s: line 3, column 7: unknown instruction 'LAOD'"),
    (["asm", "missing.s", "-o", "x.bin"], "missing.s: No such file or directory"),
    (["asm", "latin1.s", "-o", "x.bin"], "latin1.s: not UTF-8 text (byte 4)"),
    (["asm", "prog.s", "-o", "."], ".: Is a directory"),
    (["disasm", "missing.bin"], "missing.bin: No such file or directory"),
    (["disasm", "short.bin"], "short.bin: program image length must be a multiple of 16, not 17"),
    (["disasm", "reserved.bin"], "reserved.bin: instruction 1: reserved bits set in NOP: 0x100"),
    (["disasm", "illegal.bin"], "illegal.bin: instruction 0: illegal opcode 12"),
    (["header", "--bogus"], "unrecognized arguments: --bogus"),
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], None),
    (["asm", "prog.s"], "the following arguments are required: -o/--output"),
]


@pytest.fixture
def bad_inputs(workdir):
    Path("bad.s").write_text(BAD_PROGRAM)
    Path("latin1.s").write_bytes(b"NOP \xe9\n")
    Path("short.bin").write_bytes(bytes(17))
    Path("reserved.bin").write_bytes(to_bytes([7, 1 << 8]))
    Path("illegal.bin").write_bytes(to_bytes([12]))
    return workdir


@pytest.mark.parametrize("argv, message", ERRORS, ids=[" ".join(a) or "-" for a, _ in ERRORS])
def test_bad_input_is_one_line_and_exit_status_2(bad_inputs, capsys, argv, message):
    code, out, err = run(argv, capsys)
    assert out == ""
    assert_one_line_error(code, err, message)


def test_failed_asm_writes_no_output(bad_inputs, capsys):
    run(["asm", "bad.s", "-o", "bad.bin"], capsys)
    assert not Path("bad.bin").exists()


def test_error_check_catches_a_traceback(capsys):
    """The helper above can fail: a multi-line report is refused."""
    with pytest.raises(AssertionError):
        assert_one_line_error(2, "Traceback (most recent call last):\nValueError: x\n")
    with pytest.raises(AssertionError):
        assert_one_line_error(1, "systolic: error: x\n")


# -- the installed program -----------------------------------------------------------------

SCRIPT = Path(sys.executable).parent / "systolic"
LAUNCHERS = {"script": [str(SCRIPT)], "module": [sys.executable, "-m", "systolic"]}


def test_console_script_is_installed():
    assert SCRIPT.exists(), "install the project (pip install -e .) to get the systolic script"


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_installed_program_round_trips(workdir, launcher):
    cmd = LAUNCHERS[launcher]
    done = subprocess.run([*cmd, "asm", "prog.s", "-o", "prog.bin"], capture_output=True,
                          text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    done = subprocess.run([*cmd, "disasm", "prog.bin"], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == disassemble(assemble(PROGRAM))


SUBPROCESS_ERRORS = [
    (["asm", "bad.s", "-o", "bad.bin"], "bad.s: line 3, column 7: unknown instruction 'LAOD'"),
    (["disasm", "short.bin"], "short.bin: program image length must be a multiple of 16, not 17"),
    (["header", "--preset", "huge"], None),
    (["header", "--rows", "65"], "AcceleratorConfig.rows must be in 1..64, not 65"),
    (["disasm", "missing.bin"], "missing.bin: No such file or directory"),
]


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_installed_program_reports_bad_input_in_one_line(bad_inputs, launcher):
    for argv, message in SUBPROCESS_ERRORS:
        done = subprocess.run([*LAUNCHERS[launcher], *argv], capture_output=True, text=True)
        assert done.stdout == ""
        assert_one_line_error(done.returncode, done.stderr, message)
