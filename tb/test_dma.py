"""cocotb bench for the DMA (tb/dma_top.py): AxiRam as system memory, random pauses on
every AXI channel and stream, a byte-exact scoreboard and AXI beat accounting."""

import os
import random

import cocotb
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiRam, AxiResp
from cocotbext.axi.axi_channels import AxiARMonitor, AxiAWMonitor, AxiRMonitor, AxiWMonitor
from cocotbext.axi.stream import define_stream

from systolic.config import preset
from systolic.rtl.dma import DMA
from systolic.rtl.dma_write import chunk_bytes

MEM_SIZE = 1 << 20
TIMEOUT = {"timeout_time": 2, "timeout_unit": "ms"}

_, _, StreamSource, StreamSink, _ = define_stream(
    "Dma", signals=["payload", "valid", "ready"])


def pack(layout, **fields):
    """An integer holding ``fields`` at their places in ``layout``."""
    layout = data.Layout.cast(layout)
    word = 0
    for name, value in fields.items():
        f = layout[name]
        word |= (int(value) & ((1 << f.width) - 1)) << f.offset
    return word


def field(layout, word, name):
    f = data.Layout.cast(layout)[name]
    return (word >> f.offset) & ((1 << f.width) - 1)


def pauses(rng, p):
    while True:
        yield rng.random() < p


class ScoreboardError(AssertionError):
    pass


def check_bytes(what, got, expected):
    """Raise :class:`ScoreboardError` at the first byte where ``got`` differs."""
    if len(got) != len(expected):
        raise ScoreboardError(f"{what}: {len(got)} bytes, expected {len(expected)}")
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        if g != e:
            raise ScoreboardError(f"{what}: byte {i} is 0x{g:02x}, expected 0x{e:02x}")


