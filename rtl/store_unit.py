"""Store queue unit: STORE (accumulator rows through post-processing, or scratchpad bytes)
to system memory, CONFIG of the post-processing registers, and SYNC."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolic.isa import CONFIG_DEFAULTS, ConfigReg, Opcode, Queue, StoreSrc
from systolic.numerics import OutType

from .dma_common import row_bytes
from .dma_write import StoreCmd
from .load_unit import UnitSignature
from .scratchpad import ReadPortSignature, check_config

__all__ = ["StoreUnit", "ROW_QUEUE_DEPTH"]

_STORE_REGS = (ConfigReg.REQ_MULT, ConfigReg.REQ_SHIFT, ConfigReg.REQ_ZP,
               ConfigReg.ACTIVATION, ConfigReg.CLAMP_LO, ConfigReg.CLAMP_HI)

ROW_QUEUE_DEPTH = 2  # finished rows waiting for the write engine (one sent, one filled)


class StoreUnit(wiring.Component):
    """Executes the store queue, one micro-op at a time; the rows of a STORE stream.

    A STORE becomes one DMA :class:`~systolic.rtl.dma_write.StoreCmd` and a pipeline of
    rows, all stages working at once::

        read (acc_rd / sp_rd) -> hold (1 row) -> post-processing -> row queue -> store_rows
                                               (accumulator rows)   (2 rows)

    * Read: one source row requested per cycle while the hold stage has room for it
      (empty, or emptied in the same cycle); a refused request is repeated.
    * Hold: the row answered by the read port (valid for one cycle, no back-pressure) is
      offered at once to the next stage and kept while that stage is not ready.
    * An accumulator row goes through the post-processor (``pp_i``/``pp_o``, one beat of
      ``lanes`` elements per cycle); its output beats are packed straight into the free
      entry of the row queue, and ``pp_o`` is back-pressured while the queue is full. A
      scratchpad row goes into the queue as it is.
    * The row queue's head is offered to the write engine, which takes it with its last
      W beat.

    Throughput: one row per cycle from the scratchpad; ``ceil(length / lanes)`` cycles
    per accumulator row; the write engine's beats per row when those are more (an int32
    row of the default preset: 4 beats on the 64-bit bus). The first row reaches the write
    engine 3 cycles (scratchpad) or 7 cycles (accumulator, one beat) after the micro-op's
    handshake. The instruction completes, and pushes its token, the cycle after the write
    engine reported the last B response.

    Parameters
    ----------
    config : AcceleratorConfig
    pp_signature : wiring.Signature
        The :class:`~systolic.rtl.postproc.PostProcessor`'s signature.

    Attributes
    ----------
    store_cmd : Out(stream.Signature(StoreCmd))
    store_rows : Out(stream.Signature(...))
    store_done : In(stream.Signature(...))
    acc_rd, sp_rd : Out(ReadPortSignature)
    pp_i : Out(stream)
        Input of the :class:`~systolic.rtl.postproc.PostProcessor`.
    pp_o : In(stream)
        Its output beats.
    """

    def __init__(self, *, config, pp_signature):
        check_config(config, "StoreUnit")
        if not isinstance(pp_signature, wiring.Signature) or \
                not {"i", "o"} <= set(pp_signature.members.keys()):
            raise TypeError(f"pp_signature must be the post-processor's signature (members "
                            f"i and o), not {pp_signature!r}")
        self.config = config
        self.rb = row_bytes(config)
        sp_aw = ceil_log2(config.sp_rows)
        acc_aw = ceil_log2(config.acc_rows)
        row = data.ArrayLayout(signed(32), config.cols)
        super().__init__({
            **UnitSignature(Queue.STORE),
            "store_cmd": Out(stream.Signature(StoreCmd)),
            "store_rows": Out(stream.Signature(data.StructLayout({"data": 8 * self.rb}))),
            "store_done": In(stream.Signature(data.StructLayout({"error": 1}))),
            "acc_rd": Out(ReadPortSignature(acc_aw, row)),
            "sp_rd": Out(ReadPortSignature(sp_aw, 8 * config.sp_width)),
            "pp_i": pp_signature.members["i"].flip(),
            "pp_o": pp_signature.members["o"].flip(),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        uop = Signal.like(self.uop.p)
        st = uop.body.store
        regs = {r: Signal(signed(32), name=r.name.lower(), init=CONFIG_DEFAULTS[r])
                for r in _STORE_REGS}
        with m.If(self.start):
            m.d.sync += [s.eq(CONFIG_DEFAULTS[r]) for r, s in regs.items()]
        from_sp = st.src == StoreSrc.SP
        running = Signal()  # a STORE's rows are being read

        # -- read: one request per cycle while the hold stage will have room ------------------
        rd_addr = Signal(16)
        rd_left = Signal(14)
        landing = Signal()            # the row granted last cycle is on the port's data
        hold_valid = Signal()
        hold = Signal(max(len(self.acc_rd.data.as_value()), len(self.sp_rd.data)))
        row_in = Signal.like(hold)    # the row offered to the next stage
        row_in_valid = Signal()
        row_in_taken = Signal()
        m.d.comb += [
            landing.eq(Mux(from_sp, self.sp_rd.valid, self.acc_rd.valid)),
            row_in_valid.eq(hold_valid | landing),
            row_in.eq(Mux(hold_valid, hold,
                          Mux(from_sp, self.sp_rd.data, self.acc_rd.data.as_value()))),
            self.acc_rd.addr.eq(rd_addr),
            self.sp_rd.addr.eq(rd_addr),
        ]
        # At most one row is granted and not yet taken (the hold is one row deep).
        want = Signal()
        m.d.comb += want.eq(running & (rd_left != 0) &
                            (~row_in_valid | row_in_taken))
        with m.If(from_sp):
            m.d.comb += self.sp_rd.en.eq(want)
        with m.Else():
            m.d.comb += self.acc_rd.en.eq(want)
        granted = want & Mux(from_sp, self.sp_rd.ready, self.acc_rd.ready)
        with m.If(granted):
            m.d.sync += [rd_addr.eq(rd_addr + 1), rd_left.eq(rd_left - 1)]
        with m.If(row_in_taken):
            m.d.sync += hold_valid.eq(0)
        with m.Elif(landing):
            m.d.sync += [hold_valid.eq(1), hold.eq(row_in)]

        # -- row queue: finished rows for the write engine -----------------------------------
        width = 8 * self.rb
        entries = [Signal(width, name=f"row{i}") for i in range(ROW_QUEUE_DEPTH)]
        wr = Signal(range(ROW_QUEUE_DEPTH))
        rd = Signal(range(ROW_QUEUE_DEPTH))
        count = Signal(range(ROW_QUEUE_DEPTH + 1))
        full = Signal()
        push = Signal()
        pop = Signal()
        m.d.comb += [
            full.eq(count == ROW_QUEUE_DEPTH),
            self.store_rows.valid.eq(count != 0),
            self.store_rows.p.data.eq(Mux(rd, entries[1], entries[0])),
            pop.eq(self.store_rows.valid & self.store_rows.ready),
        ]
        m.d.sync += count.eq(count + push - pop)
        with m.If(push):
            m.d.sync += wr.eq(wr + 1)
        with m.If(pop):
            m.d.sync += rd.eq(rd + 1)

        # -- scratchpad rows: into the queue as they are --------------------------------------
        # -- accumulator rows: through the post-processor, beats packed into the queue --------
        s = self.pp_i.p.settings
        m.d.comb += [
            self.pp_i.p.row.eq(row_in[:len(self.pp_i.p.row.as_value())]),
            s.out_type.eq(st.out_type),
            s.activation.eq(regs[ConfigReg.ACTIVATION]),
            s.per_channel.eq(st.per_channel),
            s.param_addr.eq(st.param_addr),
            s.multiplier.eq(regs[ConfigReg.REQ_MULT]),
            s.shift.eq(regs[ConfigReg.REQ_SHIFT]),
            s.zero_point.eq(regs[ConfigReg.REQ_ZP]),
            s.clamp_lo.eq(regs[ConfigReg.CLAMP_LO]),
            s.clamp_hi.eq(regs[ConfigReg.CLAMP_HI]),
            s.length.eq(st.length),
            self.pp_o.ready.eq(~full),
        ]
        beat = self.pp_o.p
        beat_go = self.pp_o.valid & self.pp_o.ready
        single_beat = cfg.lanes == cfg.cols   # a whole row per beat: nothing to pack
        pos = Signal(range(self.rb + 1))      # byte of the row the next beat starts at
        with m.If(from_sp):
            m.d.comb += [self.pp_i.valid.eq(0),
                         row_in_taken.eq(row_in_valid & ~full),
                         push.eq(row_in_taken)]
            for i, entry in enumerate(entries):
                with m.If(push & (wr == i)):
                    m.d.sync += entry.eq(row_in[:width])
        with m.Else():
            m.d.comb += [self.pp_i.valid.eq(row_in_valid),
                         row_in_taken.eq(self.pp_i.valid & self.pp_i.ready),
                         push.eq(beat_go & beat.last)]
            if single_beat:
                packed = beat.data
            else:
                current = Mux(wr, entries[1], entries[0])
                packed = Mux(pos == 0, 0, current) | (beat.data << (pos * 8))[:width]
                with m.If(beat_go):
                    m.d.sync += pos.eq(Mux(beat.last, 0, pos + beat.nbytes))
            for i, entry in enumerate(entries):
                with m.If(beat_go & (wr == i)):
                    m.d.sync += entry.eq(packed)

        # -- micro-ops --------------------------------------------------------------------------
        cmd_sent = Signal()
        m.d.comb += [
            self.store_cmd.p.dram_addr.eq(st.dram_addr),
            self.store_cmd.p.stride.eq(st.stride),
            self.store_cmd.p.n_rows.eq(st.n_rows),
            self.store_cmd.p.row_bytes.eq(
                Mux(st.out_type == OutType.INT32, st.length * 4, st.length)),
        ]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.idle.eq(1), self.uop.ready.eq(1)]
                with m.If(self.uop.valid):
                    p = self.uop.p
                    n_rows = p.body.store.n_rows
                    m.d.sync += [uop.eq(p), cmd_sent.eq(0), rd_addr.eq(p.body.store.addr),
                                 rd_left.eq(Mux(n_rows == 0, 1, n_rows))]
                    with m.Switch(p.opcode):
                        with m.Case(Opcode.STORE):
                            m.d.sync += running.eq(1)
                            m.next = "STORE"
                        with m.Case(Opcode.CONFIG):
                            for r, sig in regs.items():
                                with m.If(p.body.config.reg == r.value):
                                    m.d.sync += sig.eq(p.body.config.value)
                            m.next = "RETIRE"
                        with m.Default():
                            m.next = "RETIRE"
            with m.State("STORE"):
                m.d.comb += [self.busy.eq(1), self.store_cmd.valid.eq(~cmd_sent),
                             self.store_done.ready.eq(cmd_sent)]
                with m.If(self.store_cmd.valid & self.store_cmd.ready):
                    m.d.sync += cmd_sent.eq(1)
                with m.If(self.store_done.valid & self.store_done.ready):
                    # Every row was written and answered: the pipeline is empty.
                    m.d.sync += running.eq(0)
                    m.d.comb += self.error.eq(self.store_done.p.error)
                    m.next = "RETIRE"
            with m.State("RETIRE"):
                m.d.comb += self.push_prev.eq(uop.push_prev)
                m.next = "IDLE"
        return m
