"""The host link protocol: framed, CRC-checked requests and responses over a byte stream.

This module is the single definition of the protocol. The gateware bridge
(``systolic.fpga.bridge``) imports its constants; the host side is sans-IO (encoders
return bytes, a :class:`Decoder` is fed bytes and returns frames), so the same code
drives a serial port (:class:`Link`) and a simulation test bench. See ``docs/protocol.md``.

Frame on the wire::

    SOF | stuffed( body | CRC-16 big-endian )

    request body:  SEQ CMD ADDR[4, LE] LEN[2, LE] PAYLOAD[LEN if CMD writes, else 0]
    response body: SEQ CMD STATUS LEN[2, LE] PAYLOAD[LEN]

Inside a frame the bytes ``SOF`` and ``ESC`` are sent as ``ESC, byte ^ ESC_XOR``, so a raw
``SOF`` always starts a frame and a receiver resynchronizes on it.
"""

import enum
import time
from dataclasses import dataclass

__all__ = [
    "SOF", "ESC", "ESC_XOR", "MAX_PAYLOAD", "WORD_BYTES", "CRC_INIT", "CRC_POLY",
    "REQUEST_HEADER_BYTES", "RESPONSE_HEADER_BYTES", "PROTOCOL_VERSION", "PING_MAGIC",
    "PING_WORD", "STATUS_BYTES", "Command", "Status", "WRITE_COMMANDS", "RETRY_STATUSES",
    "crc16", "crc16_update", "stuff", "request_payload_length", "encode_request",
    "encode_response", "Request", "Response", "Decoder", "DeviceStatus", "aligned_span",
    "chunks", "LinkError", "NoResponseError", "NakError", "Link",
]

SOF = 0x7E
"""Start of frame. Never appears inside a frame (it is escaped)."""
ESC = 0x7D
"""Escape: the next byte is XORed with :data:`ESC_XOR`."""
ESC_XOR = 0x20

MAX_PAYLOAD = 256
"""Largest payload of one frame, in bytes (the bridge's frame buffer)."""
WORD_BYTES = 4
"""Memory and CSR requests move whole 32-bit words: address and length multiples of 4."""

CRC_INIT = 0xFFFF
CRC_POLY = 0x1021
"""CRC-16/CCITT-FALSE: polynomial 0x1021, initial 0xFFFF, no reflection, no final XOR."""

REQUEST_HEADER_BYTES = 8   # SEQ CMD ADDR[4] LEN[2]
RESPONSE_HEADER_BYTES = 5  # SEQ CMD STATUS LEN[2]

PROTOCOL_VERSION = 1
PING_MAGIC = 0xB5
PING_WORD = PING_MAGIC | PROTOCOL_VERSION << 8 | MAX_PAYLOAD << 16
"""The 4-byte payload (little-endian word) of a PING acknowledgement."""
STATUS_BYTES = 8
"""Payload of a STATUS acknowledgement: four 16-bit little-endian counters."""


class Command(enum.IntEnum):
    """Request commands."""
    PING = 0x01       #: ACK carries :data:`PING_WORD`.
    READ_MEM = 0x02   #: Read LEN bytes of system memory at ADDR.
    WRITE_MEM = 0x03  #: Write the payload to system memory at ADDR.
    READ_CSR = 0x04   #: Read LEN/4 CSRs starting at ADDR (AXI4-Lite).
    WRITE_CSR = 0x05  #: Write LEN/4 CSRs starting at ADDR (AXI4-Lite).
    STATUS = 0x06     #: ACK carries the bridge's drop counters (:class:`DeviceStatus`).


WRITE_COMMANDS = frozenset({Command.WRITE_MEM, Command.WRITE_CSR})


class Status(enum.IntEnum):
    """Response status: 0 acknowledges, anything else is a NAK reason."""
    OK = 0
    BAD_CRC = 1      #: The frame's CRC did not match.
    TIMEOUT = 2      #: The frame stopped mid-way (inter-byte timeout): truncated.
    BAD_COMMAND = 3  #: Unknown command byte.
    BAD_LENGTH = 4   #: LEN not a multiple of 4, above MAX_PAYLOAD, or nonzero for PING/STATUS.
    BAD_ADDRESS = 5  #: ADDR not word aligned, or outside system memory.
    BUS_ERROR = 6    #: The AXI4-Lite slave answered with an error response.
    BUS_TIMEOUT = 7  #: The AXI4-Lite slave did not answer in time.


