"""Host bridge: framed, CRC-checked requests over a UART to system memory and AXI4-Lite CSRs.

The protocol (constants, framing, CRC) is defined once in :mod:`systolic.runtime.protocol`
and described in ``docs/protocol.md``.
"""

from functools import reduce

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from systolic.rtl.axi import AXI4LiteSignature, flat_members
from systolic.runtime.protocol import (
    CRC_INIT,
    CRC_POLY,
    ESC,
    ESC_XOR,
    MAX_PAYLOAD,
    PING_WORD,
    REQUEST_HEADER_BYTES,
    RESPONSE_HEADER_BYTES,
    SOF,
    STATUS_BYTES,
    WORD_BYTES,
    WRITE_COMMANDS,
    Command,
    Status,
)

from .sysmem import AXI_OKAY, MemPortSignature
from .uart import UartRx, UartTx, check_divisor

__all__ = ["AXIL_SIGNATURE", "crc16_step", "Bridge"]

AXIL_SIGNATURE = AXI4LiteSignature(addr_width=32, data_width=32)
"""The bridge's CSR master bus (flat ``m_axil_*`` ports with the standard names)."""


def crc16_step(crc, byte):
    """Next CRC-16/CCITT-FALSE value after ``byte``, as an XOR network of ``crc`` and ``byte``.

    Each output bit is worked out symbolically from the bitwise definition (the same one as
    :func:`systolic.runtime.protocol.crc16_update`) and emitted as a parity of inputs.
    """
    bits = [{("crc", i)} for i in range(16)]
    for i in range(8):
        bits[8 + i] = bits[8 + i] ^ {("byte", i)}
    for _ in range(8):
        msb = bits[15]
        bits = [set()] + bits[:15]
        for i in range(16):
            if CRC_POLY >> i & 1:
                bits[i] = bits[i] ^ msb
    inputs = {"crc": crc, "byte": byte}
    return Cat(*(reduce(lambda a, b: a ^ b, (inputs[v][i] for v, i in sorted(terms)),
                        Const(0, 1)) for terms in bits))


