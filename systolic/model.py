"""The golden model: runs a program over a system-memory image, bit-exact with the RTL.

Semantics (the ISA contract)
----------------------------
Instructions are fetched from system memory (``PROG_LEN`` words at ``PROG_ADDR``, whose
low four bits are ignored) and decoded in program order; the model executes each one
completely before the next, which is one legal schedule of the hardware's decoupled
queues. Therefore a program's result does not depend on timing, provided its tokens
order every pair of queues that touch the same rows (the race report checks that).

* Static checks (:mod:`systolic.checks`) run at decode, in program order.
* Tokens are counted at decode: a pop on a channel with no pending token pushed by an
  earlier instruction is DEADLOCK at that index (the hardware would wait forever); more
  than ``MAX_TOKENS`` pending tokens is TOKEN_OVERFLOW.
* A failing instruction has no effect; every earlier one has completed.
* An access beyond the memory image, or into an ``axi_error`` range, is AXI_ERROR.
* CONFIG registers take their reset values at every run; scratchpad, accumulator,
  parameter buffer and array weights keep their contents between runs (as the hardware's
  memories do); :meth:`GoldenModel.reset` clears them.
* Accumulator arithmetic saturates to int32 and sets the sticky ``acc_overflow`` flag.
"""

from dataclasses import dataclass, field

import numpy as np

from .checks import BINARY_VECTOR_OPS, queue_of, static_check
from .isa import (
    CONFIG_DEFAULTS,
    INSTR_BYTES,
    MAX_TOKENS,
    ConfigReg,
    ErrorCode,
    LoadDest,
    Opcode,
    Queue,
    StoreSrc,
    VectorOp,
    to_bytes,
)
from .numerics import (
    INT32_MAX,
    INT32_MIN,
    OutType,
    activation_bounds,
    as_elements,
    requantize,
    round_shift,
)

__all__ = ["GoldenModel", "RunResult", "Race", "run_program", "CHANNELS"]

# Token channels: (producer queue, consumer queue).
CHANNELS = {
    "L2E": (Queue.LOAD, Queue.EXEC),
    "E2L": (Queue.EXEC, Queue.LOAD),
    "E2S": (Queue.EXEC, Queue.STORE),
    "S2E": (Queue.STORE, Queue.EXEC),
}

# (queue, flag) -> channel
_POPS = {(Queue.LOAD, "pop_next"): "E2L", (Queue.EXEC, "pop_prev"): "L2E",
         (Queue.EXEC, "pop_next"): "S2E", (Queue.STORE, "pop_prev"): "E2S"}
_PUSHES = {(Queue.LOAD, "push_next"): "L2E", (Queue.EXEC, "push_prev"): "E2L",
           (Queue.EXEC, "push_next"): "E2S", (Queue.STORE, "push_prev"): "S2E"}


@dataclass(frozen=True)
class Race:
    """Two queues touched the same rows (or bytes) and no token orders them."""
    resource: str          # "sp", "acc", "param" or "dram"
    lo: int                # first row (byte for dram) of the conflict
    hi: int                # one past the last
    first: int             # earlier instruction index
    second: int            # later instruction index
    kind: str              # "write-after-write", "read-after-write", "write-after-read"

    def __str__(self):
        return (f"{self.kind} race on {self.resource}[{self.lo}:{self.hi}] between "
                f"instructions {self.first} and {self.second}")


@dataclass
class RunResult:
    memory: np.ndarray
    error: ErrorCode = ErrorCode.NONE
    error_index: int = 0
    retired: int = 0
    macs: int = 0
    acc_overflow: bool = False
    races: list = field(default_factory=list)
    opcounts: dict = field(default_factory=dict)

    @property
    def ok(self):
        return self.error is ErrorCode.NONE


class _Tracker:
    """Happens-before tracking of one resource with per-queue vector clocks."""

    def __init__(self, name, size):
        self.name = name
        self.wq = np.full(size, -1, dtype=np.int8)
        self.we = np.zeros(size, dtype=np.int64)
        self.wi = np.zeros(size, dtype=np.int64)
        self.re = np.zeros((3, size), dtype=np.int64)
        self.ri = np.zeros((3, size), dtype=np.int64)

    def _report(self, races, mask, lo, first, index, kind):
        if not mask.any() or len(races) >= 100:
            return
        hits = np.flatnonzero(mask)
        races.append(Race(self.name, lo + int(hits[0]), lo + int(hits[-1]) + 1,
                          int(first[hits[0]]), index, kind))

    def access(self, lo, hi, q, vc, index, write, races):
        if hi <= lo:
            return
        s = slice(lo, hi)
        wq = self.wq[s]
        known = np.where(wq >= 0, vc[np.maximum(wq, 0)], 0)
        w_conflict = (wq >= 0) & (wq != q) & (self.we[s] > known)
        self._report(races, w_conflict, lo, self.wi[s], index,
                     "write-after-write" if write else "read-after-write")
        if write:
            for other in range(3):
                if other != q:
                    self._report(races, self.re[other, s] > vc[other], lo, self.ri[other, s],
                                 index, "write-after-read")
            self.wq[s] = q
            self.we[s] = vc[q]
            self.wi[s] = index
            self.re[:, s] = 0
        else:
            self.re[q, s] = vc[q]
            self.ri[q, s] = index