RETRY_STATUSES = frozenset({Status.BAD_CRC, Status.TIMEOUT})
"""NAK reasons caused by the link (worth a retry); others are answers about the request."""


# -- CRC and framing ---------------------------------------------------------------------

def crc16_update(crc, byte):
    """One byte of CRC-16/CCITT-FALSE."""
    crc ^= byte << 8
    for _ in range(8):
        crc = (crc << 1) ^ CRC_POLY if crc & 0x8000 else crc << 1
    return crc & 0xFFFF


def crc16(data, crc=CRC_INIT):
    """CRC-16/CCITT-FALSE of ``data``. Appending it big-endian makes the CRC of the whole zero."""
    for byte in data:
        crc = crc16_update(crc, byte)
    return crc


def stuff(body):
    """Escape ``SOF`` and ``ESC`` in ``body``."""
    out = bytearray()
    for byte in body:
        if byte in (SOF, ESC):
            out += bytes((ESC, byte ^ ESC_XOR))
        else:
            out.append(byte)
    return bytes(out)


def _frame(body):
    return bytes((SOF,)) + stuff(body + crc16(body).to_bytes(2, "big"))


def request_payload_length(command, length):
    """Payload bytes that follow a request header: ``length`` for writes, else none."""
    return length if command in WRITE_COMMANDS else 0


def encode_request(seq, command, address=0, *, length=None, payload=b""):
    """Encode one request frame.

    Parameters
    ----------
    seq : int
        Sequence number, 0..255; the response carries it back.
    command : Command or int
        Command byte (an unknown value is encoded as given, to test the device's NAK).
    address : int
        32-bit byte address.
    length : int, optional
        LEN field; defaults to ``len(payload)``. For reads it is the byte count to read.
    payload : bytes
        Data of a write.
    """
    if not 0 <= seq <= 0xFF:
        raise ValueError(f"sequence number must be in 0..255, not {seq!r}")
    if not 0 <= address <= 0xFFFF_FFFF:
        raise ValueError(f"address must be a 32-bit unsigned integer, not {address!r}")
    length = len(payload) if length is None else length
    if not 0 <= length <= 0xFFFF:
        raise ValueError(f"length must be in 0..65535, not {length!r}")
    body = (bytes((seq, int(command))) + address.to_bytes(4, "little")
            + length.to_bytes(2, "little") + bytes(payload))
    return _frame(body)


def encode_response(seq, command, status, payload=b""):
    """Encode one response frame (what the device sends; used by models and tests)."""
    body = (bytes((seq, int(command), int(status))) + len(payload).to_bytes(2, "little")
            + bytes(payload))
    return _frame(body)


@dataclass(frozen=True)
class Request:
    """A decoded request frame."""
    seq: int
    command: int
    address: int
    length: int
    payload: bytes = b""


@dataclass(frozen=True)
class Response:
    """A decoded response frame. ``status`` is a :class:`Status` when known."""
    seq: int
    command: int
    status: int
    payload: bytes = b""

    @property
    def ok(self):
        return self.status == Status.OK


