"""Analytic cycle model of a program on a configuration.

The model walks the program once, in program order, and gives every instruction a start
and a completion time:

* **Fetch** reads instructions in program order at ``axi_bytes`` per cycle (after one
  read latency) and dispatches each to its queue; an instruction is dispatched only when
  its queue has room, i.e. when the instruction ``queue_depth`` places earlier in the same
  queue has started.
* **Queues** run their instructions in order. An instruction starts when it has been
  dispatched, its queue's unit is free and every token it pops has been pushed; the
  ``k``-th pop of a channel waits for the completion of its ``k``-th push.
* **Occupancy** (cycles the unit is busy, during which the next instruction of the same
  queue cannot start) and **completion** (when the last write has landed, i.e. when the
  tokens are pushed) per opcode:

  ========  =====================================================  =====================
  opcode    busy                                                   completion adds
  ========  =====================================================  =====================
  LOAD      max(AXI beats, destination rows, bursts x latency /    read latency + landing
            outstanding reads) + overhead
  STORE     max(rows x ceil(length / lanes), AXI beats) + overhead  write latency
  MATMUL    max(n_rows, rows if preloading) + overhead              array latency + landing
  VECTOR    n_rows + overhead                                       landing + 2
  CONFIG    1                                                       -
  SYNC      1                                                       -
  ========  =====================================================  =====================

  AXI beats count the data-bus beats each row spans (a row crossing a beat boundary
  costs one more); contiguous rows stream as one burst; a stride-0 broadcast reads its
  row once. The array latency is ``G_r + G_c`` pipeline groups
  (``rows + cols`` without ``pipeline_every``).

The result is an estimate for schedules and for checking utilization; the constants in
:class:`PerfParams` are the knobs to calibrate against RTL cycle counts.
"""

from dataclasses import dataclass, field

from .checks import queue_of
from .isa import INSTR_BYTES, LoadDest, Opcode, Queue, StoreSrc, decode
from .numerics import OutType

__all__ = ["PerfParams", "PerfReport", "estimate", "estimate_compiled"]


@dataclass(frozen=True)
class PerfParams:
    """Timing constants of the model (cycles).

    Attributes
    ----------
    read_latency : int
        From a read request to its first data beat.
    write_latency : int
        From the last write beat to the write response.
    decode : int
        From fetch to dispatch.
    landing : int
        Accumulator read-modify-write pipeline (a write accepted at t lands by t + this).
    overhead : int
        Cycles a unit spends per instruction besides moving data.
    array_latency : int or None
        Input row to output row of the array; ``None``: from the configuration.
    """
    read_latency: int = 16
    write_latency: int = 8
    decode: int = 2
    landing: int = 2
    overhead: int = 1
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


