"""Program construction: instruction emission, system-memory layout and token insertion.

:class:`ProgramBuilder` emits instructions in *program order*, which is also their
meaning (the golden model executes them one after the other). For every instruction it
works out which on-chip rows (scratchpad, accumulator, parameter buffer) and which
system-memory bytes it reads and writes, finds the latest earlier instruction of each
other queue it conflicts with, and inserts the dependency tokens that order them:

* between neighbouring queues (load <-> execute <-> store) the consumer pops and the
  exact producer pushes (the push flag is set on the already-emitted producer, so the
  consumer waits for that instruction and nothing later);
* between load and store (no direct channel) an execute instruction that already waits
  for the producer relays the order; if there is none, a ``SYNC`` in the execute queue is
  inserted.

Pushes are only made on demand, so every token pushed is popped by exactly one later
instruction and no token is left over at the end of a program. The order is exact at
row granularity on chip and at :data:`DRAM_PAGE`-byte granularity in system memory
(conservative: it can only add order, never miss one), so the golden model reports no
races. The caller chooses a program order that lets the queues run ahead of each other
(see :mod:`systolic.compiler.gemm`).
"""

import bisect
from dataclasses import dataclass, field

import numpy as np

from ..checks import BINARY_VECTOR_OPS, queue_of, static_check
from ..isa import (
    CONFIG_DEFAULTS,
    MAX_TOKENS,
    ConfigReg,
    ErrorCode,
    Instruction,
    LoadDest,
    Opcode,
    Queue,
    StoreSrc,
    VectorOp,
    encode,
    to_bytes,
)
from ..numerics import OutType

__all__ = ["DRAM_PAGE", "Buffer", "MemoryLayout", "ProgramBuilder", "accesses"]

DRAM_PAGE = 64  # granularity of system-memory dependency tracking, in bytes

# channel name -> (producer queue, consumer queue), and the flags that use it
_CHANNELS = {
    "L2E": (Queue.LOAD, Queue.EXEC), "E2L": (Queue.EXEC, Queue.LOAD),
    "E2S": (Queue.EXEC, Queue.STORE), "S2E": (Queue.STORE, Queue.EXEC),
}
_CHANNEL_OF = {v: k for k, v in _CHANNELS.items()}


def _push_flag(producer, consumer):
    return "push_next" if consumer.value > producer.value else "push_prev"


def _pop_flag(producer, consumer):
    return "pop_prev" if producer.value < consumer.value else "pop_next"


# -- system memory ---------------------------------------------------------------------------

@dataclass
class Buffer:
    """A named region of system memory.

    Attributes
    ----------
    name : str
    addr, size : int
        Byte address and size.
    kind : str
        ``"const"`` (weights, bias and parameter rows: part of the image), ``"input"``,
        ``"output"``, ``"scratch"`` (intermediate tensors) or ``"program"``.
    data : bytes or None
        Initial contents written into the memory image (constants and the program).
    """
    name: str
    addr: int
    size: int
    kind: str
    data: bytes | None = None

    @property
    def end(self):
        return self.addr + self.size


