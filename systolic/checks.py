"""Static instruction checks, applied at decode in program order.

The golden model and the hardware decoder report the same :class:`~systolic.isa.ErrorCode`
for the same word; this module is the reference for both. Checks run in the order of
the error codes: ILLEGAL_OPCODE, RESERVED_BITS, BAD_FIELD, MISALIGNED, ADDRESS_RANGE.
"""

from .isa import (
    MAX_ROWS,
    ConfigReg,
    ErrorCode,
    Instruction,
    LoadDest,
    Opcode,
    Queue,
    StoreSrc,
    VectorOp,
    decode,
)
from .numerics import SHIFT_MAX, OutType

__all__ = ["queue_of", "static_check", "dram_extent", "BINARY_VECTOR_OPS", "config_value_ok"]

ADDR_LIMIT = 1 << 32

BINARY_VECTOR_OPS = (VectorOp.ADD, VectorOp.MAX, VectorOp.MIN, VectorOp.RESCALE_ADD)


def queue_of(instr):
    """The queue an instruction runs in, or ``None`` (NOP, HALT, or an invalid selector)."""
    op = instr.opcode
    if op is Opcode.LOAD:
        return Queue.LOAD
    if op is Opcode.STORE:
        return Queue.STORE
    if op in (Opcode.MATMUL, Opcode.VECTOR):
        return Queue.EXEC
    if op is Opcode.SYNC:
        return Queue(instr.queue) if instr.queue in (0, 1, 2) else None
    if op is Opcode.CONFIG:
        from .isa import CONFIG_QUEUE
        try:
            return CONFIG_QUEUE[ConfigReg(instr.reg)]
        except ValueError:
            return None
    return None


def _flags_ok(instr, queue):
    if instr.opcode in (Opcode.NOP, Opcode.HALT):
        return not any(instr.flags)
    if queue is Queue.LOAD:
        return not (instr.pop_prev or instr.push_prev)
    if queue is Queue.STORE:
        return not (instr.pop_next or instr.push_next)
    return True


def config_value_ok(config, reg, value):
    """Whether ``value`` is legal for CONFIG register ``reg`` on ``config``."""
    mmax = (1 << (config.requant_bits - 1)) - 1
    reg = ConfigReg(reg)
    if reg is ConfigReg.PAD_VALUE:
        return -128 <= value <= 255
    if reg in (ConfigReg.REQ_MULT, ConfigReg.VEC_MULT_A, ConfigReg.VEC_MULT_B):
        return 0 <= value <= mmax
    if reg in (ConfigReg.REQ_SHIFT, ConfigReg.VEC_SHIFT_A, ConfigReg.VEC_SHIFT_B):
        return 0 <= value <= SHIFT_MAX
    if reg is ConfigReg.ACTIVATION:
        return 0 <= value <= 2
    return True


def dram_extent(addr, stride, n_rows, row_bytes):
    """One past the last byte a 2-D transfer touches (``addr`` if it touches none)."""
    if n_rows <= 0 or row_bytes <= 0:
        return addr
    return addr + (n_rows - 1) * stride + row_bytes


def _overlap_not_alias(a, b, n):
    return a != b and a < b + n and b < a + n