def load_ref(mem, cmd):
    """Destination rows of a LOAD (only the row's ``row_elems * elem_bytes`` bytes)."""
    eb = cmd["elem_bytes"]
    pad = cmd.get("pad_value", 0) if eb == 1 else 0
    width = cmd["row_elems"] * eb
    n_rows = max(cmd["n_rows"], 1)
    rows, beats = [], 0
    for i in range(n_rows):
        row = bytearray([pad] * width)
        nbytes = cmd["length"] * eb
        if cmd.get("pad_top", 0) <= i < n_rows - cmd.get("pad_bottom", 0) and nbytes:
            a = cmd["dram_addr"] + (i - cmd.get("pad_top", 0)) * cmd["stride"]
            dst = cmd.get("pad_left", 0) * eb
            for t in range(nbytes):
                if dst + t < width:
                    row[dst + t] = mem[a + t]
            beats += -(-(a % TB.B + nbytes) // TB.B)
        rows.append(bytes(row))
    return rows, beats


class TB:
    B = 8

    def __init__(self, dut, seed=1, pause=0.3):
        self.dut = dut
        self.config = preset(os.environ.get("DMA_PRESET", "default"))
        self.dma = DMA(self.config)
        TB.B = len(dut.m_axi_rdata) // 8
        self.W = self.dma.row_bytes
        self.rng = random.Random(seed)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        bus = AxiBus.from_prefix(dut, "m_axi")
        self.ram = AxiRam(bus, dut.clk, dut.rst, size=MEM_SIZE)
        self.ar = AxiARMonitor(bus.read.ar, dut.clk, dut.rst)
        self.r = AxiRMonitor(bus.read.r, dut.clk, dut.rst)
        self.aw = AxiAWMonitor(bus.write.aw, dut.clk, dut.rst)
        self.w = AxiWMonitor(bus.write.w, dut.clk, dut.rst)
        self.streams = {}
        self.C = chunk_bytes(self.config)
        for name, member in self.dma.signature.members.items():
            if name == "bus" or name == "store_cmd":    # store_cmd: a bare handshake
                continue
            cls = StreamSource if member.flow.name == "In" else StreamSink
            s = cls(StreamSource._bus_obj.from_prefix(dut, name + "_"), dut.clk, dut.rst)
            self.streams[name] = (s, member.signature.members["payload"].shape)
        self.bad = set()          # 4 KiB pages that answer SLVERR/DECERR
        self.decerr = False
        self._install_faults()
        if pause:
            self.set_pauses(pause)

    def set_pauses(self, p):
        rif, wif = self.ram.read_if, self.ram.write_if
        for ch in (rif.ar_channel, rif.r_channel, wif.aw_channel, wif.w_channel,
                   wif.b_channel):
            ch.set_pause_generator(pauses(self.rng, p))
        for s, _ in self.streams.values():
            s.set_pause_generator(pauses(self.rng, p))

    def _install_faults(self):
        ram = self.ram
        tb = self

        async def read(address, length):
            if address >> 12 in tb.bad:
                raise OSError("bad address")
            return ram.read(address % MEM_SIZE, length)

        async def write(address, data):
            if address >> 12 in tb.bad:
                raise OSError("bad address")
            ram.write(address % MEM_SIZE, data)

        ram.read_if._read = read
        ram.write_if._write = write
        for ch, fld in ((ram.read_if.r_channel, "rresp"), (ram.write_if.b_channel, "bresp")):
            send = ch.send

            async def send_resp(obj, send=send, fld=fld):
                if tb.decerr and getattr(obj, fld) == AxiResp.SLVERR:
                    setattr(obj, fld, AxiResp.DECERR)
                await send(obj)

            ch.send = send_resp

    async def reset(self):
        self.dut.store_cmd__valid.value = 0
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 2)

    # -- streams ---------------------------------------------------------------------------

    async def send(self, name, **fields):
        s, layout = self.streams[name]
        t = s._transaction_obj()
        t.payload = pack(layout, **fields)
        await s.send(t)

    async def recv(self, name):
        s, layout = self.streams[name]
        t = await s.recv()
        return int(t.payload)

    def unpack(self, name, word, fld):
        return field(self.streams[name][1], word, fld)

    # -- AXI accounting --------------------------------------------------------------------

    def drain_monitors(self):
        """(AR beats requested, R beats, AW beats requested, W beats) since the last call;
        checks every burst's 4 KiB rule and that W's last flags match AW's lengths."""
        counts = []
        for mon, is_addr in ((self.ar, True), (self.r, False), (self.aw, True),
                             (self.w, False)):
            total, items = 0, []
            while not mon.empty():
                items.append(mon.recv_nowait())
            for it in items:
                if is_addr:
                    addr = int(getattr(it, "araddr", getattr(it, "awaddr", 0)))
                    n = int(getattr(it, "arlen", getattr(it, "awlen", 0))) + 1
                    assert (addr % 4096) + n * TB.B <= 4096, \
                        f"burst at 0x{addr:x} of {n} beats crosses 4 KiB"
                    assert n <= 256
                    total += n
                else:
                    total += 1
            counts.append((total, items))
        aw_items, w_items = counts[2][1], counts[3][1]
        lasts = [i for i, w in enumerate(w_items) if int(w.wlast)]
        ends, at = [], -1
        for it in aw_items:
            at += int(it.awlen) + 1
            ends.append(at)
        assert lasts == ends, f"WLAST at beats {lasts[:8]}..., AW ends at {ends[:8]}..."
        return tuple(c[0] for c in counts)

    async def settle(self, cycles=20):
        await ClockCycles(self.dut.clk, cycles)

    # -- transfers ---------------------------------------------------------------------------

    async def load(self, **cmd):
        """Run one LOAD; return (rows as bytes, last flags, error)."""
        cocotb.start_soon(self.send("load_cmd", **cmd))
        n_rows = max(cmd["n_rows"], 1)
        width = cmd["row_elems"] * cmd["elem_bytes"]
        rows, lasts = [], []
        for _ in range(n_rows):
            word = await self.recv("load_rows")
            rows.append(self.unpack("load_rows", word, "data").to_bytes(self.W, "little")[:width])
            lasts.append(self.unpack("load_rows", word, "last"))
        done = await self.recv("load_done")
        return rows, lasts, self.unpack("load_done", done, "error")

    async def fetch(self, addr, count):
        cocotb.start_soon(self.send("fetch_cmd", addr=addr, count=count))
        words, lasts, errors = [], [], []
        for _ in range(max(count, 1)):
            w = await self.recv("fetch_words")
            words.append(self.unpack("fetch_words", w, "data").to_bytes(16, "little"))
            lasts.append(self.unpack("fetch_words", w, "last"))
            errors.append(self.unpack("fetch_words", w, "error"))
        return words, lasts, errors

    async def store(self, rows, *, dram_addr, n_rows, row_bytes, stride):
        """Run one STORE the way the store unit does: each row as chunks of at most
        ``chunk_bytes`` bytes with their addresses, then ``store_cmd`` held until the
        result comes on ``store_done`` (the same cycle); return the error flag."""
        source = self.streams["store_rows"][0]
        C = self.C
        for i, row in enumerate(rows[:max(n_rows, 1)]):
            body = row[:max(row_bytes, 1)]
            for j in range(0, len(body), C):
                piece = body[j:j + C]
                await self.send("store_rows", data=int.from_bytes(piece, "little"),
                                nbytes=len(piece), addr=dram_addr + i * stride + j)
        await source.wait()
        self.dut.store_cmd__valid.value = 1
        done = await self.recv("store_done")
        self.dut.store_cmd__valid.value = 0
        return self.unpack("store_done", done, "error")

    def store_beats(self, addr, nbytes):
        """AXI beats (single-beat bursts) the write engine uses for ``nbytes`` at
        ``addr``: one per chunk, two for a chunk that straddles two bus words."""
        beats = 0
        for j in range(0, nbytes, self.C):
            n = min(self.C, nbytes - j)
            beats += 1 + ((addr + j) % TB.B + n > TB.B)
        return beats


