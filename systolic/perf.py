"""Analytic cycle model of a program on a configuration, calibrated against the RTL.

The model walks the program once, in program order, and gives every queued instruction a
start and a completion time:

* **Fetch** delivers instruction ``i`` at ``fetch_latency + i * fetch_interval`` (the
  fetch unit reads instructions from system memory at a fixed rate) and dispatches it to
  its queue; it stalls, and every instruction behind it with it, while the target queue
  is full, i.e. until the instruction ``queue_depth`` places earlier in the same queue
  has started; a queue of depth 1 has no storage, so fetch waits until the instruction
  itself has started. On a 32-bit bus the decoder checks every LOAD and STORE serially
  (:func:`~systolic.rtl.decoder.walk_steps` cycles) before the next word is dispatched.
* **Queues** run in order. An instruction starts when it has been dispatched
  (``+ dispatch``), its unit is free and every token it pops has been pushed
  (``+ token``); the ``k``-th pop of a channel waits for the ``k``-th push.
* **Occupancy** (cycles the unit is busy: the next instruction of the same queue starts
  after it) and **completion** (when the last write has landed and the pushes leave):

  ========  =========================================================  ================
  opcode    busy                                                       completion adds
  ========  =========================================================  ================
  LOAD      one cycle per destination row, or its AXI beats if more     ``load_tail``
            (on a 32-bit bus 1 + its bytes: one byte placed per cycle)
            (each row's own beats: rows are not merged into bursts; a
            stride-0 broadcast reads its row again every time)
            + ``load_overhead``
  STORE     rows x max(``store_row``, the row's AXI beats,              ``store_tail``
            ceil(length / lanes)) + ``store_overhead``; with the
            serial post-processor (one lane, 16-bit M) the last term
            is length x its cycles per element for the REQ_SHIFT in
            force (the longest shift's for per-channel rows, 3 for
            int32)
  MATMUL    max(n_rows, rows if preloading), or n_rows + rows when the  array latency +
            weights share the inputs' scratchpad bank or the array has  ``landing``
            at most 4 rows (one scratchpad read per cycle: the input
            reads win, the weight reads come after)
  VECTOR    n_rows x ``vector_row`` (+ ``vector_bank`` when both         ``landing``
            operands are in one accumulator bank) + ``vector_overhead``
  CONFIG,   1                                                          -
  SYNC
  ========  =========================================================  ================

  A VECTOR, and any other execute-queue instruction that pushes a token, first waits
  until the MATMULs before it have landed (the execute unit drains the array). The
  array latency is ``G_r + G_c`` pipeline groups (:func:`systolic.rtl.array.array_latency`)
  plus the scratchpad read cycle.
* The program ends ``halt`` cycles after the later of the last completion and HALT's
  fetch.

What the model leaves out: a STORE that reads the accumulator bank the array is
accumulating into waits for that accumulation (its read port goes to the array first),
and a LOAD into that bank waits too; the compiler's schedules keep those apart. Every
constant of :class:`PerfParams` was measured on the ``default`` preset in Verilator
(``scripts/bench_perf.py --calibrate``).
"""

from bisect import bisect_right
from dataclasses import dataclass, field
from math import gcd

from .checks import BINARY_VECTOR_OPS, queue_of
from .isa import ConfigReg, LoadDest, Opcode, Queue, StoreSrc, VectorOp, decode
from .numerics import OutType

__all__ = ["PerfParams", "PerfReport", "array_latency", "estimate", "estimate_compiled"]


