"""The instruction set: layouts, encoding, assembler and disassembler (property-based)."""

import itertools

import pytest
from amaranth.lib import data
from amaranth.lib import enum as amaranth_enum
from hypothesis import given
from hypothesis import strategies as st

from systolic import isa
from systolic.isa import (
    FLAG_NAMES,
    INSTR_BITS,
    LAYOUTS,
    AsmError,
    Instruction,
    Opcode,
    assemble,
    decode,
    disassemble,
    encode,
    from_bytes,
    to_bytes,
)
from systolic.numerics import OutType

OPCODES = list(Opcode)

# The specification the tests hold the ISA to: these fields read as two's complement,
# and these fields take the members of an enum that is not their layout shape.
SIGNED = {("CONFIG", "value"), ("VECTOR", "imm")}
ENUM_VALUES = {"out_type": OutType}


# -- the layouts, read back through amaranth.lib.data ---------------------------------------

def _is_aggregate(shape):
    return isinstance(shape, type) and issubclass(shape, (data.Struct, data.Union))


def leaves(layout, base=0, prefix=""):
    """(path, offset, width, shape) of every leaf field, nested layouts flattened."""
    out = []
    for name, field in data.Layout.cast(layout):
        path = prefix + name
        if _is_aggregate(field.shape):
            out += leaves(field.shape, base + field.offset, path + ".")
        else:
            out.append((path, base + field.offset, field.width, field.shape))
    return out


def body_fields(op):
    """(name, offset, width, shape) of an opcode's own fields (everything but the header)."""
    return [(n, o, w, s) for n, o, w, s in leaves(LAYOUTS[op]) if not n.startswith("header.")]


def enum_of(name, shape):
    if name in ENUM_VALUES:
        return ENUM_VALUES[name]
    if isinstance(shape, type) and issubclass(shape, amaranth_enum.Enum):
        return shape
    return None


def field_range(op, name, width):
    if (op.name, name) in SIGNED:
        return -(1 << (width - 1)), (1 << (width - 1)) - 1
    return 0, (1 << width) - 1


def reserved_mask(op):
    used = 0
    for _, off, width, _ in leaves(LAYOUTS[op]):
        used |= ((1 << width) - 1) << off
    return ((1 << INSTR_BITS) - 1) & ~used


def field_strategy(op, name, width, shape):
    enum_cls = enum_of(name, shape)
    if enum_cls is not None:
        return st.sampled_from([m.value for m in enum_cls])
    lo, hi = field_range(op, name, width)
    return st.integers(lo, hi)


def instructions(op):
    """Every instruction of one opcode: full field ranges, enum members, all flags."""
    fields = st.fixed_dictionaries(
        {name: field_strategy(op, name, w, s) for name, _, w, s in body_fields(op)})
    flags = st.fixed_dictionaries({n: st.booleans() for n in FLAG_NAMES})
    return st.builds(lambda f, fl: Instruction(op, f, **fl), fields, flags)


def zero_instruction(op, **flags):
    return Instruction(op, {name: 0 for name, *_ in body_fields(op)}, **flags)


# -- layouts -------------------------------------------------------------------------------

def test_every_opcode_has_a_layout():
    assert set(LAYOUTS) == set(Opcode)


@pytest.mark.parametrize("op", OPCODES, ids=lambda o: o.name)
def test_layout_fits_in_an_instruction_word(op):
    assert data.Layout.cast(LAYOUTS[op]).size <= INSTR_BITS


@pytest.mark.parametrize("op", OPCODES, ids=lambda o: o.name)
def test_no_two_fields_overlap(op):
    taken = {}
    for path, off, width, _ in leaves(LAYOUTS[op]):
        assert width > 0, path
        for bit in range(off, off + width):
            assert bit not in taken, f"{op.name}: {path} overlaps {taken.get(bit)} at bit {bit}"
            taken[bit] = path
    assert max(taken) < INSTR_BITS


@pytest.mark.parametrize("op", OPCODES, ids=lambda o: o.name)
def test_header_holds_opcode_then_flags(op):
    fields = {p: (o, w) for p, o, w, _ in leaves(LAYOUTS[op]) if p.startswith("header.")}
    expected = {"header.opcode": (0, 4)}
    expected.update({f"header.{n}": (4 + i, 1) for i, n in enumerate(FLAG_NAMES)})
    assert fields == expected


def test_signed_fields_are_the_documented_ones():
    assert isa._SIGNED == SIGNED
    for op_name, name in SIGNED:
        op = Opcode[op_name]
        width = {n: w for n, _, w, _ in body_fields(op)}[name]
        word = encode(Instruction(op, {name: -1}))
        assert decode(word).fields[name] == -1
        assert (word >> {n: o for n, o, _, _ in body_fields(op)}[name]) == (1 << width) - 1


