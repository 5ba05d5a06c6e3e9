"""Host bridge: framed, CRC-checked requests over a UART to system memory and AXI4-Lite CSRs.

The protocol (constants, framing, CRC) is defined once in :mod:`systolic.runtime.protocol`
and described in ``docs/protocol.md``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from systolic.rtl.axi import AXI4LiteSignature, flat_members
from systolic.rtl.clocking import falling_edge
from systolic.runtime.protocol import (
    CRC_INIT,
    CRC_POLY,
    ESC,
    ESC_XOR,
    MAX_PAYLOAD,
    PING_WORD,
    REQUEST_HEADER_BYTES,
    SOF,
    STATUS_BYTES,
    WORD_BYTES,
    WRITE_COMMANDS,
    Command,
    Status,
)

from .sysmem import AXI_OKAY, MemPortSignature
from .uart import UartRx, UartTx, check_divisor

__all__ = ["AXIL_SIGNATURE", "SerialCrc16", "EventCounters", "Bridge"]

AXIL_SIGNATURE = AXI4LiteSignature(addr_width=32, data_width=32)
"""The bridge's CSR master bus (flat ``m_axil_*`` ports with the standard names)."""


class SerialCrc16(wiring.Component):
    """CRC-16/CCITT-FALSE of a byte stream, worked out one bit per cycle.

    A byte taken on ``feed`` is folded into ``crc`` most significant bit first over the
    next 8 cycles (``busy``), the bitwise definition of
    :func:`systolic.runtime.protocol.crc16_update`. Feeding a message followed by its CRC
    (big-endian) leaves ``crc`` at zero; after feeding only the CRC's high byte,
    ``crc[8:]`` holds its low byte, so a sender can send both CRC bytes from ``crc[8:]``.

    Attributes
    ----------
    clear : In(1)
        Set ``crc`` to :data:`CRC_INIT` (only while not ``busy``).
    feed : In(1)
        Take ``byte`` (only while not ``busy``).
    byte : In(8)
        The byte to fold in.
    busy : Out(1)
        A byte is being folded in.
    crc : Out(16)
        The CRC of the bytes fed since ``clear``, once ``busy`` is low.
    """

    clear: In(1)
    feed: In(1)
    byte: In(8)
    busy: Out(1)
    crc: Out(16)

    def elaborate(self, platform):
        m = Module()
        # data bits above a marker 1: the byte is done when the marker reaches the top
        bits = Signal(9)
        m.d.comb += self.busy.eq(bits[:8].any())
        # the register holds the CRC inverted, so that clearing it is a reset to 0
        inverted = Signal(16)
        m.d.comb += self.crc.eq(~inverted)
        feedback = ~inverted[15] ^ bits[8]
        with m.If(self.clear):
            m.d.sync += inverted.eq(~CRC_INIT & 0xFFFF)
        with m.Elif(self.busy):
            m.d.sync += inverted.eq(Cat(Const(1, 1), inverted[:15]) ^ Mux(feedback, CRC_POLY, 0))
        # the bridge never clears or feeds while busy: bytes come far apart
        with m.If(self.feed):
            m.d.sync += bits.eq(Cat(Const(1, 1), self.byte))
        with m.Elif(self.busy):
            m.d.sync += bits.eq(bits << 1)
        return m


TICK = 32     # cycles per turn of the EventCounters phase
HALF = 16     # bits per row of the counter RAM


