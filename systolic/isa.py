"""The instruction set, defined once: layouts, encoding, assembler, disassembler and docs.

Every instruction is 128 bits, little-endian. Bits [3:0] hold the opcode and bits [7:4]
the dependency-token flags; the rest is the instruction's own layout, and every bit a
layout does not name is reserved (must be zero). The decoder RTL views instruction words
through these same :class:`amaranth.lib.data.Struct` layouts.
"""

import re
from dataclasses import dataclass

from amaranth.lib import data, enum

from .numerics import Activation, OutType

__all__ = [
    "INSTR_BITS", "INSTR_BYTES", "MAX_ROWS", "MAX_TOKENS",
    "Opcode", "Queue", "LoadDest", "StoreSrc", "VectorOp", "ConfigReg", "ErrorCode",
    "Header", "LAYOUTS", "Instruction", "AsmError",
    "encode", "decode", "assemble", "disassemble", "to_bytes", "from_bytes",
    "isa_markdown", "CONFIG_QUEUE", "CONFIG_DEFAULTS",
]

INSTR_BITS = 128
INSTR_BYTES = 16
MAX_ROWS = 4096       # rows one LOAD/STORE/MATMUL/VECTOR moves
MAX_TOKENS = 255      # dependency tokens pending per channel


class Opcode(enum.Enum, shape=4):
    """Instruction opcodes."""
    NOP = 0
    CONFIG = 1
    LOAD = 2
    STORE = 3
    MATMUL = 4
    VECTOR = 5
    SYNC = 6
    HALT = 7


class Queue(enum.Enum, shape=2):
    """The decoupled queues. Tokens flow load <-> execute <-> store."""
    LOAD = 0
    EXEC = 1
    STORE = 2


class LoadDest(enum.Enum, shape=2):
    SP = 0       # scratchpad: int8 rows
    ACC = 1      # accumulator: int32 rows (bias); stride 0 broadcasts one row
    PARAM = 2    # post-processing parameter buffer: int32 rows


class StoreSrc(enum.Enum, shape=1):
    ACC = 0      # accumulator through post-processing
    SP = 1       # scratchpad bytes, raw


class VectorOp(enum.Enum, shape=4):
    ADD = 0          # dst = sat(a + b)
    MAX = 1          # dst = max(a, b)
    MIN = 2          # dst = min(a, b)
    ADDI = 3         # dst = sat(a + imm)
    MAXI = 4         # dst = max(a, imm)
    MINI = 5         # dst = min(a, imm)
    SHIFT = 6        # imm >= 0: round_shift(a, imm); imm < 0: sat(a << -imm)
    MULI = 7         # dst = sat(a * imm)
    RESCALE_ADD = 8  # dst = sat(round_shift(a*Ma, sa) + round_shift(b*Mb, sb))


class ConfigReg(enum.Enum, shape=8):
    """Registers CONFIG sets; each belongs to the queue that reads it."""
    PAD_VALUE = 0     # load:  byte written for LOAD padding into the scratchpad
    REQ_MULT = 1      # store: requantization multiplier M (per tensor)
    REQ_SHIFT = 2     # store: requantization shift s (per tensor)
    REQ_ZP = 3        # store: output zero point
    ACTIVATION = 4    # store: numerics.Activation
    CLAMP_LO = 5      # store: lower bound of the CLAMP activation
    CLAMP_HI = 6      # store: upper bound of the CLAMP activation
    VEC_MULT_A = 7    # exec:  RESCALE_ADD multiplier of operand a
    VEC_SHIFT_A = 8   # exec:  RESCALE_ADD shift of operand a
    VEC_MULT_B = 9    # exec:  RESCALE_ADD multiplier of operand b
    VEC_SHIFT_B = 10  # exec:  RESCALE_ADD shift of operand b


CONFIG_QUEUE = {
    ConfigReg.PAD_VALUE: Queue.LOAD,
    **{r: Queue.STORE for r in (ConfigReg.REQ_MULT, ConfigReg.REQ_SHIFT, ConfigReg.REQ_ZP,
                                ConfigReg.ACTIVATION, ConfigReg.CLAMP_LO, ConfigReg.CLAMP_HI)},
    **{r: Queue.EXEC for r in (ConfigReg.VEC_MULT_A, ConfigReg.VEC_SHIFT_A,
                               ConfigReg.VEC_MULT_B, ConfigReg.VEC_SHIFT_B)},
}