# -- round trips ---------------------------------------------------------------------------

@pytest.mark.parametrize("op", OPCODES, ids=lambda o: o.name)
@given(data=st.data())
def test_encode_decode_and_text_round_trip(op, data):
    instr = data.draw(instructions(op))
    word = encode(instr)
    assert 0 <= word < 1 << INSTR_BITS
    assert word & 0xF == op.value
    assert decode(word) == instr
    text = disassemble([word])
    assert assemble(text) == [word]
    assert disassemble(assemble(text)) == text


@pytest.mark.parametrize("op", OPCODES, ids=lambda o: o.name)
@given(raw=st.integers(0, (1 << INSTR_BITS) - 1))
def test_any_legal_word_round_trips(op, raw):
    """Raw field bits, including enum codes that name no member, survive both ways."""
    word = (raw & ~reserved_mask(op) & ~0xF) | op.value
    assert encode(decode(word)) == word
    assert assemble(disassemble([word])) == [word]


@pytest.mark.parametrize("op", OPCODES, ids=lambda o: o.name)
def test_field_extremes_round_trip(op):
    for name, _, width, shape in body_fields(op):
        enum_cls = enum_of(name, shape)
        values = ([m.value for m in enum_cls] if enum_cls is not None
                  else field_range(op, name, width))
        for value in values:
            instr = Instruction(op, {**zero_instruction(op).fields, name: value})
            word = encode(instr)
            assert decode(word) == instr, (name, value)
            assert assemble(disassemble([word])) == [word], (name, value)


@pytest.mark.parametrize("op", OPCODES, ids=lambda o: o.name)
def test_every_flag_combination_round_trips(op):
    for bits in itertools.product((False, True), repeat=len(FLAG_NAMES)):
        flags = dict(zip(FLAG_NAMES, bits, strict=True))
        instr = zero_instruction(op, **flags)
        word = encode(instr)
        assert (word >> 4) & 0xF == sum(b << i for i, b in enumerate(bits))
        assert decode(word) == instr
        assert decode(word).flags == bits
        assert assemble(disassemble([word])) == [word]


def test_enum_names_assemble_case_insensitively():
    words = assemble("load DEST=Acc n_rows=2 dram_addr=0x40\n"
                     "store src=sp out_type=UINT8 n_rows=1 length=4\n"
                     "vector op=rescale_add n_rows=3 imm=-7\n"
                     "sync queue=store push_prev\n")
    load, store, vector, sync = (decode(w) for w in words)
    assert (load.opcode, load.dest, load.n_rows, load.dram_addr) == (Opcode.LOAD, 1, 2, 0x40)
    assert (store.src, store.out_type, store.length) == (1, OutType.UINT8.value, 4)
    assert (vector.op, vector.imm) == (isa.VectorOp.RESCALE_ADD.value, -7)
    assert (sync.queue, sync.push_prev, sync.pop_prev) == (isa.Queue.STORE.value, True, False)


def test_comments_and_blank_lines_are_skipped():
    assert assemble("# header\n\n   \nNOP ; trailing\nHALT # done\n") == [
        encode(zero_instruction(Opcode.NOP)), encode(zero_instruction(Opcode.HALT))]
    assert disassemble([]) == ""


# -- encoding errors -----------------------------------------------------------------------

@pytest.mark.parametrize("op", OPCODES, ids=lambda o: o.name)
def test_encode_rejects_out_of_range_values_naming_the_field(op):
    for name, _, width, _ in body_fields(op):
        # Signed fields also take their raw (unsigned) bit pattern, e.g. imm=0xFFFFFFFF.
        lo = field_range(op, name, width)[0]
        hi = (1 << width) - 1
        for bad in (lo - 1, hi + 1):
            with pytest.raises(ValueError) as info:
                encode(Instruction(op, {name: bad}))
            assert str(info.value) == f"{op.name}.{name} must be in {lo}..{hi}, not {bad}"


def test_encode_range_messages_exactly():
    with pytest.raises(ValueError, match=r"^LOAD\.n_rows must be in 0\.\.8191, not 8192$"):
        encode(Instruction(Opcode.LOAD, {"n_rows": 8192}))
    with pytest.raises(ValueError,
                       match=r"^CONFIG\.value must be in -2147483648\.\.4294967295, not -2147483649$"):
        encode(Instruction(Opcode.CONFIG, {"value": -(1 << 31) - 1}))