class EventCounters(wiring.Component):
    """Four 16-bit wrapping event counters and the PING word in one block RAM.

    A free-running 5-bit ``phase`` walks the RAM's 8 rows, two cycles per row (rows
    0..3: the counters in the order of the STATUS payload; rows 4 and 5: the PING word's
    low and high halves): the row is read while ``phase[0]`` is low, and while it is
    high ``data`` shows row ``phase[1:4]`` and one shared incrementer writes that row
    back plus one if its counter has an event pending. An event waits in a pending bit
    until its counter comes round, so events of one counter must be at least 16 cycles
    apart (the bridge counts at most one per received byte).

    Attributes
    ----------
    inc : In(4)
        One bit per counter: count one event.
    phase : Out(5)
        Free-running cycle count.
    data : Out(16)
        Row ``phase[1:4]`` while ``phase[0]`` is high (a counter shows an event at the
        latest 18 cycles after ``inc``).
    """

    inc: In(4)
    phase: Out(5)
    data: Out(HALF)

    def elaborate(self, platform):
        m = Module()
        words = [0] * 4 + [PING_WORD & 0xFFFF, PING_WORD >> HALF, 0, 0]
        m.submodules.ram = ram = Memory(shape=HALF, depth=len(words), init=words)
        rd, wr = ram.read_port(), ram.write_port(domain=falling_edge(m, "counter_write"))
        m.d.sync += self.phase.eq(self.phase + 1)
        # two cycles per row: read it, then write it back plus one
        row = self.phase[1:4]
        pending = Signal(4)
        taken = Signal(4)
        m.d.comb += [
            rd.addr.eq(row), self.data.eq(rd.data),
            wr.addr.eq(row), wr.data.eq(rd.data + 1),
            wr.en.eq(self.phase[0] & ~row[2] & pending.bit_select(row[:2], 1)),
            taken.eq(Mux(wr.en, 1 << row[:2], 0)),
        ]
        m.d.sync += pending.eq(pending & ~taken | self.inc)
        return m