def _beats(addr, stride, n, row_bytes, axi):
    """AXI data beats to move ``n`` rows of ``row_bytes`` at ``addr`` + i * ``stride``."""
    if n <= 0 or row_bytes <= 0:
        return 0, 0
    if stride == row_bytes or n == 1:
        return -(-((addr % axi) + n * row_bytes) // axi), 1
    if stride == 0:
        return -(-((addr % axi) + row_bytes) // axi), 1
    if stride % axi == 0:
        return n * (-(-((addr % axi) + row_bytes) // axi)), n
    total = 0
    for i in range(n):
        total += -(-(((addr + i * stride) % axi) + row_bytes) // axi)
    return total, n


def _array_latency(config):
    g = config.pipeline_every
    gr = -(-config.rows // g) if g else 1
    gc = -(-config.cols // g) if g else 1
    return config.rows + config.cols if not g else config.rows + config.cols + gr + gc


_POP = {(Queue.LOAD, "pop_next"): "E2L", (Queue.EXEC, "pop_prev"): "L2E",
        (Queue.EXEC, "pop_next"): "S2E", (Queue.STORE, "pop_prev"): "E2S"}
_PUSH = {(Queue.LOAD, "push_next"): "L2E", (Queue.EXEC, "push_prev"): "E2L",
         (Queue.EXEC, "push_next"): "E2S", (Queue.STORE, "push_prev"): "S2E"}


def estimate(config, words, params=None, *, trace=None):
    """Estimate the cycles of ``words`` (a program ending in HALT) on ``config``.

    If ``trace`` is a list, one tuple ``(index, queue, dispatched, tokens_ready, start,
    done)`` per queued instruction is appended to it (to see what each one waited for).
    """
    p = params or PerfParams()
    c = config
    axi = c.axi_bytes
    lat_array = p.array_latency if p.array_latency is not None else _array_latency(c)
    depth = {Queue.LOAD: c.load_queue_depth, Queue.EXEC: c.exec_queue_depth,
             Queue.STORE: c.store_queue_depth}
    free = dict.fromkeys(Queue, 0)
    starts = {q: [] for q in Queue}
    pushes = {ch: [] for ch in ("L2E", "E2L", "E2S", "S2E")}
    pops = dict.fromkeys(pushes, 0)
    busy_total = dict.fromkeys(Queue, 0)
    fetch = p.read_latency
    end = 0
    macs = nread = nwritten = serial = count = 0
    for word in words:
        i = decode(int(word))
        count += 1
        fetch += -(-INSTR_BYTES // axi)
        if i.opcode is Opcode.HALT:
            break
        q = queue_of(i)
        if q is None:
            continue
        qs = starts[q]
        if len(qs) >= depth[q]:
            fetch = max(fetch, qs[-depth[q]])
        ready = tokens = fetch + p.decode
        for (qq, flag), ch in _POP.items():
            if qq is q and getattr(i, flag):
                if pops[ch] >= len(pushes[ch]):
                    raise ValueError(f"instruction {count - 1} pops {ch} with no token pushed "
                                     f"before it (DEADLOCK)")
                tokens = max(tokens, pushes[ch][pops[ch]])
                pops[ch] += 1
        ready = max(ready, tokens)
        op = i.opcode
        tail = 0
        if op is Opcode.LOAD:
            eb = 1 if i.dest == LoadDest.SP.value else 4
            m = i.n_rows - i.pad_top - i.pad_bottom
            beats, bursts = _beats(i.dram_addr, i.stride, m, i.length * eb, axi)
            if m and i.length:
                nread += (1 if i.stride == 0 else m) * i.length * eb
            burst_time = bursts * p.read_latency // c.max_outstanding_reads
            busy = max(beats, i.n_rows, burst_time) + p.overhead
            tail = (p.read_latency if beats else 0) + p.landing
        elif op is Opcode.STORE:
            nb = i.length if i.src == StoreSrc.SP.value else i.length * OutType(i.out_type).nbytes
            beats, _ = _beats(i.dram_addr, i.stride, i.n_rows, nb, axi)
            nwritten += i.n_rows * nb
            lanes = c.lanes if i.src == StoreSrc.ACC.value else c.sp_width
            busy = max(i.n_rows * -(-i.length // lanes), beats) + p.overhead
            tail = p.write_latency
        elif op is Opcode.MATMUL:
            rows = i.n_rows if i.compute else 0
            busy = max(rows, c.rows if i.preload else 0) + p.overhead
            tail = lat_array + p.landing
            macs += rows * c.rows * c.cols
        elif op is Opcode.VECTOR:
            busy = i.n_rows + p.overhead
            tail = p.landing + 2
        else:
            busy = 1
        start = max(ready, free[q])
        free[q] = start + busy
        done = start + busy + tail
        qs.append(start)
        if trace is not None:
            trace.append((count - 1, q.name.lower(), fetch + p.decode, tokens, start, done))
        busy_total[q] += busy
        serial += busy + tail
        end = max(end, done)
        for (qq, flag), ch in _PUSH.items():
            if qq is q and getattr(i, flag):
                pushes[ch].append(done)
    cycles = max(end, fetch)
    util = macs / (cycles * c.rows * c.cols) if cycles else 0.0
    return PerfReport(cycles=cycles, macs=macs, mac_utilization=util,
                      busy={q.name.lower(): b for q, b in busy_total.items()},
                      instructions=count, bytes_read=nread, bytes_written=nwritten,
                      serial_cycles=serial + p.read_latency + count * -(-INSTR_BYTES // axi))


def estimate_compiled(program, params=None):
    """Estimates of every device step of a :class:`~systolic.compiler.CompiledProgram`
    (host steps take no accelerator cycles)."""
    return [estimate(program.config, program.step_words(s), params)
            for s in program.device_steps]