# Values every register takes at START.
CONFIG_DEFAULTS = {
    ConfigReg.PAD_VALUE: 0, ConfigReg.REQ_MULT: 1, ConfigReg.REQ_SHIFT: 0,
    ConfigReg.REQ_ZP: 0, ConfigReg.ACTIVATION: 0, ConfigReg.CLAMP_LO: -(1 << 31),
    ConfigReg.CLAMP_HI: (1 << 31) - 1, ConfigReg.VEC_MULT_A: 1, ConfigReg.VEC_SHIFT_A: 0,
    ConfigReg.VEC_MULT_B: 1, ConfigReg.VEC_SHIFT_B: 0,
}


class ErrorCode(enum.Enum, shape=4):
    """Why a program stopped (CSR ERROR_CODE). Checked per instruction in this order."""
    NONE = 0
    ILLEGAL_OPCODE = 1   # opcode not defined, or VECTOR without a vector unit
    RESERVED_BITS = 2    # a reserved bit set, or a token flag the queue does not have
    BAD_FIELD = 3        # a field value out of its range (count 0, length > row, bad enum)
    MISALIGNED = 4       # an int32 transfer whose address or stride is not 4-byte aligned
    ADDRESS_RANGE = 5    # on-chip rows beyond a memory, or a transfer past 2**32
    DEADLOCK = 6         # a pop on a token no earlier instruction pushed
    TOKEN_OVERFLOW = 7   # more than MAX_TOKENS tokens pending on one channel
    AXI_ERROR = 8        # SLVERR/DECERR on fetch, LOAD or STORE
    PROGRAM_END = 9      # PROG_LEN instructions fetched without a HALT


class Header(data.Struct):
    """Bits [7:0] of every instruction."""
    opcode: Opcode
    pop_prev: 1    # wait for (and take) a token from the previous queue
    pop_next: 1    # wait for (and take) a token from the next queue
    push_prev: 1   # give a token to the previous queue when done
    push_next: 1   # give a token to the next queue when done


class NopInstr(data.Struct):
    header: Header


class HaltInstr(data.Struct):
    header: Header


class SyncInstr(data.Struct):
    header: Header
    queue: Queue


class ConfigInstr(data.Struct):
    header: Header
    reg: ConfigReg
    value: 32        # signed


class LoadInstr(data.Struct):
    header: Header
    dest: LoadDest
    length: 7        # elements per row read from memory (0..row width)
    pad_left: 6      # pad elements before them in each row
    pad_top: 4       # pad rows before the memory rows
    pad_bottom: 4    # pad rows after them
    n_rows: 13       # destination rows in all, pads included (1..4096)
    addr: 16         # first destination row (scratchpad, accumulator or parameter buffer)
    stride: 24       # bytes between memory rows (0 repeats one row)
    dram_addr: 32    # byte address of the first memory row


class StoreInstr(data.Struct):
    header: Header
    src: StoreSrc
    out_type: 2      # numerics.OutType
    per_channel: 1   # multiplier and shift from parameter rows param_addr, param_addr+1
    length: 7        # elements per row written (1..row width)
    param_addr: 8
    n_rows: 13       # 1..4096
    addr: 16         # first source row
    stride: 24
    dram_addr: 32


class MatmulInstr(data.Struct):
    header: Header
    compute: 1       # stream n_rows input rows through the active weights
    accumulate: 1    # add to the accumulator rows (0: overwrite)
    preload: 1       # load `rows` weight rows from w_addr; active for the next MATMUL
    n_rows: 13
    a_addr: 16       # first input row (scratchpad)
    w_addr: 16       # first weight row (scratchpad)
    c_addr: 16       # first accumulator row


# Fields that read as two's complement (the layouts hold their raw bits).
_SIGNED = {("CONFIG", "value"), ("VECTOR", "imm")}


class VectorInstr(data.Struct):
    header: Header
    op: VectorOp
    n_rows: 13
    dst: 16
    src_a: 16
    src_b: 16
    imm: 32          # signed