@dataclass(frozen=True)
class PerfParams:
    """Timing constants of the model, in cycles, measured on the RTL.

    Attributes
    ----------
    fetch_latency : float
        START to the first instruction's dispatch.
    fetch_interval : float
        Cycles per fetched instruction (the fetch unit's rate: 16-byte instructions
        fetched 4 at a time, 15 cycles per group of 4 on 64-bit AXI).
    dispatch : float
        Dispatch to the earliest start in the queue.
    token : float
        A push to the start of the instruction that pops it.
    load_overhead : float
        Cycles a LOAD occupies the load queue besides its rows (command set-up and the
        read round trip of its first beat: LOADs do not overlap each other).
    load_tail : float
        End of a LOAD's occupancy to its token push (last row written).
    store_overhead : float
        Cycles a STORE occupies the store queue besides its rows (the first reads through
        post-processing and the last write response).
    store_row : float
        Least cycles per stored row (int8 rows of the default preset: 4 rows per 3
        cycles... about 1.33; int32 rows are bound by their AXI beats instead).
    store_tail : float
        End of a STORE's occupancy to its token push.
    landing : float
        Array output to the write landing in the accumulator, and to the token push.
    vector_row : float
        Cycles per VECTOR row (read both operands, compute, write).
    vector_bank : float
        Extra cycles per row when a binary VECTOR reads both operands from one bank.
    vector_overhead : float
        Cycles per VECTOR besides its rows.
    read_latency : float
        AXI read round trip, for strided LOADs bound by ``max_outstanding_reads``.
    halt : float
        From the last completion (or HALT's fetch) to done.
    array_latency : int or None
        Input row to output row of the array; ``None``: from the configuration.
    """
    fetch_latency: float = 5.5
    fetch_interval: float = 3.75
    dispatch: float = 0
    token: float = 0.5
    load_overhead: float = 9
    load_tail: float = 1
    store_overhead: float = 11.5
    store_row: float = 4 / 3
    store_tail: float = 1
    landing: float = 3
    vector_row: float = 4
    vector_bank: float = 1
    vector_overhead: float = 4.5
    read_latency: float = 3
    halt: float = 6
    array_latency: int | None = None


@dataclass
class PerfReport:
    """What :func:`estimate` returns.

    Attributes
    ----------
    cycles : int
        From start to the completion of the last instruction.
    macs : int
        Multiply-accumulates the MATMULs issue (``n_rows x rows x cols`` each).
    mac_utilization : float
        ``macs / (cycles x rows x cols)``.
    busy : dict
        Busy cycles per queue name (``load``, ``exec``, ``store``).
    instructions : int
    bytes_read, bytes_written : int
        System-memory traffic of LOAD and STORE (not counting instruction fetch).
    serial_cycles : int
        Sum of every instruction's busy time and latency (no overlap at all): an upper
        bound for any schedule.
    """
    cycles: int
    macs: int
    mac_utilization: float
    busy: dict = field(default_factory=dict)
    instructions: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    serial_cycles: int = 0

    def occupancy(self):
        """Busy fraction of each queue."""
        return {q: (b / self.cycles if self.cycles else 0.0) for q, b in self.busy.items()}


