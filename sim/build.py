"""Verilog and Verilator builds of ``Accelerator(config)``, cached per preset.

Each preset gets one build folder, ``build/sim/accel-<preset>``; the Verilog is rewritten
only when it changes, so Verilator rebuilds only then. The cocotb bench of the accelerator
(``tb/test_accelerator.py``) reads the preset from ``SYSTOLIC_PRESET``.
"""

import contextlib
import sys
from pathlib import Path

from systolic.config import preset

from .verilator import BUILD, TB, emit_verilog, run_cocotb

__all__ = ["TOPLEVEL", "build_dir", "accelerator_verilog", "run_accelerator_bench"]

TOPLEVEL = "accelerator"

def build_dir(preset_name):
    """The build folder of a preset: ``build/sim/accel-<preset>``."""
    preset(preset_name)  # a clear error for an unknown name
    return BUILD / "sim" / f"accel-{preset_name}"


def accelerator_verilog(preset_name, path=None):
    """Emit the Verilog of ``Accelerator(preset(preset_name))``; returns its path."""
    from systolic.rtl.top import Accelerator

    path = Path(path) if path else build_dir(preset_name) / f"{TOPLEVEL}.v"
    return emit_verilog(Accelerator(preset(preset_name)), TOPLEVEL, path)


def run_accelerator_bench(preset_name, *, testcase=None, env=None, waves=False,
                          test_module="test_accelerator"):
    """Build (cached) and run the accelerator's cocotb bench for one preset.

    Parameters
    ----------
    preset_name : str
    testcase : str or list of str, optional
        cocotb tests to run (all of ``test_module`` when ``None``).
    env : dict, optional
        Extra environment for the bench (``SYSTOLIC_SEED``, ``SYSTOLIC_PROGRAMS`` ...).
    waves : bool
        Dump a VCD trace (dump.vcd) into the build folder.
    """
    source = accelerator_verilog(preset_name)
    extra_env = {"SYSTOLIC_PRESET": preset_name, **(env or {})}
    with _runner_env():
        return run_cocotb(sources=[source], toplevel=TOPLEVEL, test_module=test_module,
                          build_dir=build_dir(preset_name), testcase=testcase,
                          extra_env=extra_env, waves=waves)


@contextlib.contextmanager
def _runner_env():
    """``tb/`` first on ``sys.path`` (the runner hands it to the simulator as PYTHONPATH),
    so the bench ``test_accelerator`` wins over the pytest module of the same name."""
    saved_path = list(sys.path)
    sys.path.insert(0, str(TB))
    try:
        yield
    finally:
        sys.path[:] = saved_path