def fill(tb, seed=7):
    rng = random.Random(seed)
    tb.ram.write(0, bytes(rng.randrange(256) for _ in range(MEM_SIZE)))


async def start(dut, seed=1, pause=0.3):
    tb = TB(dut, seed=seed, pause=pause)
    fill(tb)
    await tb.reset()
    return tb


async def run_load(tb, **cmd):
    cmd.setdefault("stride", 0)
    expected, beats = load_ref(tb.ram.mem, cmd)
    tb.drain_monitors()
    rows, lasts, error = await tb.load(**cmd)
    for i, (got, exp) in enumerate(zip(rows, expected, strict=True)):
        check_bytes(f"LOAD {cmd} row {i}", got, exp)
    assert lasts == [0] * (len(rows) - 1) + [1], f"last flags {lasts}"
    assert error == 0, f"LOAD {cmd} reported an error"
    await tb.settle()
    ar, r, _, _ = tb.drain_monitors()
    assert ar == r == beats, f"LOAD {cmd}: AR asked {ar} beats, R gave {r}, expected {beats}"


def load_shapes(tb):
    """Named LOAD shapes for this configuration."""
    sp, cols, W = tb.config.sp_width, tb.config.cols, tb.W
    s = []
    for eb, re_ in ((1, sp), (4, cols)):
        base = dict(elem_bytes=eb, row_elems=re_, pad_value=0xA5)
        s += [
            dict(base, dram_addr=0x100, n_rows=1, length=1),                       # 1 element
            dict(base, dram_addr=0x203, n_rows=1, length=re_),                     # 1 full row
            dict(base, dram_addr=0x1001 * (eb == 1) + 0x1000 * (eb == 4), n_rows=7,
                 length=re_, stride=re_ * eb),                                     # contiguous
            dict(base, dram_addr=0x2ffd - 0x2ffd % eb, n_rows=5, length=re_,
                 stride=0x1000 - eb),                                              # 4 KiB cross
            dict(base, dram_addr=0x3005 - 0x3005 % eb, n_rows=9, length=max(re_ - 1, 1),
                 stride=300 * eb),                                                 # stride > row
            dict(base, dram_addr=0x4444, n_rows=6, length=re_, stride=0),         # stride 0
            dict(base, dram_addr=0x5123 - 0x5123 % eb, n_rows=12, length=max(re_ // 2, 1),
                 stride=40 * eb, pad_top=3, pad_bottom=2,
                 pad_left=min(1, re_ - 1)),                                        # pads
            dict(base, dram_addr=0x600, n_rows=4, length=0, stride=8),             # all pads
            dict(base, dram_addr=0x600, n_rows=3, length=1, pad_top=2, pad_bottom=2),
            dict(base, dram_addr=0x711, n_rows=2, length=re_, pad_left=3, stride=64),  # clip
        ]
    s.append(dict(elem_bytes=1, row_elems=sp, dram_addr=0x8001, n_rows=4096, length=1,
                  stride=1, pad_value=0))                                          # max rows
    assert all(c["row_elems"] * c["elem_bytes"] <= W for c in s)
    return s


@cocotb.test(**TIMEOUT)
async def test_load_shapes(dut):
    """Every LOAD shape lands exactly, with the expected number of AXI beats."""
    tb = await start(dut, seed=11)
    for cmd in load_shapes(tb):
        await run_load(tb, **cmd)


@cocotb.test(**TIMEOUT)
async def test_load_random(dut):
    """Random LOAD shapes against the reference."""
    tb = await start(dut, seed=12)
    rng = random.Random(5)
    for _ in range(40):
        eb = rng.choice((1, 4))
        re_ = tb.config.sp_width if eb == 1 else tb.config.cols
        length = rng.randint(0, re_)
        n_rows = rng.randint(1, 12)
        await run_load(tb, dram_addr=rng.randrange(0, MEM_SIZE // 2) & ~(eb - 1),
                       stride=rng.choice((0, eb, length * eb, rng.randrange(0, 5000) * eb)),
                       n_rows=n_rows, pad_top=rng.randint(0, 3), pad_bottom=rng.randint(0, 3),
                       length=length, pad_left=rng.randint(0, re_), elem_bytes=eb,
                       row_elems=re_, pad_value=rng.randrange(256))


@cocotb.test(**TIMEOUT)
async def test_fetch(dut):
    """Instruction fetch returns 128-bit words in order, across 4 KiB boundaries."""
    tb = await start(dut, seed=13)
    for addr, count in ((0x40, 1), (0x1230, 3), (0x0F80, 300), (0x20000, 0)):
        tb.drain_monitors()
        words, lasts, errors = await tb.fetch(addr, count)
        n = max(count, 1)
        check_bytes(f"fetch {addr:#x}+{count}", b"".join(words), tb.ram.read(addr, 16 * n))
        assert lasts == [0] * (n - 1) + [1] and errors == [0] * n
        await tb.settle()
        ar, r, _, _ = tb.drain_monitors()
        assert ar == r == 16 * n // TB.B, f"fetch: AR {ar}, R {r} beats"


def store_shapes(tb):
    W = tb.W
    return [
        dict(dram_addr=0x100, n_rows=1, row_bytes=1, stride=0),
        dict(dram_addr=0x203, n_rows=1, row_bytes=W, stride=0),
        dict(dram_addr=0x1001, n_rows=9, row_bytes=W, stride=W),
        dict(dram_addr=0x2ff9, n_rows=4, row_bytes=W, stride=0x1000 - 3),
        dict(dram_addr=0x3003, n_rows=6, row_bytes=max(W - 3, 1), stride=300),
        dict(dram_addr=0x4005, n_rows=5, row_bytes=3, stride=0),
        dict(dram_addr=0x5000, n_rows=300, row_bytes=7, stride=256),
    ]


async def run_store(tb, rng, **cmd):
    n = max(cmd["n_rows"], 1)
    rows = [bytes(rng.randrange(256) for _ in range(tb.W)) for _ in range(n)]
    lo = cmd["dram_addr"] - 64
    hi = cmd["dram_addr"] + (n - 1) * cmd["stride"] + cmd["row_bytes"] + 64
    expected = bytearray(tb.ram.read(lo, hi - lo))
    beats = 0
    for i, row in enumerate(rows):
        a = cmd["dram_addr"] + i * cmd["stride"]
        expected[a - lo:a - lo + cmd["row_bytes"]] = row[:cmd["row_bytes"]]
        beats += tb.store_beats(a, cmd["row_bytes"])
    tb.drain_monitors()
    error = await tb.store(rows, **cmd)
    assert error == 0, f"STORE {cmd} reported an error"
    check_bytes(f"STORE {cmd}", tb.ram.read(lo, hi - lo), bytes(expected))
    await tb.settle()
    _, _, aw, w = tb.drain_monitors()
    assert aw == w == beats, f"STORE {cmd}: AW asked {aw} beats, W gave {w}, expected {beats}"
    return expected, lo


@cocotb.test(**TIMEOUT)
async def test_store_shapes(dut):
    """Every STORE shape lands exactly (bytes around it untouched), beats counted."""
    tb = await start(dut, seed=21)
    rng = random.Random(3)
    for cmd in store_shapes(tb):
        await run_store(tb, rng, **cmd)
    for _ in range(20):
        await run_store(tb, rng, dram_addr=rng.randrange(0x1000, MEM_SIZE // 2),
                        n_rows=rng.randint(1, 10), row_bytes=rng.randint(1, tb.W),
                        stride=rng.choice((tb.W, rng.randrange(tb.W, 6000))))


@cocotb.test(**TIMEOUT)
async def test_concurrent(dut):
    """A LOAD, a fetch and a STORE at the same time, on the independent channels."""
    tb = await start(dut, seed=31)
    rng = random.Random(4)
    cmd = dict(dram_addr=0x9003, n_rows=40, length=tb.config.sp_width, stride=77,
               elem_bytes=1, row_elems=tb.config.sp_width, pad_value=1)
    expected, _ = load_ref(tb.ram.mem, cmd)
    image = tb.ram.read(0xA000, 16 * 20)
    ld = cocotb.start_soon(tb.load(**cmd))
    ft = cocotb.start_soon(tb.fetch(0xA000, 20))
    await run_store(tb, rng, dram_addr=0x40001, n_rows=30, row_bytes=tb.W, stride=100)
    rows, _, err = await ld
    for i, (g, e) in enumerate(zip(rows, expected, strict=True)):
        check_bytes(f"row {i}", g, e)
    words, _, _ = await ft
    check_bytes("fetch", b"".join(words), image)
    assert err == 0


@cocotb.test(**TIMEOUT)
async def test_axi_errors(dut):
    """SLVERR and DECERR give the error result, never a hang; the DMA works afterwards."""
    tb = await start(dut, seed=41)
    rng = random.Random(6)
    re_ = tb.config.sp_width
    for decerr in (False, True):
        tb.decerr = decerr
        tb.bad = {0x3, 0x30}
        rows, _, err = await tb.load(dram_addr=0x2FF0, n_rows=6, length=re_, stride=8,
                                     elem_bytes=1, row_elems=re_)
        assert err == 1 and len(rows) == 6, "LOAD over a bad page must report an error"
        words, _, errors = await tb.fetch(0x30000, 2)
        assert errors == [1, 1]
        err = await tb.store([bytes(tb.W)] * 3, dram_addr=0x2FFC, n_rows=3, row_bytes=tb.W,
                             stride=0x10)
        assert err == 1, "STORE over a bad page must report an error"
        tb.bad = set()
        await run_load(tb, dram_addr=0x2FF0, n_rows=3, length=re_, stride=8, elem_bytes=1,
                       row_elems=re_)
        await run_store(tb, rng, dram_addr=0x2FFC, n_rows=3, row_bytes=tb.W, stride=0x10)
        tb.drain_monitors()


@cocotb.test(**TIMEOUT)
async def test_scoreboard_catches_corruption(dut):
    """The memory scoreboard is able to fail: one corrupted byte is reported."""
    tb = await start(dut, seed=51, pause=0.0)
    rng = random.Random(8)
    expected, lo = await run_store(tb, rng, dram_addr=0x7003, n_rows=3, row_bytes=tb.W,
                                   stride=50)
    corrupt = bytearray(expected)
    corrupt[64 + 5] ^= 0x10
    try:
        check_bytes("STORE", tb.ram.read(lo, len(expected)), bytes(corrupt))
    except ScoreboardError as exc:
        assert "byte 69" in str(exc), str(exc)
    else:
        raise AssertionError("the scoreboard missed a corrupted byte")
    cmd = dict(dram_addr=0x123, n_rows=2, length=2, stride=9, elem_bytes=1,
               row_elems=tb.config.sp_width)
    rows, _, _ = await tb.load(**cmd)
    tb.ram.write(0x123 + 9, bytes([tb.ram.read(0x123 + 9, 1)[0] ^ 1]))
    expected_rows, _ = load_ref(tb.ram.mem, cmd)
    try:
        for i, (g, e) in enumerate(zip(rows, expected_rows, strict=True)):
            check_bytes(f"row {i}", g, e)
    except ScoreboardError as exc:
        assert "row 1" in str(exc)
    else:
        raise AssertionError("the scoreboard missed a corrupted LOAD byte")
    await RisingEdge(dut.clk)