class Decoder:
    """Sans-IO frame decoder: feed it received bytes, get complete frames back.

    Parameters
    ----------
    kind : str
        ``"response"`` (host side, the default) or ``"request"`` (device models).

    Attributes
    ----------
    crc_errors, truncated, garbage_bytes : int
        Frames dropped for a bad CRC, frames cut short by a new ``SOF`` or :meth:`reset`,
        and bytes seen outside any frame.
    """

    def __init__(self, kind="response"):
        if kind not in ("response", "request"):
            raise ValueError(f"decoder kind must be 'response' or 'request', not {kind!r}")
        self.kind = kind
        self._header = RESPONSE_HEADER_BYTES if kind == "response" else REQUEST_HEADER_BYTES
        self.crc_errors = 0
        self.truncated = 0
        self.garbage_bytes = 0
        self._body = None       # bytearray while inside a frame
        self._escaped = False
        self._expected = None   # body length including CRC, once the header is in

    @property
    def in_frame(self):
        """True while a frame has started and is not complete."""
        return self._body is not None

    def reset(self):
        """Drop a partial frame (call on a receive timeout)."""
        if self._body is not None:
            self.truncated += 1
        self._body = None

    def feed(self, data):
        """Consume ``data``; return the list of frames completed by it."""
        frames = []
        for byte in data:
            if byte == SOF:
                self.reset()
                self._body, self._escaped, self._expected = bytearray(), False, None
                continue
            if self._body is None:
                self.garbage_bytes += 1
                continue
            if byte == ESC and not self._escaped:
                self._escaped = True
                continue
            if self._escaped:
                byte ^= ESC_XOR
                self._escaped = False
            self._body.append(byte)
            if self._expected is None and len(self._body) == self._header:
                self._expected = self._header + self._payload_length() + 2
            if self._expected is not None and len(self._body) == self._expected:
                body, self._body = bytes(self._body), None
                frame = self._decode(body)
                if frame is not None:
                    frames.append(frame)
        return frames

    def _payload_length(self):
        length = int.from_bytes(self._body[self._header - 2:self._header], "little")
        if self.kind == "request":
            return request_payload_length(self._body[1], length)
        return length

    def _decode(self, body):
        if crc16(body) != 0:
            self.crc_errors += 1
            return None
        h, payload = self._header, body[self._header:-2]
        if self.kind == "response":
            status = body[2]
            status = Status(status) if status in Status._value2member_map_ else status
            return Response(body[0], body[1], status, payload)
        return Request(body[0], body[1], int.from_bytes(body[2:6], "little"),
                       int.from_bytes(body[6:h], "little"), payload)


@dataclass(frozen=True)
class DeviceStatus:
    """The bridge's drop counters, from a STATUS acknowledgement (16 bits, wrapping).

    ``crc_errors``: frames with a bad CRC; ``truncated``: frames cut short by the
    inter-byte timeout or a new SOF; ``bad_requests``: frames NAKed for a bad command,
    length or address; ``discarded_bytes``: bytes outside frames or while busy.
    """
    crc_errors: int
    truncated: int
    bad_requests: int
    discarded_bytes: int

    @classmethod
    def from_payload(cls, payload):
        if len(payload) != STATUS_BYTES:
            raise ValueError(f"STATUS payload must be {STATUS_BYTES} bytes, not {len(payload)}")
        return cls(*(int.from_bytes(payload[i:i + 2], "little") for i in range(0, 8, 2)))


# -- transfer planning -------------------------------------------------------------------

