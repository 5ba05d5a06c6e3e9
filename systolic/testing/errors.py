"""Error injection: a valid program with exactly one error of a chosen code at a chosen
index (directed error tests; the golden model and the RTL must agree on code and index).

The instructions before the index are the valid program's own (so they complete as the
model says); the failing word is built to fail on its own, or, for the token errors, a
SYNC on a channel with no pending token (DEADLOCK) or the 256th push on one (TOKEN_OVERFLOW);
the rest of the program follows and must never be reached.
"""

from ..isa import (
    FLAG_NAMES,
    MAX_TOKENS,
    ConfigReg,
    ErrorCode,
    Instruction,
    Opcode,
    Queue,
    VectorOp,
    _reserved_mask,
    decode,
    encode,
)
from .randprog import _FLAG_CHANNEL, INPUT_BYTES, OUTPUT_BYTES, _queue

__all__ = ["inject"]


def _pending(words, upto):
    """Pending tokens per channel after the first ``upto`` words (all valid)."""
    tokens = dict.fromkeys(("L2E", "E2L", "E2S", "S2E"), 0)
    for w in words[:upto]:
        i = decode(w)
        q = _queue(i.opcode, i.fields)
        for f in FLAG_NAMES:
            if getattr(i, f):
                tokens[_FLAG_CHANNEL[q, f]] += 1 if f.startswith("push") else -1
    return tokens


_NOP = encode(Instruction(Opcode.NOP, {}))
_HALT = encode(Instruction(Opcode.HALT, {}))


def _prefix(words, n):
    """``n`` valid instructions: the program's first ones, NOPs past its HALT."""
    body = words[:-1][:n]
    return body + [_NOP] * (n - len(body))


def _drained_prefix(words, n, channels):
    """A valid n-word prefix after which one of ``channels`` has no pending token."""
    for j in range(min(n, len(words) - 1), -1, -1):
        pending = _pending(words, j)
        free = [ch for ch in channels if pending[ch] == 0]
        if free:
            return words[:j] + [_NOP] * (n - j), free[0]
    raise AssertionError("the empty prefix always has every channel free")


_POP_SYNC = {"L2E": (Queue.EXEC, "pop_prev"), "S2E": (Queue.EXEC, "pop_next"),
             "E2L": (Queue.LOAD, "pop_next"), "E2S": (Queue.STORE, "pop_prev")}
_PUSH_SYNC = {"L2E": (Queue.LOAD, "push_next"), "E2L": (Queue.EXEC, "push_prev"),
              "E2S": (Queue.EXEC, "push_next"), "S2E": (Queue.STORE, "push_prev")}


