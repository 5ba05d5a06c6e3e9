"""DMA read engine: instruction fetch and LOAD blocks over the AXI4 read channels.

Two clients share the AR/R channels, one command at a time (a fetch command waiting
wins over a LOAD waiting); the next command's addresses go out while the previous one's
data still arrives, so back-to-back commands stream. A LOAD is taken only once the
previous LOAD's last row is in the row register (the LOAD's byte window and pad value
live in one set of registers that the merger reads); a fetch may overlap it.

Pipeline::

    commands -> planner -> burst splitter -> AR                        (address side)
                                         \\-> (burst queue) -> merger <- R   (data side)

The planner walks a command one destination row per cycle and hands each row to the
burst splitter: a memory row as a span (address, beats), a pad row as one beat that
issues no AR, so rows of all padding issue no AXI read; a fetch command goes to the
splitter straight from ``fetch_cmd``. The row's descriptor (fetch, last row, pad row,
lane of its first byte) rides the splitter's tag into a queue with one entry per burst in
flight, which also says whether the burst ends its span; the queue's depth limits the
bursts in flight to ``outstanding``. The merger places R bytes into a row register and
fills the rest with the pad value. All reads use ARID 0, so data returns in order.

Two mergers, chosen by the bus width:

- 32-bit bus (byte-serial, :meth:`ReadEngine._serial_merger`): a LOAD row takes one cycle
  to preset the row register with the pad value, then one cycle per memory byte placed
  (the byte's lane is picked from the beat; the row register has no realigning shifter);
  a fetch word takes one cycle per byte (16). A beat is taken with the last byte that
  the row uses from it.
- 64- and 128-bit buses (:meth:`ReadEngine._wide_merger`): one R beat per cycle, rotated
  to its byte position (the realigner) and written into a row register preset with the
  pad pattern on the row's first beat.

Either way a row is offered on its stream the cycle after its last beat or byte (a pad
row: the cycle after it reaches the merger) and the next row starts in the same cycle as
that row's handshake; a row or word held by back-pressure (ready low) stays on its
stream unchanged. A command's first AR leaves 2 cycles after its command handshake
(planner, splitter). A memory row of ``bytes`` at address ``a`` costs
``ceil((a % B + bytes) / B)`` beats for a bus of ``B`` bytes.
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4Signature, Burst
from .dma_common import BurstSplitter, check_config, row_bytes

__all__ = ["FetchCmd", "LoadCmd", "ReadEngine"]


class FetchCmd(data.Struct):
    """Instruction fetch: ``count`` 128-bit words from ``addr`` (16-byte aligned).
    A count of 0 acts as 1."""
    addr: 32
    count: 16


class LoadCmd(data.Struct):
    """A 2-D block read, matching the ISA's LOAD.

    Destination rows ``0 .. n_rows-1``: the first ``pad_top`` and the last ``pad_bottom``
    are pad rows; memory row ``r`` (counting from the first row after the top pads) is read
    from ``dram_addr + r * stride``, ``length`` elements of ``elem_bytes`` (1 or 4) bytes,
    and placed after ``pad_left`` pad elements. Destination elements beyond
    ``pad_left + length`` (up to ``row_elems``) are pads too. Pads are ``pad_value`` when
    ``elem_bytes`` is 1, and 0 when it is 4. An ``n_rows`` of 0 acts as 1 (the decoder
    rejects it).
    """
    dram_addr: 32
    stride: 24
    n_rows: 13
    pad_top: 4
    pad_bottom: 4
    length: 7
    pad_left: 6
    elem_bytes: 3
    row_elems: 7
    pad_value: 8


def _desc_layout(lg):
    """A destination row (a fetch command: all its words) for the merger."""
    return data.StructLayout({
        "fetch": 1,
        "last": 1,                  # the command's final descriptor
        "mem": 1,                   # takes R beats (0: a pad row)
        "off": lg,                  # lane of the row's first memory byte in its beat
    })


class ReadEngine(wiring.Component):
    """The DMA read engine.

    Parameters
    ----------
    config : AcceleratorConfig
        Gives ``axi_data_width`` (bus width), ``sp_width`` and ``cols`` (row width).
    outstanding : int or None
        Read bursts in flight (1..64); ``None`` takes ``config.max_outstanding_reads``.

    Members
    -------
    bus : Out(AXI4Signature)
        The AR and R channels are driven; AW, W and B are idle.
    fetch_cmd : In(stream.Signature(FetchCmd))
    fetch_words : Out(stream.Signature(Struct(data: 128, error: 1, last: 1)))
        One word per fetched instruction; ``error`` when an R beat of it had SLVERR or
        DECERR, ``last`` on the command's final word. A word waits on its stream while
        ``ready`` is low.
    load_cmd : In(stream.Signature(LoadCmd))
    load_rows : Out(stream.Signature(Struct(data: 8 * row_bytes, last: 1)))
        Destination rows in order; a row uses its low ``row_elems * elem_bytes`` bytes.
    load_done : Out(stream.Signature(Struct(error: 1)))
        One result per LOAD, after its last row's handshake; ``error`` when any R beat of
        the command had SLVERR or DECERR (the command still runs to its end).
    """

    def __init__(self, config, *, outstanding=None):
        check_config(config)
        if outstanding is None:
            outstanding = config.max_outstanding_reads
        if not isinstance(outstanding, int) or not 1 <= outstanding <= 64:
            raise ValueError(f"outstanding reads must be an integer in 1..64, "
                             f"not {outstanding!r}")
        self.config = config
        self.outstanding = outstanding
        self.row_bytes = row_bytes(config)
        super().__init__({
            "bus": Out(AXI4Signature.from_config(config)),
            "fetch_cmd": In(stream.Signature(FetchCmd)),
            "fetch_words": Out(stream.Signature(data.StructLayout(
                {"data": 128, "error": 1, "last": 1}))),
            "load_cmd": In(stream.Signature(LoadCmd)),
            "load_rows": Out(stream.Signature(data.StructLayout(
                {"data": 8 * self.row_bytes, "last": 1}))),
            "load_done": Out(stream.Signature(data.StructLayout({"error": 1}))),
        })

    def elaborate(self, platform):
        m = Module()
        B = self.config.axi_bytes
        lg = B.bit_length() - 1
        bus = self.bus
        width = max(self.row_bytes, 16)
        desc_layout = _desc_layout(lg)

        m.submodules.split = split = BurstSplitter(bus_bytes=B, beats_width=16 + 4 - lg,
                                                   tag_shape=desc_layout)
        # One entry per burst in flight or pad row on its way to the merger: the row's
        # descriptor and whether the burst ends its span (a LOAD row or a fetch command).
        m.submodules.queue = queue = fifo.SyncFIFO(width=desc_layout.size + 1,
                                                   depth=self.outstanding)

        win = self._planner(m, B, lg, width, desc_layout, split)

        # -- address side ----------------------------------------------------------------
        tag = split.bursts.p.tag
        m.d.comb += [
            # A pad row passes as a burst that issues no AR.
            bus.arvalid.eq(split.bursts.valid & queue.w_rdy & tag.mem),
            split.bursts.ready.eq(queue.w_rdy & (bus.arready | ~tag.mem)),
            queue.w_en.eq(split.bursts.valid & split.bursts.ready),
            queue.w_data.eq(Cat(tag.as_value(), split.bursts.p.last)),
            bus.araddr.eq(split.bursts.p.addr),
            bus.arlen.eq(split.bursts.p.len),
            bus.arsize.eq(lg),
            bus.arburst.eq(Burst.INCR),
            bus.arcache.eq(0b0011),
            bus.arid.eq(0),
            bus.bready.eq(1),
        ]

        out = self._output(m, width)
        d = data.View(desc_layout, queue.r_data[:-1])
        merger = self._serial_merger if B == 4 else self._wide_merger
        merger(m, B, lg, width, d, queue, queue.r_data[-1], win, out)
        return m

    def _planner(self, m, B, lg, width, desc_layout, split):
        """Walks the active command, one destination row per cycle.

        Returns the LOAD's byte window for the merger: ``dst`` (row byte of the first
        memory byte), ``[lo, hi)`` (row bytes that take memory data), ``pad``, and
        ``load_end``, which the merger drives at the LOAD's last row (the next LOAD may
        then be taken).
        """
        active = Signal()
        addr = Signal(32)
        stride = Signal(24)
        nbytes = Signal(9)      # memory bytes per row (0: every row is a pad row)
        dst = Signal(8)
        lo = Signal(range(width + 1))
        hi = Signal(range(width + 1))
        pad = Signal(8)
        rows_left = Signal(13)  # destination rows left, this one included (0 acts as 1)
        top_left = Signal(4)    # top pad rows left
        bottom = Signal(4)      # bottom pad rows
        load_busy = Signal()    # a LOAD's rows are not all in the merger's row register
        load_end = Signal()     # from the merger: the LOAD's last row is complete

        fc, lc = self.fetch_cmd, self.load_cmd
        sp = split.spans
        # A fetch command goes straight to the splitter as one span, with one descriptor.
        m.d.comb += [
            fc.ready.eq(~active & sp.ready),
            lc.ready.eq(~active & ~fc.valid & ~load_busy),
        ]

        # Per-command values, worked out as the command is taken.
        wide = lc.p.elem_bytes == 4
        c_nbytes = Mux(wide, lc.p.length << 2, lc.p.length)
        c_dst = Mux(wide, lc.p.pad_left << 2, lc.p.pad_left)
        c_end = Signal(10)
        m.d.comb += c_end.eq(c_dst + c_nbytes)

        def at_most_width(value):
            if width & (width - 1) == 0:    # a power of two: look at the high bits
                return Mux(value[width.bit_length() - 1:].any(), width, value)
            return Mux(value < width, value, width)


        with m.If(load_end):
            m.d.sync += load_busy.eq(0)
        with m.If(lc.valid & lc.ready):
            m.d.sync += [
                active.eq(1), load_busy.eq(1), addr.eq(lc.p.dram_addr),
                stride.eq(lc.p.stride), nbytes.eq(c_nbytes), dst.eq(c_dst),
                lo.eq(at_most_width(c_dst)), hi.eq(at_most_width(c_end)),
                pad.eq(Mux(wide, 0, lc.p.pad_value)),
                rows_left.eq(lc.p.n_rows), top_left.eq(lc.p.pad_top),
                bottom.eq(lc.p.pad_bottom),
            ]

        off = addr[:lg]
        is_top = top_left != 0
        # Destination row i (rows_left = n_rows - i) reads memory unless it is among the
        # top pads or the last pad_bottom rows.
        above_bottom = rows_left[4:].any() | (rows_left[:4] > bottom)
        is_mem = ~is_top & above_bottom & (nbytes != 0)
        last_row = rows_left[1:] == 0

        # Every row goes to the splitter; a pad row as one beat that issues no AR.
        desc = sp.p.tag
        go = Signal()
        with m.If(active):
            m.d.comb += [
                desc.last.eq(last_row), desc.mem.eq(is_mem), desc.off.eq(off),
                sp.p.addr.eq(Cat(Const(0, lg), addr[lg:])),
                sp.p.beats.eq(Mux(is_mem, (off + nbytes + B - 1) >> lg, 1)),
                sp.valid.eq(1),
                go.eq(sp.ready),
            ]
        with m.Else():
            count = fc.p.count | (fc.p.count == 0)
            m.d.comb += [
                desc.fetch.eq(1), desc.last.eq(1), desc.mem.eq(1),
                sp.p.addr.eq(fc.p.addr),
                sp.p.beats.eq(count << (4 - lg)),
                sp.valid.eq(fc.valid),
            ]
        with m.If(go):
            m.d.sync += rows_left.eq(rows_left - 1)
            with m.If(is_top):
                m.d.sync += top_left.eq(top_left - 1)
            with m.Elif(is_mem):
                m.d.sync += addr.eq(addr + stride)
            with m.If(last_row):
                m.d.sync += active.eq(0)
        return dict(dst=dst, lo=lo, hi=hi, pad=pad, load_end=load_end)

    def _output(self, m, width):
        """The row register and the three output streams.

        Returns the signals a merger drives (``finish`` and the row's flags, comb) and
        reads (``buf``, ``free``).
        """
        buf = Signal(8 * width)
        out_valid = Signal()
        out_fetch = Signal()
        out_last = Signal()
        out_error = Signal()
        out_done = Signal()      # this row ends a LOAD: raise load_done after its handshake
        done_valid = Signal()
        done_error = Signal()

        fw, lr, ld = self.fetch_words, self.load_rows, self.load_done
        # A LOAD's final row waits while the previous LOAD's result is still unread.
        out_ok = out_valid & ~(out_done & done_valid)
        out_ready = Mux(out_fetch, fw.ready, lr.ready)
        m.d.comb += [
            fw.valid.eq(out_ok & out_fetch),
            fw.p.data.eq(buf[:128]),
            fw.p.error.eq(out_error),
            fw.p.last.eq(out_last),
            lr.valid.eq(out_ok & ~out_fetch),
            lr.p.data.eq(buf[:8 * self.row_bytes]),
            lr.p.last.eq(out_last),
            ld.valid.eq(done_valid),
            ld.p.error.eq(done_error),
        ]
        with m.If(ld.valid & ld.ready):
            m.d.sync += done_valid.eq(0)
        with m.If(out_ok & out_ready):
            m.d.sync += out_valid.eq(0)
            with m.If(out_done):
                m.d.sync += [done_valid.eq(1), done_error.eq(out_error)]

        free = Signal()          # the row register may be written
        m.d.comb += free.eq(~out_valid | (out_ok & out_ready))
        finish = Signal()        # the row or word in the register is complete
        fetch = Signal()
        last = Signal()
        error = Signal()
        with m.If(finish):
            m.d.sync += [out_valid.eq(1), out_fetch.eq(fetch), out_last.eq(last),
                         out_done.eq(last & ~fetch), out_error.eq(error)]
        return SimpleNamespace(buf=buf, free=free, finish=finish, fetch=fetch, last=last,
                               error=error)

    def _finish(self, m, d, queue, win, out, *, take, end_word, end_row, burst_end):
        """What both mergers do at the end of a word or row: the finish strobe and its
        flags, the descriptor queue's pop, the LOAD's end, and the error flags (a fetch
        word's, and a LOAD's over all its rows).

        ``take``: an R beat is taken; ``end_word``: it ends a fetch word; ``end_row``: a
        LOAD row finishes (with or without that beat); ``burst_end``: the head
        descriptor's burst ends its span.
        """
        m.d.comb += [
            out.finish.eq(end_word | end_row),
            out.fetch.eq(d.fetch),
            out.last.eq(d.last & (~d.fetch | burst_end)),
            queue.r_en.eq((take & self.bus.rlast) | (end_row & ~d.mem)),
            win["load_end"].eq(end_row & d.last),
        ]
        cmd_err = Signal()
        word_err = Signal()
        beat_err = take & self.bus.rresp[1]
        m.d.comb += out.error.eq(Mux(d.fetch, word_err, cmd_err) | beat_err)
        with m.If(d.fetch):
            with m.If(end_word):
                m.d.sync += word_err.eq(0)
            with m.Elif(beat_err):
                m.d.sync += word_err.eq(1)
        with m.Else():
            with m.If(end_row & d.last):
                m.d.sync += cmd_err.eq(0)
            with m.Elif(beat_err):
                m.d.sync += cmd_err.eq(1)

    def _serial_merger(self, m, B, lg, width, d, queue, span_end, win, out):
        """Byte-serial merger: one row byte (or fetch word byte) per cycle.

        Every byte of the row register loads from the same 8-bit ``byte`` (the memory
        byte at ``lane`` of the R beat, or the pad value), so it needs no data
        multiplexer of its own, only a write enable: all bytes on a LOAD row's preset,
        the one byte at ``idx`` otherwise. A fetch word is bytes 0..15 of its beats.
        """
        bus = self.bus
        buf = out.buf
        first = Signal(init=1)          # a LOAD row's preset cycle is next
        idx = Signal(range(width + 1))  # the next row byte
        lane = Signal(lg)               # lane of the next memory byte in the beat

        hi = Mux(d.fetch, 16, win["hi"])
        writing = idx < hi              # a memory byte is placed at idx
        last_byte = idx + 1 == hi
        burst_end = bus.rlast & span_end
        ready = out.free & queue.r_rdy
        byte = Signal(8)
        m.d.comb += byte.eq(Mux(first & ~d.fetch, win["pad"],
                                bus.rdata.word_select(lane, 8)))

        take = Signal()                 # an R beat is taken this cycle
        we = Signal()                   # a memory byte is written this cycle
        preset = Signal()               # all row bytes take the pad value
        end_word = Signal()
        end_row = Signal()
        with m.If(ready):
            with m.If(first & ~d.fetch):
                m.d.comb += preset.eq(1)
                m.d.sync += [first.eq(0), idx.eq(win["lo"]), lane.eq(d.off)]
                with m.If(~d.mem):
                    m.d.comb += end_row.eq(1)
            with m.Else():
                # Place bytes while idx < hi; a beat goes with its last byte used (or
                # the row's last placed byte); a LOAD row's beats past hi are drained.
                m.d.comb += [
                    we.eq(writing & bus.rvalid),
                    take.eq(bus.rvalid & (~writing | (lane == B - 1) | last_byte)),
                    end_word.eq(d.fetch & we & last_byte),
                    end_row.eq(~d.fetch & take & burst_end),
                ]
                with m.If(we):
                    m.d.sync += [idx.eq(idx + 1), lane.eq(lane + 1)]
        m.d.comb += bus.rready.eq(take)

        for j in range(width):
            with m.If(preset | (we & (idx == j))):
                m.d.sync += buf[8 * j:8 * j + 8].eq(byte)

        with m.If(end_row | end_word):
            m.d.sync += [first.eq(1), idx.eq(0), lane.eq(0)]
        self._finish(m, d, queue, win, out, take=take, end_word=end_word, end_row=end_row,
                     burst_end=burst_end)

    def _wide_merger(self, m, B, lg, width, d, queue, span_end, win, out):
        """Beat-wide merger: places one R beat per cycle into the row register."""
        bus = self.bus
        buf = out.buf
        chunks = width // B
        first = Signal(init=1)   # the next beat is the first of a row or fetch word
        # One-hot bus-word position of the current beat in the row: bit i is row chunk
        # i - 1 (the first beat may start one chunk before the row).
        win_pos = Signal(chunks + 1)

        # Row byte position of lane 0 of the row's first beat, and the bytes [lo, hi)
        # that take memory data (a fetch word: all 16).
        base = Signal(range(-B, 256))
        m.d.comb += base.eq(Mux(d.fetch, 0, win["dst"] - d.off))
        lo = Mux(d.fetch, 0, win["lo"])
        hi = Mux(d.fetch, 16, win["hi"])

        # The realigner: lane t of a beat goes to row byte base + beat * B + t. Rotate
        # the beat by base % B so that row byte j finds its data in lane j % B; a chunk
        # of the row takes its high lanes (t >= base % B) from the beat at its position
        # and its low lanes from the beat one position earlier.
        shift = base.as_unsigned()[:lg]
        rot_by = Signal(lg)
        m.d.comb += rot_by.eq(-shift)
        rot = Signal(8 * B)
        m.d.comb += rot.eq((Cat(bus.rdata, bus.rdata) >> (rot_by << 3))[:8 * B])
        start_chunk = base >> lg
        cur = Signal(chunks + 1)
        m.d.comb += cur.eq(Mux(first, Cat(start_chunk == i - 1 for i in range(chunks + 1)),
                               win_pos))
        ones = Const((1 << width) - 1, width)
        span = Signal(width)     # row bytes in [lo, hi)
        m.d.comb += span.eq((ones << lo)[:width] & ~(ones << hi)[:width])
        high = Signal(B)         # lanes t >= base % B
        m.d.comb += high.eq(Const((1 << B) - 1, B) << shift)
        # A row byte is written when a beat brings its data or, on a row's first beat (or
        # a pad row), with the pad value; otherwise it keeps its value.
        step = Signal()          # a beat is taken or a pad row completes
        m.d.comb += step.eq(out.free & queue.r_rdy & (~d.mem | bus.rvalid))
        for j in range(width):
            c, t = divmod(j, B)
            take = Mux(high[t], cur[c + 1], cur[c]) & span[j] & d.mem
            with m.If(step & (take | first)):
                m.d.sync += buf[8 * j:8 * j + 8].eq(Mux(take, rot[8 * t:8 * t + 8],
                                                         win["pad"]))

        burst_end = bus.rlast & span_end
        take = Signal()
        end_word = Signal()
        end_row = Signal()
        with m.If(out.free & queue.r_rdy):
            with m.If(~d.mem):
                m.d.comb += end_row.eq(1)
            with m.Else():
                m.d.comb += take.eq(bus.rvalid)
                with m.If(take):
                    m.d.sync += [first.eq(0), win_pos.eq(cur << 1)]
                    m.d.comb += [end_word.eq(d.fetch & cur[16 // B]),
                                 end_row.eq(~d.fetch & burst_end)]
        m.d.comb += bus.rready.eq(out.free & queue.r_rdy & d.mem)
        with m.If(end_word | end_row):
            m.d.sync += first.eq(1)
        self._finish(m, d, queue, win, out, take=take, end_word=end_word, end_row=end_row,
                     burst_end=burst_end)