def _bad_field(c, i):
    op = i.opcode
    if op is Opcode.CONFIG:
        try:
            reg = ConfigReg(i.reg)
        except ValueError:
            return True
        if reg in (ConfigReg.VEC_MULT_A, ConfigReg.VEC_SHIFT_A, ConfigReg.VEC_MULT_B,
                   ConfigReg.VEC_SHIFT_B) and not c.vector_unit:
            return True
        return not config_value_ok(c, reg, i.value)
    if op is Opcode.SYNC:
        return i.queue == 3
    if op is Opcode.LOAD:
        if i.dest == 3 or not 1 <= i.n_rows <= MAX_ROWS:
            return True
        if i.pad_top + i.pad_bottom > i.n_rows:
            return True
        width = c.sp_width if i.dest == LoadDest.SP.value else c.cols
        return i.pad_left + i.length > width
    if op is Opcode.STORE:
        if i.out_type == 3 or not 1 <= i.n_rows <= MAX_ROWS:
            return True
        if i.src == StoreSrc.SP.value:
            if i.out_type != OutType.INT8 or i.per_channel:
                return True
            return not 1 <= i.length <= c.sp_width
        if i.per_channel and i.out_type == OutType.INT32:
            return True
        return not 1 <= i.length <= c.cols
    if op is Opcode.MATMUL:
        if not (i.compute or i.preload):
            return True
        return bool(i.compute) and not 1 <= i.n_rows <= MAX_ROWS
    if op is Opcode.VECTOR:
        if i.op > max(v.value for v in VectorOp) or not 1 <= i.n_rows <= MAX_ROWS:
            return True
        vop = VectorOp(i.op)
        if vop is VectorOp.SHIFT and not -31 <= i.imm <= SHIFT_MAX:
            return True
        if _overlap_not_alias(i.dst, i.src_a, i.n_rows):
            return True
        return vop in BINARY_VECTOR_OPS and _overlap_not_alias(i.dst, i.src_b, i.n_rows)
    return False


def _misaligned(i):
    if i.opcode is Opcode.LOAD and i.dest in (LoadDest.ACC.value, LoadDest.PARAM.value):
        return bool(i.dram_addr % 4 or i.stride % 4)
    if i.opcode is Opcode.STORE and i.out_type == OutType.INT32:
        return bool(i.dram_addr % 4 or i.stride % 4)
    return False


def _out_of_range(c, i):
    op = i.opcode
    if op is Opcode.LOAD:
        limit = {0: c.sp_rows, 1: c.acc_rows, 2: c.param_rows}[i.dest]
        if i.addr + i.n_rows > limit:
            return True
        eb = 1 if i.dest == LoadDest.SP.value else 4
        m = i.n_rows - i.pad_top - i.pad_bottom
        return dram_extent(i.dram_addr, i.stride, m, i.length * eb) > ADDR_LIMIT
    if op is Opcode.STORE:
        limit = c.sp_rows if i.src == StoreSrc.SP.value else c.acc_rows
        if i.addr + i.n_rows > limit:
            return True
        if i.per_channel and i.param_addr + 2 > c.param_rows:
            return True
        eb = OutType(i.out_type).nbytes
        return dram_extent(i.dram_addr, i.stride, i.n_rows, i.length * eb) > ADDR_LIMIT
    if op is Opcode.MATMUL:
        if i.compute and (i.a_addr + i.n_rows > c.sp_rows or i.c_addr + i.n_rows > c.acc_rows):
            return True
        return bool(i.preload) and i.w_addr + c.rows > c.sp_rows
    if op is Opcode.VECTOR:
        n = i.n_rows
        if i.dst + n > c.acc_rows or i.src_a + n > c.acc_rows:
            return True
        return VectorOp(i.op) in BINARY_VECTOR_OPS and i.src_b + n > c.acc_rows
    return False


def static_check(config, word_or_instr):
    """The :class:`ErrorCode` decode reports for one instruction (``NONE`` if legal).

    Returns ``(code, instr)``; ``instr`` is ``None`` for an illegal opcode.
    """
    if isinstance(word_or_instr, Instruction):
        instr = word_or_instr
    else:
        try:
            instr = decode(word_or_instr)
        except ValueError:
            return ErrorCode.ILLEGAL_OPCODE, None
    if instr.opcode is Opcode.VECTOR and not config.vector_unit:
        return ErrorCode.ILLEGAL_OPCODE, instr
    queue = queue_of(instr)
    if instr.reserved or not _flags_ok(instr, queue):
        return ErrorCode.RESERVED_BITS, instr
    if _bad_field(config, instr):
        return ErrorCode.BAD_FIELD, instr
    if _misaligned(instr):
        return ErrorCode.MISALIGNED, instr
    if _out_of_range(config, instr):
        return ErrorCode.ADDRESS_RANGE, instr
    return ErrorCode.NONE, instr