class Bridge(wiring.Component):
    """UART host bridge: parses request frames, executes them, answers with ACK or NAK.

    One frame is handled at a time: the parser stores a write's payload in a
    :data:`MAX_PAYLOAD`-byte buffer, checks the CRC, then executes the request (memory
    writes and reads through ``mem``, CSR writes and reads through the AXI4-Lite master, one
    32-bit word at a time) and sends the response from the same buffer. Bytes that arrive
    while a request executes or its response is sent are discarded and counted. A frame
    that stops for ``timeout`` cycles is dropped and NAKed (TIMEOUT); a raw SOF inside a
    frame drops it silently and starts a new one; a CSR access that gets no answer in
    ``bus_timeout`` cycles is NAKed (BUS_TIMEOUT). No input can lock the bridge up.

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
        UART framing errors seen (wrapping); for debug.
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
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx), urx.o.ready.eq(1)]
        with m.If(urx.error):
            m.d.sync += self.framing_errors.eq(self.framing_errors + 1)

        words = MAX_PAYLOAD // WORD_BYTES
        m.submodules.buffer = buffer = Memory(shape=32, depth=words, init=[])
        buf_rd = buffer.read_port()
        buf_wr = buffer.write_port()

        # request fields and counters
        seq, cmd, status = Signal(8), Signal(8), Signal(3)
        addr, length = Signal(32), Signal(16)
        pos = Signal(18)                      # body bytes received in this frame
        escaped = Signal()
        crc = Signal(16, init=CRC_INIT)
        word = Signal(24)                     # payload bytes waiting for a full word
        timer = Signal(range(max(self.timeout, self.bus_timeout) + 1))
        idx = Signal(range(words + 1))        # word index of the executor
        nwords = Signal(range(words + 1))
        resp_len = Signal(16)
        timer_run, timer_clear = Signal(), Signal()
        responding = Signal()
        crc_errors, truncated, bad_requests, discarded = (Signal(16, name=n) for n in (
            "crc_errors", "truncated", "bad_requests", "discarded"))

        listening = Signal()                  # the parser takes bytes (IDLE or FRAME)
        rx_byte = Signal(8)
        rx_valid = Signal()
        m.d.comb += [rx_byte.eq(urx.o.payload), rx_valid.eq(urx.o.valid)]
        data = Signal(8)
        m.d.comb += data.eq(rx_byte ^ Mux(escaped, ESC_XOR, 0))
        crc_next = Signal(16)
        m.d.comb += crc_next.eq(crc16_step(crc, data))

        is_write = Signal()
        m.d.comb += is_write.eq(reduce(lambda a, b: a | b,
                                       [cmd == int(c) for c in WRITE_COMMANDS]))
        payload_len = Signal(16)
        m.d.comb += payload_len.eq(Mux(is_write, length, 0))
        payload_pos = Signal(18)
        m.d.comb += payload_pos.eq(pos - REQUEST_HEADER_BYTES)

        # output byte sequencer -> stuffer -> UART TX
        out_byte, out_raw, out_valid, out_ready = Signal(8), Signal(), Signal(), Signal()
        out_pos = Signal(17)
        out_wait = Signal()
        out_crc = Signal(16, init=CRC_INIT)
        second = Signal()
        needs_escape = ~out_raw & ((out_byte == SOF) | (out_byte == ESC))
        m.d.comb += utx.i.payload.eq(Mux(second, out_byte ^ ESC_XOR,
                                         Mux(needs_escape, ESC, out_byte)))
        m.d.comb += utx.i.valid.eq(out_valid)
        m.d.comb += out_ready.eq(utx.i.ready & (second | ~needs_escape))
        with m.If(out_valid & utx.i.ready):
            m.d.sync += second.eq(~second & needs_escape)

        # executor address of word idx
        word_addr = Signal(32)
        m.d.comb += word_addr.eq(addr + (idx << 2))
        m.d.comb += buf_rd.addr.eq(idx)
        # address and write data go out unconditionally; only the valid signals are gated
        m.d.comb += [self.mem.addr.eq(word_addr), self.mem.wdata.eq(buf_rd.data)]
        for prefix in ("aw", "ar"):
            m.d.comb += getattr(self, f"m_axil_{prefix}addr").eq(word_addr)
        m.d.comb += [self.m_axil_wdata.eq(buf_rd.data), self.m_axil_wstrb.eq(0xF)]

        mem = self.mem
        axil = {name: getattr(self, "m_axil_" + name) for name in AXIL_SIGNATURE.members}
        aw_done, w_done = Signal(), Signal()

        def respond(code):
            m.d.sync += status.eq(code)
            m.next = "RESPOND"

        def next_word():
            m.d.sync += idx.eq(idx + 1)
            m.d.comb += timer_clear.eq(1)
            with m.If(idx + 1 == nwords):
                respond(Status.OK)

        def bus_timer():
            m.d.comb += timer_run.eq(1)
            with m.If(timer == self.bus_timeout):
                respond(Status.BUS_TIMEOUT)

        # one timer: inter-byte timeout in FRAME, handshake timeout on the CSR bus
        with m.If(timer_clear | ~timer_run):
            m.d.sync += timer.eq(0)
        with m.Else():
            m.d.sync += timer.eq(timer + 1)

        # response length: read data, the PING word, the STATUS counters, or nothing
        with m.If(status == Status.OK):
            with m.Switch(cmd):
                with m.Case(Command.READ_MEM, Command.READ_CSR):
                    m.d.comb += resp_len.eq(length)
                with m.Case(Command.PING):
                    m.d.comb += resp_len.eq(4)
                with m.Case(Command.STATUS):
                    m.d.comb += resp_len.eq(STATUS_BYTES)
        with m.If(~responding):
            m.d.sync += [out_pos.eq(0), out_crc.eq(CRC_INIT), out_wait.eq(1)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += listening.eq(1)
                with m.If(rx_valid):
                    with m.If(rx_byte == SOF):
                        m.d.sync += [pos.eq(0), escaped.eq(0), crc.eq(CRC_INIT), seq.eq(0),
                                     cmd.eq(0)]
                        m.next = "FRAME"
                    with m.Else():
                        m.d.sync += discarded.eq(discarded + 1)

            with m.State("FRAME"):
                m.d.comb += [listening.eq(1), timer_run.eq(1)]
                with m.If(rx_valid):
                    m.d.comb += timer_clear.eq(1)
                    with m.If(rx_byte == SOF):
                        m.d.sync += [pos.eq(0), escaped.eq(0), crc.eq(CRC_INIT), seq.eq(0),
                                     cmd.eq(0), truncated.eq(truncated + 1)]
                    with m.Elif((rx_byte == ESC) & ~escaped):
                        m.d.sync += escaped.eq(1)
                    with m.Else():
                        m.d.sync += [escaped.eq(0), crc.eq(crc_next), pos.eq(pos + 1)]
                        with m.Switch(pos):
                            with m.Case(0):
                                m.d.sync += seq.eq(data)
                            with m.Case(1):
                                m.d.sync += cmd.eq(data)
                            with m.Case(2, 3, 4, 5):     # little-endian: shift in from the top
                                m.d.sync += addr.eq(Cat(addr[8:], data))
                            with m.Case(6, 7):
                                m.d.sync += length.eq(Cat(length[8:], data))
                        with m.If((pos >= REQUEST_HEADER_BYTES) & (payload_pos < payload_len)):
                            m.d.sync += word.eq(Cat(word[8:], data))
                            with m.If((payload_pos[:2] == 3) & (payload_pos < MAX_PAYLOAD)):
                                m.d.comb += [buf_wr.addr.eq(payload_pos[2:]), buf_wr.en.eq(1),
                                             buf_wr.data.eq(Cat(word, data))]
                        with m.If((pos >= REQUEST_HEADER_BYTES)
                                  & (pos + 1 == REQUEST_HEADER_BYTES + payload_len + 2)):
                            with m.If(crc_next == 0):
                                m.next = "CHECK"
                            with m.Else():
                                m.d.sync += crc_errors.eq(crc_errors + 1)
                                respond(Status.BAD_CRC)
                with m.Elif(timer == self.timeout):
                    m.d.sync += truncated.eq(truncated + 1)
                    respond(Status.TIMEOUT)

            with m.State("CHECK"):
                m.d.sync += [idx.eq(0), nwords.eq(length >> 2), aw_done.eq(0), w_done.eq(0)]
                bad_length = (length[:2] != 0) | (length > MAX_PAYLOAD)
                with m.Switch(cmd):
                    with m.Case(Command.PING, Command.STATUS):
                        with m.If(length != 0):
                            m.d.sync += bad_requests.eq(bad_requests + 1)
                            respond(Status.BAD_LENGTH)
                        with m.Elif(cmd == Command.PING):
                            m.d.comb += [buf_wr.addr.eq(0), buf_wr.en.eq(1),
                                         buf_wr.data.eq(PING_WORD)]
                            respond(Status.OK)
                        with m.Else():
                            m.d.comb += [buf_wr.addr.eq(0), buf_wr.en.eq(1),
                                         buf_wr.data.eq(Cat(crc_errors, truncated))]
                            m.next = "STATUS"
                    with m.Case(Command.READ_MEM, Command.WRITE_MEM, Command.READ_CSR,
                                Command.WRITE_CSR):
                        with m.If(bad_length):
                            m.d.sync += bad_requests.eq(bad_requests + 1)
                            respond(Status.BAD_LENGTH)
                        with m.Elif(addr[:2] != 0):
                            m.d.sync += bad_requests.eq(bad_requests + 1)
                            respond(Status.BAD_ADDRESS)
                        with m.Elif(length == 0):
                            respond(Status.OK)
                        with m.Elif(cmd == Command.READ_MEM):
                            m.next = "READ_MEM"
                        with m.Elif(cmd == Command.WRITE_MEM):
                            m.next = "WRITE_MEM_FETCH"
                        with m.Elif(cmd == Command.READ_CSR):
                            m.next = "READ_CSR_ADDR"
                        with m.Else():
                            m.next = "WRITE_CSR_FETCH"
                    with m.Default():
                        m.d.sync += bad_requests.eq(bad_requests + 1)
                        respond(Status.BAD_COMMAND)

            with m.State("STATUS"):
                m.d.comb += [buf_wr.addr.eq(1), buf_wr.en.eq(1),
                             buf_wr.data.eq(Cat(bad_requests, discarded))]
                respond(Status.OK)

            with m.State("READ_MEM"):
                m.d.comb += mem.valid.eq(1)
                with m.If(mem.ack):
                    m.d.comb += [buf_wr.addr.eq(idx), buf_wr.en.eq(1), buf_wr.data.eq(mem.rdata)]
                    with m.If(mem.error):
                        m.d.sync += bad_requests.eq(bad_requests + 1)
                        respond(Status.BAD_ADDRESS)
                    with m.Else():
                        next_word()

            with m.State("WRITE_MEM_FETCH"):   # buffer word idx appears on buf_rd.data
                m.next = "WRITE_MEM"
            with m.State("WRITE_MEM"):
                m.d.comb += [mem.valid.eq(1), mem.we.eq(1)]
                with m.If(mem.ack):
                    m.next = "WRITE_MEM_FETCH"
                    with m.If(mem.error):
                        m.d.sync += bad_requests.eq(bad_requests + 1)
                        respond(Status.BAD_ADDRESS)
                    with m.Else():
                        next_word()

            with m.State("READ_CSR_ADDR"):
                m.d.comb += axil["arvalid"].eq(1)
                bus_timer()
                with m.If(axil["arready"]):
                    m.d.comb += timer_clear.eq(1)
                    m.next = "READ_CSR_DATA"
            with m.State("READ_CSR_DATA"):
                m.d.comb += axil["rready"].eq(1)
                bus_timer()
                with m.If(axil["rvalid"]):
                    m.d.comb += [buf_wr.addr.eq(idx), buf_wr.en.eq(1),
                                 buf_wr.data.eq(axil["rdata"])]
                    m.next = "READ_CSR_ADDR"
                    with m.If(axil["rresp"] != AXI_OKAY):
                        respond(Status.BUS_ERROR)
                    with m.Else():
                        next_word()

            with m.State("WRITE_CSR_FETCH"):
                m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                m.next = "WRITE_CSR_ADDR"
            with m.State("WRITE_CSR_ADDR"):
                m.d.comb += [axil["awvalid"].eq(~aw_done), axil["wvalid"].eq(~w_done)]
                bus_timer()
                aw_now = aw_done | axil["awready"]
                w_now = w_done | axil["wready"]
                m.d.sync += [aw_done.eq(aw_now), w_done.eq(w_now)]
                with m.If(aw_now & w_now):
                    m.d.comb += timer_clear.eq(1)
                    m.next = "WRITE_CSR_RESP"
            with m.State("WRITE_CSR_RESP"):
                m.d.comb += axil["bready"].eq(1)
                bus_timer()
                with m.If(axil["bvalid"]):
                    m.next = "WRITE_CSR_FETCH"
                    with m.If(axil["bresp"] != AXI_OKAY):
                        respond(Status.BUS_ERROR)
                    with m.Else():
                        next_word()

            with m.State("RESPOND"):
                m.d.comb += responding.eq(1)
                self._respond(m, buf_rd, seq, cmd, status, resp_len, out_pos, out_wait,
                              out_crc, out_byte, out_raw, out_valid, out_ready)

        # bytes arriving while a request executes or is answered are dropped and counted
        with m.If(rx_valid & ~listening):
            m.d.sync += discarded.eq(discarded + 1)
        return m

    def _respond(self, m, buf_rd, seq, cmd, status, resp_len, out_pos, out_wait, out_crc,
                 out_byte, out_raw, out_valid, out_ready):
        """Send SOF, the response header, ``resp_len`` buffer bytes and the CRC."""
        h = RESPONSE_HEADER_BYTES
        payload_pos = Signal(17)
        m.d.comb += [payload_pos.eq(out_pos - (1 + h)), buf_rd.addr.eq(payload_pos[2:])]
        header = [seq, cmd, status, resp_len[:8], resp_len[8:]]
        end = 1 + h + resp_len
        with m.If(out_pos == 0):
            m.d.comb += [out_byte.eq(SOF), out_raw.eq(1)]
        for i, value in enumerate(header):
            with m.Elif(out_pos == 1 + i):
                m.d.comb += out_byte.eq(value)
        with m.Elif(out_pos < end):
            m.d.comb += out_byte.eq(buf_rd.data.word_select(payload_pos[:2], 8))
        with m.Elif(out_pos == end):
            m.d.comb += out_byte.eq(out_crc[8:])
        with m.Else():
            m.d.comb += out_byte.eq(out_crc[:8])
        # one idle cycle after each byte so the buffer's read port catches up
        m.d.comb += out_valid.eq(~out_wait)
        m.d.sync += out_wait.eq(0)
        with m.If(out_valid & out_ready):
            m.d.sync += [out_pos.eq(out_pos + 1), out_wait.eq(1)]
            with m.If((out_pos != 0) & (out_pos < end)):
                m.d.sync += out_crc.eq(crc16_step(out_crc, out_byte))
            with m.If(out_pos == end + 1):
                m.next = "IDLE"