def _row_beats(addr, stride, n, row_bytes, axi):
    """AXI data beats to read or write ``n`` rows of ``row_bytes`` at ``addr + i * stride``,
    each row on its own (at least one beat per row), and the bursts they take."""
    if n <= 0 or row_bytes <= 0:
        return 0, 0
    period = axi // gcd(stride % axi, axi) if stride % axi else 1
    one = [-(-(((addr + i * stride) % axi) + row_bytes) // axi) for i in range(min(n, period))]
    full, rest = divmod(n, len(one))
    return full * sum(one) + sum(one[:rest]), n


def array_latency(config):
    """Input row to output row of the array: ``G_r + G_c`` pipeline groups, as in
    :func:`systolic.rtl.array.array_latency`."""
    g = config.pipeline_every
    if not g:
        return 2
    return -(-config.rows // g) + -(-config.cols // g)


_POP = {(Queue.LOAD, "pop_next"): "E2L", (Queue.EXEC, "pop_prev"): "L2E",
        (Queue.EXEC, "pop_next"): "S2E", (Queue.STORE, "pop_prev"): "E2S"}
_PUSH = {(Queue.LOAD, "push_next"): "L2E", (Queue.EXEC, "push_prev"): "E2L",
         (Queue.EXEC, "push_next"): "E2S", (Queue.STORE, "push_prev"): "S2E"}


def _serial_element_cycles(c, i, shift):
    """Cycles per element of the serial post-processor (one lane, 16-bit M), or None."""
    if not (c.lanes == 1 and c.requant_bits == 16) or i.src == StoreSrc.SP.value:
        return None
    from .rtl.postproc import SERIAL_ZERO_SHIFT, PostProcessor
    if OutType(i.out_type) is OutType.INT32:
        return PostProcessor.serial_cycles(0, raw=True)[0]
    if i.per_channel:
        return max(PostProcessor.serial_cycles(s)[0] for s in range(SERIAL_ZERO_SHIFT + 1))
    return PostProcessor.serial_cycles(shift)[0]


def _timing(c, p, i, lat_array, shift=0):
    """``(busy, tail, bytes_read, bytes_written)`` of one queued instruction; ``shift`` is
    the store queue's REQ_SHIFT register."""
    op = i.opcode
    axi = c.axi_bytes
    if op is Opcode.LOAD:
        eb = 1 if i.dest == LoadDest.SP.value else 4
        m = i.n_rows - i.pad_top - i.pad_bottom
        beats, bursts = _row_beats(i.dram_addr, i.stride, m, i.length * eb, axi)
        nread = m * i.length * eb if m > 0 else 0
        if axi == 4:   # the 32-bit read engine places one byte per cycle
            beats = max(m, 0) * (1 + i.length * eb)
        transfer = max(beats + i.n_rows - max(m, 0), i.n_rows,
                       bursts * p.read_latency / c.max_outstanding_reads)
        first = p.read_latency if beats else 0
        return transfer + first + p.load_overhead, p.load_tail, nread, 0
    if op is Opcode.STORE:
        if i.src == StoreSrc.SP.value:
            nb, lanes = i.length, c.sp_width
        else:
            nb, lanes = i.length * OutType(i.out_type).nbytes, c.lanes
        beats, _ = _row_beats(i.dram_addr, i.stride, i.n_rows, nb, axi)
        per_row = -(-i.length // lanes)
        element = _serial_element_cycles(c, i, shift)
        if element is not None:
            # the serial store path reads the row again for each element (2 cycles)
            per_row = i.length * (element + 2)
        rows = max(i.n_rows * p.store_row, i.n_rows * per_row, beats)
        return rows + p.store_overhead, p.store_tail, 0, i.n_rows * nb
    if op is Opcode.MATMUL:
        from .rtl.scratchpad import shared_read_path  # one scratchpad read per cycle
        n = i.n_rows if i.compute else 0
        if i.preload and n and (shared_read_path(c)
                                or i.w_addr // c.sp_depth == i.a_addr // c.sp_depth):
            busy = n + c.rows
        else:
            busy = max(n, c.rows if i.preload else 0)
        return busy, 1 + lat_array + p.landing, 0, 0
    if op is Opcode.VECTOR:
        row = p.vector_row
        if (VectorOp(i.op) in BINARY_VECTOR_OPS
                and i.src_a // c.acc_depth == i.src_b // c.acc_depth):
            row += p.vector_bank
        return i.n_rows * row + p.vector_overhead, p.landing, 0, 0
    return 1, 0, 0, 0


class _Writes:
    """Cycles the array writes each accumulator bank: merged, sorted ``[begin, end)``
    intervals, all writes and accumulating ones apart."""

    def __init__(self):
        self.spans = {}

    def add(self, key, begin, end):
        spans = self.spans.setdefault(key, [])
        if spans and begin <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([begin, end])

    def finish(self):
        for spans in self.spans.values():
            spans.sort()
        return self

    def delay(self, key, start, work):
        """When ``work`` cycles starting at ``start`` end if they cannot run while the
        array writes ``key``."""
        spans = self.spans.get(key)
        if not spans:
            return start + work
        t = start
        k = max(0, bisect_right(spans, [t, float("inf")]) - 1)
        for begin, end in spans[k:]:
            if end <= t:
                continue
            if begin - t >= work:
                break
            work -= max(0, begin - t)
            t = end
        return t + work


def estimate(config, words, params=None, *, trace=None):
    """Estimate the cycles of ``words`` (a program ending in HALT) on ``config``.

    Two passes: the second delays the STOREs and LOADs that need an accumulator bank
    while the first pass's MATMULs write it (an approximation: the MATMULs' own times
    come from the first pass).

    If ``trace`` is a list, one tuple ``(index, queue, dispatched, tokens_ready, start,
    done)`` per queued instruction is appended to it (to see what each one waited for).
    """
    p = params or PerfParams()
    words = [int(w) for w in words]
    writes = _walk(config, words, p, None, None, record=True)
    return _walk(config, words, p, writes.finish() if writes.spans else None, trace)


def _walk(config, words, p, conflicts, trace, record=False):
    """One pass of :func:`estimate`; returns the report, or with ``record`` the array's
    accumulator writes."""
    c = config
    lat_array = p.array_latency if p.array_latency is not None else array_latency(c)
    depth = {Queue.LOAD: c.load_queue_depth, Queue.EXEC: c.exec_queue_depth,
             Queue.STORE: c.store_queue_depth}
    free = dict.fromkeys(Queue, 0.0)
    starts = {q: [] for q in Queue}
    pushes = {ch: [] for ch in ("L2E", "E2L", "E2S", "S2E")}
    pops = dict.fromkeys(pushes, 0)
    busy_total = dict.fromkeys(Queue, 0.0)
    fetch = p.fetch_latency - p.fetch_interval
    end = drained = 0.0
    macs = nread = nwritten = serial = count = shift = 0
    record = _Writes() if record else None
    from .rtl.decoder import walk_steps
    decode_free = 0.0   # a walked LOAD/STORE holds decode
    for word in words:
        i = decode(word)
        count += 1
        fetch = max(fetch + p.fetch_interval, decode_free)
        if i.opcode is Opcode.HALT:
            break
        if i.opcode in (Opcode.LOAD, Opcode.STORE) and c.axi_data_width == 32:
            decode_free = fetch + walk_steps(c, i.opcode)
        q = queue_of(i)
        if q is None:
            continue
        qs = starts[q]
        if len(qs) >= depth[q]:
            fetch = max(fetch, qs[-depth[q]])
        ready = tokens = fetch + p.dispatch
        for (qq, flag), ch in _POP.items():
            if qq is q and getattr(i, flag):
                if pops[ch] >= len(pushes[ch]):
                    raise ValueError(f"instruction {count - 1} pops {ch} with no token pushed "
                                     f"before it (DEADLOCK)")
                tokens = max(tokens, pushes[ch][pops[ch]] + p.token)
                pops[ch] += 1
        pushing = any(getattr(i, flag) for (qq, flag) in _PUSH if qq is q)
        if i.opcode is Opcode.CONFIG and i.reg == ConfigReg.REQ_SHIFT.value:
            shift = i.value
        busy, tail, r, w = _timing(c, p, i, lat_array, shift)
        start = max(ready, tokens, free[q])
        if q is Queue.EXEC and i.opcode is not Opcode.MATMUL and (
                pushing or i.opcode is Opcode.VECTOR):
            start = max(start, drained)
        if conflicts is not None:
            # the array's accumulating writes take a bank's read port first (STORE);
            # any array write keeps a LOAD out of the bank
            if i.opcode is Opcode.STORE and i.src == StoreSrc.ACC.value:
                busy = conflicts.delay(("acc", i.addr // c.acc_depth), start, busy) - start
            elif i.opcode is Opcode.LOAD and i.dest == LoadDest.ACC.value:
                busy = conflicts.delay(("any", i.addr // c.acc_depth), start, busy) - start
        if depth[q] == 1:
            # a queue of depth 1 has no storage: the decoded word waits in decode until
            # its unit takes it, and every instruction behind it waits with it
            fetch = max(fetch, start)
        free[q] = start + busy
        done = start + busy + tail
        if i.opcode is Opcode.MATMUL:
            drained = max(drained, done)
            if i.compute:
                macs += i.n_rows * c.rows * c.cols
                if record is not None:
                    bank = i.c_addr // c.acc_depth
                    first = start + 1 + lat_array
                    record.add(("any", bank), first, first + busy)
                    if i.accumulate:
                        record.add(("acc", bank), first, first + busy)
        nread += r
        nwritten += w
        qs.append(start)
        if trace is not None:
            trace.append((count - 1, q.name.lower(), fetch + p.dispatch, tokens, start, done))
        busy_total[q] += busy
        serial += busy + tail
        end = max(end, done)
        for (qq, flag), ch in _PUSH.items():
            if qq is q and getattr(i, flag):
                pushes[ch].append(done)
    if record is not None:
        return record
    cycles = round(max(end, fetch) + p.halt)
    util = macs / (cycles * c.rows * c.cols) if cycles else 0.0
    return PerfReport(cycles=cycles, macs=macs, mac_utilization=util,
                      busy={q.name.lower(): round(b) for q, b in busy_total.items()},
                      instructions=count, bytes_read=nread, bytes_written=nwritten,
                      serial_cycles=round(serial + p.fetch_latency + p.halt
                                          + count * p.fetch_interval))


def estimate_compiled(program, params=None):
    """Estimates of every device step of a :class:`~systolic.compiler.CompiledProgram`
    (host steps take no accelerator cycles)."""
    return [estimate(program.config, program.step_words(s), params)
            for s in program.device_steps]