class _AxiFault(Exception):
    pass


class GoldenModel:
    """Executes programs on NumPy state with exactly the hardware's semantics.

    Parameters
    ----------
    config : AcceleratorConfig
    check_races : bool
        Track happens-before between queues and report data races (slower).
    """

    def __init__(self, config, *, check_races=True):
        self.config = config
        self.check_races = check_races
        self.reset()

    def reset(self):
        """Power-on state: every memory and the array's weights cleared."""
        c = self.config
        self.sp = np.zeros((c.sp_rows, c.sp_width), dtype=np.uint8)
        self.acc = np.zeros((c.acc_rows, c.cols), dtype=np.int64)
        self.params = np.zeros((c.param_rows, c.cols), dtype=np.int64)
        self.soft_reset()

    def soft_reset(self):
        """What the soft reset clears: the array's weight registers (memories keep data)."""
        c = self.config
        self.weights = np.zeros((c.rows, c.cols), dtype=np.int64)

    # -- memory access ---------------------------------------------------------------------

    def _check_mem(self, lo, hi):
        if hi > len(self.mem) or lo < 0:
            raise _AxiFault
        for a, b in self.axi_error:
            if lo < b and a < hi:
                raise _AxiFault

    def _read_rows(self, addr, stride, n, nbytes):
        out = np.zeros((n, nbytes), dtype=np.uint8)
        for i in range(n):
            lo = addr + i * stride
            self._check_mem(lo, lo + nbytes)
            out[i] = self.mem[lo:lo + nbytes]
        return out

    def _check_rows(self, addr, stride, n, nbytes):
        for i in range(n):
            lo = addr + i * stride
            self._check_mem(lo, lo + nbytes)

    def _touch_dram(self, addr, stride, n, nbytes, q, index, write):
        if self.trackers is None:
            return
        t = self.trackers["dram"]
        for i in range(n):
            lo = addr + i * stride
            t.access(lo, lo + nbytes, q, self.vc[q], index, write, self.races)

    def _touch(self, name, lo, n, q, index, write):
        if self.trackers is not None:
            self.trackers[name].access(lo, lo + n, q, self.vc[q], index, write, self.races)

    # -- running ---------------------------------------------------------------------------

    def run(self, memory, prog_addr, prog_len, *, axi_error=()):
        """Run ``prog_len`` instructions fetched at ``prog_addr`` from ``memory``.

        ``memory`` is the system-memory image (bytes-like, address 0 first); a copy is
        returned in the result. ``axi_error`` lists ``(start, end)`` byte ranges whose
        access gets an AXI error response.
        """
        c = self.config
        self.mem = np.frombuffer(bytes(memory), dtype=np.uint8).copy()
        self.axi_error = [tuple(r) for r in axi_error]
        self.regs = {reg: CONFIG_DEFAULTS[reg] for reg in ConfigReg}
        self.overflow = False
        self.races = []
        self.vc = np.zeros((3, 3), dtype=np.int64)
        self.token_clocks = {ch: [] for ch in CHANNELS}
        self.trackers = None
        if self.check_races:
            self.trackers = {
                "sp": _Tracker("sp", c.sp_rows), "acc": _Tracker("acc", c.acc_rows),
                "param": _Tracker("param", c.param_rows), "dram": _Tracker("dram", len(self.mem)),
            }
        result = RunResult(memory=self.mem)
        tokens = dict.fromkeys(CHANNELS, 0)
        base = prog_addr & ~(INSTR_BYTES - 1)
        opcounts = {op.name: 0 for op in Opcode}

        def stop(code, index):
            result.error, result.error_index = code, index
            return self._finish(result, opcounts)

        for index in range(prog_len):
            lo = base + index * INSTR_BYTES
            try:
                self._check_mem(lo, lo + INSTR_BYTES)
            except _AxiFault:
                return stop(ErrorCode.AXI_ERROR, index)
            word = int.from_bytes(self.mem[lo:lo + INSTR_BYTES].tobytes(), "little")
            code, instr = static_check(c, word)
            if code is not ErrorCode.NONE:
                return stop(code, index)
            queue = queue_of(instr)
            pops = [ch for (q, f), ch in _POPS.items() if q is queue and getattr(instr, f)]
            pushes = [ch for (q, f), ch in _PUSHES.items() if q is queue and getattr(instr, f)]
            if any(tokens[ch] == 0 for ch in pops):
                return stop(ErrorCode.DEADLOCK, index)
            if any(tokens[ch] >= MAX_TOKENS for ch in pushes):
                return stop(ErrorCode.TOKEN_OVERFLOW, index)
            if instr.opcode is Opcode.HALT:
                opcounts["HALT"] += 1
                result.retired += 1
                return self._finish(result, opcounts)
            qi = queue.value if queue is not None else 0
            if queue is not None:
                self.vc[qi][qi] += 1
                for ch in pops:
                    clock = self.token_clocks[ch].pop(0)
                    self.vc[qi] = np.maximum(self.vc[qi], clock)
            try:
                self._execute(instr, qi, index, result)
            except _AxiFault:
                return stop(ErrorCode.AXI_ERROR, index)
            for ch in pops:
                tokens[ch] -= 1
            for ch in pushes:
                tokens[ch] += 1
                self.token_clocks[ch].append(self.vc[qi].copy())
            opcounts[instr.opcode.name] += 1
            result.retired += 1
        return stop(ErrorCode.PROGRAM_END, prog_len)

    def _finish(self, result, opcounts):
        result.memory = self.mem
        result.acc_overflow = self.overflow
        result.races = list(self.races)
        result.opcounts = opcounts
        return result

    def _sat(self, values):
        over = (values < INT32_MIN) | (values > INT32_MAX)
        if over.any():
            self.overflow = True
        return np.clip(values, INT32_MIN, INT32_MAX)

    def _execute(self, i, q, index, result):
        op = i.opcode
        if op is Opcode.CONFIG:
            reg = ConfigReg(i.reg)
            self.regs[reg] = i.value & 0xFF if reg is ConfigReg.PAD_VALUE else i.value
        elif op is Opcode.LOAD:
            self._load(i, q, index)
        elif op is Opcode.STORE:
            self._store(i, q, index)
        elif op is Opcode.MATMUL:
            self._matmul(i, q, index, result)
        elif op is Opcode.VECTOR:
            self._vector(i, q, index)

    def _load(self, i, q, index):
        c = self.config
        dest = LoadDest(i.dest)
        m = i.n_rows - i.pad_top - i.pad_bottom
        if dest is LoadDest.SP:
            block = np.full((i.n_rows, c.sp_width), self.regs[ConfigReg.PAD_VALUE], np.uint8)
            if m and i.length:
                rows = self._read_rows(i.dram_addr, i.stride, m, i.length)
                block[i.pad_top:i.pad_top + m, i.pad_left:i.pad_left + i.length] = rows
            target, name = self.sp, "sp"
        else:
            block = np.zeros((i.n_rows, c.cols), dtype=np.int64)
            if m and i.length:
                raw = self._read_rows(i.dram_addr, i.stride, m, 4 * i.length)
                words = raw.view("<i4").astype(np.int64).reshape(m, i.length)
                block[i.pad_top:i.pad_top + m, i.pad_left:i.pad_left + i.length] = words
            target, name = (self.acc, "acc") if dest is LoadDest.ACC else (self.params, "param")
        if m and i.length:
            eb = 1 if dest is LoadDest.SP else 4
            self._touch_dram(i.dram_addr, i.stride, m, eb * i.length, q, index, False)
        target[i.addr:i.addr + i.n_rows] = block
        self._touch(name, i.addr, i.n_rows, q, index, True)

    def _store(self, i, q, index):
        c = self.config
        out_type = OutType(i.out_type)
        if i.src == StoreSrc.SP.value:
            data = self.sp[i.addr:i.addr + i.n_rows, :i.length].copy()
            self._touch("sp", i.addr, i.n_rows, q, index, False)
        else:
            acc = self.acc[i.addr:i.addr + i.n_rows, :i.length]
            self._touch("acc", i.addr, i.n_rows, q, index, False)
            if out_type is OutType.INT32:
                data = acc.astype("<i4").view(np.uint8).reshape(i.n_rows, 4 * i.length)
            else:
                mmask = (1 << (c.requant_bits - 1)) - 1
                if i.per_channel:
                    mult = self.params[i.param_addr, :i.length] & mmask
                    shift = self.params[i.param_addr + 1, :i.length] & 63
                    self._touch("param", i.param_addr, 2, q, index, False)
                else:
                    mult = self.regs[ConfigReg.REQ_MULT]
                    shift = self.regs[ConfigReg.REQ_SHIFT]
                zp = self.regs[ConfigReg.REQ_ZP]
                lo, hi = activation_bounds(out_type, self.regs[ConfigReg.ACTIVATION], zp,
                                           self.regs[ConfigReg.CLAMP_LO],
                                           self.regs[ConfigReg.CLAMP_HI])
                y = requantize(acc, mult, shift, zp, lo, hi)
                data = y.astype(out_type.dtype).view(np.uint8).reshape(i.n_rows, i.length)
        nbytes = data.shape[1]
        self._check_rows(i.dram_addr, i.stride, i.n_rows, nbytes)
        for r in range(i.n_rows):
            lo = i.dram_addr + r * i.stride
            self.mem[lo:lo + nbytes] = data[r]
        self._touch_dram(i.dram_addr, i.stride, i.n_rows, nbytes, q, index, True)

    def _matmul(self, i, q, index, result):
        c = self.config
        new_weights = None
        if i.preload:
            raw = self.sp[i.w_addr:i.w_addr + c.rows, :c.cols]
            new_weights = as_elements(raw, c.weight_bits, c.weight_signed)
            self._touch("sp", i.w_addr, c.rows, q, index, False)
        if i.compute:
            a = as_elements(self.sp[i.a_addr:i.a_addr + i.n_rows, :c.rows], c.input_bits,
                            c.input_signed)
            self._touch("sp", i.a_addr, i.n_rows, q, index, False)
            prod = a @ self.weights
            rows = slice(i.c_addr, i.c_addr + i.n_rows)
            self.acc[rows] = self._sat(self.acc[rows] + prod) if i.accumulate else self._sat(prod)
            self._touch("acc", i.c_addr, i.n_rows, q, index, True)
            result.macs += i.n_rows * c.rows * c.cols
        if new_weights is not None:
            self.weights = new_weights

    def _vector(self, i, q, index):
        n = i.n_rows
        vop = VectorOp(i.op)
        a = self.acc[i.src_a:i.src_a + n]
        self._touch("acc", i.src_a, n, q, index, False)
        b = None
        if vop in BINARY_VECTOR_OPS:
            b = self.acc[i.src_b:i.src_b + n]
            self._touch("acc", i.src_b, n, q, index, False)
        imm = np.int64(i.imm)
        if vop is VectorOp.ADD:
            out = a + b
        elif vop is VectorOp.MAX:
            out = np.maximum(a, b)
        elif vop is VectorOp.MIN:
            out = np.minimum(a, b)
        elif vop is VectorOp.ADDI:
            out = a + imm
        elif vop is VectorOp.MAXI:
            out = np.maximum(a, imm)
        elif vop is VectorOp.MINI:
            out = np.minimum(a, imm)
        elif vop is VectorOp.SHIFT:
            if i.imm >= 0:
                out = round_shift(a, i.imm)
            else:
                # saturating left shift: compare before shifting so int64 never wraps
                k = -i.imm
                out = np.where(a > (INT32_MAX >> k), INT32_MAX + 1,
                               np.where(a < (INT32_MIN >> k), INT32_MIN - 1, a << k))
        elif vop is VectorOp.MULI:
            out = a * imm
        else:  # RESCALE_ADD
            r = self.regs
            out = (round_shift(a * r[ConfigReg.VEC_MULT_A], r[ConfigReg.VEC_SHIFT_A])
                   + round_shift(b * r[ConfigReg.VEC_MULT_B], r[ConfigReg.VEC_SHIFT_B]))
        self.acc[i.dst:i.dst + n] = self._sat(np.asarray(out, dtype=np.int64))
        self._touch("acc", i.dst, n, q, index, True)


def run_program(config, words, memory, prog_addr=0, *, axi_error=(), check_races=True):
    """Write ``words`` into a copy of ``memory`` at ``prog_addr`` and run them on a fresh
    :class:`GoldenModel`. Returns the :class:`RunResult`."""
    image = bytearray(memory)
    code = to_bytes(words)
    if prog_addr + len(code) > len(image):
        raise ValueError(f"program of {len(code)} bytes at 0x{prog_addr:x} does not fit in "
                         f"a {len(image)}-byte memory image")
    image[prog_addr:prog_addr + len(code)] = code
    model = GoldenModel(config, check_races=check_races)
    return model.run(image, prog_addr, len(words), axi_error=axi_error)
