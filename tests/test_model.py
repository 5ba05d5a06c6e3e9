"""Golden model: each instruction against plain NumPy, every error code, the race report."""

import numpy as np
import pytest

from systolic.config import AcceleratorConfig, preset
from systolic.isa import MAX_TOKENS, ErrorCode, assemble, to_bytes
from systolic.model import GoldenModel, run_program
from systolic.numerics import requantize

CFG = preset("default")
PROG = 0x8000   # programs live here; data below
MEM = 0x10000


def run(src, mem=None, cfg=CFG, **kw):
    mem = bytearray(MEM) if mem is None else mem
    return run_program(cfg, assemble(src), mem, prog_addr=PROG, **kw)


def words(memory, addr, shape, dtype):
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer(memory[addr:addr + n].tobytes(), dtype=dtype).reshape(shape)


def assert_same(actual, expected):
    """The scoreboard of these tests: element-exact comparison with a located message."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    bad = [tuple(int(x) for x in b) for b in np.argwhere(actual != expected)]
    assert not bad, (f"{len(bad)} mismatches, first at {bad[0]}: "
                     f"{actual[bad[0]]} != {expected[bad[0]]}")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# -- instructions ----------------------------------------------------------------------------

def test_matmul_int32(rng):
    a = rng.integers(-128, 128, (13, 8), dtype=np.int8)
    w = rng.integers(-128, 128, (8, 8), dtype=np.int8)
    mem = bytearray(MEM)
    mem[0x100:0x100 + a.size] = a.tobytes()
    mem[0x400:0x400 + w.size] = w.tobytes()
    r = run("""
        LOAD dest=sp addr=0 n_rows=13 length=8 stride=8 dram_addr=0x100
        LOAD dest=sp addr=4096 n_rows=8 length=8 stride=8 dram_addr=0x400 push_next
        MATMUL preload=1 w_addr=4096 pop_prev
        MATMUL compute=1 n_rows=13 a_addr=0 c_addr=0 push_next
        STORE src=acc out_type=int32 n_rows=13 length=8 stride=32 dram_addr=0x1000 pop_prev
        HALT""", mem)
    assert r.ok and not r.races
    assert_same(words(r.memory, 0x1000, (13, 8), "<i4"), a.astype(np.int64) @ w)
    assert r.macs == 13 * 64


def test_matmul_accumulates_and_preloads_next_tile(rng):
    cfg = preset("tiny")
    a = rng.integers(0, 256, (4, 2), dtype=np.uint8)
    w0 = rng.integers(-128, 128, (2, 2), dtype=np.int8)
    w1 = rng.integers(-128, 128, (2, 2), dtype=np.int8)
    cfg = cfg.replace(input_signed=False)
    mem = bytearray(MEM)
    mem[0:8] = a.tobytes()
    mem[0x40:0x44] = w0.tobytes()
    mem[0x50:0x54] = w1.tobytes()
    r = run("""
        LOAD dest=sp addr=0 n_rows=4 length=2 stride=2 dram_addr=0
        LOAD dest=sp addr=256 n_rows=2 length=2 stride=2 dram_addr=0x40
        LOAD dest=sp addr=512 n_rows=2 length=2 stride=2 dram_addr=0x50 push_next
        MATMUL preload=1 w_addr=256 pop_prev
        MATMUL compute=1 n_rows=4 a_addr=0 c_addr=0 preload=1 w_addr=512
        MATMUL compute=1 accumulate=1 n_rows=4 a_addr=0 c_addr=0 push_next
        STORE src=acc out_type=int32 n_rows=4 length=2 stride=8 dram_addr=0x100 pop_prev
        HALT""", mem, cfg=cfg)
    assert r.ok and not r.races
    expect = a.astype(np.int64) @ w0 + a.astype(np.int64) @ w1
    assert_same(words(r.memory, 0x100, (4, 2), "<i4"), expect)


def test_narrow_elements_use_low_bits():
    cfg = preset("tiny").replace(input_bits=4, weight_bits=3, weight_signed=True)
    mem = bytearray(MEM)
    mem[0:2] = bytes([0xFF, 0x17])       # 4-bit signed: -1, 7
    mem[0x40:0x44] = bytes([0x07, 0x03, 0xF9, 0x04])   # 3-bit signed: -1, 3, 1, -4
    r = run("""
        LOAD dest=sp addr=0 n_rows=1 length=2 dram_addr=0
        LOAD dest=sp addr=256 n_rows=2 length=2 stride=2 dram_addr=0x40 push_next
        MATMUL preload=1 w_addr=256 pop_prev
        MATMUL compute=1 n_rows=1 push_next
        STORE src=acc out_type=int32 n_rows=1 length=2 dram_addr=0x100 pop_prev
        HALT""", mem, cfg=cfg)
    expect = np.array([-1, 7]) @ np.array([[-1, 3], [1, -4]])
    assert_same(words(r.memory, 0x100, (2,), "<i4"), expect)


def test_load_padding_and_broadcast_bias():
    cfg = preset("default")
    mem = bytearray(MEM)
    mem[0x100:0x110] = bytes(range(1, 17))
    bias = np.arange(8, dtype="<i4") * -3
    mem[0x200:0x220] = bias.tobytes()
    r = run("""
        CONFIG reg=pad_value value=0x7f
        LOAD dest=sp addr=10 n_rows=5 length=3 pad_left=2 pad_top=1 pad_bottom=2 stride=5 dram_addr=0x100
        STORE src=sp addr=10 n_rows=5 length=8 stride=8 dram_addr=0x400
        LOAD dest=acc addr=3 n_rows=4 length=8 stride=0 dram_addr=0x200
        STORE src=acc out_type=int32 addr=3 n_rows=4 length=8 stride=32 dram_addr=0x500
        HALT""", mem, cfg=cfg)
    assert r.ok, r.error
    expect = np.full((5, 8), 0x7F, dtype=np.uint8)
    expect[1, 2:5] = [1, 2, 3]
    expect[2, 2:5] = [6, 7, 8]
    assert_same(words(r.memory, 0x400, (5, 8), np.uint8), expect)
    assert_same(words(r.memory, 0x500, (4, 8), "<i4"), np.tile(bias, (4, 1)))


@pytest.mark.parametrize("out_type,act", [("int8", 0), ("uint8", 1), ("int8", 2)])
def test_store_requantizes_per_tensor(rng, out_type, act):
    acc = rng.integers(-(1 << 20), 1 << 20, (3, 8)).astype("<i4")
    acc[0, 0] = -(1 << 31)
    mem = bytearray(MEM)
    mem[0x100:0x100 + acc.nbytes] = acc.tobytes()
    m, s, zp = 1_518_500_250, 38, 5 if out_type == "int8" else 128
    r = run(f"""
        LOAD dest=acc addr=0 n_rows=3 length=8 stride=32 dram_addr=0x100
        CONFIG reg=req_mult value={m}
        CONFIG reg=req_shift value={s}
        CONFIG reg=req_zp value={zp}
        CONFIG reg=activation value={act}
        CONFIG reg=clamp_lo value=-20
        CONFIG reg=clamp_hi value=30
        SYNC queue=load push_next
        SYNC queue=exec pop_prev push_next
        STORE src=acc out_type={out_type} n_rows=3 length=7 stride=10 dram_addr=0x400 pop_prev
        HALT""", mem)
    assert r.ok and not r.races
    lo, hi = {("int8", 0): (-128, 127), ("uint8", 1): (zp, 255), ("int8", 2): (-20, 30)}[
        (out_type, act)]
    expect = requantize(acc[:, :7], m, s, zp, lo, hi)
    got = np.stack([np.frombuffer(r.memory[0x400 + 10 * i:0x407 + 10 * i].tobytes(),
                                  np.int8 if out_type == "int8" else np.uint8) for i in range(3)])
    assert_same(got, expect)
    assert r.memory[0x407] == 0  # bytes between rows untouched


def test_store_per_channel(rng):
    acc = rng.integers(-50000, 50000, (2, 8)).astype("<i4")
    mult = rng.integers(1 << 29, 1 << 31, 8).astype("<i4")
    shift = rng.integers(30, 40, 8).astype("<i4")
    mem = bytearray(MEM)
    mem[0x100:0x140] = acc.tobytes()
    mem[0x200:0x220] = mult.tobytes()
    mem[0x220:0x240] = shift.tobytes()
    r = run("""
        LOAD dest=acc addr=0 n_rows=2 length=8 stride=32 dram_addr=0x100
        LOAD dest=param addr=4 n_rows=2 length=8 stride=32 dram_addr=0x200 push_next
        SYNC queue=exec pop_prev push_next
        STORE src=acc out_type=int8 per_channel=1 param_addr=4 n_rows=2 length=8 stride=8 dram_addr=0x400 pop_prev
        HALT""", mem)
    assert r.ok and not r.races
    expect = requantize(acc, mult, shift, 0, -128, 127)
    assert_same(words(r.memory, 0x400, (2, 8), np.int8), expect)


VECTOR_CASES = {
    "add": lambda a, b, i: a + b,
    "max": lambda a, b, i: np.maximum(a, b),
    "min": lambda a, b, i: np.minimum(a, b),
    "addi": lambda a, b, i: a + i,
    "maxi": lambda a, b, i: np.maximum(a, i),
    "mini": lambda a, b, i: np.minimum(a, i),
    "muli": lambda a, b, i: a * i,
}


@pytest.mark.parametrize("op", [*VECTOR_CASES, "shift_right", "shift_left", "rescale_add"])
def test_vector(rng, op):
    a = rng.integers(-(1 << 31), 1 << 31, (4, 8)).astype("<i4")
    b = rng.integers(-(1 << 31), 1 << 31, (4, 8)).astype("<i4")
    a[0, :2] = [-(1 << 31), (1 << 31) - 1]
    mem = bytearray(MEM)
    mem[0x100:0x180] = a.tobytes()
    mem[0x200:0x280] = b.tobytes()
    imm = {"shift_right": 5, "shift_left": -3}.get(op, -7)
    name = {"shift_right": "shift", "shift_left": "shift"}.get(op, op)
    r = run(f"""
        CONFIG reg=vec_mult_a value=1073741824
        CONFIG reg=vec_shift_a value=31
        CONFIG reg=vec_mult_b value=3
        CONFIG reg=vec_shift_b value=2
        LOAD dest=acc addr=0 n_rows=4 length=8 stride=32 dram_addr=0x100
        LOAD dest=acc addr=600 n_rows=4 length=8 stride=32 dram_addr=0x200 push_next
        VECTOR op={name} dst=0 src_a=0 src_b=600 n_rows=4 imm={imm} pop_prev push_next
        STORE src=acc out_type=int32 n_rows=4 length=8 stride=32 dram_addr=0x400 pop_prev
        HALT""", mem)
    assert r.ok and not r.races
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    if op in VECTOR_CASES:
        expect = VECTOR_CASES[op](a64, b64, imm)
    elif op == "shift_right":
        expect = (a64 + 16) >> 5
    elif op == "shift_left":
        expect = a64 * 8
    else:
        expect = ((a64 * (1 << 30) + (1 << 30)) >> 31) + ((b64 * 3 + 2) >> 2)
    expect_sat = np.clip(expect, -(1 << 31), (1 << 31) - 1)
    assert_same(words(r.memory, 0x400, (4, 8), "<i4"), expect_sat)
    assert r.acc_overflow == bool((expect != expect_sat).any())


def test_matmul_accumulate_saturates_and_sets_sticky_flag():
    cfg = preset("tiny")
    mem = bytearray(MEM)
    mem[0:8] = np.array([(1 << 31) - 10, -(1 << 31) + 10], "<i4").tobytes()
    mem[0x40:0x42] = bytes([127, 127])
    mem[0x50:0x54] = bytes([127, 0x81, 127, 0x81])  # weights 127, -127
    r = run("""
        LOAD dest=acc addr=0 n_rows=1 length=2 dram_addr=0
        LOAD dest=sp addr=0 n_rows=1 length=2 dram_addr=0x40
        LOAD dest=sp addr=256 n_rows=2 length=2 stride=2 dram_addr=0x50 push_next
        MATMUL preload=1 w_addr=256 pop_prev
        MATMUL compute=1 accumulate=1 n_rows=1 push_next
        STORE src=acc out_type=int32 n_rows=1 length=2 dram_addr=0x100 pop_prev
        HALT""", mem, cfg=cfg)
    assert r.ok and r.acc_overflow
    assert_same(words(r.memory, 0x100, (2,), "<i4"), [(1 << 31) - 1, -(1 << 31)])


def test_state_persists_between_runs_and_registers_reset():
    model = GoldenModel(CFG)
    mem = bytearray(MEM)
    mem[0:8] = bytes(range(8))
    prog1 = assemble("CONFIG reg=pad_value value=9\n"
                     "LOAD dest=sp addr=5 n_rows=2 length=8 pad_top=1 dram_addr=0\nHALT")
    mem[PROG:PROG + 48] = to_bytes(prog1)
    assert model.run(mem, PROG, 3).ok
    prog2 = assemble("LOAD dest=sp addr=7 n_rows=1 length=0 dram_addr=0\n"
                     "STORE src=sp addr=5 n_rows=3 length=8 stride=8 dram_addr=0x100\nHALT")
    mem[PROG:PROG + 48] = to_bytes(prog2)
    r = model.run(mem, PROG, 3)
    assert r.ok
    assert list(r.memory[0x100:0x118]) == [9] * 8 + list(range(8)) + [0] * 8


# -- errors ------------------------------------------------------------------------------------

ERROR_PROGRAMS = {
    ErrorCode.ILLEGAL_OPCODE: None,   # built from raw words below
    ErrorCode.RESERVED_BITS: "NOP\nHALT push_next",
    ErrorCode.BAD_FIELD: "NOP\nNOP\nLOAD dest=sp n_rows=0 length=1",
    ErrorCode.MISALIGNED: "LOAD dest=acc n_rows=1 length=1 dram_addr=2",
    ErrorCode.ADDRESS_RANGE: "MATMUL compute=1 n_rows=2 a_addr=8191",
    ErrorCode.DEADLOCK: "LOAD dest=sp n_rows=1 length=1 push_next\n"
                        "MATMUL preload=1 pop_prev\nMATMUL preload=1 pop_prev",
    ErrorCode.TOKEN_OVERFLOW: "\n".join(["SYNC queue=load push_next"] * (MAX_TOKENS + 1)),
    ErrorCode.AXI_ERROR: "LOAD dest=sp n_rows=1 length=8 dram_addr=0x20000",
    ErrorCode.PROGRAM_END: "NOP\nNOP",
}
ERROR_INDEX = {ErrorCode.ILLEGAL_OPCODE: 1, ErrorCode.RESERVED_BITS: 1,
               ErrorCode.BAD_FIELD: 2, ErrorCode.MISALIGNED: 0, ErrorCode.ADDRESS_RANGE: 0,
               ErrorCode.DEADLOCK: 2, ErrorCode.TOKEN_OVERFLOW: MAX_TOKENS,
               ErrorCode.AXI_ERROR: 0, ErrorCode.PROGRAM_END: 2}


@pytest.mark.parametrize("code", list(ERROR_PROGRAMS), ids=lambda c: c.name)
def test_each_error_code(code):
    if code is ErrorCode.ILLEGAL_OPCODE:
        prog = [assemble("NOP")[0], 0xF]
        r = run_program(CFG, prog, bytearray(MEM), prog_addr=PROG)
    else:
        r = run(ERROR_PROGRAMS[code])
    assert (r.error, r.error_index) == (code, ERROR_INDEX[code])


def test_vector_without_vector_unit_is_illegal():
    r = run("VECTOR op=add n_rows=1\nHALT", cfg=preset("icebreaker"))
    assert (r.error, r.error_index) == (ErrorCode.ILLEGAL_OPCODE, 0)


def test_axi_error_hook_and_fetch_error():
    r = run("NOP\nLOAD dest=sp n_rows=1 length=8 dram_addr=0x300\nHALT",
            axi_error=[(0x304, 0x305)])
    assert (r.error, r.error_index) == (ErrorCode.AXI_ERROR, 1)
    r = run("NOP\nNOP\nHALT", axi_error=[(PROG + 32, PROG + 33)])
    assert (r.error, r.error_index) == (ErrorCode.AXI_ERROR, 2)


def test_earlier_instructions_complete_before_an_error():
    mem = bytearray(MEM)
    mem[0:4] = b"\x01\x02\x03\x04"
    r = run("""
        LOAD dest=sp n_rows=1 length=4 dram_addr=0 push_next
        SYNC queue=exec pop_prev push_next
        STORE src=sp n_rows=1 length=4 dram_addr=0x100 pop_prev
        STORE src=sp n_rows=1 length=4 dram_addr=0x200 pop_prev""", mem)
    assert (r.error, r.error_index) == (ErrorCode.DEADLOCK, 3)
    assert bytes(r.memory[0x100:0x104]) == b"\x01\x02\x03\x04"


# -- races ------------------------------------------------------------------------------------

GOOD = """
    LOAD dest=sp addr=0 n_rows=8 length=8 stride=8 dram_addr=0 push_next
    MATMUL preload=1 w_addr=0 pop_prev
    MATMUL compute=1 n_rows=8 a_addr=0 c_addr=0 push_next push_prev
    LOAD dest=sp addr=0 n_rows=8 length=8 stride=8 dram_addr=0x100 pop_next
    STORE src=acc out_type=int8 n_rows=8 length=8 stride=8 dram_addr=0x400 pop_prev
    HALT"""


def test_race_detector_quiet_on_correct_program():
    r = run(GOOD)
    assert r.ok and r.races == []


@pytest.mark.parametrize("drop,kind", [
    ("push_next\n    MATMUL preload=1 w_addr=0 pop_prev", "read-after-write"),
    ("pop_next", "write-after-read"),
])
def test_race_detector_flags_a_missing_token(drop, kind):
    src = GOOD.replace(drop, drop.replace("push_next", "").replace("pop_prev", "")
                       .replace("pop_next", ""), 1)
    if "pop_next" in drop:  # drop the matching push too
        src = src.replace("push_next push_prev", "push_next")
    r = run(src)
    assert r.ok
    assert r.races and r.races[0].kind == kind, r.races
    assert r.races[0].resource == "sp"


def test_race_on_system_memory_between_store_and_load():
    r = run("""
        STORE src=sp n_rows=1 length=8 dram_addr=0x100
        LOAD dest=sp addr=8 n_rows=1 length=8 dram_addr=0x100
        HALT""")
    assert [x.resource for x in r.races] == ["dram"]


# -- the comparison itself ----------------------------------------------------------------

def test_scoreboard_catches_a_single_flipped_value(rng):
    """Expected-fail: the comparison used above must catch one corrupted element."""
    a = rng.integers(-128, 128, (4, 8), dtype=np.int8)
    mem = bytearray(MEM)
    mem[0:32] = a.tobytes()
    r = run("LOAD dest=sp n_rows=4 length=8 stride=8 dram_addr=0 push_next\n"
            "SYNC queue=exec pop_prev push_next\n"
            "STORE src=sp n_rows=4 length=8 stride=8 dram_addr=0x100 pop_prev\nHALT", mem)
    got = words(r.memory, 0x100, (4, 8), np.int8).copy()
    assert_same(got, a)
    got[2, 5] ^= 1
    with pytest.raises(AssertionError, match=r"1 mismatches, first at \(2, 5\)"):
        assert_same(got, a)


def test_config_rejects_os_nothing_in_model():
    # The model's semantics are dataflow-independent; the hardware refuses 'os' instead.
    model = GoldenModel(AcceleratorConfig(dataflow="os", rows=2, cols=2, sp_depth=16,
                                          acc_depth=8))
    assert model.run(bytearray(64) + to_bytes(assemble("HALT")), 64, 1).ok
