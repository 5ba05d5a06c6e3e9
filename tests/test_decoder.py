"""The decoder RTL against the golden model's static checks, word for word."""

import random

import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from systolic.checks import queue_of, static_check
from systolic.config import preset
from systolic.isa import (
    LAYOUTS,
    ConfigReg,
    ErrorCode,
    Instruction,
    Opcode,
    Queue,
    VectorOp,
    encode,
)
from systolic.model import _POPS, _PUSHES
from systolic.rtl.decoder import CHANNEL_ORDER, NO_QUEUE, UOP_OPS, Decoder, walk_steps

FLAGS = ("pop_prev", "pop_next", "push_prev", "push_next")


def _field_widths(op):
    return {name: f.width for name, f in data.Layout.cast(LAYOUTS[op]) if name != "header"}


def _random_word(rng, config):
    """A word biased towards the edges of every check: mostly legal-looking fields."""
    if rng.random() < 0.05:
        return rng.getrandbits(128)
    op = rng.choice(list(Opcode))
    fields = {}
    for name, width in _field_widths(op).items():
        r = rng.random()
        if r < 0.3:
            value = rng.getrandbits(width)
        elif r < 0.6:
            value = rng.choice([0, 1, 2, 3, 4, 8, config.rows, config.cols, config.sp_width,
                                (1 << width) - 1, (1 << width) - 2])
        else:
            limit = {"n_rows": 6, "addr": config.acc_rows, "a_addr": config.sp_rows,
                     "w_addr": config.sp_rows, "c_addr": config.acc_rows,
                     "dst": 12, "src_a": 12, "src_b": 12, "length": config.sp_width + 2,
                     "param_addr": config.param_rows, "op": 10, "reg": 12, "queue": 4,
                     "dest": 4, "out_type": 4, "value": 300, "imm": 70}.get(name, 1 << width)
            value = rng.randrange(min(limit + 1, 1 << width))
            if name in ("n_rows", "addr", "a_addr", "c_addr", "w_addr") and rng.random() < .3:
                value = max(0, {"n_rows": 4096, "addr": config.acc_rows,
                                "a_addr": config.sp_rows, "w_addr": config.sp_rows,
                                "c_addr": config.acc_rows}[name] - rng.randrange(3))
            if name in ("dram_addr",) and rng.random() < .3:
                value = (1 << 32) - rng.randrange(1, 64)
            if name in ("value", "imm") and rng.random() < .5:
                value = (-value) & ((1 << width) - 1)
        fields[name] = value & ((1 << width) - 1)
    word = op.value
    for name, f in data.Layout.cast(LAYOUTS[op]):
        if name != "header":
            word |= fields[name] << f.offset
    for i in range(4):
        if rng.random() < 0.35:
            word |= 1 << (4 + i)
    if rng.random() < 0.04:
        word |= 1 << rng.randrange(8, 128)
    return word


def _expected(config, word):
    code, instr = static_check(config, word)
    queue = queue_of(instr) if instr is not None else None
    pops = pushes = 0
    if instr is not None and queue is not None:
        for (q, flag), ch in _POPS.items():
            if q is queue and getattr(instr, flag):
                pops |= 1 << CHANNEL_ORDER.index(ch)
        for (q, flag), ch in _PUSHES.items():
            if q is queue and getattr(instr, flag):
                pushes |= 1 << CHANNEL_ORDER.index(ch)
    return code, instr, queue, pops, pushes