def test_encode_rejects_unknown_fields_and_opcodes():
    with pytest.raises(ValueError, match=r"^LOAD has no field 'imm'$"):
        encode(Instruction(Opcode.LOAD, {"imm": 1}))
    with pytest.raises(ValueError, match=r"^opcode must be an Opcode, not 3$"):
        encode(Instruction(3, {}))


@pytest.mark.parametrize("code", range(len(Opcode), 16))
def test_undefined_opcodes_are_rejected(code):
    with pytest.raises(ValueError, match=rf"^illegal opcode {code}$"):
        decode(code)
    with pytest.raises(ValueError, match=rf"^illegal opcode {code}$"):
        disassemble([code | 0xF0])


# -- reserved bits -------------------------------------------------------------------------

@pytest.mark.parametrize("op", OPCODES, ids=lambda o: o.name)
def test_decode_reports_exactly_the_reserved_bits(op):
    everything = (1 << INSTR_BITS) - 1
    assert decode((everything & ~0xF) | op.value).reserved == reserved_mask(op)
    assert decode(op.value).reserved == 0


@pytest.mark.parametrize("op", [o for o in OPCODES if reserved_mask(o)], ids=lambda o: o.name)
@given(data=st.data())
def test_reserved_bits_are_preserved_by_decode_and_rejected_by_disassemble(op, data):
    instr = data.draw(instructions(op))
    mask = reserved_mask(op)
    positions = [bit for bit in range(INSTR_BITS) if mask >> bit & 1]
    reserved = sum(1 << bit for bit in data.draw(st.sets(st.sampled_from(positions), min_size=1)))
    word = encode(instr) | reserved
    got = decode(word)
    assert got.reserved == reserved
    assert got.fields == instr.fields and got.flags == instr.flags
    assert encode(got) == word
    with pytest.raises(ValueError, match=rf"^reserved bits set in {op.name}: 0x{reserved:x}$"):
        disassemble([word])


def test_reserved_bits_given_to_encode_are_masked_to_the_reserved_field():
    instr = Instruction(Opcode.NOP, {}, reserved=(1 << 200) | (1 << 127) | 0xFF)
    assert encode(instr) == 1 << 127


# -- assembler errors ----------------------------------------------------------------------

@pytest.mark.parametrize("source, line, column, message", [
    ("NOP\n  LAOD x=1", 2, 3, "unknown instruction 'LAOD'"),
    ("LOAD foo=1", 1, 6, "LOAD has no field 'foo'"),
    ("LOAD n_rows=1 n_rows=2", 1, 15, "field 'n_rows' given twice"),
    ("LOAD dest=dram", 1, 11, "bad value 'dram' for LOAD.dest"),
    ("MATMUL\tn_rows=x4", 1, 15, "bad value 'x4' for MATMUL.n_rows"),
    ("HALT now", 1, 6, "expected field=value or a token flag, not 'now'"),
    ("# c\n\nSYNC queue=exec, pop_later", 3, 18,
     "expected field=value or a token flag, not 'pop_later'"),
])
def test_assembler_errors_carry_line_and_column(source, line, column, message):
    with pytest.raises(AsmError) as info:
        assemble(source)
    assert (info.value.line, info.value.column) == (line, column)
    assert str(info.value) == f"line {line}, column {column}: {message}"
    assert isinstance(info.value, ValueError)


def test_assembler_range_error_points_at_the_field():
    with pytest.raises(AsmError) as info:
        assemble("LOAD n_rows=99999 addr=1")
    assert str(info.value) == "line 1, column 6: LOAD.n_rows must be in 0..8191, not 99999"


def test_assembler_range_error_names_the_field_and_line():
    with pytest.raises(AsmError, match=r"^line 2, column \d+: CONFIG\.value must be in "):
        assemble("NOP\nCONFIG reg=pad_value value=0x100000000")


# -- byte images ---------------------------------------------------------------------------

def test_byte_image_is_little_endian_16_bytes_a_word():
    image = to_bytes([0x0102, 1 << 127])
    assert image == b"\x02\x01" + bytes(14) + bytes(15) + b"\x80"
    assert from_bytes(image) == [0x0102, 1 << 127]
    assert from_bytes(b"") == []


@given(st.lists(st.integers(0, (1 << INSTR_BITS) - 1), max_size=8))
def test_byte_image_round_trips(words):
    assert from_bytes(to_bytes(words)) == words
    assert len(to_bytes(words)) == 16 * len(words)


@pytest.mark.parametrize("length", [1, 15, 17, 33])
def test_byte_image_of_bad_length_is_rejected(length):
    with pytest.raises(ValueError,
                       match=rf"^program image length must be a multiple of 16, not {length}$"):
        from_bytes(bytes(length))