def aligned_span(address, length):
    """The word-aligned ``(start, length)`` that covers ``length`` bytes at ``address``."""
    start = address & ~(WORD_BYTES - 1)
    end = -(-(address + length) // WORD_BYTES) * WORD_BYTES
    return start, end - start


def chunks(address, length, max_payload=MAX_PAYLOAD):
    """Split an aligned span into ``(address, length)`` pieces of at most ``max_payload``."""
    return [(address + off, min(max_payload, length - off))
            for off in range(0, length, max_payload)]


# -- synchronous link --------------------------------------------------------------------

class LinkError(Exception):
    """A request could not be completed."""


class NoResponseError(LinkError):
    """No valid response arrived after all attempts."""


class NakError(LinkError):
    """The device refused a request.

    Attributes
    ----------
    status : Status
        The NAK reason of the last attempt.
    """

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


class Link:
    """Request/response over any byte port with ``read(n)`` and ``write(data)``.

    One request is outstanding at a time (stop and wait). A response whose sequence
    number does not match the outstanding request is stale and ignored. A NAK for a
    link error (:data:`RETRY_STATUSES`) or no response within ``timeout`` seconds is
    retried with a new sequence number, up to ``retries`` more times. Retries give
    at-least-once delivery: a write whose acknowledgement was lost is written again.

    Parameters
    ----------
    port : object
        ``read(n) -> bytes`` (may return fewer bytes, or none, on its own timeout) and
        ``write(bytes)``, e.g. :class:`serial.Serial` opened with a short ``timeout``.
    timeout : float
        Seconds to wait for each response.
    retries : int
        Extra attempts after the first.
    name : str, optional
        Port name for error messages; defaults to ``port.port`` or ``port.name``.
    clock : callable
        Monotonic time source (seconds).
    """

    def __init__(self, port, *, timeout=1.0, retries=3, name=None, clock=time.monotonic):
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, not {retries!r}")
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self.name = name or getattr(port, "port", None) or getattr(port, "name", None) \
            or repr(port)
        self.clock = clock
        self.decoder = Decoder("response")
        self.seq = 0
        self.naks = 0
        self.timeouts = 0

    # -- one transaction -------------------------------------------------------------

    def transact(self, command, address=0, *, length=None, payload=b""):
        """Send one request and return the payload of its acknowledgement."""
        command = Command(command)
        attempts = self.retries + 1
        last = None
        for _ in range(attempts):
            self.seq = (self.seq + 1) & 0xFF
            self.port.write(encode_request(self.seq, command, address, length=length,
                                           payload=payload))
            response = self._wait(self.seq)
            if response is None:
                self.timeouts += 1
                last = "no response"
                continue
            if response.ok:
                return response.payload
            status = response.status
            self.naks += 1
            last = f"NAK {getattr(status, 'name', status)}"
            if status not in RETRY_STATUSES:
                raise NakError(f"{self.name}: {command.name} at 0x{address:08X} refused: "
                               f"{last}", status)
        what = f"{command.name} at 0x{address:08X}"
        if last == "no response":
            raise NoResponseError(f"no answer from a board on {self.name} to {what} after "
                                  f"{attempts} attempts ({self.timeout} s each); check the "
                                  f"port, the cable, the baud rate and that the bitstream "
                                  f"is loaded")
        raise NakError(f"{self.name}: {what} failed after {attempts} attempts; last: {last}",
                       status)

    def _wait(self, seq):
        deadline = self.clock() + self.timeout
        while self.clock() < deadline:
            waiting = getattr(self.port, "in_waiting", 0) or 1
            for frame in self.decoder.feed(self.port.read(waiting)):
                if frame.seq == seq:
                    return frame
        self.decoder.reset()
        return None

    # -- commands --------------------------------------------------------------------

    def ping(self):
        """Check that a bridge answers; return its protocol version."""
        word = int.from_bytes(self.transact(Command.PING), "little")
        if word & 0xFF != PING_MAGIC:
            raise LinkError(f"{self.name}: PING answered 0x{word:08X}, not a Systolic bridge")
        return word >> 8 & 0xFF

    def status(self):
        """The bridge's drop counters."""
        return DeviceStatus.from_payload(self.transact(Command.STATUS))

    def read_csr(self, address):
        """Read one 32-bit CSR."""
        return int.from_bytes(self.transact(Command.READ_CSR, address, length=4), "little")

    def write_csr(self, address, value):
        """Write one 32-bit CSR."""
        self.transact(Command.WRITE_CSR, address, payload=(value & 0xFFFF_FFFF)
                      .to_bytes(4, "little"))

    def read_mem(self, address, length):
        """Read ``length`` bytes of system memory at any byte address."""
        start, span = aligned_span(address, length)
        data = bytearray()
        for addr, n in chunks(start, span):
            data += self.transact(Command.READ_MEM, addr, length=n)
        return bytes(data[address - start:address - start + length])

    def write_mem(self, address, data):
        """Write ``data`` to system memory at any byte address.

        Partial words at either end are read first and merged (read-modify-write).
        """
        data = bytes(data)
        if not data:
            return
        start, span = aligned_span(address, len(data))
        image = bytearray(span)
        head, tail = address - start, span - (address - start) - len(data)
        if head:
            image[:WORD_BYTES] = self.read_mem(start, WORD_BYTES)
        if tail:
            image[-WORD_BYTES:] = self.read_mem(start + span - WORD_BYTES, WORD_BYTES)
        image[head:head + len(data)] = data
        for addr, n in chunks(start, span):
            self.transact(Command.WRITE_MEM, addr, payload=image[addr - start:addr - start + n])