def _check_words(config, words, *, corrupt=None, waits=None):
    dut = Decoder(config=config)
    mismatches = []

    def check(ctx, n, word):
        code, instr, queue, pops, pushes = _expected(config, word)
        got = ctx.get(dut.error)
        if corrupt is not None and n == corrupt:
            code = ErrorCode((code.value + 1) % 10)
        if got != code:
            mismatches.append((hex(word), code, got))
            return
        if code is not ErrorCode.NONE:
            return
        got_q = ctx.get(dut.queue)
        want_q = NO_QUEUE if queue is None else queue.value
        assert got_q == want_q, (hex(word), got_q, want_q)
        assert ctx.get(dut.pops) == pops, hex(word)
        assert ctx.get(dut.pushes) == pushes, hex(word)
        assert ctx.get(dut.halt) == (instr.opcode is Opcode.HALT)
        if queue is None:
            return
        uop = {Queue.LOAD: dut.uop_load, Queue.EXEC: dut.uop_exec,
               Queue.STORE: dut.uop_store}[queue]
        assert ctx.get(uop.opcode) == instr.opcode
        for flag in FLAGS:
            assert ctx.get(getattr(uop, flag)) == getattr(instr, flag)
        if instr.opcode is Opcode.CONFIG:
            assert ctx.get(uop.body.config.reg) == instr.reg
            assert ctx.get(uop.body.config.value) == instr.value
        elif instr.opcode in UOP_OPS[queue]:
            body = getattr(uop.body, instr.opcode.name.lower())
            for name, value in instr.fields.items():
                got_v = ctx.get(getattr(body, name))
                got_v = got_v.value if hasattr(got_v, "value") else got_v
                assert got_v == value & ((1 << 32) - 1) or got_v - (1 << 32) == value, \
                    (hex(word), name, got_v, value)

    async def bench(ctx):
        ctx.set(dut.valid, 1)
        for n, word in enumerate(words):
            ctx.set(dut.word, word)
            waited = 0
            while not ctx.get(dut.ready):      # a LOAD/STORE walk takes a few cycles
                assert waited < walk_steps(config, Opcode.LOAD), hex(word)
                await ctx.tick()
                waited += 1
            if waits is not None:
                waits.append(waited)
            check(ctx, n, word)
            ctx.set(dut.next, 1)
            await ctx.tick()
            ctx.set(dut.next, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return mismatches


@pytest.mark.parametrize("name", ["tiny", "icebreaker", "default"])
def test_random_words_match_static_check(name):
    config = preset(name)
    rng = random.Random(f"decoder-{name}")
    words = [_random_word(rng, config) for _ in range(3000)]
    seen = {static_check(config, w)[0] for w in words}
    waits = []
    mismatches = _check_words(config, words, waits=waits)
    assert not mismatches, mismatches[:5]
    # other words decode at once; a LOAD/STORE walk takes walk_steps cycles: every one on
    # a 32-bit bus, only those whose extent could reach 2**32 on wider ones
    for op in (Opcode.LOAD, Opcode.STORE):
        steps = walk_steps(config, op)
        got = {n for n, w in zip(waits, words, strict=True) if w & 0xF == op.value}
        assert got == ({steps} if config.axi_data_width == 32 else {0, steps}), (op, got)
    assert {n for n, w in zip(waits, words, strict=True)
            if w & 0xF not in (Opcode.LOAD.value, Opcode.STORE.value)} == {0}
    assert waits.count(0) > len(words) // 2
    # the random words reach every static error class
    static_codes = {ErrorCode.NONE, ErrorCode.ILLEGAL_OPCODE, ErrorCode.RESERVED_BITS,
                    ErrorCode.BAD_FIELD, ErrorCode.MISALIGNED, ErrorCode.ADDRESS_RANGE}
    assert static_codes <= seen, static_codes - seen


def _i(opcode, flags=(), **fields):
    return encode(Instruction(opcode, fields, **dict.fromkeys(flags, True)))


DIRECTED = {
    ErrorCode.NONE: [
        _i(Opcode.NOP), _i(Opcode.HALT), _i(Opcode.SYNC, ["pop_next"], queue=0),
        _i(Opcode.CONFIG, value=-128), _i(Opcode.CONFIG, reg=ConfigReg.CLAMP_LO, value=-5),
        _i(Opcode.LOAD, ["push_next"], n_rows=3, length=2, pad_top=1, pad_bottom=1),
        _i(Opcode.STORE, ["pop_prev"], n_rows=1, length=2, out_type=2, dram_addr=8),
        _i(Opcode.MATMUL, preload=1, w_addr=10),
        _i(Opcode.VECTOR, op=VectorOp.SHIFT, n_rows=2, dst=4, src_a=4, imm=-31),
    ],
    ErrorCode.ILLEGAL_OPCODE: [8, 9, 15, 0xFFFF_FFFF_0000_000F],
    ErrorCode.RESERVED_BITS: [
        _i(Opcode.NOP, ["pop_prev"]), _i(Opcode.HALT, ["push_next"]), 1 << 127,
        _i(Opcode.LOAD, ["pop_prev"], n_rows=1), _i(Opcode.STORE, ["push_next"], n_rows=1,
                                                     length=1),
        _i(Opcode.CONFIG, ["push_prev"], reg=ConfigReg.PAD_VALUE),
        _i(Opcode.SYNC, ["pop_next"], queue=2),
    ],
    ErrorCode.BAD_FIELD: [
        _i(Opcode.LOAD, n_rows=0), _i(Opcode.LOAD, n_rows=1, dest=3),
        _i(Opcode.LOAD, n_rows=2, pad_top=2, pad_bottom=1),
        _i(Opcode.LOAD, n_rows=1, length=64, pad_left=1, dest=1),
        _i(Opcode.STORE, n_rows=1, length=0), _i(Opcode.STORE, n_rows=1, length=1, out_type=3),
        _i(Opcode.STORE, n_rows=1, length=1, src=1, out_type=2),
        _i(Opcode.STORE, n_rows=1, length=1, per_channel=1, out_type=2),
        _i(Opcode.MATMUL, n_rows=1), _i(Opcode.MATMUL, compute=1, n_rows=4097),
        _i(Opcode.VECTOR, op=9, n_rows=1), _i(Opcode.VECTOR, op=VectorOp.SHIFT, n_rows=1,
                                              imm=64),
        _i(Opcode.VECTOR, op=VectorOp.ADD, n_rows=4, dst=2, src_a=0, src_b=8),
        _i(Opcode.SYNC, queue=3), _i(Opcode.CONFIG, reg=11),
        _i(Opcode.CONFIG, reg=ConfigReg.PAD_VALUE, value=256),
        _i(Opcode.CONFIG, reg=ConfigReg.REQ_SHIFT, value=64),
        _i(Opcode.CONFIG, reg=ConfigReg.ACTIVATION, value=3),
        _i(Opcode.CONFIG, reg=ConfigReg.REQ_MULT, value=-1),
    ],
    ErrorCode.MISALIGNED: [
        _i(Opcode.LOAD, n_rows=1, length=1, dest=1, dram_addr=2),
        _i(Opcode.STORE, n_rows=1, length=1, out_type=2, stride=6),
    ],
    ErrorCode.ADDRESS_RANGE: [
        _i(Opcode.LOAD, n_rows=2, addr=(1 << 16) - 1),
        _i(Opcode.LOAD, n_rows=2, length=1, stride=1, dram_addr=(1 << 32) - 1),
        _i(Opcode.STORE, n_rows=1, length=2, dram_addr=(1 << 32) - 1),
        _i(Opcode.MATMUL, compute=1, n_rows=4096, c_addr=100),
        _i(Opcode.MATMUL, preload=1, w_addr=(1 << 16) - 1),
        _i(Opcode.VECTOR, n_rows=4096, dst=0, src_a=0),
    ],
}


@pytest.mark.parametrize("name", ["tiny", "icebreaker"])
def test_directed_error_classes(name):
    config = preset(name)
    words = []
    for code, ws in DIRECTED.items():
        for w in ws:
            got = static_check(config, w)[0]
            if name == "icebreaker" and got is ErrorCode.ILLEGAL_OPCODE:
                assert w & 0xF in (5, 8, 9, 15)
            elif code is not ErrorCode.NONE or got is ErrorCode.NONE:
                assert got is code, (hex(w), got, code)
            words.append(w)
    assert not _check_words(config, words)


def _extent_edges(config, rng, count):
    """LOAD and STORE words, legal but for their memory extent, whose extent ends within a
    few bytes of 2**32 (on both sides), with large strides, pads and every row size."""
    words = []
    while len(words) < count:
        n_rows = rng.choice([1, 2, 3, rng.randrange(1, 4097), 4096])
        if rng.random() < 0.5:
            dest = rng.choice([0, 1, 2])
            eb = 1 if dest == 0 else 4
            pads = [rng.randrange(min(16, n_rows + 1)) for _ in range(2)]
            if sum(pads) > n_rows:
                continue
            length = rng.randrange(1, (config.sp_width if dest == 0 else config.cols) + 1)
            limit = {0: config.sp_rows, 1: config.acc_rows, 2: config.param_rows}[dest]
            if n_rows > limit:
                continue
            rows = n_rows - sum(pads)
            fields = dict(dest=dest, length=length, pad_top=pads[0], pad_bottom=pads[1],
                          n_rows=n_rows, addr=rng.randrange(limit - n_rows + 1))
            op = Opcode.LOAD
        else:
            src_sp = rng.random() < 0.3
            out_type = 0 if src_sp else rng.choice([0, 1, 2])
            eb = 4 if out_type == 2 else 1
            length = rng.randrange(1, (config.sp_width if src_sp else config.cols) + 1)
            limit = config.sp_rows if src_sp else config.acc_rows
            if n_rows > limit:
                continue
            rows = n_rows
            fields = dict(src=int(src_sp), out_type=out_type, length=length, n_rows=n_rows,
                          addr=rng.randrange(limit - n_rows + 1))
            op = Opcode.STORE
        align = 4 if eb == 4 else 1
        stride = rng.choice([0, rng.randrange(1 << 24), (1 << 24) - 1, 1 << 16]) // align
        stride *= align
        reach = (rows - 1) * stride + length * eb if rows > 0 else 0
        if reach >= 1 << 32:
            continue
        for delta in (-2 * align, -align, 0, align, 2 * align):
            dram_addr = (1 << 32) - reach + delta
            if 0 <= dram_addr < 1 << 32 and dram_addr % align == 0:
                words.append(_i(op, stride=stride, dram_addr=dram_addr, **fields))
    return words


@pytest.mark.parametrize("name", ["tiny", "icebreaker", "default"])
def test_extent_edges_match_static_check(name):
    config = preset(name)
    words = _extent_edges(config, random.Random(f"edges-{name}"), 400)
    codes = [static_check(config, w)[0] for w in words]
    assert {ErrorCode.NONE, ErrorCode.ADDRESS_RANGE} == set(codes)
    assert not _check_words(config, words)


def test_vector_without_vector_unit_is_illegal():
    config = preset("icebreaker")
    word = _i(Opcode.VECTOR, op=VectorOp.ADD, n_rows=1)
    assert static_check(config, word)[0] is ErrorCode.ILLEGAL_OPCODE
    assert not _check_words(config, [word, _i(Opcode.CONFIG, reg=ConfigReg.VEC_MULT_A)])


def test_scoreboard_catches_a_wrong_code():
    config = preset("tiny")
    words = [_i(Opcode.NOP), 9, _i(Opcode.LOAD, n_rows=0)]
    assert len(_check_words(config, words, corrupt=1)) == 1


def test_decoder_rejects_a_non_config():
    with pytest.raises(TypeError, match="Decoder config must be an AcceleratorConfig"):
        Decoder(config=8)
