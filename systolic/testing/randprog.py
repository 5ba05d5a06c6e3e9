"""Constrained-random programs for one accelerator configuration and a seed.

A program is a pipeline of *tasks*. Task ``t`` owns slot ``t % B`` of the scratchpad,
accumulator and parameter buffer (``B`` in 1..3 slots, so up to three tasks are in flight):
its load phase fills the slot, its execute phase multiplies and runs vector ops on it, its
store phase writes results to system memory. Tokens order the phases (VTA's discipline):

* ``L_t`` pushes L2E on its last instruction; ``E_t`` pops it on its first.
* ``E_t`` pushes E2S on its last instruction; ``S_t`` pops it on its first.
* ``S_t`` pushes S2E on its last instruction; an exec *release* pops it after ``E_{t+B-1}``
  and pushes E2L, which ``L_{t+B}`` pops before it overwrites the slot.

The queues' instructions are then merged into one program order at random, under the
only constraint the ISA has (a pop comes after its push), so loads of the next task land
between the compute of this one. Every read touches rows the program itself wrote before
(in token order), so a program's result does not depend on what ran before it. The golden
model confirms each program: no races, no error (unless one was injected).

Example::

    prog = generate(preset("tiny"), seed=7)
    result = GoldenModel(preset("tiny")).run(prog.image, prog.prog_addr, prog.prog_len)
"""

from dataclasses import dataclass

import numpy as np

from ..checks import BINARY_VECTOR_OPS
from ..isa import (
    CONFIG_QUEUE,
    FLAG_NAMES,
    INSTR_BYTES,
    MAX_ROWS,
    MAX_TOKENS,
    ConfigReg,
    ErrorCode,
    Instruction,
    LoadDest,
    Opcode,
    Queue,
    StoreSrc,
    VectorOp,
    decode,
    encode,
    to_bytes,
)
from ..model import GoldenModel
from ..numerics import INT32_MAX, INT32_MIN, SHIFT_MAX, OutType

__all__ = ["RandomProgram", "generate", "coverage", "reproduce_command", "DEFAULT_BUDGET"]

# Estimated cycles one program may cost on the RTL (keeps a tiny run well under a second).
DEFAULT_BUDGET = 6000
INPUT_BYTES = 4096       # read-only data: LOADs read here
OUTPUT_BYTES = 4096      # STOREs write here

# Token channels a flag touches, per queue: (pop channel or None, push channel or None).
_FLAG_CHANNEL = {
    (Queue.LOAD, "pop_next"): "E2L", (Queue.LOAD, "push_next"): "L2E",
    (Queue.EXEC, "pop_prev"): "L2E", (Queue.EXEC, "pop_next"): "S2E",
    (Queue.EXEC, "push_prev"): "E2L", (Queue.EXEC, "push_next"): "E2S",
    (Queue.STORE, "pop_prev"): "E2S", (Queue.STORE, "push_prev"): "S2E",
}


@dataclass
class RandomProgram:
    """A generated program and the system-memory image that holds it.

    Attributes
    ----------
    config : AcceleratorConfig
    seed : int
    words : list of int
        The instruction words (also inside ``image`` at ``prog_addr``).
    image : bytes
        System memory from address 0: input data, output area, program.
    prog_addr, prog_len : int
        What to write into the PROG_ADDR and PROG_LEN CSRs.
    error : ErrorCode
        The error injected (``NONE`` for a valid program).
    error_index : int
        Index of the injected error (``0`` for a valid program).
    cost : int
        Estimated cycles on the RTL.
    """
    config: object
    seed: int
    words: list
    image: bytes
    prog_addr: int
    prog_len: int
    error: ErrorCode = ErrorCode.NONE
    error_index: int = 0
    cost: int = 0

    def run_golden(self, model=None):
        """Run on the golden model (a fresh one unless given); returns its RunResult."""
        model = model or GoldenModel(self.config)
        return model.run(self.image, self.prog_addr, self.prog_len)

    def __iter__(self):
        """``image, prog_addr, prog_len = program``."""
        return iter((self.image, self.prog_addr, self.prog_len))


def reproduce_command(preset_name, seed, selector="random", budget=DEFAULT_BUDGET):
    """The one command that reruns a failing seed on the RTL bench."""
    extra = f"SYSTOLIC_BUDGET={budget} " if budget != DEFAULT_BUDGET else ""
    return (f"SYSTOLIC_SEED={seed} SYSTOLIC_PRESETS={preset_name} SYSTOLIC_PROGRAMS=1 "
            f"{extra}.venv/bin/python -m pytest tests/test_accelerator.py -k {selector}")