class Bridge(wiring.Component):
    """UART host bridge: parses request frames, executes them, answers with ACK or NAK.

    One frame is handled at a time: the parser stores a write's payload in a
    :data:`MAX_PAYLOAD`-byte buffer, checks the CRC, then executes the request (memory
    writes and reads through ``mem``, CSR writes and reads through the AXI4-Lite master, one
    32-bit word at a time) and sends the response (words read from a second buffer, PING
    and STATUS payloads from the counter RAM). Bytes that arrive
    while a request executes or its response is sent are discarded and counted. A frame
    that stops for ``timeout`` cycles is dropped and NAKed (TIMEOUT); a raw SOF inside a
    frame drops it silently and starts a new one; a CSR access that gets no answer in
    ``bus_timeout`` cycles is NAKed (BUS_TIMEOUT). No input can lock the bridge up.

    The datapath is built for a small FPGA. Both buffers hold one 32-bit word per row (two
    block RAMs each): the payload buffer is written byte by byte as bytes arrive and read a
    word at a time for the bus, the result buffer is written a bus word at a time and read
    a byte at a time for the response, so neither has a multiplexer on its write data. One
    bit-serial CRC engine (:class:`SerialCrc16`) serves both directions. The STATUS counters
    and the PING word live in a third block RAM (:class:`EventCounters`) with one shared
    incrementer; its free-running 5-bit phase also ticks the timeouts (rounded up to whole
    32-cycle ticks, up to 32 cycles late). ADDR and LEN are shifted into a register a byte
    at a time; after each word ADDR steps by 4 as it rotates through a byte adder (4
    cycles). One word index and byte lane walk the buffers when receiving, executing and
    answering; the request is checked once, in the order of the NAK reasons, and each NAK
    is counted as it goes out. The CRC engine takes 8 cycles per byte, far less than a
    byte's time on the line: the bridge checks a frame's CRC 8 cycles after its last byte,
    and waits for the engine before each response byte. The block RAMs are written on the
    falling clock edge (see :func:`falling_edge`).

    Parameters
    ----------
    divisor : int
        UART clock cycles per bit.
    timeout : int, optional
        Inter-byte timeout in cycles; default 256 byte times (``2560 * divisor``).
    bus_timeout : int
        Cycles to wait for each AXI4-Lite handshake.

    Attributes
    ----------
    rx : In(1)
        UART receive line (from the host).
    tx : Out(1)
        UART transmit line (to the host).
    mem : Out(MemPortSignature())
        System memory word port.
    m_axil_* : AXI4-Lite master, flat ports of :data:`AXIL_SIGNATURE` (32-bit address and
        data, ``awprot``/``arprot`` driven as 0); reach them as one interface with
        ``systolic.rtl.axi.flat_interface(bridge, "m_axil", Out(AXIL_SIGNATURE))``.
    framing_errors : Out(16)
        Bit 0 toggles at each UART framing error (the other bits stay 0): a change marks
        an error, for a debug LED.
    """

    def __init__(self, *, divisor, timeout=None, bus_timeout=1024):
        check_divisor(divisor)
        timeout = 2560 * divisor if timeout is None else timeout
        if not isinstance(timeout, int) or timeout < 20 * divisor:
            raise ValueError(f"Bridge timeout must be an integer of at least two byte times "
                             f"({20 * divisor} cycles), not {timeout!r}")
        if not isinstance(bus_timeout, int) or bus_timeout < 2:
            raise ValueError(f"Bridge bus_timeout must be an integer of at least 2, "
                             f"not {bus_timeout!r}")
        self.uart_rx = UartRx(divisor=divisor)
        self.uart_tx = UartTx(divisor=divisor)
        self.divisor, self.timeout, self.bus_timeout = divisor, timeout, bus_timeout
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "mem": Out(MemPortSignature()),
            **flat_members("m_axil", Out(AXIL_SIGNATURE)),
            "framing_errors": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = urx = self.uart_rx
        m.submodules.uart_tx = utx = self.uart_tx
        m.submodules.crc = crc = SerialCrc16()
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx), urx.o.ready.eq(1)]
        with m.If(urx.error):
            m.d.sync += self.framing_errors[0].eq(~self.framing_errors[0])

        words = MAX_PAYLOAD // WORD_BYTES
        # one 32-bit row per word (two block RAMs side by side)
        # two buffers of 32-bit words (two block RAMs each), so that neither needs a
        # multiplexer on its write data: the payload received (bytes), and the words read
        m.submodules.payload = payload = Memory(shape=32, depth=words, init=[])
        m.submodules.results = results = Memory(shape=32, depth=words, init=[])
        buf_rd = payload.read_port()
        buf_wr = payload.write_port(granularity=8, domain=falling_edge(m, "buffer_write"))
        res_rd = results.read_port()
        res_wr = results.write_port(domain="buffer_write")

        # the request: SEQ and CMD, then ADDR and LEN shifted in from the top
        seq = Signal(8, name="seq")
        cmd = Signal(8, name="cmd")
        status = Signal(3, name="status")
        # ADDR and LEN's low byte are shifted in from the top of this register; of LEN's
        # high byte only its bit 0 and whether the rest is zero are kept (MAX_PAYLOAD < 512)
        fields = Signal(8 * (REQUEST_HEADER_BYTES - 3))
        len_8, len_over = Signal(name="len_8"), Signal(name="len_over")
        addr, length = fields[:32], Cat(fields[32:], len_8)
        is_write = Signal(name="is_write")
        is_csr = Signal(name="is_csr")
        is_ping, is_status = cmd == Command.PING, cmd == Command.STATUS
        m.d.comb += [
            is_write.eq(cmd.matches(*(int(c) for c in WRITE_COMMANDS))),
            is_csr.eq(cmd.matches(Command.READ_CSR, Command.WRITE_CSR)),
        ]

        # buffer position, shared by the parser, the executor and the response: the word
        # index and the byte lane in it (the header's byte count while a header moves)
        widx = Signal(range(words + 1), name="widx")
        lane = Signal(2, name="lane")
        m.d.comb += [buf_rd.addr.eq(widx), buf_wr.addr.eq(widx),
                     res_rd.addr.eq(widx), res_wr.addr.eq(widx),
                     res_wr.data.eq(Mux(is_csr, self.m_axil_rdata, self.mem.rdata))]
        # words to execute, and words to send back (none after a NAK or a write)
        exec_words = Signal(range(words + 1), name="exec_words")
        resp_words = Signal(range(words + 1), name="resp_words")
        m.d.comb += [
            exec_words.eq(Mux(is_ping, 1, Mux(is_status, STATUS_BYTES // WORD_BYTES,
                                                length[2:]))),
            resp_words.eq(Mux((status == Status.OK) & ~is_write, exec_words, 0)),
        ]

        # the position moves on a byte (the lane carrying into the word index) or back to 0
        advance, restart = Signal(name="advance"), Signal(name="restart")
        with m.If(restart):
            m.d.sync += [widx.eq(0), lane.eq(0)]
        with m.Elif(advance):
            m.d.sync += lane.eq(lane + 1)
            with m.If(lane == 3):
                m.d.sync += widx.eq(widx + 1)

        def next_byte():
            m.d.comb += advance.eq(1)

        def rewind():
            m.d.comb += restart.eq(1)

        # body bytes still to come after the header, less one: negative at the last one
        remaining = Signal(17)
        escaped = Signal()

        # the STATUS counters, in the order of the STATUS payload
        m.submodules.counters = counters = EventCounters()
        crc_errors, truncated, bad_requests, discarded = range(4)

        # one up-counter of 32-cycle ticks (the counters' ring turns once per tick): the
        # inter-byte timeout while listening, else the bus timeout; held at zero while
        # stopped or restarted, so a wait of k ticks lasts (k - 1) * 32 + 1 .. k * 32 cycles
        frame_ticks, bus_ticks = (-(-(limit - 1) // TICK) + 1
                                  for limit in (self.timeout, self.bus_timeout))
        timer = Signal(range(max(frame_ticks, bus_ticks) + 1))
        listening = Signal(name="listening")
        timer_run = Signal(name="timer_run")
        timer_restart = Signal(name="timer_restart")
        with m.If(timer_restart | ~timer_run):
            m.d.sync += timer.eq(0)
        with m.Elif(counters.phase == TICK - 1):
            m.d.sync += timer.eq(timer + 1)
        expired = Mux(listening, timer == frame_ticks, timer == bus_ticks)

        def count(counter):
            m.d.comb += counters.inc[counter].eq(1)

        # a received byte is handled the cycle after it arrives (it stays on the receiver's
        # output), its SOF and ESC comparisons registered: the block RAM writes it leads to
        # land on the falling edge and so must follow short paths
        rx_byte = urx.o.payload
        rx_valid = Signal(name="rx_valid")
        rx_sof, rx_esc = Signal(name="rx_sof"), Signal(name="rx_esc")
        m.d.sync += [rx_valid.eq(urx.o.valid), rx_sof.eq(rx_byte == SOF),
                     rx_esc.eq(rx_byte == ESC)]
        data = Signal(8)
        m.d.comb += [data.eq(rx_byte ^ Mux(escaped, ESC_XOR, 0)),
                     buf_wr.data.eq(data.replicate(4))]

        def take_byte():
            """``data`` goes into the buffer position, which moves on (no payload byte
            lies beyond the buffer's end: bytes there, the CRC's or those of a frame too
            long, are dropped)."""
            m.d.comb += buf_wr.en.eq(Mux(widx[-1], 0, 1 << lane))
            next_byte()

        # output byte -> stuffer -> UART TX; the sequencer waits for the CRC engine, which
        # also gives the buffer's read port its cycle
        out_byte = Signal(8, name="out_byte")
        out_raw = Signal(name="out_raw")
        out_valid = Signal(name="out_valid")
        out_ready = Signal(name="out_ready")
        second = Signal()
        needs_escape = ~out_raw & ((out_byte == SOF) | (out_byte == ESC))
        m.d.comb += [
            utx.i.payload.eq(Mux(second, out_byte ^ ESC_XOR, Mux(needs_escape, ESC, out_byte))),
            utx.i.valid.eq(out_valid),
            out_ready.eq(utx.i.ready & (second | ~needs_escape)),
        ]
        with m.If(out_valid & utx.i.ready):
            m.d.sync += second.eq(~second & needs_escape)
        sent = Signal()
        m.d.comb += [sent.eq(out_valid & out_ready),
                     crc.byte.eq(Mux(listening, data, out_byte))]

        # the executor: word widx at ADDR, which goes up by 4 after each word, data from or
        # to the buffer
        word_addr = addr
        # ADDR rotates through a byte adder to step
        shift_in = Signal(name="shift_in")
        step = Signal(name="step")
        carry = Signal(name="carry")
        total = addr[:8] + Mux(lane == 0, WORD_BYTES, carry)
        with m.If(shift_in | step):
            m.d.sync += addr.eq(Cat(addr[8:], Mux(step, total[:8], length[:8])))
        with m.If(step):
            m.d.sync += carry.eq(total[8])
        with m.If(shift_in):
            m.d.sync += fields[32:].eq(data)
        bus_wdata = buf_rd.data
        m.d.comb += [self.mem.addr.eq(word_addr), self.mem.wdata.eq(bus_wdata),
                     self.mem.we.eq(is_write)]
        for prefix in ("aw", "ar"):
            m.d.comb += getattr(self, f"m_axil_{prefix}addr").eq(word_addr)
        m.d.comb += [self.m_axil_wdata.eq(bus_wdata), self.m_axil_wstrb.eq(0xF)]
        mem = self.mem
        axil = {name: getattr(self, "m_axil_" + name) for name in AXIL_SIGNATURE.members}
        aw_done = Signal(name="aw_done")
        w_done = Signal(name="w_done")

        def bus_done(rdata):
            """A bus word moved: a read's word goes to the buffer; on to the next word."""
            with m.If(~is_write):
                m.d.comb += res_wr.en.eq(1)
            m.next = "STEP"

        def respond(code):
            """Answer ``code`` (with the payload words the request asks for if OK)."""
            m.d.sync += status.eq(code)
            rewind()
            m.next = "RESPOND"

        def start_frame():
            m.d.sync += [escaped.eq(0), seq.eq(0), cmd.eq(0)]
            m.d.comb += crc.clear.eq(1)
            rewind()
            m.next = "HEADER"

        def frame_byte():
            """Common to HEADER and BODY; returns the condition of a new body byte."""
            m.d.comb += [listening.eq(1), timer_run.eq(1)]
            body = Signal()
            with m.If(rx_valid):
                m.d.comb += timer_restart.eq(1)
                with m.If(rx_sof):
                    count(truncated)
                    start_frame()
                with m.Elif(rx_esc & ~escaped):
                    m.d.sync += escaped.eq(1)
                with m.Else():
                    m.d.sync += escaped.eq(0)
                    m.d.comb += [body.eq(1), crc.feed.eq(1)]
            with m.Elif(expired):
                respond(Status.TIMEOUT)
            return body

        # the request's checks, in the order of the NAK reasons
        no_length = is_ping | is_status
        bad_length = len_over | Mux(no_length, length != 0,
                                    (length[:2] != 0) | (length > MAX_PAYLOAD))
        check = Signal(3)
        m.d.comb += check.eq(
            Mux(crc.crc != 0, Status.BAD_CRC,
                Mux((cmd == 0) | (cmd > Command.STATUS), Status.BAD_COMMAND,
                    Mux(bad_length, Status.BAD_LENGTH,
                        Mux(~no_length & (addr[:2] != 0), Status.BAD_ADDRESS, Status.OK)))))

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += listening.eq(1)
                with m.If(rx_valid):
                    with m.If(rx_sof):
                        start_frame()
                    with m.Else():
                        count(discarded)

            with m.State("HEADER"):
                with m.If(frame_byte()):
                    next_byte()
                    m.d.comb += shift_in.eq(1)
                    with m.Switch(Cat(lane, widx[0])):
                        with m.Case(0):
                            m.d.sync += seq.eq(data)
                        with m.Case(1):
                            m.d.sync += cmd.eq(data)
                        with m.Case(REQUEST_HEADER_BYTES - 1):
                            m.d.comb += shift_in.eq(0)
                            m.d.sync += [len_8.eq(data[0]), len_over.eq(data[1:] != 0),
                                         remaining.eq(Mux(is_write, Cat(fields[-8:], data), 0))]
                            rewind()
                            m.next = "BODY"

            with m.State("BODY"):              # payload, then the CRC
                with m.If(frame_byte()):
                    # all bytes go through, the CRC's too: they never complete a payload word
                    take_byte()
                    m.d.sync += remaining.eq(remaining - 1)
                    with m.If(remaining[-1]):
                        m.next = "CHECK"

            with m.State("CHECK"):
                with m.If(~crc.busy):
                    m.d.sync += status.eq(check)
                    rewind()
                    m.next = "NEXT"
                    with m.If((check != Status.OK) | is_ping | is_status):
                        m.next = "RESPOND"

            with m.State("NEXT"):               # buffer word widx is read (on buf_rd.data
                m.d.sync += [aw_done.eq(0), w_done.eq(0)]   # from the next cycle on)
                with m.If(widx == exec_words):
                    rewind()
                    m.next = "RESPOND"
                with m.Elif(is_csr):
                    m.next = "CSR_REQUEST"
                with m.Else():
                    m.next = "MEM"

            with m.State("STEP"):               # ADDR += 4, a byte per cycle (lane counts)
                m.d.comb += step.eq(1)
                next_byte()                     # and the word index with the last
                with m.If(lane == 3):
                    m.next = "NEXT"

            with m.State("MEM"):
                m.d.comb += mem.valid.eq(1)
                with m.If(mem.ack):
                    with m.If(mem.error):
                        respond(Status.BAD_ADDRESS)
                    with m.Else():
                        bus_done(mem.rdata)

            with m.State("CSR_REQUEST"):
                m.d.comb += [
                    axil["arvalid"].eq(~is_write),
                    axil["awvalid"].eq(is_write & ~aw_done),
                    axil["wvalid"].eq(is_write & ~w_done),
                    timer_run.eq(1),
                ]
                aw_now = aw_done | axil["awready"]
                w_now = w_done | axil["wready"]
                m.d.sync += [aw_done.eq(aw_now), w_done.eq(w_now)]
                with m.If(Mux(is_write, aw_now & w_now, axil["arready"])):
                    m.d.comb += timer_restart.eq(1)
                    m.next = "CSR_RESPONSE"
                with m.Elif(expired):
                    respond(Status.BUS_TIMEOUT)
            with m.State("CSR_RESPONSE"):
                m.d.comb += [axil["rready"].eq(~is_write), axil["bready"].eq(is_write),
                             timer_run.eq(1)]
                with m.If(Mux(is_write, axil["bvalid"], axil["rvalid"])):
                    with m.If(Mux(is_write, axil["bresp"], axil["rresp"]) != AXI_OKAY):
                        respond(Status.BUS_ERROR)
                    with m.Else():
                        bus_done(axil["rdata"])
                with m.Elif(expired):
                    respond(Status.BUS_TIMEOUT)

            # response: SOF and the header, LEN payload bytes from the buffer, the CRC
            with m.State("RESPOND"):
                m.d.comb += out_valid.eq(~crc.busy)
                resp_length = Cat(Const(0, 2), resp_words, Const(0, 16))
                header = [seq, cmd, status, resp_length[:8], resp_length[8:16]]
                with m.Switch(Cat(lane, widx[0])):
                    with m.Case(0):
                        m.d.comb += [out_byte.eq(SOF), out_raw.eq(1)]
                    for i, value in enumerate(header):
                        with m.Case(1 + i):
                            m.d.comb += out_byte.eq(value)
                with m.If(sent):
                    m.d.comb += [crc.clear.eq(out_raw), crc.feed.eq(~out_raw)]
                    next_byte()
                    with m.If(out_raw):         # each NAK counted once, as its SOF goes out
                        m.d.comb += [
                            counters.inc[crc_errors].eq(status == Status.BAD_CRC),
                            counters.inc[truncated].eq(status == Status.TIMEOUT),
                            counters.inc[bad_requests].eq(status.matches(
                                Status.BAD_COMMAND, Status.BAD_LENGTH, Status.BAD_ADDRESS)),
                        ]
                    with m.If(Cat(lane, widx[0]) == len(header)):
                        rewind()
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                with m.If((lane == 0) & (widx == resp_words)):
                    m.next = "CRC"
                with m.Else():
                    # PING and STATUS payloads come from the counter RAM, as its rows pass
                    shown = counters.phase[:4] == Cat(Const(1, 1), lane[1], widx[0], is_ping)
                    m.d.comb += [
                        out_valid.eq(~crc.busy & (~no_length | shown)),
                        out_byte.eq(Mux(no_length, counters.data.word_select(lane[0], 8),
                                        res_rd.data.word_select(lane, 8))),
                    ]
                    with m.If(sent):
                        m.d.comb += crc.feed.eq(1)
                        next_byte()
            with m.State("CRC"):                 # high byte, then low byte: both in crc[8:]
                m.d.comb += [out_valid.eq(~crc.busy), out_byte.eq(crc.crc[8:])]
                with m.If(sent):
                    m.d.comb += crc.feed.eq(1)
                    next_byte()                 # from lane 0
                    with m.If(lane[0]):
                        m.next = "IDLE"

        # bytes arriving while a request executes or is answered are dropped and counted
        with m.If(rx_valid & ~listening):
            count(discarded)
        return m
