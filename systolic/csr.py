"""The CSR map of the AXI4-Lite slave: offsets, fields and access, defined once.

The C header, the generated Markdown and the CSR block RTL all read this table.
"""

from dataclasses import dataclass

__all__ = ["CsrField", "CsrRegister", "CSR_MAP", "CSR", "ID_MAGIC", "VERSION", "csr_markdown",
           "id_words", "field_mask", "perf_name", "CTRL_START", "CTRL_SOFT_RESET",
           "CTRL_IRQ_ENABLE", "STATUS_BUSY", "STATUS_DONE", "STATUS_ERROR", "STATUS_RESETTING",
           "STATUS_ACC_OVERFLOW", "IRQ_DONE"]

ID_MAGIC = 0x53595354  # "SYST"
VERSION = 0x0001_0000  # major.minor, 16 bits each


@dataclass(frozen=True)
class CsrField:
    name: str
    lsb: int
    width: int
    doc: str


@dataclass(frozen=True)
class CsrRegister:
    """One 32-bit register. ``access`` is ``ro``, ``rw``, ``w1c`` (write one to clear) or
    ``wo`` (write-only strobes, read as zero)."""
    name: str
    offset: int
    access: str
    doc: str
    fields: tuple = ()
    perf: bool = False


def _f(name, lsb, width, doc):
    return CsrField(name, lsb, width, doc)


CSR_MAP = (
    CsrRegister("ID", 0x00, "ro", f"Magic number 0x{ID_MAGIC:08X} ('SYST')."),
    CsrRegister("VERSION", 0x04, "ro", "ISA version: major in [31:16], minor in [15:0]."),
    CsrRegister("CONFIG0", 0x08, "ro", "Array geometry and element types.", (
        _f("ROWS", 0, 8, "Array rows."),
        _f("COLS", 8, 8, "Array columns."),
        _f("INPUT_BITS", 16, 4, "Input element width."),
        _f("WEIGHT_BITS", 20, 4, "Weight element width."),
        _f("INPUT_SIGNED", 24, 1, "Inputs are signed."),
        _f("WEIGHT_SIGNED", 25, 1, "Weights are signed."),
        _f("DATAFLOW_OS", 26, 1, "Output-stationary array (0: weight-stationary)."),
        _f("VECTOR_UNIT", 27, 1, "Vector unit present."),
        _f("PERF_COUNTERS", 28, 1, "Performance counters present."),
    )),
    CsrRegister("CONFIG1", 0x0C, "ro", "Memory sizes.", (
        _f("SP_BANKS", 0, 8, "Scratchpad banks."),
        _f("SP_DEPTH_LOG2", 8, 8, "log2 of scratchpad rows per bank."),
        _f("ACC_DEPTH_LOG2", 16, 8, "log2 of accumulator rows per bank."),
        _f("PARAM_ROWS", 24, 8, "Post-processing parameter rows (0 means 256)."),
    )),
    CsrRegister("CONFIG2", 0x10, "ro", "Bus and post-processing.", (
        _f("AXI_DATA_BYTES", 0, 8, "AXI data width in bytes."),
        _f("REQUANT_BITS", 8, 8, "Requantization multiplier width."),
        _f("POSTPROC_LANES", 16, 8, "Elements requantized per cycle."),
    )),
    CsrRegister("CTRL", 0x14, "rw", "Control.", (
        _f("START", 0, 1, "Write 1 to start the program at PROG_ADDR (self-clearing)."),
        _f("SOFT_RESET", 1, 1, "Write 1 to abort and return to idle after outstanding "
                               "AXI bursts finish (self-clearing)."),
        _f("IRQ_ENABLE", 2, 1, "Raise the interrupt output on completion."),
    )),
    CsrRegister("STATUS", 0x18, "ro", "Status.", (
        _f("BUSY", 0, 1, "A program is running."),
        _f("DONE", 1, 1, "The last program finished (HALT or error); cleared by START."),
        _f("ERROR", 2, 1, "The last program stopped with an error."),
        _f("ACC_OVERFLOW", 3, 1, "Sticky: an accumulator sum saturated; cleared by START."),
        _f("RESETTING", 4, 1, "A soft reset waits for outstanding AXI bursts."),
    )),
    CsrRegister("ERROR_CODE", 0x1C, "ro", "Error code of the last program (see ErrorCode)."),
    CsrRegister("ERROR_INDEX", 0x20, "ro", "Index of the failing instruction."),
    CsrRegister("PROG_ADDR", 0x24, "rw", "Byte address of the program (16-byte aligned); "
                "writes while BUSY are ignored."),
    CsrRegister("PROG_LEN", 0x28, "rw", "Program length in instructions; writes while BUSY "
                "are ignored."),
    CsrRegister("IRQ_STATUS", 0x2C, "w1c", "Interrupt pending; write 1 to clear.", (
        _f("DONE", 0, 1, "Program finished."),
    )),
    CsrRegister("PERF_CYCLES", 0x40, "ro", "Cycles from START to done.", perf=True),
    CsrRegister("PERF_MAC_BUSY", 0x44, "ro", "Cycles the array accepted an input row.",
                perf=True),
    CsrRegister("PERF_STALL_TOKEN", 0x48, "ro",
                "Cycles a queue head waited for a dependency token.", perf=True),
    CsrRegister("PERF_STALL_DMA", 0x4C, "ro", "Cycles the DMA waited on the AXI bus.",
                perf=True),
    CsrRegister("PERF_STALL_FETCH", 0x50, "ro", "Cycles fetch waited for a full queue.",
                perf=True),
    CsrRegister("PERF_INSTRET", 0x54, "ro", "Instructions retired.", perf=True),
    CsrRegister("PERF_LOAD_BUSY", 0x58, "ro", "Cycles the load queue executed a LOAD.",
                perf=True),
    CsrRegister("PERF_STORE_BUSY", 0x5C, "ro", "Cycles the store queue executed a STORE.",
                perf=True),
    CsrRegister("PERF_OVERLAP", 0x60, "ro",
                "Cycles a LOAD or STORE ran while the array computed.", perf=True),
)

