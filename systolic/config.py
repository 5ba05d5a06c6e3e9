"""One description of an accelerator, from which everything else is derived."""

import dataclasses
from dataclasses import dataclass, field

__all__ = ["AcceleratorConfig", "PRESETS", "preset"]


def _is_pow2(n):
    return n > 0 and (n & (n - 1)) == 0


@dataclass(frozen=True, kw_only=True)
class AcceleratorConfig:
    """Generation-time parameters of one accelerator.

    Every field is checked at construction; a bad value raises :class:`ValueError` naming
    the field and the value. Derived values (memory sizes, address widths) are properties.

    Parameters
    ----------
    rows, cols : int
        Size of the systolic array (1..64). In weight-stationary dataflow ``rows`` is the
        reduction (K) dimension and ``cols`` the output (N) dimension of one tile.
    dataflow : str
        ``"ws"`` (weight-stationary) or ``"os"`` (output-stationary).
    input_bits, weight_bits : int
        Element widths (1..8). Elements occupy one byte in memory; only the low bits are used.
    acc_bits : int
        Accumulator width; 32.
    input_signed, weight_signed : bool
        Signedness of activations and weights, independently.
    sp_banks, sp_depth : int
        Scratchpad banks (at least 4) and rows per bank (a power of two).
    acc_banks, acc_depth : int
        Accumulator banks (2, ping-pong) and rows per bank (a power of two).
    param_rows : int
        Rows of the post-processing parameter buffer (per-channel multiplier and shift).
    axi_data_width, axi_addr_width : int
        AXI4 master data width (32, 64, 128) and address width (32).
    axi_id_width : int
        AXI4 ID width.
    load_queue_depth, exec_queue_depth, store_queue_depth : int
        Depths of the decoupled micro-op queues.
    max_outstanding_reads : int
        AXI read bursts the DMA keeps in flight (at least 4).
    vector_unit : bool
        Include the elementwise vector unit.
    postproc_lanes : int or None
        Elements requantized per cycle on the STORE path (1..cols); ``None`` means ``cols``.
    requant_bits : int
        Width of the requantization multiplier M (16 or 32).
    perf_counters : bool
        Include the performance counters.
    pipeline_every : int
        Insert a pipeline register between groups of this many PE rows/columns (0: none).
    """

    rows: int = 8
    cols: int = 8
    dataflow: str = "ws"
    input_bits: int = 8
    weight_bits: int = 8
    acc_bits: int = 32
    input_signed: bool = True
    weight_signed: bool = True
    sp_banks: int = 4
    sp_depth: int = 2048
    acc_banks: int = 2
    acc_depth: int = 512
    param_rows: int = 16
    axi_data_width: int = 64
    axi_addr_width: int = 32
    axi_id_width: int = 4
    load_queue_depth: int = 8
    exec_queue_depth: int = 8
    store_queue_depth: int = 8
    max_outstanding_reads: int = 4
    vector_unit: bool = True
    postproc_lanes: int | None = None
    requant_bits: int = 32
    perf_counters: bool = True
    pipeline_every: int = 0
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        def fail(name, value, rule):
            raise ValueError(f"AcceleratorConfig.{name} {rule}, not {value!r}")

        def check_int(name, lo, hi=None):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                fail(name, value, "must be an integer")
            if value < lo or (hi is not None and value > hi):
                rng = f"in {lo}..{hi}" if hi is not None else f"at least {lo}"
                fail(name, value, f"must be {rng}")

        def check_bool(name):
            value = getattr(self, name)
            if not isinstance(value, bool):
                fail(name, value, "must be a bool")

        check_int("rows", 1, 64)
        check_int("cols", 1, 64)
        if self.dataflow not in ("ws", "os"):
            fail("dataflow", self.dataflow, "must be 'ws' or 'os'")
        check_int("input_bits", 1, 8)
        check_int("weight_bits", 1, 8)
        if type(self.acc_bits) is not int or self.acc_bits != 32:
            fail("acc_bits", self.acc_bits, "must be 32")
        check_bool("input_signed")
        check_bool("weight_signed")
        check_int("sp_banks", 4, 16)
        check_int("sp_depth", 16, 1 << 14)
        if not _is_pow2(self.sp_depth):
            fail("sp_depth", self.sp_depth, "must be a power of two")
        if self.sp_banks * self.sp_depth > 1 << 16:
            fail("sp_depth", self.sp_depth, "times sp_banks must be at most 65536 rows")
        if type(self.acc_banks) is not int or self.acc_banks != 2:
            fail("acc_banks", self.acc_banks, "must be 2")
        check_int("acc_depth", 8, 1 << 14)
        if not _is_pow2(self.acc_depth):
            fail("acc_depth", self.acc_depth, "must be a power of two")
        check_int("param_rows", 2, 256)
        if type(self.axi_data_width) is not int or self.axi_data_width not in (32, 64, 128):
            fail("axi_data_width", self.axi_data_width, "must be 32, 64 or 128")
        if type(self.axi_addr_width) is not int or self.axi_addr_width != 32:
            fail("axi_addr_width", self.axi_addr_width, "must be 32")
        check_int("axi_id_width", 1, 8)
        check_int("load_queue_depth", 1, 64)
        check_int("exec_queue_depth", 1, 64)
        check_int("store_queue_depth", 1, 64)
        check_int("max_outstanding_reads", 4, 16)
        check_bool("vector_unit")
        if self.postproc_lanes is not None:
            check_int("postproc_lanes", 1, self.cols)
            if self.cols % self.postproc_lanes:
                fail("postproc_lanes", self.postproc_lanes, f"must divide cols ({self.cols})")
        if type(self.requant_bits) is not int or self.requant_bits not in (16, 32):
            fail("requant_bits", self.requant_bits, "must be 16 or 32")
        check_bool("perf_counters")
        check_int("pipeline_every", 0, 64)

    # -- derived values ------------------------------------------------------------------

    @property
    def lanes(self):
        """Post-processing lanes (elements requantized per cycle)."""
        return self.cols if self.postproc_lanes is None else self.postproc_lanes

    @property
    def sp_width(self):
        """Elements (bytes) per scratchpad row: an input row uses ``rows`` of them,
        a weight row ``cols``."""
        return max(self.rows, self.cols)

    @property
    def sp_rows(self):
        """Scratchpad rows over all banks."""
        return self.sp_banks * self.sp_depth

    @property
    def sp_bytes(self):
        return self.sp_rows * self.sp_width

    @property
    def acc_rows(self):
        """Accumulator rows over both banks."""
        return self.acc_banks * self.acc_depth

    @property
    def acc_bytes(self):
        return self.acc_rows * self.cols * 4

    @property
    def axi_bytes(self):
        return self.axi_data_width // 8

    @property
    def macs_per_cycle(self):
        return self.rows * self.cols

    @property
    def input_range(self):
        b = self.input_bits
        return (-(1 << (b - 1)), (1 << (b - 1)) - 1) if self.input_signed else (0, (1 << b) - 1)

    @property
    def weight_range(self):
        b = self.weight_bits
        return (-(1 << (b - 1)), (1 << (b - 1)) - 1) if self.weight_signed else (0, (1 << b) - 1)

    def replace(self, **changes):
        """A copy with some fields changed (and checked again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_c_header(self):
        """A C header with every parameter and the CSR map, for drivers."""
        from .csr import CSR_MAP

        guard = "SYSTOLIC_CONFIG_H"
        lines = [
            "/* Generated by systolic from AcceleratorConfig; do not edit. */",
            f"#ifndef {guard}",
            f"#define {guard}",
            "",
            f"/* preset: {self.name} */",
        ]
        for f in dataclasses.fields(self):
            if f.name == "name":
                continue
            value = getattr(self, f.name)
            if value is None:
                value = self.lanes
            if isinstance(value, bool):
                value = int(value)
            if isinstance(value, str):
                lines.append(f"#define SYSTOLIC_{f.name.upper()}_{value.upper()} 1")
                continue
            lines.append(f"#define SYSTOLIC_{f.name.upper()} {value}")
        for derived in ("sp_width", "sp_rows", "sp_bytes", "acc_rows", "acc_bytes"):
            lines.append(f"#define SYSTOLIC_{derived.upper()} {getattr(self, derived)}")
        lines += ["", "/* CSR offsets (AXI4-Lite, 32-bit registers) */"]
        for reg in CSR_MAP:
            lines.append(f"#define SYSTOLIC_CSR_{reg.name} 0x{reg.offset:02X}u")
            for fld in reg.fields:
                mask = ((1 << fld.width) - 1) << fld.lsb
                lines.append(f"#define SYSTOLIC_CSR_{reg.name}_{fld.name}_MASK 0x{mask:08X}u")
                lines.append(f"#define SYSTOLIC_CSR_{reg.name}_{fld.name}_SHIFT {fld.lsb}")
        from .isa import ErrorCode

        lines += ["", "/* Error codes (CSR ERROR_CODE) */"]
        for code in ErrorCode:
            lines.append(f"#define SYSTOLIC_ERR_{code.name} {code.value}")
        lines += ["", f"#endif /* {guard} */", ""]
        return "\n".join(lines)


PRESETS = {
    "tiny": AcceleratorConfig(
        name="tiny", rows=2, cols=2, sp_depth=256, acc_depth=64, axi_data_width=32,
        load_queue_depth=4, exec_queue_depth=4, store_queue_depth=4, pipeline_every=1,
    ),
    "default": AcceleratorConfig(name="default"),
    "icebreaker": AcceleratorConfig(
        name="icebreaker", rows=4, cols=4, sp_depth=256, acc_depth=128, param_rows=2,
        axi_data_width=32, postproc_lanes=1, requant_bits=16, vector_unit=False,
        load_queue_depth=1, exec_queue_depth=1, store_queue_depth=1, perf_counters=False,
    ),
    "ulx3s": AcceleratorConfig(
        name="ulx3s", rows=8, cols=8, sp_depth=1024, acc_depth=256, axi_data_width=32,
        postproc_lanes=2, requant_bits=16, pipeline_every=1, vector_unit=False,
    ),
}


def preset(name):
    """The named preset configuration (``tiny``, ``default``, ``icebreaker``, ``ulx3s``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None