@dataclass
class MemoryLayout:
    """Bump allocation of system memory, and the memory image built from it.

    Parameters
    ----------
    base : int
        First byte address handed out.
    align : int
        Alignment of every buffer (a multiple of :data:`DRAM_PAGE` keeps buffers on
        separate tracking pages, so accesses to different buffers never order each other).
    """
    base: int = 0
    align: int = 64
    buffers: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.align <= 0 or self.align % DRAM_PAGE:
            raise ValueError(f"MemoryLayout align must be a positive multiple of {DRAM_PAGE}, "
                             f"not {self.align}")
        self.top = self.base

    def alloc(self, name, size, *, kind="scratch", data=None):
        """Allocate ``size`` bytes (at least one) named ``name``; returns the :class:`Buffer`."""
        if name in self.buffers:
            raise ValueError(f"buffer {name!r} is already allocated")
        if kind not in ("const", "input", "output", "scratch", "program"):
            raise ValueError(f"buffer kind must be const, input, output, scratch or program, "
                             f"not {kind!r}")
        if data is not None:
            data = bytes(data)
            size = max(size, len(data))
        addr = -(-self.top // self.align) * self.align
        buf = Buffer(name, addr, max(int(size), 1), kind, data)
        self.top = buf.end
        self.buffers[name] = buf
        return buf

    def const(self, name, array):
        """Allocate a constant holding ``array``'s bytes (little-endian, C order)."""
        arr = np.ascontiguousarray(array)
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        return self.alloc(name, arr.nbytes, kind="const", data=arr.tobytes())

    @property
    def size(self):
        """Bytes the image needs (rounded up to the alignment)."""
        return -(-self.top // self.align) * self.align

    def image(self):
        """The memory image: zeros with every buffer's initial data in place."""
        img = bytearray(self.size)
        for buf in self.buffers.values():
            if buf.data is not None:
                img[buf.addr:buf.addr + len(buf.data)] = buf.data
        return img


# -- resources an instruction touches ---------------------------------------------------------

def accesses(config, instr):
    """``[(resource, lo, hi, write)]`` an instruction touches, as the golden model does.

    Resources are ``"sp"``, ``"acc"``, ``"param"`` (rows) and ``"dram"`` (bytes; a strided
    transfer is summarized by its first and one-past-last byte).
    """
    c, i, out = config, instr, []
    op = i.opcode
    if op is Opcode.LOAD:
        dest = LoadDest(i.dest)
        m = i.n_rows - i.pad_top - i.pad_bottom
        eb = 1 if dest is LoadDest.SP else 4
        if m and i.length:
            out.append(("dram", i.dram_addr, i.dram_addr + (m - 1) * i.stride + eb * i.length,
                        False))
        name = {LoadDest.SP: "sp", LoadDest.ACC: "acc", LoadDest.PARAM: "param"}[dest]
        out.append((name, i.addr, i.addr + i.n_rows, True))
    elif op is Opcode.STORE:
        if i.src == StoreSrc.SP.value:
            out.append(("sp", i.addr, i.addr + i.n_rows, False))
            nbytes = i.length
        else:
            out.append(("acc", i.addr, i.addr + i.n_rows, False))
            nbytes = i.length * OutType(i.out_type).nbytes
            if i.per_channel and i.out_type != OutType.INT32:
                out.append(("param", i.param_addr, i.param_addr + 2, False))
        out.append(("dram", i.dram_addr, i.dram_addr + (i.n_rows - 1) * i.stride + nbytes,
                    True))
    elif op is Opcode.MATMUL:
        if i.preload:
            out.append(("sp", i.w_addr, i.w_addr + c.rows, False))
        if i.compute:
            out.append(("sp", i.a_addr, i.a_addr + i.n_rows, False))
            out.append(("acc", i.c_addr, i.c_addr + i.n_rows, True))
    elif op is Opcode.VECTOR:
        out.append(("acc", i.src_a, i.src_a + i.n_rows, False))
        if VectorOp(i.op) in BINARY_VECTOR_OPS:
            out.append(("acc", i.src_b, i.src_b + i.n_rows, False))
        out.append(("acc", i.dst, i.dst + i.n_rows, True))
    return out


class _Tracker:
    """Last writer and last reader (per queue) of every row or page of one resource."""

    def __init__(self, size, growable=False):
        self.growable = growable
        self.w_idx = np.full(size, -1, dtype=np.int64)
        self.w_q = np.full(size, -1, dtype=np.int8)
        self.r_idx = np.full((3, size), -1, dtype=np.int64)

    def _ensure(self, hi):
        n = len(self.w_idx)
        if hi <= n or not self.growable:
            return
        grow = max(hi, 2 * n) - n
        self.w_idx = np.concatenate([self.w_idx, np.full(grow, -1, dtype=np.int64)])
        self.w_q = np.concatenate([self.w_q, np.full(grow, -1, dtype=np.int8)])
        self.r_idx = np.concatenate([self.r_idx, np.full((3, grow), -1, dtype=np.int64)], 1)

    def needs(self, lo, hi, q, write, need):
        """Raise ``need[p]`` to the latest instruction of queue ``p`` this access follows."""
        self._ensure(hi)
        s = slice(lo, hi)
        wq, wi = self.w_q[s], self.w_idx[s]
        for p in range(3):
            if p == q:
                continue
            mask = wq == p
            if mask.any():
                need[p] = max(need[p], int(wi[mask].max()))
            if write:
                need[p] = max(need[p], int(self.r_idx[p, s].max()))

    def record(self, lo, hi, q, index, write):
        s = slice(lo, hi)
        if write:
            self.w_idx[s] = index
            self.w_q[s] = q
        else:
            self.r_idx[q, s] = index


@dataclass
class _Entry:
    instr: Instruction
    queue: Queue | None
    qpos: int
    vc: np.ndarray          # per queue: highest position known to have completed before
    flags: dict
    note: str = ""


class ProgramBuilder:
    """Emits a program for one configuration and inserts its dependency tokens.

    Parameters
    ----------
    config : AcceleratorConfig

    Every emitting method checks its instruction with :func:`systolic.checks.static_check`
    (a field out of range raises :class:`ValueError` naming it), works out the tokens it
    needs and returns the instruction's index. :meth:`words` ends the program with HALT.
    """

    def __init__(self, config):
        self.config = config
        self.entries = []
        self.queues = {q: [] for q in Queue}          # global indices, in queue order
        self.last_push = dict.fromkeys(_CHANNELS, -1)
        self.exec_known = {Queue.LOAD: [], Queue.STORE: []}
        c = config
        self.trackers = {
            "sp": _Tracker(c.sp_rows), "acc": _Tracker(c.acc_rows),
            "param": _Tracker(c.param_rows), "dram": _Tracker(1024, growable=True),
        }
        self.regs = dict(CONFIG_DEFAULTS)
        self.syncs = 0
        self.halted = False

    def __len__(self):
        return len(self.entries)

    # -- instruction helpers ---------------------------------------------------------------

    def config_reg(self, reg, value, *, force=False):
        """CONFIG ``reg`` = ``value``; skipped when the register already holds it."""
        reg = ConfigReg(reg)
        value = int(value)
        if reg is ConfigReg.PAD_VALUE:
            value &= 0xFF
        if not force and self.regs[reg] == value:
            return None
        self.regs[reg] = value
        shown = value - 256 if reg is ConfigReg.PAD_VALUE and value > 127 else value
        return self.emit(Opcode.CONFIG, reg=reg, value=shown)

    def load(self, dest, addr, dram_addr, n_rows, length, stride, *, pad_left=0, pad_top=0,
             pad_bottom=0, note=""):
        """LOAD ``n_rows`` rows (pads included) of ``length`` elements into ``dest``."""
        return self.emit(Opcode.LOAD, dest=LoadDest(dest), addr=addr, dram_addr=dram_addr,
                         n_rows=n_rows, length=length, stride=stride, pad_left=pad_left,
                         pad_top=pad_top, pad_bottom=pad_bottom, note=note)

    def store(self, addr, dram_addr, n_rows, length, stride, *, out_type=OutType.INT8,
              src=StoreSrc.ACC, per_channel=False, param_addr=0, note=""):
        """STORE ``n_rows`` rows of ``length`` elements through post-processing."""
        return self.emit(Opcode.STORE, src=StoreSrc(src), out_type=OutType(out_type),
                         per_channel=int(per_channel), param_addr=param_addr, addr=addr,
                         dram_addr=dram_addr, n_rows=n_rows, length=length, stride=stride,
                         note=note)

    def matmul(self, *, a_addr=0, c_addr=0, n_rows=0, w_addr=0, compute=True,
               accumulate=False, preload=False, note=""):
        """MATMUL: stream ``n_rows`` input rows (``compute``) and/or preload weights."""
        return self.emit(Opcode.MATMUL, compute=int(compute), accumulate=int(accumulate),
                         preload=int(preload), n_rows=n_rows if compute else 0,
                         a_addr=a_addr if compute else 0, w_addr=w_addr if preload else 0,
                         c_addr=c_addr if compute else 0, note=note)

    def vector(self, op, dst, src_a, n_rows, *, src_b=0, imm=0, note=""):
        """VECTOR ``op`` over ``n_rows`` accumulator rows."""
        return self.emit(Opcode.VECTOR, op=VectorOp(op), dst=dst, src_a=src_a, src_b=src_b,
                         n_rows=n_rows, imm=imm, note=note)

    # -- the core ---------------------------------------------------------------------------

    def emit(self, opcode, *, note="", **fields):
        """Emit one instruction (fields by name) with the tokens it needs."""
        if self.halted:
            raise ValueError("the program already ended with HALT")
        instr = Instruction(opcode, {k: (v.value if hasattr(v, "value") else int(v))
                                     for k, v in fields.items()})
        encode(instr)  # field widths
        code, _ = static_check(self.config, instr)
        if code is not ErrorCode.NONE:
            shown = ", ".join(f"{k}={v}" for k, v in instr.fields.items())
            raise ValueError(f"{opcode.name} {shown} fails the static check: {code.name}")
        queue = queue_of(instr)
        if queue is None:
            self.entries.append(_Entry(instr, None, -1, np.full(3, -1), {}, note))
            return len(self.entries) - 1
        q = queue.value
        need = [-1, -1, -1]
        acc_list = accesses(self.config, instr)
        for name, lo, hi, write in acc_list:
            if name == "dram":
                lo, hi = lo // DRAM_PAGE, -(-hi // DRAM_PAGE)
            self.trackers[name].needs(lo, hi, q, write, need)
        entry = self._new_entry(instr, queue, note)
        self._order(entry, need)
        index = len(self.entries)
        self._append(entry)
        for name, lo, hi, write in acc_list:
            if name == "dram":
                lo, hi = lo // DRAM_PAGE, -(-hi // DRAM_PAGE)
            self.trackers[name].record(lo, hi, q, index, write)
        return index

    def _new_entry(self, instr, queue, note):
        prev = self.queues[queue]
        vc = self.entries[prev[-1]].vc.copy() if prev else np.full(3, -1, dtype=np.int64)
        vc[queue.value] = len(prev)
        return _Entry(instr, queue, len(prev), vc, {}, note)

    def _append(self, entry):
        self.queues[entry.queue].append(len(self.entries))
        self.entries.append(entry)
        if entry.queue is Queue.EXEC:
            for p in (Queue.LOAD, Queue.STORE):
                self.exec_known[p].append(int(entry.vc[p.value]))

    def _knows(self, entry, index):
        other = self.entries[index]
        return entry.vc[other.queue.value] >= other.qpos

    def _order(self, entry, need):
        """Give ``entry`` the pops (and its producers the pushes) that ``need`` asks for."""
        q = entry.queue
        far = {Queue.LOAD: Queue.STORE, Queue.STORE: Queue.LOAD}.get(q)
        if far is not None and need[far.value] >= 0 and not self._knows(entry, need[far.value]):
            producer = self.entries[need[far.value]]
            known = self.exec_known[far]
            pos = bisect.bisect_left(known, producer.qpos)
            if pos < len(known):
                relay = self.queues[Queue.EXEC][pos]
            else:
                relay = self._sync_after(need[far.value])
            need[Queue.EXEC.value] = max(need[Queue.EXEC.value], relay)
        for p in Queue:
            if p is q or (q, p) not in _CHANNEL_OF and (p, q) not in _CHANNEL_OF:
                continue
            if need[p.value] >= 0 and not self._knows(entry, need[p.value]):
                self._link(need[p.value], entry)

    def _sync_after(self, producer_index):
        """Append a SYNC in the execute queue that waits for ``producer_index``."""
        instr = Instruction(Opcode.SYNC, {"queue": Queue.EXEC.value})
        entry = self._new_entry(instr, Queue.EXEC, "relay")
        self._link(producer_index, entry)
        index = len(self.entries)
        self._append(entry)
        self.syncs += 1
        return index

    def _link(self, producer_index, consumer):
        producer = self.entries[producer_index]
        ch = _CHANNEL_OF[(producer.queue, consumer.queue)]
        if producer_index <= self.last_push[ch]:
            raise AssertionError(f"token order broken on {ch}: push at {producer_index} "
                                 f"after {self.last_push[ch]}")
        pop = _pop_flag(producer.queue, consumer.queue)
        if consumer.flags.get(pop):
            raise AssertionError(f"second pop on {ch}")
        producer.flags[_push_flag(producer.queue, consumer.queue)] = True
        consumer.flags[pop] = True
        self.last_push[ch] = producer_index
        np.maximum(consumer.vc, producer.vc, out=consumer.vc)

    # -- output -----------------------------------------------------------------------------

    def halt(self):
        if not self.halted:
            self.emit(Opcode.HALT)
            self.halted = True

    def instructions(self):
        """The emitted instructions with their token flags (:class:`Instruction` list)."""
        out = []
        for e in self.entries:
            out.append(Instruction(e.instr.opcode, e.instr.fields,
                                   **{k: bool(v) for k, v in e.flags.items()}))
        return out

    def words(self):
        """The program as 128-bit words, ended with HALT; checks the token counts."""
        self.halt()
        instrs = self.instructions()
        pending = dict.fromkeys(_CHANNELS, 0)
        for index, i in enumerate(instrs):
            q = queue_of(i)
            for ch, (prod, cons) in _CHANNELS.items():
                if q is cons and getattr(i, _pop_flag(prod, cons)):
                    pending[ch] -= 1
                    if pending[ch] < 0:
                        raise AssertionError(f"instruction {index} pops an empty {ch}")
                if q is prod and getattr(i, _push_flag(prod, cons)):
                    pending[ch] += 1
                    if pending[ch] > MAX_TOKENS:
                        raise ValueError(f"more than {MAX_TOKENS} tokens pending on {ch} at "
                                         f"instruction {index}; emit the queues closer together")
        return [encode(i) for i in instrs]

    def image(self):
        """The program as the byte image the hardware fetches."""
        return to_bytes(self.words())

    def listing(self):
        """The program as assembly text, with notes as comments."""
        from ..isa import disassemble_one
        lines = []
        for index, (word, e) in enumerate(zip(self.words(), self.entries, strict=True)):
            text = disassemble_one(word)
            lines.append(f"{text}  # {index}" + (f" {e.note}" if e.note else ""))
        return "\n".join(lines) + "\n"

    def stats(self):
        """Counts of emitted instructions by opcode and of inserted relay SYNCs."""
        counts = {}
        for e in self.entries:
            counts[e.instr.opcode.name] = counts.get(e.instr.opcode.name, 0) + 1
        return {"instructions": len(self.entries), "by_opcode": counts, "relay_syncs": self.syncs}

