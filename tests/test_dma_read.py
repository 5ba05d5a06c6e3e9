"""DMA read engine in Amaranth's simulator: random fetches and LOADs against a reference,
random AR/R pauses and stream back-pressure, error responses (the burst splitter's own
tests, narrow ``beats`` fields included, are in ``tests/test_dma.py``)."""

import random

import pytest
from amaranth.sim import Simulator

from systolic.config import preset
from systolic.rtl.dma import ReadEngine

MEM_SIZE = 1 << 16


class ScoreboardError(AssertionError):
    pass


def span_beats(addr, nbytes, B):
    """Bus-aligned beat addresses of ``nbytes`` at ``addr``."""
    first = addr - addr % B
    return [first + i * B for i in range(-(-(addr % B + nbytes) // B))]


def load_ref(mem, cmd, B, bad):
    """(rows, error) of a LOAD: each row's low ``row_elems * elem_bytes`` bytes."""
    eb = cmd["elem_bytes"]
    pad = cmd["pad_value"] if eb == 1 else 0
    width = cmd["row_elems"] * eb
    n_rows = max(cmd["n_rows"], 1)
    nbytes = cmd["length"] * eb
    rows, error = [], False
    for i in range(n_rows):
        row = bytearray([pad] * width)
        if cmd["pad_top"] <= i < n_rows - cmd["pad_bottom"] and nbytes:
            a = cmd["dram_addr"] + (i - cmd["pad_top"]) * cmd["stride"]
            dst = cmd["pad_left"] * eb
            for t in range(nbytes):
                if dst + t < width:
                    row[dst + t] = mem[(a + t) % MEM_SIZE]
            error |= any(b >> 12 in bad for b in span_beats(a, nbytes, B))
        rows.append(bytes(row))
    return rows, error


def fetch_ref(mem, cmd, bad):
    """(words, errors) of a fetch command."""
    words, errors = [], []
    for i in range(max(cmd["count"], 1)):
        a = cmd["addr"] + 16 * i
        words.append(bytes(mem[(a + k) % MEM_SIZE] for k in range(16)))
        errors.append(a >> 12 in bad)
    return words, errors


def check(what, got, expected):
    if got != expected:
        raise ScoreboardError(f"{what}: got {got!r}, expected {expected!r}")


def random_load(rng, config):
    eb = rng.choice((1, 4))
    re_ = config.sp_width if eb == 1 else config.cols
    length = rng.randint(0, re_)
    return dict(dram_addr=rng.randrange(0, MEM_SIZE - 8192) & ~(eb - 1),
                stride=rng.choice((0, eb, length * eb, rng.randrange(0, 3000) * eb)),
                n_rows=rng.randint(1, 6), pad_top=rng.randint(0, 2),
                pad_bottom=rng.randint(0, 2), length=length,
                pad_left=rng.randint(0, re_ - length), elem_bytes=eb, row_elems=re_,
                pad_value=rng.randrange(256))


def run_engine(config, cmds, *, seed, bad=(), p_ready=0.6, corrupt=False):
    """Runs ``cmds`` (("fetch"|"load", fields)) and checks every output against the
    reference; a held output must keep its payload. ``corrupt`` flips one memory byte
    after the reference is taken (the scoreboard must then fail)."""
    rng = random.Random(seed)
    dut = ReadEngine(config)
    B = config.axi_bytes
    mem = bytearray(rng.randrange(256) for _ in range(MEM_SIZE))
    bad = set(bad)
    want = {"fetch": [], "load": [], "done": []}
    for kind, c in cmds:
        if kind == "fetch":
            words, errors = fetch_ref(mem, c, bad)
            n = len(words)
            want["fetch"] += [(w, e, int(i == n - 1))
                              for i, (w, e) in enumerate(zip(words, errors, strict=True))]
        else:
            rows, error = load_ref(mem, c, B, bad)
            width = c["row_elems"] * c["elem_bytes"]
            want["load"] += [(r, width, int(i == len(rows) - 1)) for i, r in enumerate(rows)]
            want["done"].append(int(error))
    if corrupt:
        mem[cmds[-1][1].get("dram_addr", cmds[-1][1].get("addr")) + 1] ^= 0x40
    fetches = [c for k, c in cmds if k == "fetch"]
    loads = [c for k, c in cmds if k == "load"]
    got = {"fetch": 0, "load": 0, "done": 0}

    async def bench(ctx):
        bus, r_beats, held = dut.bus, [], {}
        in_flight = 0
        for _ in range(60000):
            if all(got[k] == len(want[k]) for k in got):
                break
            ctx.set(bus.arready, rng.random() < 0.7)
            beat = r_beats[0] if r_beats and rng.random() < 0.7 else None
            ctx.set(bus.rvalid, beat is not None)
            if beat is not None:
                a, last = beat
                ctx.set(bus.rdata, int.from_bytes(bytes(mem[(a + k) % MEM_SIZE]
                                                        for k in range(B)), "little"))
                ctx.set(bus.rresp, 2 if a >> 12 in bad else 0)
                ctx.set(bus.rlast, last)
            for name, queue in (("fetch_cmd", fetches), ("load_cmd", loads)):
                port = getattr(dut, name)
                ctx.set(port.valid, bool(queue))
                if queue:
                    for k, v in queue[0].items():
                        ctx.set(getattr(port.p, k), v)
            for name in ("fetch_words", "load_rows", "load_done"):
                ctx.set(getattr(dut, name).ready, rng.random() < p_ready)
            await ctx.delay(1e-9)
            if ctx.get(bus.arvalid) and ctx.get(bus.arready):
                a, n = ctx.get(bus.araddr), ctx.get(bus.arlen) + 1
                assert a % B == 0 and a % 4096 + n * B <= 4096, f"burst {a:#x}+{n}"
                r_beats += [(a + i * B, int(i == n - 1)) for i in range(n)]
                in_flight += 1
                assert in_flight <= dut.outstanding
            if beat is not None and ctx.get(bus.rready):
                r_beats.pop(0)
                in_flight -= beat[1]
            for name, queue in (("fetch_cmd", fetches), ("load_cmd", loads)):
                port = getattr(dut, name)
                if queue and ctx.get(port.ready):
                    queue.pop(0)
            for name, key in (("fetch_words", "fetch"), ("load_rows", "load"),
                              ("load_done", "done")):
                port = getattr(dut, name)
                if not ctx.get(port.valid):
                    assert name not in held, f"{name} dropped a held item"
                    continue
                payload = ctx.get(port.payload).as_value().value
                if name in held:
                    check(f"{name} held", payload, held.pop(name))
                if not ctx.get(port.ready):
                    held[name] = payload
                    continue
                i = got[key]
                assert i < len(want[key]), f"{name}: more items than expected"
                if key == "fetch":
                    w, e, last = want[key][i]
                    check(f"fetch word {i}", (ctx.get(port.p.data).to_bytes(16, "little"),
                                              ctx.get(port.p.error), ctx.get(port.p.last)),
                          (w, int(e), last))
                elif key == "load":
                    r, width, last = want[key][i]
                    data = ctx.get(port.p.data).to_bytes(dut.row_bytes, "little")[:width]
                    check(f"load row {i}", (data, ctx.get(port.p.last)), (r, last))
                else:
                    check(f"load {i} error", ctx.get(port.p.error), want[key][i])
                got[key] += 1
            await ctx.tick()
        assert all(got[k] == len(want[k]) for k in got), f"unfinished: {got}"
        assert not r_beats and in_flight == 0

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def _cmds(config, rng, n):
    out = []
    for _ in range(n):
        if rng.random() < 0.3:
            out.append(("fetch", dict(addr=rng.randrange(0, MEM_SIZE - 8192) & ~15,
                                      count=rng.choice((0, 1, 2, 4, 9)))))
        else:
            out.append(("load", random_load(rng, config)))
    return out


@pytest.mark.parametrize("name", ["icebreaker", "tiny", "default"])
def test_random_commands_with_back_pressure(name):
    config = preset(name)
    rng = random.Random(name)
    cmds = _cmds(config, rng, 24)
    cmds.append(("load", dict(dram_addr=0x0FFD, stride=0x1000 - 4, n_rows=3, pad_top=0,
                              pad_bottom=0, length=config.cols, pad_left=0, elem_bytes=4,
                              row_elems=config.cols, pad_value=7)))        # 4 KiB cross
    cmds.append(("fetch", dict(addr=0x1F80, count=20)))                  # across a page
    run_engine(config, cmds, seed=len(name))


@pytest.mark.parametrize("name", ["icebreaker", "default"])
def test_error_responses_are_reported_and_drained(name):
    config = preset(name)
    rng = random.Random(3)
    cmds = [("load", dict(random_load(rng, config), dram_addr=0x2FF0 + 16 * i, stride=4,
                          n_rows=5, pad_top=0, pad_bottom=0, length=1))
            for i in range(2)]
    cmds += [("fetch", dict(addr=0x2FE0, count=4)), ("load", random_load(rng, config))]
    run_engine(config, cmds, seed=5, bad={3})


def test_words_held_by_back_pressure():
    """The controller may hold fetch_words for several cycles per word."""
    config = preset("icebreaker")
    run_engine(config, [("fetch", dict(addr=0x40, count=8)),
                        ("load", random_load(random.Random(1), config))],
               seed=9, p_ready=0.15)


def test_scoreboard_catches_one_corrupted_byte():
    """Expected fail: one memory byte changed after the reference was taken."""
    config = preset("icebreaker")
    cmds = [("load", dict(dram_addr=0x123, stride=9, n_rows=2, pad_top=0, pad_bottom=0,
                          length=config.sp_width, pad_left=0, elem_bytes=1,
                          row_elems=config.sp_width, pad_value=0))]
    with pytest.raises(ScoreboardError, match="load row 0"):
        run_engine(config, cmds, seed=1, corrupt=True)