CSR = {reg.name: reg for reg in CSR_MAP}


def field_mask(reg, field):
    """The mask of field ``field`` of register ``reg`` (``field_mask("STATUS", "DONE")``)."""
    (f,) = [f for f in CSR[reg].fields if f.name == field]
    return ((1 << f.width) - 1) << f.lsb


# the masks hosts and benches use most
CTRL_START = field_mask("CTRL", "START")
CTRL_SOFT_RESET = field_mask("CTRL", "SOFT_RESET")
CTRL_IRQ_ENABLE = field_mask("CTRL", "IRQ_ENABLE")
STATUS_BUSY = field_mask("STATUS", "BUSY")
STATUS_DONE = field_mask("STATUS", "DONE")
STATUS_ERROR = field_mask("STATUS", "ERROR")
STATUS_RESETTING = field_mask("STATUS", "RESETTING")
STATUS_ACC_OVERFLOW = field_mask("STATUS", "ACC_OVERFLOW")
IRQ_DONE = field_mask("IRQ_STATUS", "DONE")


def perf_name(reg):
    """The short name of a performance counter: ``PERF_MAC_BUSY`` -> ``mac_busy``."""
    return reg.removeprefix("PERF_").lower()


def id_words(config):
    """The values of the read-only ID/config registers for a configuration."""
    c = config
    cfg0 = (c.rows | c.cols << 8 | c.input_bits << 16 | c.weight_bits << 20
            | int(c.input_signed) << 24 | int(c.weight_signed) << 25
            | int(c.dataflow == "os") << 26 | int(c.vector_unit) << 27
            | int(c.perf_counters) << 28)
    cfg1 = (c.sp_banks | (c.sp_depth.bit_length() - 1) << 8
            | (c.acc_depth.bit_length() - 1) << 16 | (c.param_rows & 0xFF) << 24)
    cfg2 = c.axi_bytes | c.requant_bits << 8 | c.lanes << 16
    return {"ID": ID_MAGIC, "VERSION": VERSION, "CONFIG0": cfg0, "CONFIG1": cfg1,
            "CONFIG2": cfg2}


def csr_markdown():
    """The CSR map as Markdown."""
    out = ["# CSR map", "", "AXI4-Lite slave, 32-bit registers, byte offsets.", "",
           "| offset | name | access | description |", "|---|---|---|---|"]
    for reg in CSR_MAP:
        extra = " (only with `perf_counters`)" if reg.perf else ""
        out.append(f"| 0x{reg.offset:02X} | `{reg.name}` | {reg.access} | {reg.doc}{extra} |")
    for reg in CSR_MAP:
        if not reg.fields:
            continue
        out += ["", f"## {reg.name}", "", "| bits | field | description |", "|---|---|---|"]
        for f in reg.fields:
            bits = f"{f.lsb}" if f.width == 1 else f"{f.lsb + f.width - 1}:{f.lsb}"
            out.append(f"| {bits} | `{f.name}` | {f.doc} |")
    return "\n".join(out) + "\n"
