"""Controller: instruction fetch, in-order decode with decode-side token accounting,
dispatch into the three decoupled queues, execution-side token counters and errors."""

from amaranth.hdl import Array, Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from systolic.isa import CONFIG_QUEUE, INSTR_BYTES, MAX_TOKENS, ErrorCode, Opcode, Queue

from .decoder import CHANNEL_ORDER, UOP_OPS, Decoder, body_leaks, uop_layout
from .dma_read import FetchCmd
from .scratchpad import check_config

__all__ = ["Controller", "FETCH_BUFFER", "FETCH_CHUNK", "TAG_BITS"]

FETCH_BUFFER = 8   # instruction words buffered between fetch and decode
FETCH_CHUNK = 4    # words per fetch command
WORD_KEPT = 116    # instruction bits the buffer keeps: no layout reaches past them
TAG_BITS = 8       # low bits of the instruction index kept with a LOAD/STORE-queue entry

# channel -> (producer queue, push flag), (consumer queue, pop flag)
_PRODUCER = {"L2E": (Queue.LOAD, "push_next"), "E2L": (Queue.EXEC, "push_prev"),
             "E2S": (Queue.EXEC, "push_next"), "S2E": (Queue.STORE, "push_prev")}
_CONSUMER = {"L2E": (Queue.EXEC, "pop_prev"), "E2L": (Queue.LOAD, "pop_next"),
             "E2S": (Queue.STORE, "pop_prev"), "S2E": (Queue.EXEC, "pop_next")}
QUEUES = (Queue.LOAD, Queue.EXEC, Queue.STORE)
TAGGED = (Queue.LOAD, Queue.STORE)   # queues whose units can report an AXI error


def _bits(n):
    """Bits that hold every value 0..n."""
    return max(1, int(n).bit_length())


def _step(counter, up, down):
    """``counter + up - down`` for one-bit ``up``, ``down``: one adder of +1, -1 or 0."""
    return (counter + Cat(up ^ down, (down & ~up).replicate(len(counter) - 1)))[:len(counter)]


def stored_bits(config, queue):
    """Bit positions of ``uop_layout(queue)`` that a dispatched micro-op may set.

    Only instructions without a static error are dispatched, so fields the checks bound
    (on-chip rows, row lengths), the opcodes and token flags a queue never sees, CONFIG
    registers of other queues and, without a vector unit, VECTOR bodies are always zero:
    the queue stores the other bits only and the controller puts the zeros back.
    """
    c = config
    ops = [op for op in UOP_OPS[queue] if op is not Opcode.VECTOR or c.vector_unit]
    opcodes = 0
    for op in (Opcode.CONFIG, Opcode.SYNC, *ops):
        opcodes |= op.value
    regs = 0
    for reg, q in CONFIG_QUEUE.items():
        if q is queue and (c.vector_unit or not reg.name.startswith("VEC_")):
            regs |= reg.value
    flags = {Queue.LOAD: ("pop_next", "push_next"), Queue.STORE: ("pop_prev", "push_prev"),
             Queue.EXEC: ("pop_prev", "pop_next", "push_prev", "push_next")}[queue]
    load_rows = max(c.sp_rows, c.acc_rows, c.param_rows)
    store_rows = max(c.sp_rows, c.acc_rows)
    width = max(c.sp_width, c.cols)
    limits = {   # (opcode, field) -> largest value of a dispatched instruction
        (Opcode.LOAD, "addr"): load_rows - 1, (Opcode.LOAD, "n_rows"): load_rows,
        (Opcode.LOAD, "length"): width, (Opcode.LOAD, "pad_left"): width,
        (Opcode.STORE, "addr"): store_rows - 1, (Opcode.STORE, "n_rows"): store_rows,
        (Opcode.STORE, "length"): width,
    }
    layout = data.Layout.cast(uop_layout(queue))
    keep = set()

    def take(offset, width, value_bits=None):
        keep.update(offset + i for i in range(width if value_bits is None
                                              else min(width, value_bits)))

    take(layout["opcode"].offset, 4, None)
    keep.difference_update(layout["opcode"].offset + i for i in range(4)
                           if not opcodes >> i & 1)
    for flag in flags:
        take(layout[flag].offset, 1)
    body = layout["body"].offset
    config_body = data.Layout.cast(layout["body"].shape["config"].shape)
    keep.update(body + config_body["reg"].offset + i for i in range(4) if regs >> i & 1)
    take(body + config_body["value"].offset, config_body["value"].width)
    for op in ops:
        for name, field in data.Layout.cast(layout["body"].shape[op.name.lower()].shape):
            limit = limits.get((op, name))
            take(body + field.offset, field.width, None if limit is None else _bits(limit))
    return sorted(keep)