LAYOUTS = {
    Opcode.NOP: NopInstr,
    Opcode.CONFIG: ConfigInstr,
    Opcode.LOAD: LoadInstr,
    Opcode.STORE: StoreInstr,
    Opcode.MATMUL: MatmulInstr,
    Opcode.VECTOR: VectorInstr,
    Opcode.SYNC: SyncInstr,
    Opcode.HALT: HaltInstr,
}

FLAG_NAMES = ("pop_prev", "pop_next", "push_prev", "push_next")

FIELD_DOCS = {
    "queue": "queue the SYNC runs in: load, exec, store",
    "reg": "register to set (see the CONFIG registers table)",
    "value": "32-bit value (two's complement)",
    "dest": "sp (scratchpad), acc (accumulator, int32), param (parameter buffer, int32)",
    "length": "elements per row moved to/from memory",
    "pad_left": "pad elements before the memory elements of a row",
    "pad_top": "pad rows before the memory rows",
    "pad_bottom": "pad rows after the memory rows",
    "n_rows": "rows in all (1..4096)",
    "addr": "first on-chip row",
    "stride": "bytes between memory rows",
    "dram_addr": "byte address in system memory",
    "src": "acc (through post-processing) or sp (raw bytes)",
    "out_type": "int8, uint8 or int32 (int32: raw accumulator, no requantization)",
    "per_channel": "per-channel multiplier/shift from parameter rows param_addr, +1",
    "param_addr": "first parameter row",
    "compute": "stream input rows through the active weights",
    "accumulate": "add into the accumulator (0: overwrite)",
    "preload": "load the next weight tile (active from the next MATMUL)",
    "a_addr": "first input row (scratchpad)",
    "w_addr": "first weight row (scratchpad)",
    "c_addr": "first accumulator row",
    "op": "vector operation",
    "dst": "first destination accumulator row",
    "src_a": "first accumulator row of operand a",
    "src_b": "first accumulator row of operand b",
    "imm": "signed 32-bit immediate",
}


def _fields(op):
    """(name, offset, width, shape) of the non-header fields of an opcode's layout."""
    out = []
    for name, field in data.Layout.cast(LAYOUTS[op]):
        if name == "header":
            continue
        out.append((name, field.offset, field.width, field.shape))
    return out


def _enum_of(shape):
    return shape if isinstance(shape, type) and issubclass(shape, enum.Enum) else None


_ENUM_FIELD_VALUES = {"out_type": OutType}


