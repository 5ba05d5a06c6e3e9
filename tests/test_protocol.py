"""Host side of the link protocol: framing, CRC, decoder, transfer planning and `Link`."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from systolic.runtime import protocol as P

settings.register_profile("protocol", derandomize=True, max_examples=150, deadline=None)
settings.load_profile("protocol")

seqs = st.integers(0, 255)
addresses = st.integers(0, 0xFFFF_FFFF)
payloads = st.binary(max_size=64)


def test_crc_matches_the_published_check_value():
    # CRC-16/CCITT-FALSE's catalogue check value for the ASCII digits 1..9
    assert P.crc16(b"123456789") == 0x29B1


@given(st.binary(max_size=100))
def test_crc_appended_big_endian_leaves_zero(data):
    assert P.crc16(data + P.crc16(data).to_bytes(2, "big")) == 0


@given(seqs, st.sampled_from(list(P.Command)), addresses, payloads)
def test_request_round_trip(seq, command, address, payload):
    if command in P.WRITE_COMMANDS:
        frame = P.encode_request(seq, command, address, payload=payload)
        expected = P.Request(seq, command, address, len(payload), payload)
    else:
        frame = P.encode_request(seq, command, address, length=len(payload))
        expected = P.Request(seq, command, address, len(payload), b"")
    assert frame.count(P.SOF) == 1 and frame[0] == P.SOF
    assert P.Decoder("request").feed(frame) == [expected]


@given(seqs, st.sampled_from(list(P.Command)), st.sampled_from(list(P.Status)), payloads)
def test_response_round_trip_byte_by_byte(seq, command, status, payload):
    frame = P.encode_response(seq, command, status, payload)
    decoder = P.Decoder()
    frames = [f for byte in frame for f in decoder.feed(bytes((byte,)))]
    assert frames == [P.Response(seq, command, status, payload)]
    assert not decoder.in_frame


def corrupt(frame, bit):
    """Flip one bit of the logical (unstuffed) body+CRC and stuff it again."""
    body = bytearray(unstuff(frame[1:]))
    body[bit // 8] ^= 1 << (bit % 8)
    return bytes((P.SOF,)) + P.stuff(bytes(body))


def unstuff(data):
    out, escaped = bytearray(), False
    for byte in data:
        if byte == P.ESC and not escaped:
            escaped = True
            continue
        out.append(byte ^ P.ESC_XOR if escaped else byte)
        escaped = False
    return bytes(out)


@given(seqs, st.sampled_from(list(P.Status)), st.binary(min_size=1, max_size=40), st.data())
def test_crc_catches_any_single_bit_error(seq, status, payload, data):
    frame = P.encode_response(seq, P.Command.READ_MEM, status, payload)
    body_bits = 8 * (P.RESPONSE_HEADER_BYTES + len(payload) + 2)
    len_bits = range(8 * 3, 8 * 5)   # a flipped LEN changes where the frame ends
    bit = data.draw(st.integers(0, body_bits - 1).filter(lambda b: b not in len_bits))
    decoder = P.Decoder()
    assert decoder.feed(corrupt(frame, bit)) == []
    assert decoder.crc_errors == 1
    # and the next good frame decodes
    assert decoder.feed(frame) == [P.Response(seq, P.Command.READ_MEM, status, payload)]


@given(st.binary(max_size=80), seqs, payloads)
def test_decoder_resynchronizes_after_garbage(garbage, seq, payload):
    frame = P.encode_response(seq, P.Command.READ_MEM, P.Status.OK, payload)
    frames = P.Decoder().feed(garbage + frame)
    assert frames[-1:] == [P.Response(seq, P.Command.READ_MEM, P.Status.OK, payload)]


def test_decoder_counts_garbage_and_truncated_frames():
    decoder = P.Decoder()
    good = P.encode_response(1, P.Command.PING, P.Status.OK, b"abcd")
    assert decoder.feed(b"\x00\x01" + good[:5] + good) == [
        P.Response(1, P.Command.PING, P.Status.OK, b"abcd")]
    assert (decoder.garbage_bytes, decoder.truncated, decoder.crc_errors) == (2, 1, 0)
    decoder.feed(good[:3])
    decoder.reset()
    assert decoder.truncated == 2 and not decoder.in_frame


def test_decoder_scoreboard_catches_a_corrupted_payload_byte():
    frame = bytearray(P.encode_response(3, P.Command.READ_MEM, P.Status.OK, bytes(range(8))))
    frame[-4] ^= 0x04                 # a payload byte (no SOF/ESC in this frame)
    with pytest.raises(AssertionError):
        assert P.Decoder().feed(bytes(frame)) == [
            P.Response(3, P.Command.READ_MEM, P.Status.OK, bytes(range(8)))]


@pytest.mark.parametrize("kwargs, message", [
    ({"seq": 256}, "sequence number must be in 0..255, not 256"),
    ({"address": -1}, "address must be a 32-bit unsigned integer, not -1"),
    ({"length": 1 << 16}, "length must be in 0..65535, not 65536"),
])
def test_encode_request_checks_arguments(kwargs, message):
    args = {"seq": 0, "command": P.Command.READ_MEM, "address": 0, **kwargs}
    length = args.pop("length", None)
    with pytest.raises(ValueError, match=message):
        P.encode_request(args["seq"], args["command"], args["address"], length=length)


@given(st.integers(0, 1 << 20), st.integers(0, 2000))
def test_aligned_span_and_chunks_cover_the_range(address, length):
    start, span = P.aligned_span(address, length)
    assert start % 4 == 0 and span % 4 == 0
    assert start <= address and address + length <= start + span < address + length + 4 + 4
    pieces = P.chunks(start, span)
    assert all(0 < n <= P.MAX_PAYLOAD and a % 4 == 0 for a, n in pieces)
    assert sum(n for _, n in pieces) == span
    assert all(a + n == b for (a, n), (b, _) in zip(pieces[:-1], pieces[1:], strict=True))


# -- Link against a Python model of the bridge ----------------------------------------------

class ModelBoard:
    """A port whose far end is a Python model of the bridge, with injectable faults.

    ``faults`` is a list consumed one per request: ``None`` (serve), ``"drop"`` (no
    answer), ``"nak"`` (BAD_CRC NAK), ``"stale"`` (an old ACK first, then serve).
    """

    port = "model0"

    def __init__(self, faults=(), size=4096):
        self.decoder = P.Decoder("request")
        self.memory = bytearray(size)
        self.csrs = {}
        self.pending = bytearray()
        self.faults = list(faults)
        self.requests = []
        self.now = 0.0

    def write(self, data):
        for request in self.decoder.feed(data):
            self.requests.append(request)
            fault = self.faults.pop(0) if self.faults else None
            if fault == "drop":
                continue
            if fault == "nak":
                self.pending += P.encode_response(request.seq, request.command,
                                                  P.Status.BAD_CRC)
                continue
            if fault == "stale":
                self.pending += P.encode_response((request.seq - 1) & 0xFF, request.command,
                                                  P.Status.OK, b"old!")
            self.pending += self.serve(request)

    def serve(self, r):
        def answer(status, payload=b""):
            return P.encode_response(r.seq, r.command, status, payload)
        if r.command == P.Command.PING:
            return answer(P.Status.OK, P.PING_WORD.to_bytes(4, "little"))
        if r.length % 4 or r.length > P.MAX_PAYLOAD:
            return answer(P.Status.BAD_LENGTH)
        if r.address % 4:
            return answer(P.Status.BAD_ADDRESS)
        if r.command == P.Command.READ_MEM:
            return answer(P.Status.OK, bytes(self.memory[r.address:r.address + r.length]))
        if r.command == P.Command.WRITE_MEM:
            self.memory[r.address:r.address + r.length] = r.payload
            return answer(P.Status.OK)
        if r.command == P.Command.READ_CSR:
            return answer(P.Status.OK, self.csrs.get(r.address, 0).to_bytes(4, "little"))
        if r.command == P.Command.WRITE_CSR:
            if r.address == 0xFFC:
                return answer(P.Status.BUS_ERROR)
            self.csrs[r.address] = int.from_bytes(r.payload, "little")
            return answer(P.Status.OK)
        return answer(P.Status.BAD_COMMAND)

    @property
    def in_waiting(self):
        return len(self.pending)

    def read(self, n):
        self.now += 0.01
        out = bytes(self.pending[:n])
        del self.pending[:n]
        return out


def model_link(faults=(), retries=3):
    board = ModelBoard(faults)
    return board, P.Link(board, timeout=0.1, retries=retries, clock=lambda: board.now)


@given(st.integers(0, 1500), st.binary(min_size=1, max_size=700))
def test_link_memory_any_alignment_and_length(address, data):
    board, link = model_link()
    before = bytes(board.memory)
    link.write_mem(address, data)
    expected = before[:address] + data + before[address + len(data):]
    assert bytes(board.memory) == expected
    assert link.read_mem(address, len(data)) == data
    assert all(r.length <= P.MAX_PAYLOAD for r in board.requests)


def test_link_chunks_large_transfers():
    board, link = model_link()
    link.write_mem(0, bytes(range(256)) * 3)
    writes = [r for r in board.requests if r.command == P.Command.WRITE_MEM]
    assert [(r.address, r.length) for r in writes] == [(0, 256), (256, 256), (512, 256)]


def test_link_retries_on_nak_timeout_and_ignores_stale_answers():
    board, link = model_link(faults=["nak", "drop", None, "stale"])
    link.write_csr(0x14, 0xCAFE)
    assert [r.command for r in board.requests] == [P.Command.WRITE_CSR] * 3
    assert len({r.seq for r in board.requests}) == 3
    assert (link.naks, link.timeouts) == (1, 1)
    assert link.read_csr(0x14) == 0xCAFE
    assert link.ping() == P.PROTOCOL_VERSION


def test_link_gives_up_after_repeated_naks():
    _, link = model_link(faults=["nak"] * 3, retries=2)
    with pytest.raises(P.NakError, match="after 3 attempts; last: NAK BAD_CRC") as err:
        link.ping()
    assert err.value.status == P.Status.BAD_CRC


def test_link_does_not_retry_a_refused_request():
    board, link = model_link()
    with pytest.raises(P.NakError, match=r"model0: WRITE_CSR at 0x00000FFC refused: "
                                         r"NAK BUS_ERROR"):
        link.write_csr(0xFFC, 1)
    assert len(board.requests) == 1


def test_link_reports_a_missing_board():
    _, link = model_link(faults=["drop"] * 4, retries=3)
    with pytest.raises(P.NoResponseError, match="no answer from a board on model0 to PING "
                                                "at 0x00000000 after 4 attempts"):
        link.ping()


def test_link_checks_arguments():
    with pytest.raises(ValueError, match="timeout must be positive, not 0"):
        P.Link(ModelBoard(), timeout=0)
    with pytest.raises(ValueError, match="retries must be a non-negative integer, not -1"):
        P.Link(ModelBoard(), retries=-1)


def test_device_status_from_payload():
    status = P.DeviceStatus.from_payload(bytes([1, 0, 2, 0, 3, 0, 4, 1]))
    assert status == P.DeviceStatus(1, 2, 3, 0x104)
    with pytest.raises(ValueError, match="STATUS payload must be 8 bytes, not 3"):
        P.DeviceStatus.from_payload(b"abc")