def _bad_word(gen, config, code, memory_size):
    """One instruction word that fails with ``code`` on its own (no token involved)."""
    c = config
    if code is ErrorCode.ILLEGAL_OPCODE:
        if not c.vector_unit and gen.chance(0.5):
            return encode(Instruction(Opcode.VECTOR, {"n_rows": 1}))
        word = int(gen.rng.integers(0, 1 << 62)) << 64 | int(gen.rng.integers(0, 1 << 62))
        return (word & ~0xF) | gen.randint(8, 15)
    if code is ErrorCode.RESERVED_BITS:
        if gen.chance(0.3):    # a token flag the instruction's queue does not have
            op, flag = [(Opcode.NOP, "push_next"), (Opcode.HALT, "pop_prev"),
                        (Opcode.LOAD, "pop_prev"), (Opcode.STORE, "push_next")][gen.randint(0, 3)]
            fields = {"n_rows": 1, "length": 1} if op in (Opcode.LOAD, Opcode.STORE) else {}
            return encode(Instruction(op, fields, **{flag: True}))
        op = [Opcode.NOP, Opcode.SYNC, Opcode.CONFIG, Opcode.MATMUL, Opcode.LOAD,
              Opcode.STORE, Opcode.HALT][gen.randint(0, 6)]
        mask = _reserved_mask(op)
        bits = [b for b in range(128) if mask >> b & 1]
        fields = {"n_rows": 1, "length": 1} if op in (Opcode.LOAD, Opcode.STORE) else {}
        if op is Opcode.MATMUL:
            fields = {"preload": 1}
        return encode(Instruction(op, fields)) | 1 << int(gen.rng.choice(bits))
    if code is ErrorCode.BAD_FIELD:
        mmax = (1 << (c.requant_bits - 1)) - 1
        options = [
            Instruction(Opcode.LOAD, {"n_rows": 0}),
            Instruction(Opcode.LOAD, {"n_rows": 1, "dest": 3}),
            Instruction(Opcode.LOAD, {"n_rows": 2, "pad_top": 2, "pad_bottom": 1}),
            Instruction(Opcode.LOAD, {"n_rows": 1, "length": c.sp_width, "pad_left": 1}),
            Instruction(Opcode.STORE, {"n_rows": 1, "length": 0}),
            Instruction(Opcode.STORE, {"n_rows": 1, "length": 1, "out_type": 3}),
            Instruction(Opcode.STORE, {"n_rows": 1, "length": c.cols + 1}),
            Instruction(Opcode.STORE, {"n_rows": 1, "length": 1, "out_type": 2,
                                       "per_channel": 1}),
            Instruction(Opcode.STORE, {"n_rows": 1, "length": 1, "src": 1, "out_type": 1}),
            Instruction(Opcode.MATMUL, {}),
            Instruction(Opcode.MATMUL, {"compute": 1, "n_rows": 0}),
            Instruction(Opcode.SYNC, {"queue": 3}),
            Instruction(Opcode.CONFIG, {"reg": 11 + gen.randint(0, 100)}),
            Instruction(Opcode.CONFIG, {"reg": ConfigReg.REQ_MULT.value, "value": mmax + 1}),
            Instruction(Opcode.CONFIG, {"reg": ConfigReg.REQ_SHIFT.value, "value": 64}),
            Instruction(Opcode.CONFIG, {"reg": ConfigReg.ACTIVATION.value, "value": 3}),
            Instruction(Opcode.CONFIG, {"reg": ConfigReg.PAD_VALUE.value, "value": 256}),
        ]
        if c.vector_unit:
            options += [
                Instruction(Opcode.VECTOR, {"op": 9 + gen.randint(0, 6), "n_rows": 1}),
                Instruction(Opcode.VECTOR, {"op": VectorOp.SHIFT.value, "n_rows": 1,
                                            "imm": -32}),
                Instruction(Opcode.VECTOR, {"op": VectorOp.ADD.value, "n_rows": 4, "dst": 1,
                                            "src_a": 4, "src_b": 0}),
            ]
        else:
            options.append(Instruction(Opcode.CONFIG, {"reg": ConfigReg.VEC_MULT_A.value}))
        return encode(options[gen.randint(0, len(options) - 1)])
    if code is ErrorCode.MISALIGNED:
        if gen.chance(0.5):
            return encode(Instruction(Opcode.LOAD, {
                "dest": gen.randint(1, 2), "n_rows": 1, "length": 1,
                "dram_addr": 4 * gen.randint(0, 100) + gen.randint(1, 3) * gen.randint(0, 1),
                "stride": 4 * gen.randint(0, 8) + 2}))
        return encode(Instruction(Opcode.STORE, {
            "out_type": 2, "n_rows": 1, "length": 1, "dram_addr": 4 * gen.randint(0, 100) + 1}))
    if code is ErrorCode.ADDRESS_RANGE:
        options = [
            Instruction(Opcode.LOAD, {"n_rows": 2, "addr": c.sp_rows - 1}),
            Instruction(Opcode.LOAD, {"n_rows": 1, "addr": c.acc_rows, "dest": 1}),
            Instruction(Opcode.LOAD, {"n_rows": 1, "length": 2, "dram_addr": (1 << 32) - 1}),
            Instruction(Opcode.STORE, {"n_rows": 1, "length": 1, "addr": c.acc_rows}),
            Instruction(Opcode.STORE, {"n_rows": 1, "length": 1, "per_channel": 1,
                                       "param_addr": c.param_rows - 1}),
            Instruction(Opcode.STORE, {"n_rows": 3, "length": 1, "stride": 1 << 23,
                                       "dram_addr": (1 << 32) - (1 << 23)}),
            Instruction(Opcode.MATMUL, {"compute": 1, "n_rows": 2, "a_addr": c.sp_rows - 1}),
            Instruction(Opcode.MATMUL, {"compute": 1, "n_rows": 1, "c_addr": c.acc_rows}),
            Instruction(Opcode.MATMUL, {"preload": 1, "w_addr": c.sp_rows - c.rows + 1}),
        ]
        if c.vector_unit:
            options.append(Instruction(Opcode.VECTOR, {"n_rows": 2, "dst": c.acc_rows - 1,
                                                       "src_a": c.acc_rows - 1}))
        return encode(options[gen.randint(0, len(options) - 1)])
    if code is ErrorCode.AXI_ERROR:
        addr = memory_size + 16 * gen.randint(0, 1000)
        if gen.chance(0.5):
            return encode(Instruction(Opcode.LOAD, {"n_rows": 1, "length": 1, "dram_addr": addr}))
        return encode(Instruction(Opcode.STORE, {"n_rows": 1, "length": 1, "dram_addr": addr}))
    raise ValueError(f"cannot make a standalone instruction for {code.name}")


def inject(gen, config, words, code, index):
    """``words`` with exactly one error ``code`` at ``index``: a valid prefix of ``index``
    instructions, the failing one, then the rest of the program (never reached)."""
    code = ErrorCode(code)
    if not isinstance(index, int) or index < 0:
        raise ValueError(f"error index must be a non-negative integer, not {index!r}")
    rest = words[index:] if index < len(words) else [_HALT]
    if code is ErrorCode.PROGRAM_END:
        return _prefix(words, index)
    if code is ErrorCode.DEADLOCK:
        prefix, ch = _drained_prefix(words, index, list(_POP_SYNC))
        q, flag = _POP_SYNC[ch]
        return prefix + [encode(Instruction(Opcode.SYNC, {"queue": q.value}, **{flag: True}))] \
            + rest
    if code is ErrorCode.TOKEN_OVERFLOW:
        if index < MAX_TOKENS:
            raise ValueError(f"TOKEN_OVERFLOW needs an index of at least {MAX_TOKENS}, "
                             f"not {index}")
        prefix, ch = _drained_prefix(words, index - MAX_TOKENS, list(_PUSH_SYNC))
        q, flag = _PUSH_SYNC[ch]
        push = encode(Instruction(Opcode.SYNC, {"queue": q.value}, **{flag: True}))
        return prefix + [push] * (MAX_TOKENS + 1) + rest
    memory_size = -(-(INPUT_BYTES + OUTPUT_BYTES + 16 * (index + 1 + len(rest))) // 4096) * 4096
    return _prefix(words, index) + [_bad_word(gen, config, code, memory_size)] + rest