class _Node:
    """One instruction of a queue, before the merge; flags are set on it later."""
    __slots__ = ("op", "fields", "flags", "cost")

    def __init__(self, opcode, cost=1, **fields):
        self.op, self.fields, self.flags, self.cost = opcode, fields, set(), cost

    def instr(self):
        return Instruction(self.op, self.fields, **{f: True for f in self.flags})


def _queue(op, fields):
    if op is Opcode.LOAD:
        return Queue.LOAD
    if op is Opcode.STORE:
        return Queue.STORE
    if op in (Opcode.MATMUL, Opcode.VECTOR):
        return Queue.EXEC
    if op is Opcode.SYNC:
        return Queue(fields["queue"])
    if op is Opcode.CONFIG:
        return CONFIG_QUEUE[ConfigReg(fields["reg"])]
    return None


class _Generator:
    def __init__(self, config, seed, budget):
        c = self.c = config
        self.rng = np.random.default_rng(seed)
        self.budget = budget
        self.cost = 0
        self.mmax = (1 << (c.requant_bits - 1)) - 1
        self.sp_init = np.zeros(c.sp_rows, dtype=bool)
        self.acc_init = np.zeros(c.acc_rows, dtype=bool)
        self.par_init = np.zeros(c.param_rows, dtype=bool)
        self.weights_ready = False
        self.out_next = 0
        self.data = self._input_data()

    # -- random helpers --------------------------------------------------------------------

    def chance(self, p):
        return self.rng.random() < p

    def randint(self, lo, hi):
        """Uniform in lo..hi inclusive."""
        return int(self.rng.integers(lo, hi + 1))

    def pick_n(self, maxn, small=24):
        """A row count in 1..maxn: often 1, sometimes the maximum, mostly small."""
        r = self.rng.random()
        if r < 0.15 or maxn == 1:
            return 1
        if r < 0.18:
            return maxn
        if r < 0.25:
            return self.randint(1, maxn)
        return self.randint(1, min(maxn, small))

    def int32(self):
        r = self.rng.random()
        if r < 0.6:
            return self.randint(-1000, 1000)
        if r < 0.9:
            return self.randint(-(1 << 20), 1 << 20)
        return int(self.rng.choice([INT32_MIN, INT32_MAX, INT32_MIN + 1, INT32_MAX - 1, -1]))

    def _input_data(self):
        """Random bytes, then moderate int32 words in the upper half (bias and params)."""
        data = self.rng.integers(0, 256, INPUT_BYTES, dtype=np.uint8)
        words = np.array([self.int32() for _ in range(INPUT_BYTES // 8)], dtype="<i4")
        data[INPUT_BYTES // 2:] = words.view(np.uint8)
        return data

    # -- on-chip rows ----------------------------------------------------------------------

    def run_in(self, init, lo, hi, maxn=MAX_ROWS):
        """A run ``(start, n)`` of initialized rows in [lo, hi), or None."""
        rows = np.flatnonzero(init[lo:hi])
        if not len(rows):
            return None
        start = lo + int(self.rng.choice(rows))
        end = start
        while end < hi and init[end] and end - start < maxn:
            end += 1
        return start, self.pick_n(end - start)

    def place(self, lo, hi, n):
        """A first row so that n rows fit in [lo, hi)."""
        return self.randint(lo, hi - n)

    # -- instructions ----------------------------------------------------------------------

    def dram_rows(self, n, row_bytes, align, base, size):
        """``(addr, stride)`` for n rows of row_bytes inside [base, base+size)."""
        if n == 0 or row_bytes == 0:
            return base + align * self.randint(0, (size - 4) // align), 0
        max_stride = (size - row_bytes) // max(n - 1, 1)
        if self.chance(0.1) or max_stride < row_bytes:
            stride = 0
        else:
            stride = self.randint(row_bytes, min(max_stride, row_bytes + 40))
        stride -= stride % align
        extent = (n - 1) * stride + row_bytes
        addr = base + self.randint(0, size - extent)
        addr -= (addr - base) % align
        return addr, stride

    def transfer_cost(self, rows, row_bytes):
        beats = -(-row_bytes // self.c.axi_bytes) + 1
        return rows * (beats + 3)

    def load(self, slot):
        c = self.c
        kinds = [LoadDest.SP] * 6 + [LoadDest.ACC] * 3
        if slot.par[1] > slot.par[0]:
            kinds += [LoadDest.PARAM] * 2
        dest = kinds[self.randint(0, len(kinds) - 1)]
        lo, hi = {LoadDest.SP: slot.sp, LoadDest.ACC: slot.acc, LoadDest.PARAM: slot.par}[dest]
        width, eb = (c.sp_width, 1) if dest is LoadDest.SP else (c.cols, 4)
        n = self.pick_n(min(MAX_ROWS, hi - lo), small=2 * c.rows + 8)
        addr = self.place(lo, hi, n)
        pad_top = self.randint(0, min(15, n)) if self.chance(0.3) else 0
        pad_bottom = self.randint(0, min(15, n - pad_top)) if self.chance(0.3) else 0
        m = n - pad_top - pad_bottom
        length = width if self.chance(0.5) else self.randint(0, width)
        pad_left = self.randint(0, min(63, width - length)) if self.chance(0.4) else 0
        cost = self.transfer_cost(m, length * eb) if length else 0
        if cost > self.budget // 4:
            length = 0                      # a big block of pad rows: no memory traffic
        if dest is LoadDest.SP:
            base, size, align = 0, INPUT_BYTES, 1
        else:
            base, size, align = INPUT_BYTES // 2, INPUT_BYTES // 2, 4
        dram, stride = self.dram_rows(m if length else 0, length * eb, align, base, size)
        init = {LoadDest.SP: self.sp_init, LoadDest.ACC: self.acc_init,
                LoadDest.PARAM: self.par_init}[dest]
        init[addr:addr + n] = True
        cost = n + (self.transfer_cost(m, length * eb) if length else 0)
        return _Node(Opcode.LOAD, cost, dest=dest.value, length=length, pad_left=pad_left,
                     pad_top=pad_top, pad_bottom=pad_bottom, n_rows=n, addr=addr,
                     stride=stride, dram_addr=dram)

    def config_node(self, reg):
        mmax = self.mmax
        r = ConfigReg(reg)
        if r is ConfigReg.PAD_VALUE:
            value = self.randint(-128, 255)
        elif r in (ConfigReg.REQ_MULT, ConfigReg.VEC_MULT_A, ConfigReg.VEC_MULT_B):
            value = self.randint(0, mmax) if self.chance(0.8) else int(
                self.rng.choice([0, 1, mmax]))
        elif r in (ConfigReg.REQ_SHIFT, ConfigReg.VEC_SHIFT_A, ConfigReg.VEC_SHIFT_B):
            value = self.randint(0, 40) if self.chance(0.9) else int(
                self.rng.choice([0, SHIFT_MAX]))
        elif r is ConfigReg.ACTIVATION:
            value = self.randint(0, 2)
        elif r is ConfigReg.REQ_ZP:
            value = self.randint(-128, 255) if self.chance(0.9) else self.int32()
        else:  # CLAMP_LO / CLAMP_HI
            value = self.randint(-200, 300) if self.chance(0.9) else self.int32()
        return _Node(Opcode.CONFIG, 1, reg=r.value, value=value)

    def matmul(self, slot):
        c = self.c
        preload = compute = False
        fields = {}
        if self.chance(0.6) or not self.weights_ready:
            w = self.run_in(self.sp_init, slot.sp[0], slot.sp[1], c.rows)
            if w is not None and self.sp_init[w[0]:w[0] + c.rows].all() \
                    and w[0] + c.rows <= slot.sp[1]:
                preload = True
                fields["w_addr"] = w[0]
        if self.weights_ready and (self.chance(0.8) or not preload):
            maxn = min(MAX_ROWS, slot.acc[1] - slot.acc[0])
            a = self.run_in(self.sp_init, slot.sp[0], slot.sp[1], maxn)
            if a is not None:
                compute = True
                n = a[1]
                c_addr = self.place(slot.acc[0], slot.acc[1], n)
                acc = self.chance(0.5) and self.acc_init[c_addr:c_addr + n].all()
                fields.update(a_addr=a[0], n_rows=n, c_addr=c_addr, accumulate=int(acc))
                self.acc_init[c_addr:c_addr + n] = True
        if not (preload or compute):
            return None
        self.weights_ready = self.weights_ready or preload
        cost = fields.get("n_rows", 0) + c.rows + c.cols + 8
        return _Node(Opcode.MATMUL, cost, compute=int(compute), preload=int(preload), **fields)

    def vector(self, slot):
        vop = VectorOp(self.randint(0, len(VectorOp) - 1))
        a = self.run_in(self.acc_init, slot.acc[0], slot.acc[1])
        if a is None:
            return None
        src_a, n = a
        src_b = src_a
        if vop in BINARY_VECTOR_OPS:
            b = self.run_in(self.acc_init, slot.acc[0], slot.acc[1])
            if b is None or b[1] < n:
                n = min(n, b[1]) if b else n
                src_b = src_a if b is None else b[0]
            else:
                src_b = b[0]
        choices = [src_a, src_b]
        lo, hi = slot.acc
        for _ in range(8):
            d = self.place(lo, hi, n)
            if all(d + n <= s or s + n <= d for s in (src_a, src_b)):
                choices += [d, d]
                break
        sources = (src_a, src_b) if vop in BINARY_VECTOR_OPS else (src_a,)

        def legal(d):
            return all(d == s or d + n <= s or s + n <= d for s in sources)

        choices = [d for d in choices if legal(d)] or [src_a]
        if not legal(choices[0]):
            src_b = src_a
        dst = int(self.rng.choice(choices))
        if vop is VectorOp.SHIFT:
            imm = self.randint(-31, SHIFT_MAX) if self.chance(0.3) else self.randint(-8, 20)
        elif vop in (VectorOp.MULI,):
            imm = self.randint(-300, 300) if self.chance(0.8) else self.int32()
        else:
            imm = self.int32()
        self.acc_init[dst:dst + n] = True
        return _Node(Opcode.VECTOR, n + 8, op=vop.value, n_rows=n, dst=dst, src_a=src_a,
                     src_b=src_b, imm=imm)

    def store(self, slot):
        c = self.c
        if self.chance(0.2):
            src, init, lo, hi, width = StoreSrc.SP, self.sp_init, *slot.sp, c.sp_width
        else:
            src, init, lo, hi, width = StoreSrc.ACC, self.acc_init, *slot.acc, c.cols
        run = self.run_in(init, lo, hi)
        if run is None:
            return None
        addr, n = run
        out = OutType.INT8
        per_channel = 0
        param_addr = 0
        if src is StoreSrc.ACC:
            out = OutType(self.randint(0, 2))
            pairs = [r for r in range(*slot.par) if r + 1 < slot.par[1]
                     and self.par_init[r:r + 2].all()]
            if out is not OutType.INT32 and pairs and self.chance(0.4):
                per_channel = 1
                param_addr = int(self.rng.choice(pairs))
        length = width if self.chance(0.5) else self.randint(1, width)
        row_bytes = length * out.nbytes
        if self.transfer_cost(n, row_bytes) > self.budget // 3:
            n = max(1, self.budget // 3 // self.transfer_cost(1, row_bytes))
        align = 4 if out is OutType.INT32 else 1
        size = min(OUTPUT_BYTES, max(64, n * (row_bytes + 8))) + 3 & ~3
        if self.out_next + size > OUTPUT_BYTES:
            self.out_next = 0
        base = INPUT_BYTES + self.out_next
        self.out_next += size
        dram, stride = self.dram_rows(n, row_bytes, align, base, size)
        cost = self.transfer_cost(n, row_bytes) + n * -(-length // c.lanes)
        return _Node(Opcode.STORE, cost, src=src.value, out_type=out.value,
                     per_channel=per_channel, length=length, param_addr=param_addr, n_rows=n,
                     addr=addr, stride=stride, dram_addr=dram)


class _Slot:
    """The rows one pipeline slot owns in each on-chip memory: (lo, hi) pairs."""

    def __init__(self, config, index, count):
        def part(total):
            size = total // count
            return index * size, (index + 1) * size

        self.sp = part(config.sp_rows)
        self.acc = part(config.acc_rows)
        self.par = part(config.param_rows)


def _phase(gen, make, queue, count):
    """Up to ``count`` nodes from ``make``; a SYNC in ``queue`` if none was made."""
    nodes = [n for n in (make() for _ in range(count)) if n is not None]
    if not nodes or gen.chance(0.05):
        nodes.insert(gen.randint(0, len(nodes)), _Node(Opcode.SYNC, 1, queue=queue.value))
    return nodes


def _tasks(gen, n_slots, max_tasks):
    """Per-queue node lists of the task pipeline, with their token flags set."""
    c = gen.c
    slots = [_Slot(c, i, n_slots) for i in range(n_slots)]
    queues = {q: [] for q in Queue}
    ends = []          # (last exec node of E_t, last store node of S_t)
    vec_regs = [r for r, q in CONFIG_QUEUE.items() if q is Queue.EXEC]
    store_regs = [r for r, q in CONFIG_QUEUE.items() if q is Queue.STORE]
    for t in range(max_tasks):
        if gen.cost > gen.budget:
            break
        slot = slots[t % n_slots]
        loads = _phase(gen, lambda s=slot: gen.load(s), Queue.LOAD, gen.randint(1, 3))
        if gen.chance(0.3):
            loads.insert(gen.randint(0, len(loads)), gen.config_node(ConfigReg.PAD_VALUE))

        def exec_op(s=slot):
            if c.vector_unit and gen.chance(0.35):
                return gen.vector(s)
            return gen.matmul(s)

        execs = _phase(gen, exec_op, Queue.EXEC, gen.randint(1, 4))
        if c.vector_unit and gen.chance(0.3):
            execs.insert(0, gen.config_node(vec_regs[gen.randint(0, len(vec_regs) - 1)]))
        stores = _phase(gen, lambda s=slot: gen.store(s), Queue.STORE, gen.randint(1, 3))
        for _ in range(gen.randint(0, 2) if gen.chance(0.5) else 0):
            reg = store_regs[gen.randint(0, len(store_regs) - 1)]
            stores.insert(gen.randint(0, len(stores)), gen.config_node(reg))
        if t >= n_slots:
            loads[0].flags.add("pop_next")
        loads[-1].flags.add("push_next")
        execs[0].flags.add("pop_prev")
        execs[-1].flags.add("push_next")
        stores[0].flags.add("pop_prev")
        queues[Queue.LOAD] += loads
        queues[Queue.EXEC] += execs
        queues[Queue.STORE] += stores
        ends.append(stores[-1])
        # Release slot (t - B + 1) after this exec phase: S_{t-B+1} is done with it.
        r = t - n_slots + 1
        if r >= 0:
            _release(gen, queues, ends[r], n_slots)
        gen.cost += sum(n.cost for n in loads + execs + stores)
    return queues


def _release(gen, queues, store_last, n_slots):
    store_last.flags.add("push_prev")
    last = queues[Queue.EXEC][-1]
    if n_slots > 1 and gen.chance(0.5) and "pop_next" not in last.flags \
            and "push_prev" not in last.flags:
        last.flags |= {"pop_next", "push_prev"}
    else:
        queues[Queue.EXEC].append(_sync(Queue.EXEC, "pop_next", "push_prev"))


def _sync(queue, *flags):
    node = _Node(Opcode.SYNC, 1, queue=queue.value)
    node.flags |= set(flags)
    return node


def _merge(gen, queues):
    """Interleave the queues at random; a pop is placed only after its push."""
    tokens = dict.fromkeys(("L2E", "E2L", "E2S", "S2E"), 0)
    heads = {q: 0 for q in Queue}
    weights = {q: 1 + gen.rng.random() * 3 for q in Queue}
    order = []
    while True:
        ready = []
        for q, nodes in queues.items():
            if heads[q] < len(nodes):
                node = nodes[heads[q]]
                pops = [_FLAG_CHANNEL[q, f] for f in node.flags if f.startswith("pop")]
                if all(tokens[ch] > 0 for ch in pops):
                    ready.append(q)
        if not ready:
            break
        w = np.array([weights[q] for q in ready])
        q = ready[int(gen.rng.choice(len(ready), p=w / w.sum()))]
        node = queues[q][heads[q]]
        heads[q] += 1
        for f in node.flags:
            ch = _FLAG_CHANNEL[q, f]
            tokens[ch] += 1 if f.startswith("push") else -1
        order.append(node)
        if gen.chance(0.03):
            order.append(_Node(Opcode.NOP))
    assert all(heads[q] == len(queues[q]) for q in Queue), "token schedule has a cycle"
    return order


def _layout(gen, words, data):
    """The memory image: input data, output area (random bytes), program."""
    prog_addr = INPUT_BYTES + OUTPUT_BYTES
    size = prog_addr + len(words) * INSTR_BYTES
    size = -(-size // 4096) * 4096
    image = bytearray(gen.rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    image[:INPUT_BYTES] = data.tobytes()
    image[prog_addr:prog_addr + len(words) * INSTR_BYTES] = to_bytes(words)
    return bytes(image), prog_addr


def generate(config, seed, *, budget=DEFAULT_BUDGET, max_tasks=12, error=None,
             error_index=None):
    """A constrained-random program for ``config``, reproducible from ``seed``.

    Parameters
    ----------
    config : AcceleratorConfig
    seed : int
    budget : int
        Estimated RTL cycles the program may cost (memory traffic is capped by it).
    max_tasks : int
        Upper bound on pipeline tasks (load, execute, store phases).
    error : ErrorCode or None
        Inject exactly this error (see :func:`systolic.testing.errors.inject`).
    error_index : int or None
        Index of the injected error; random if ``None``.

    Returns
    -------
    RandomProgram
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    if config.dataflow != "ws":
        raise ValueError(f"random programs need dataflow 'ws', not {config.dataflow!r}")
    gen = _Generator(config, seed, budget)
    n_slots = gen.randint(1, 3)
    queues = _tasks(gen, n_slots, gen.randint(1, max_tasks))
    nodes = _merge(gen, queues)
    words = [encode(n.instr()) for n in nodes] + [encode(Instruction(Opcode.HALT, {}))]
    cost = gen.cost
    code = ErrorCode.NONE
    index = 0
    if error is not None and ErrorCode(error) is not ErrorCode.NONE:
        code = ErrorCode(error)
        if error_index is None:
            error_index = gen.randint(0 if code is not ErrorCode.TOKEN_OVERFLOW else MAX_TOKENS,
                                      len(words) + (MAX_TOKENS if code is
                                                    ErrorCode.TOKEN_OVERFLOW else 0))
        from .errors import inject

        words = inject(gen, config, words, code, error_index)
        index = error_index
    image, prog_addr = _layout(gen, words, gen.data)
    return RandomProgram(config, seed, words, image, prog_addr, len(words), code, index, cost)


# -- coverage ------------------------------------------------------------------------------

def coverage(words):
    """The set of features (opcodes, flags per queue, field cases) a program exercises."""
    seen = set()
    for w in words:
        try:
            i = decode(w)
        except ValueError:
            continue
        op = i.opcode
        seen.add(op.name)
        q = _queue(op, i.fields) if op is not Opcode.SYNC or i.queue < 3 else None
        for f in FLAG_NAMES:
            if getattr(i, f) and q is not None:
                seen.add(f"{q.name}.{f}")
        if op is Opcode.SYNC and q is not None:
            seen.add(f"SYNC.{q.name}")
        elif op is Opcode.CONFIG and i.reg < len(ConfigReg):
            seen.add(f"CONFIG.{ConfigReg(i.reg).name}")
        elif op is Opcode.LOAD and i.dest < 3:
            d = LoadDest(i.dest).name
            seen.add(f"LOAD.{d}")
            for pad in ("pad_top", "pad_bottom", "pad_left"):
                if i.fields[pad]:
                    seen.add(f"LOAD.{pad}")
            if i.stride == 0 and i.length and i.n_rows - i.pad_top - i.pad_bottom > 1:
                seen.add(f"LOAD.{d}.stride0")
            if i.length == 0:
                seen.add("LOAD.length0")
            if i.n_rows == 1:
                seen.add("LOAD.n1")
        elif op is Opcode.STORE and i.out_type < 3:
            if i.src == StoreSrc.SP.value:
                seen.add("STORE.SP")
            else:
                kind = "per_channel" if i.per_channel else "per_tensor"
                seen.add(f"STORE.ACC.{OutType(i.out_type).name}.{kind}")
            if i.stride == 0 and i.n_rows > 1:
                seen.add("STORE.stride0")
        elif op is Opcode.MATMUL:
            kind = {(1, 0): "preload", (0, 1): "compute", (1, 1): "preload+compute"}.get(
                (i.preload, i.compute), "none")
            seen.add(f"MATMUL.{kind}")
            if i.compute:
                seen.add("MATMUL.accumulate" if i.accumulate else "MATMUL.overwrite")
        elif op is Opcode.VECTOR and i.op < len(VectorOp):
            seen.add(f"VECTOR.{VectorOp(i.op).name}")
    return seen