@dataclass(frozen=True)
class Instruction:
    """A decoded instruction: opcode, token flags and named field values (ints)."""
    opcode: Opcode
    fields: dict
    pop_prev: bool = False
    pop_next: bool = False
    push_prev: bool = False
    push_next: bool = False
    reserved: int = 0   # value of the reserved bits (must be zero)

    def __getattr__(self, name):
        try:
            return self.__dict__["fields"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def flags(self):
        return tuple(getattr(self, n) for n in FLAG_NAMES)


def _reserved_mask(op):
    used = (1 << 8) - 1
    for _, off, width, _ in _fields(op):
        used |= ((1 << width) - 1) << off
    return ((1 << INSTR_BITS) - 1) & ~used


def encode(instr):
    """Encode an :class:`Instruction` as a 128-bit integer."""
    if not isinstance(instr.opcode, Opcode):
        raise ValueError(f"opcode must be an Opcode, not {instr.opcode!r}")
    word = instr.opcode.value
    for i, name in enumerate(FLAG_NAMES):
        word |= int(bool(getattr(instr, name))) << (4 + i)
    known = {n for n, *_ in _fields(instr.opcode)}
    for name in instr.fields:
        if name not in known:
            raise ValueError(f"{instr.opcode.name} has no field {name!r}")
    for name, off, width, _shape in _fields(instr.opcode):
        value = instr.fields.get(name, 0)
        if isinstance(value, enum.Enum):
            value = value.value
        value = int(value)
        signed = (instr.opcode.name, name) in _SIGNED
        lo, hi = (-(1 << (width - 1)), (1 << width) - 1) if signed else (0, (1 << width) - 1)
        if not lo <= value <= hi:
            raise ValueError(f"{instr.opcode.name}.{name} must be in {lo}..{hi}, not {value}")
        word |= (value & ((1 << width) - 1)) << off
    word |= instr.reserved & _reserved_mask(instr.opcode)
    return word


def decode(word):
    """Decode a 128-bit integer. An undefined opcode raises :class:`ValueError`."""
    code = word & 0xF
    try:
        op = Opcode(code)
    except ValueError:
        raise ValueError(f"illegal opcode {code}") from None
    fields = {}
    for name, off, width, _ in _fields(op):
        value = (word >> off) & ((1 << width) - 1)
        if (op.name, name) in _SIGNED and value >> (width - 1):
            value -= 1 << width
        fields[name] = value
    flags = {n: bool(word >> (4 + i) & 1) for i, n in enumerate(FLAG_NAMES)}
    return Instruction(op, fields, reserved=word & _reserved_mask(op), **flags)


def to_bytes(words):
    """Instruction words as the little-endian byte image the hardware fetches."""
    return b"".join(int(w).to_bytes(INSTR_BYTES, "little") for w in words)


def from_bytes(image):
    if len(image) % INSTR_BYTES:
        raise ValueError(f"program image length must be a multiple of 16, not {len(image)}")
    return [int.from_bytes(image[i:i + INSTR_BYTES], "little")
            for i in range(0, len(image), INSTR_BYTES)]


# -- assembler -----------------------------------------------------------------------------

class AsmError(ValueError):
    """An assembly error at a line and column."""

    def __init__(self, message, line, column):
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column


_TOKEN = re.compile(r"[^\s,]+")


def _enum_for(op, name, shape):
    if name in _ENUM_FIELD_VALUES:
        return _ENUM_FIELD_VALUES[name]
    return _enum_of(shape)


def _parse_value(text, enum_cls):
    if enum_cls is not None:
        for member in enum_cls:
            if member.name.lower() == text.lower():
                return member.value
    return int(text, 0)


def assemble(source):
    """Assemble text into a list of 128-bit words.

    One instruction per line: the mnemonic, then ``field=value`` pairs (decimal, ``0x``
    hex, or an enum name), then any token flags (``pop_prev`` ...). ``#`` and ``;`` start
    comments. Fields left out are zero.
    """
    words = []
    for lineno, raw in enumerate(source.splitlines(), 1):
        line = re.split(r"[#;]", raw, maxsplit=1)[0]
        tokens = [(m.group(), m.start() + 1) for m in _TOKEN.finditer(line)]
        if not tokens:
            continue
        mnemonic, col = tokens[0]
        try:
            op = Opcode[mnemonic.upper()]
        except KeyError:
            raise AsmError(f"unknown instruction {mnemonic!r}", lineno, col) from None
        fields_info = {n: (w, s) for n, _, w, s in _fields(op)}
        fields, flags = {}, {}
        for tok, col in tokens[1:]:
            if "=" not in tok:
                if tok.lower() in FLAG_NAMES:
                    flags[tok.lower()] = True
                    continue
                raise AsmError(f"expected field=value or a token flag, not {tok!r}", lineno, col)
            name, _, text = tok.partition("=")
            name = name.lower()
            if name not in fields_info:
                raise AsmError(f"{op.name} has no field {name!r}", lineno, col)
            if name in fields:
                raise AsmError(f"field {name!r} given twice", lineno, col)
            width, shape = fields_info[name]
            try:
                value = _parse_value(text, _enum_for(op, name, shape))
            except ValueError:
                raise AsmError(f"bad value {text!r} for {op.name}.{name}", lineno,
                               col + len(name) + 1) from None
            signed = (op.name, name) in _SIGNED
            lo, hi = (-(1 << (width - 1)), (1 << width) - 1) if signed else (0, (1 << width) - 1)
            if not lo <= value <= hi:
                raise AsmError(f"{op.name}.{name} must be in {lo}..{hi}, not {value}", lineno, col)
            fields[name] = value
        try:
            words.append(encode(Instruction(op, fields, **flags)))
        except ValueError as exc:
            raise AsmError(str(exc), lineno, col) from None
    return words


def disassemble_one(word):
    """One instruction word as assembly text (round-trips through :func:`assemble`)."""
    instr = decode(word)
    parts = [instr.opcode.name]
    for name, _, _, shape in _fields(instr.opcode):
        value = instr.fields[name]
        enum_cls = _enum_for(instr.opcode, name, shape)
        text = str(value)
        if enum_cls is not None:
            try:
                text = enum_cls(value).name.lower()
            except ValueError:
                pass
        elif name in ("dram_addr",):
            text = f"0x{value:x}"
        parts.append(f"{name}={text}")
    parts += [n for n in FLAG_NAMES if getattr(instr, n)]
    if instr.reserved:
        raise ValueError(f"reserved bits set in {instr.opcode.name}: 0x{instr.reserved:x}")
    return " ".join(parts)


def disassemble(words):
    """Words as assembly text, one instruction per line."""
    return "\n".join(disassemble_one(w) for w in words) + ("\n" if words else "")


# -- reference documentation ---------------------------------------------------------------

def _bits(off, width):
    return f"{off}" if width == 1 else f"{off + width - 1}:{off}"


def isa_markdown():
    """The ISA reference (docs/isa.md), generated from the layouts above."""
    out = [
        "# Systolic ISA reference", "",
        "Generated from `systolic/isa.py` by `systolic isa-doc`; do not edit.", "",
        f"Instructions are {INSTR_BITS} bits, little-endian, fetched by DMA from system",
        "memory. Bits [3:0] hold the opcode, bits [7:4] the dependency-token flags",
        "(`pop_prev`, `pop_next`, `push_prev`, `push_next`). Every bit not named below is",
        "reserved and must be zero.", "",
        "## Queues and tokens", "",
        "LOAD runs in the load queue, MATMUL and VECTOR in the execute queue, STORE in the",
        "store queue; CONFIG runs in the queue that owns its register, SYNC in the queue it",
        "names. NOP and HALT run in none and take no token flags. Tokens flow load <->",
        "execute <-> store: the load queue has only `*_next` flags, the store queue only",
        "`*_prev`. A pop waits for a token; a pop on a channel that no earlier instruction",
        "(in program order) pushed a pending token to is DEADLOCK. A push is done when the",
        "instruction's last write has landed. Within a queue, instructions run in order.", "",
        "## Opcodes", "", "| opcode | value | queue |", "|---|---|---|",
    ]
    queues = {"NOP": "-", "CONFIG": "owner of the register", "LOAD": "load", "STORE": "store",
              "MATMUL": "exec", "VECTOR": "exec", "SYNC": "named by `queue`", "HALT": "-"}
    for op in Opcode:
        out.append(f"| `{op.name}` | {op.value} | {queues[op.name]} |")
    for op in Opcode:
        out += ["", f"## {op.name}", "", "| bits | field | description |", "|---|---|---|",
                "| 3:0 | `opcode` | " + str(op.value) + " |",
                "| 7:4 | flags | `pop_prev`, `pop_next`, `push_prev`, `push_next` |"]
        for name, off, width, shape in _fields(op):
            enum_cls = _enum_for(op, name, shape)
            doc = FIELD_DOCS.get(name, "")
            if enum_cls is not None:
                doc += " (" + ", ".join(f"{m.name.lower()}={m.value}" for m in enum_cls) + ")"
            if (op.name, name) in _SIGNED:
                doc += " [signed]"
            out.append(f"| {_bits(off, width)} | `{name}` | {doc} |")
    out += ["", "## CONFIG registers", "", "| reg | value | queue | reset value |",
            "|---|---|---|---|"]
    for reg in ConfigReg:
        out.append(f"| `{reg.name}` | {reg.value} | {CONFIG_QUEUE[reg].name.lower()} | "
                   f"{CONFIG_DEFAULTS[reg]} |")
    out += ["", "## Activations", ""]
    out += [f"- `{a.name.lower()}` = {a.value}" for a in Activation]
    out += ["", "## Vector operations", ""]
    out += [f"- `{v.name.lower()}` = {v.value}" for v in VectorOp]
    out += ["", "## Error codes", "",
            "Checked per instruction in the order of this table (lowest first), at decode, "
            "in program order; AXI_ERROR comes from a transfer.", "",
            "| code | name |", "|---|---|"]
    out += [f"| {e.value} | `{e.name}` |" for e in ErrorCode]
    return "\n".join(out) + "\n"