class _Fifo(Elaboratable):
    """First-word-fall-through FIFO with the timing of ``amaranth.lib.fifo.SyncFIFOBuffered``
    (``depth - 1`` entries behind a registered head; ``w_rdy`` while those are not all
    used; a word written into an empty FIFO is at the head two cycles later).

    With ``memory`` the entries are a memory whose read/write collisions need no care (a
    full FIFO is not written, an empty one not read), so an FPGA block RAM holds them
    without bypass logic. Otherwise they are flip-flops, and ``clear`` lists
    ``(bit positions, keep)`` pairs: a written entry takes zeros in those bits unless
    ``keep`` is high, which the flip-flops' synchronous reset does without a gate per bit;
    ``w_en`` must then only be raised while ``w_rdy`` (it is not gated again, which keeps
    the dispatch decision off the entries' enables).
    """

    def __init__(self, width, depth, *, memory=False, clear=()):
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"FIFO depth must be an integer of at least 2, not {depth!r}")
        self.width, self.depth, self.memory, self.clear = width, depth, memory, clear
        self.w_data = Signal(width)
        self.w_en = Signal()
        self.w_rdy = Signal()
        self.r_data = Signal(width, reset_less=True)
        self.r_en = Signal()
        self.r_rdy = Signal()
        self.level = Signal(range(depth + 1))

    def elaborate(self, platform):
        m = Module()
        inner = self.depth - 1
        inner_level = Signal(range(inner + 1))
        produce = Signal(range(inner))
        consume = Signal(range(inner))
        # a queue's w_en is only raised while w_rdy (the controller dispatches on it)
        do_write = self.w_en & (self.w_rdy if self.memory else 1)
        do_read = (inner_level != 0) & (~self.r_rdy | self.r_en)
        m.d.comb += [self.w_rdy.eq(inner_level != inner),
                     self.level.eq(inner_level + self.r_rdy)]
        if self.memory:
            m.submodules.storage = mem = Memory(shape=self.width, depth=inner, init=[],
                                                attrs={"no_rw_check": 1})
            wp = mem.write_port()
            rp = mem.read_port(domain="sync")
            m.d.comb += [wp.addr.eq(produce), wp.data.eq(self.w_data), wp.en.eq(do_write),
                         rp.addr.eq(consume), rp.en.eq(do_read), self.r_data.eq(rp.data)]
        else:
            entries = [Signal(self.width, name=f"entry{i}", reset_less=True)
                       for i in range(inner)]
            for i, entry in enumerate(entries):
                with m.If(do_write & (produce == i)):
                    m.d.sync += entry.eq(self.w_data)
                    for positions, keep in self.clear:
                        with m.If(~keep):
                            m.d.sync += [entry[p].eq(0) for p in positions]
            with m.If(do_read):
                m.d.sync += self.r_data.eq(Array(entries)[consume])
        with m.If(do_write):
            m.d.sync += produce.eq(Mux(produce == inner - 1, 0, produce + 1))
        with m.If(do_read):
            m.d.sync += consume.eq(Mux(consume == inner - 1, 0, consume + 1))
        with m.If(do_write & ~do_read):
            m.d.sync += inner_level.eq(inner_level + 1)
        with m.If(do_read & ~do_write):
            m.d.sync += inner_level.eq(inner_level - 1)
        with m.If(do_read):
            m.d.sync += self.r_rdy.eq(1)
        with m.Elif(self.r_en):
            m.d.sync += self.r_rdy.eq(0)
        return m


