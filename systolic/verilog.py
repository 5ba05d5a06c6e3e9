"""Verilog of an Amaranth component, lint-clean in Verilator apart from width warnings.

Amaranth's own Verilog keeps its processes as ``always @*`` blocks (``proc -nomux``) whose
``casez`` statements have no ``default`` and, for processes that only drive constants,
never run; Verilator's lint reports both (CASEINCOMPLETE, ALWNEVER). Here the processes
become multiplexer trees instead (full ``proc`` with ``pmuxtree``), every signal is
driven by a continuous assignment or a clocked block, and the Verilog is the same
logic. ``splitnets -driver`` keeps vectors whose slices are driven by different cells
apart, so Verilator sees no false combinational loop through one vector.
"""

__all__ = ["convert"]

_PASSES = ("proc -norom", "pmuxtree", "opt_clean", "splitnets -driver", "memory_collect")


def convert(component, name):
    """Verilog text of module ``name`` built from ``component`` (ports from its
    signature)."""
    from amaranth._toolchain.yosys import find_yosys
    from amaranth.back import rtlil

    from .toolchain import setup_env

    setup_env()
    text = rtlil.convert(component, name=name, emit_src=False)
    yosys = find_yosys(lambda version: version >= (0, 40))
    script = [f"read_rtlil <<rtlil\n{text}\nrtlil", *_PASSES, "write_verilog -norename"]
    return yosys.run(["-q", "-"], "\n".join(script), ignore_warnings=True)