class _FetchBuffer(Elaboratable):
    """Instruction words between fetch and decode, in one memory of ``segments`` narrow
    segments per word (``WORD_KEPT + 2`` bits split evenly), one address per segment.

    A word offered on ``w_valid`` is written one segment per cycle; ``w_ready`` rises with
    its last segment (the offer stays stable meanwhile, as on a stream). Room must be
    reserved before words are requested: ``w_valid`` is not gated by a full buffer.
    Reading gathers the head word's segments, all but the last in a register, the last
    at the memory's read port: ``r_rdy`` is high once they are all read and ``r_data``
    is the word until ``r_en``; a following word already stored starts being read in
    the cycle of ``r_en``, so a word takes ``segments`` cycles. ``clear`` empties the
    buffer.
    """

    def __init__(self, width, depth, segments):
        self.width, self.depth, self.segments = width, depth, segments
        self.seg_width = -(-width // segments)
        self.w_data = Signal(width)
        self.w_valid = Signal()
        self.w_ready = Signal()
        self.r_data = Signal(width)
        self.r_rdy = Signal()
        self.r_en = Signal()
        self.level = Signal(range(depth + 1))     # words written and not yet read out
        self.clear = Signal()

    def elaborate(self, platform):
        m = Module()
        n, sw, last = self.segments, self.seg_width, self.segments - 1
        mem = m.submodules.storage = Memory(shape=sw, depth=self.depth * n, init=[],
                                            attrs={"no_rw_check": 1})
        wp = mem.write_port()
        # ``no_rw_check``: this register becomes the block RAM's read register without
        # read-during-write emulation (a slot is not read while it is written)
        rp = mem.read_port(domain="comb")
        read = Signal(sw, reset_less=True)
        m.d.sync += read.eq(rp.data)
        produce = Signal(range(self.depth))
        consume = Signal(range(self.depth))
        padded = Signal(sw * n)
        m.d.comb += padded.eq(self.w_data)
        w_seg = Signal(range(n))
        if n > 1:
            m.d.comb += [wp.data.eq(padded.word_select(w_seg, sw)),
                         wp.addr.eq(Cat(w_seg, produce)),
                         self.w_ready.eq(w_seg == last)]
            with m.If(self.w_valid):
                m.d.sync += w_seg.eq(Mux(w_seg == last, 0, w_seg + 1))
        else:
            m.d.comb += [wp.data.eq(padded), wp.addr.eq(produce), self.w_ready.eq(1)]
        m.d.comb += wp.en.eq(self.w_valid)
        stored = self.w_valid & self.w_ready

        # r_seg: segments of the head word read so far (the last one's data is at the port)
        r_seg = Signal(range(n + 1))
        m.d.comb += self.r_rdy.eq(r_seg == n)
        head_stored = self.level != 0
        nxt = Signal(range(self.depth))
        m.d.comb += nxt.eq(Mux(consume == self.depth - 1, 0, consume + 1))
        gathered = [Signal(sw, name=f"segment{i}") for i in range(last)]
        m.d.comb += self.r_data.eq(Cat(*gathered, read))
        # the port reads every cycle: the head's last segment stays at it while r_rdy
        seg = Signal(range(n))
        m.d.comb += seg.eq(Mux(self.r_rdy, last, r_seg))
        with m.If(self.r_en):
            # the next word, if stored, starts now
            m.d.comb += rp.addr.eq(Cat(Const(0, len(seg)), nxt))
            m.d.sync += [consume.eq(nxt), r_seg.eq(self.level > 1)]
        with m.Else():
            m.d.comb += rp.addr.eq(Cat(seg, consume))
            with m.If(~self.r_rdy & head_stored):
                m.d.sync += r_seg.eq(r_seg + 1)
                for i, g in enumerate(gathered):
                    with m.If(r_seg == i + 1):
                        m.d.sync += g.eq(read)
        with m.If(stored):
            m.d.sync += produce.eq(Mux(produce == self.depth - 1, 0, produce + 1))
        m.d.sync += self.level.eq(self.level + stored - self.r_en)
        with m.If(self.clear):
            m.d.sync += [produce.eq(0), consume.eq(0), r_seg.eq(0), self.level.eq(0),
                         w_seg.eq(0)]
        return m


class Controller(wiring.Component):
    """Fetch, decode and dispatch; see ``docs/accelerator.md`` for the timing.

    Micro-ops carry no instruction index. An entry of the load and store queues keeps the
    index's low :data:`TAG_BITS` bits, and decode never runs more than ``2**TAG_BITS - 1``
    instructions ahead of such a queue's head (it waits otherwise, which cannot deadlock:
    the dispatched instructions are a prefix of the program whose pops all have earlier
    pushes). So when a unit takes a micro-op, its full index is the decode index minus
    the tag's distance, and an AXI error of that unit reports it.

    Parameters
    ----------
    config : AcceleratorConfig

    Attributes
    ----------
    start : In(1)
        Begin a program (CSR strobe).
    prog_addr, prog_len : In(32)
    busy : Out(1)
    done : Out(1)
        One-cycle strobe: the program finished.
    error_we : Out(1)
        Record ``error_code`` and ``error_index`` (the CSR block keeps them: it clears them
        at START and shows them from ``done`` on).
    error_held : In(1)
        An error has been recorded since START.
    error_held_index : In(32)
        Its index: a unit's AXI error replaces it only with a lower index.
    fetch_cmd, fetch_words : the read engine's fetch streams.
    load, exec, store : Out(stream.Signature(uop_layout(queue)))
        Queue heads, ``valid`` only when the head's tokens are available. A queue of
        depth 1 has no storage: its head is the checked word at the head of the
        instruction buffer, offered until the unit takes it (decode waits meanwhile), and
        the index of the micro-op its unit took is kept whole.
    push : In(data.ArrayLayout(2, 3))
        Per queue, ``[prev, next]`` push strobes from the units.
    unit_error : In(3)
        AXI error strobes of the units, for the micro-op each unit took last.
    units_idle : In(1)
    stall_token, stall_fetch, instret : Out(1)
        Performance events.
    """

    def __init__(self, *, config):
        check_config(config, "Controller")
        self.config = config
        super().__init__({
            "start": In(1),
            "prog_addr": In(32),
            "prog_len": In(32),
            "busy": Out(1),
            "done": Out(1),
            "error_we": Out(1),
            "error_code": Out(ErrorCode),
            "error_index": Out(32),
            "error_held": In(1),
            "error_held_index": In(32),
            "fetch_cmd": Out(stream.Signature(FetchCmd)),
            "fetch_words": In(stream.Signature(data.StructLayout(
                {"data": 128, "error": 1, "last": 1}))),
            "load": Out(stream.Signature(uop_layout(Queue.LOAD))),
            "exec": Out(stream.Signature(uop_layout(Queue.EXEC))),
            "store": Out(stream.Signature(uop_layout(Queue.STORE))),
            "push": In(data.ArrayLayout(2, 3)),
            "unit_error": In(3),
            "units_idle": In(1),
            "stall_token": Out(1),
            "stall_fetch": Out(1),
            "instret": Out(1),
        })

    def elaborate(self, platform):
        c = self.config
        m = Module()
        m.submodules.decoder = dec = Decoder(config=c)
        depths = {Queue.LOAD: c.load_queue_depth, Queue.EXEC: c.exec_queue_depth,
                  Queue.STORE: c.store_queue_depth}
        # a queue of depth 1 has no storage here: the decoded word is offered to its unit
        direct = [q for q in QUEUES if depths[q] == 1]
        fifos = {}
        stored = {q: stored_bits(c, q) for q in QUEUES}
        heads = {}      # each queue's head as a whole micro-op, dropped bits zero
        code = Signal(4)                 # opcode of the word being decoded
        leaks = {}      # per queue: (micro-op bit positions, keep) of dropped-field bits
        for q in QUEUES:
            # body bits where the word has a field the micro-op does not keep are cleared
            body = data.Layout.cast(uop_layout(q))["body"].offset
            leaks[q] = [([body + b for b in bits if body + b in stored[q]], code != op.value)
                        for op, bits in body_leaks(q).items()]
            if q in direct:
                continue
            tag = TAG_BITS if q in TAGGED else 0
            where = {pos: i for i, pos in enumerate(stored[q])}
            clear = [([where[pos] for pos in positions], keep)
                     for positions, keep in leaks[q] if positions]
            f = _Fifo(len(stored[q]) + tag, depths[q], clear=clear)
            m.submodules[f"{q.name.lower()}_queue"] = f
            fifos[q] = f
        outs = {Queue.LOAD: self.load, Queue.EXEC: self.exec, Queue.STORE: self.store}

        running = Signal()        # between START and done
        stopping = Signal()       # no more dispatch: HALT, end of program or an error
        m.d.comb += self.busy.eq(running)

        def report(code, index, *, unit=False):
            # Decode-side errors stop decode, so none was recorded before them (a unit
            # error in the same cycle has a lower index and is written after them); only a
            # unit's error can follow another one and needs the index comparison.
            with m.If(~self.error_held | (index < self.error_held_index) if unit else 1):
                m.d.comb += [self.error_we.eq(1), self.error_code.eq(code),
                             self.error_index.eq(index)]

        # -- fetch ----------------------------------------------------------------------------
        # A word keeps its first WORD_KEPT bits, with bit WORD_KEPT standing for the bits
        # above (reserved in every layout, so only their OR matters to decode), and the
        # fetch error: 118 bits. With a 32-bit bus a word arrives over 4 beats anyway, so
        # the buffer stores it as 4 segments of 30 bits (two iCE40 block RAMs).
        segments = 4 if c.axi_data_width == 32 else 1
        m.submodules.ibuf = ibuf = _FetchBuffer(WORD_KEPT + 2, FETCH_BUFFER, segments)
        # Commands ask for FETCH_CHUNK words until fewer are left, then for the rest.
        chunk_bits = exact_log2(FETCH_CHUNK)
        chunks = Signal(32 - chunk_bits)   # whole chunks requested
        tail_sent = Signal()               # the last, partial chunk requested
        whole = Signal()                   # every whole chunk requested
        tail = self.prog_len[:chunk_bits]
        requested = Signal()               # every word requested
        m.d.comb += [whole.eq(chunks == self.prog_len[chunk_bits:]),
                     requested.eq(whole & (tail_sent | (tail == 0)))]
        shift = exact_log2(INSTR_BYTES)
        base = self.prog_addr[shift:]      # word address of the program (held while busy)
        in_flight = Signal(range(FETCH_BUFFER + 1))
        fetching = Signal()
        free = Signal(range(FETCH_BUFFER + 1))
        m.d.comb += free.eq(FETCH_BUFFER - ibuf.level - in_flight)
        count = Signal(range(FETCH_CHUNK + 1))
        m.d.comb += count.eq(Mux(whole, tail, FETCH_CHUNK))
        m.d.comb += [
            self.fetch_cmd.valid.eq(running & ~stopping & ~fetching & ~requested
                                    & (free >= FETCH_CHUNK)),
            self.fetch_cmd.p.addr.eq(Cat(Const(0, shift), base[:chunk_bits],
                                         base[chunk_bits:] + chunks)),
            self.fetch_cmd.p.count.eq(count),
        ]
        with m.If(self.fetch_cmd.valid & self.fetch_cmd.ready):
            m.d.sync += fetching.eq(1)
            with m.If(whole):
                m.d.sync += tail_sent.eq(1)
            with m.Else():
                m.d.sync += chunks.eq(chunks + 1)
        # words of a stopped program still arriving are dropped
        keep = running & ~stopping
        m.d.comb += [
            ibuf.w_valid.eq(self.fetch_words.valid & keep),
            self.fetch_words.ready.eq(ibuf.w_ready | ~keep),   # room reserved at command
            ibuf.w_data.eq(Cat(self.fetch_words.p.data[:WORD_KEPT],
                               self.fetch_words.p.data[WORD_KEPT:] != 0,
                               self.fetch_words.p.error)),
        ]
        word_in = self.fetch_words.valid & self.fetch_words.ready
        with m.If(word_in & self.fetch_words.p.last):
            m.d.sync += fetching.eq(0)
        m.d.sync += in_flight.eq(in_flight
                                 + Mux(self.fetch_cmd.valid & self.fetch_cmd.ready, count, 0)
                                 - word_in)

        # -- decode and dispatch --------------------------------------------------------------
        index = Signal(32)           # index of the word at the head of ibuf
        dec_tokens = {ch: Signal(range(MAX_TOKENS + 1), name=f"dec_{ch}")
                      for ch in CHANNEL_ORDER}
        m.d.comb += [dec.word.eq(ibuf.r_data[:WORD_KEPT + 1]), code.eq(ibuf.r_data[:4])]
        head = ibuf.r_rdy & running & ~stopping
        # per direct queue: the head word passed every check and is offered to its unit;
        # an offered word is taken even after a stop, as a queued micro-op would be
        offer = {q: Signal(name=f"offer_{q.name.lower()}") for q in direct}
        offering = Cat(*offer.values()).any() if direct else Const(0)
        m.d.comb += [dec.valid.eq(head | offering), dec.next.eq(ibuf.r_en)]
        to_direct = Const(0)
        for q in direct:
            to_direct = to_direct | (dec.queue == q.value)
        word_error = ibuf.r_data[WORD_KEPT + 1]
        pop_bad = 0
        push_bad = 0
        for i, ch in enumerate(CHANNEL_ORDER):
            pop_bad = pop_bad | (dec.pops[i] & (dec_tokens[ch] == 0))
            push_bad = push_bad | (dec.pushes[i] & (dec_tokens[ch] >= MAX_TOKENS))
        has_room = Signal()
        with m.Switch(dec.queue):
            for q in fifos:
                with m.Case(q.value):
                    m.d.comb += has_room.eq(fifos[q].w_rdy)
            with m.Default():
                m.d.comb += has_room.eq(1)
        for q in fifos:
            uop = Signal(uop_layout(q), name=f"dispatch_{q.name.lower()}")
            m.d.comb += uop.eq(getattr(dec, f"uop_{q.name.lower()}"))
            tag = [index[:TAG_BITS]] if q in TAGGED else []
            m.d.comb += fifos[q].w_data.eq(Cat(*(uop.as_value()[i] for i in stored[q]), *tag))
        # the head of a tagged queue at the largest distance its tag can tell: wait
        far = 0
        distance = {}   # instructions decoded since a tagged queue's head
        head_tag = {}   # index bits of a tagged queue's head
        borrow = {}     # head_tag above index's low bits: the head is from the previous wrap
        for q in (q for q in TAGGED if q in fifos):
            head_tag[q] = fifos[q].r_data[len(stored[q]):]
            diff = Signal(TAG_BITS + 1, name=f"diff_{q.name.lower()}")
            m.d.comb += diff.eq(index[:TAG_BITS] - head_tag[q])
            distance[q], borrow[q] = diff[:TAG_BITS], diff[TAG_BITS]
            far = far | (fifos[q].r_rdy & (distance[q] == 2 ** TAG_BITS - 1))
        dispatch = Signal()
        with m.If(head & ~offering):
            with m.If(word_error):
                report(ErrorCode.AXI_ERROR, index)
                m.d.sync += stopping.eq(1)
            with m.Elif(~dec.ready):
                pass                            # a LOAD/STORE extent still being checked
            with m.Elif(dec.error != ErrorCode.NONE):
                report(dec.error, index)
                m.d.sync += stopping.eq(1)
            with m.Elif(pop_bad):
                report(ErrorCode.DEADLOCK, index)
                m.d.sync += stopping.eq(1)
            with m.Elif(push_bad):
                report(ErrorCode.TOKEN_OVERFLOW, index)
                m.d.sync += stopping.eq(1)
            with m.Elif(far):
                m.d.comb += self.stall_fetch.eq(1)
            with m.Elif(dec.halt):
                m.d.comb += [ibuf.r_en.eq(1), self.instret.eq(1)]
                m.d.sync += stopping.eq(1)
            with m.Elif(to_direct):
                # decode commits the word here; it leaves the buffer when its unit takes it
                m.d.sync += [offer[q].eq(dec.queue == q.value) for q in direct]
                m.d.sync += [dec_tokens[ch].eq(_step(dec_tokens[ch], dec.pushes[i], dec.pops[i]))
                             for i, ch in enumerate(CHANNEL_ORDER)]
            with m.Elif(has_room):
                m.d.comb += [ibuf.r_en.eq(1), dispatch.eq(1)]
                m.d.sync += index.eq(index + 1)
                for q in fifos:
                    m.d.comb += fifos[q].w_en.eq(dec.queue == q.value)
                for i, ch in enumerate(CHANNEL_ORDER):
                    m.d.sync += dec_tokens[ch].eq(_step(dec_tokens[ch], dec.pushes[i],
                                                        dec.pops[i]))
            with m.Else():
                m.d.comb += self.stall_fetch.eq(1)
        # every word requested, arrived and dispatched: index is PROG_LEN
        with m.If(running & ~stopping & (ibuf.level == 0) & requested & ~fetching):
            report(ErrorCode.PROGRAM_END, index)
            m.d.sync += stopping.eq(1)
        # instructions retire at dispatch (in program order, at most one per cycle)
        with m.If(dispatch):
            m.d.comb += self.instret.eq(1)

        # -- execution-side tokens and queue heads --------------------------------------------
        # at most MAX_TOKENS decoded pushes ahead of the decoded pops, and the pops still
        # in the consumer's queue (at most its depth): 9 bits
        tokens = {ch: Signal(range(MAX_TOKENS + 64 + 1), name=f"tok_{ch}")
                  for ch in CHANNEL_ORDER}
        take = {}
        held = {}       # full index of the micro-op each tagged unit took last
        for q in QUEUES:
            out = outs[q]
            head_uop = heads[q] = Signal(uop_layout(q), name=f"head_{q.name.lower()}")
            bits = [Const(0, 1)] * uop_layout(q).size
            if q in fifos:
                present = fifos[q].r_rdy
                for i, pos in enumerate(stored[q]):
                    bits[pos] = fifos[q].r_data[i]
            else:
                # the offered word's bits, the dropped-field bits cleared
                present = offer[q]
                uop = getattr(dec, f"uop_{q.name.lower()}").as_value()
                for pos in stored[q]:
                    bits[pos] = uop[pos]
                for positions, keep in leaks[q]:
                    for pos in positions:
                        bits[pos] = bits[pos] & keep
            m.d.comb += head_uop.eq(Cat(*bits))
            ok = 1
            for ch in CHANNEL_ORDER:
                cq, flag = _CONSUMER[ch]
                if cq is q:
                    ok = ok & (~getattr(head_uop, flag) | (tokens[ch] != 0))
            m.d.comb += [out.p.eq(head_uop), out.valid.eq(present & ok)]
            take[q] = out.valid & out.ready
            if q in fifos:
                m.d.comb += fifos[q].r_en.eq(take[q])
            else:
                with m.If(take[q]):
                    m.d.comb += [ibuf.r_en.eq(1), dispatch.eq(1)]
                    m.d.sync += [index.eq(index + 1), offer[q].eq(0)]
                with m.If(present & ok & ~out.ready):
                    m.d.comb += self.stall_fetch.eq(1)    # decode waits on the unit
            if q in TAGGED:
                taken = held[q] = Signal(32, name=f"taken_{q.name.lower()}")
                with m.If(take[q]):
                    m.d.sync += taken.eq(index if q in direct else
                                         Cat(head_tag[q], index[TAG_BITS:] - borrow[q]))
            with m.If(present & ~ok):
                m.d.comb += self.stall_token.eq(1)
        for ch in CHANNEL_ORDER:
            pq, pflag = _PRODUCER[ch]
            cq, cflag = _CONSUMER[ch]
            pushed = self.push[pq.value][0 if pflag == "push_prev" else 1]
            popped = take[cq] & getattr(heads[cq], cflag)
            m.d.sync += tokens[ch].eq(_step(tokens[ch], pushed, popped))

        # one comparison for both units: when both fail in the same cycle, the STORE's
        # index is the one compared and kept
        failed = held[TAGGED[0]]
        for q in TAGGED[1:]:
            failed = Mux(self.unit_error[q.value], held[q], failed)
        with m.If(Cat(self.unit_error[q.value] for q in TAGGED).any()):
            report(ErrorCode.AXI_ERROR, failed, unit=True)
            m.d.sync += stopping.eq(1)

        # -- completion -----------------------------------------------------------------------
        empty = ~offering
        for q in fifos:
            empty = empty & ~fifos[q].r_rdy
        finished = Signal()
        m.d.comb += finished.eq(running & stopping & empty & self.units_idle & ~fetching
                                & (in_flight == 0) & (self.unit_error == 0))
        with m.If(finished):
            m.d.comb += self.done.eq(1)
            m.d.sync += running.eq(0)

        with m.If(self.start):
            m.d.comb += ibuf.clear.eq(1)
            m.d.sync += [running.eq(1), stopping.eq(0), index.eq(0),
                         chunks.eq(0), tail_sent.eq(0)]
            m.d.sync += [t.eq(0) for t in dec_tokens.values()]
            m.d.sync += [o.eq(0) for o in offer.values()]
            m.d.sync += [t.eq(0) for t in tokens.values()]
        return m
