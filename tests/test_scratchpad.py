# amaranth: UnusedElaboratable=no
"""Scratchpad in Amaranth's simulator against a NumPy model; Verilog and lint of the
memory blocks."""

import subprocess

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from systolic.config import AcceleratorConfig, preset
from systolic.rtl.accumulator import Accumulator
from systolic.rtl.params import ParamBuffer
from systolic.rtl.postproc import PostProcessor
from systolic.rtl.scratchpad import Scratchpad, shared_read_path
from systolic.verilog import convert as to_verilog

READERS = Scratchpad.READ_PORTS


def make_config(banks=4, depth=16, rows=4, cols=4):
    return AcceleratorConfig(rows=rows, cols=cols, sp_banks=banks, sp_depth=depth, acc_depth=8)


class SpModel:
    """Fixed read priority per bank (banked) or over all ports (shared read path), reads
    before the same cycle's write, byte enables, out-of-range rows dropped on write and
    read as zero."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.shared = shared_read_path(cfg)
        self.mem = np.zeros((cfg.sp_rows, cfg.sp_width), dtype=np.uint8)

    def grants(self, req):
        granted, used = {}, set()
        for name in READERS:
            if name in req and self.shared:
                granted[name] = not granted
            elif name in req:
                b = req[name] // self.cfg.sp_depth
                granted[name] = b >= self.cfg.sp_banks or b not in used
                used.add(b)
        return granted

    def step(self, req, granted):
        reads = {}
        for name in READERS:
            if granted.get(name):
                addr = req[name]
                reads[name] = (bytes(self.mem[addr]) if addr < self.cfg.sp_rows
                               else bytes(self.cfg.sp_width))
        if "w" in req:
            addr, row, be = req["w"]
            if addr < self.cfg.sp_rows:
                for i in range(self.cfg.sp_width):
                    if be >> i & 1:
                        self.mem[addr, i] = row[i]
        return reads


def run_schedule(cfg, schedule, *, corrupt_read=None):
    """One request dict per cycle; grants and read data checked against :class:`SpModel`
    every cycle. Returns the (port, bytes) responses and the number of grants."""
    dut = Scratchpad(config=cfg)
    model = SpModel(cfg)
    responses, errors = [], []
    grant_count = [0]

    async def bench(ctx):
        pending = {}
        for cycle, req in enumerate(schedule + [{}]):
            ctx.set(dut.w.en, "w" in req)
            if "w" in req:
                addr, row, be = req["w"]
                ctx.set(dut.w.addr, addr)
                ctx.set(dut.w.data, int.from_bytes(bytes(row), "little"))
                ctx.set(dut.w.be, be)
            for name in READERS:
                port = getattr(dut, name)
                ctx.set(port.en, name in req)
                if name in req:
                    ctx.set(port.addr, req[name])
            probes = [getattr(dut, n).ready for n in READERS]
            probes += [getattr(dut, n).valid for n in READERS]
            probes += [getattr(dut, n).data for n in READERS]
            _, _, *vals = await ctx.tick().sample(*probes)
            n = len(READERS)
            for i, name in enumerate(READERS):
                ready, valid, data = vals[i], vals[n + i], vals[2 * n + i]
                if bool(valid) != (name in pending):
                    errors.append(f"cycle {cycle}: {name}.valid is {valid}")
                elif name in pending:
                    got = data.to_bytes(cfg.sp_width, "little")
                    want = bytearray(pending[name])
                    if corrupt_read is not None and len(responses) == corrupt_read:
                        want[-1] ^= 0x80
                    responses.append((name, got))
                    if got != bytes(want):
                        errors.append(f"cycle {cycle}: {name} read {got.hex()}, "
                                      f"expected {bytes(want).hex()}")
                if name in req and bool(ready) != model.grants(req)[name]:
                    errors.append(f"cycle {cycle}: {name}.ready is {ready}")
            granted = model.grants(req)
            grant_count[0] += sum(granted.values())
            pending = model.step(req, granted)
            if errors:
                return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    if errors:
        raise AssertionError("; ".join(errors[:3]))
    return responses, grant_count[0]


def full(cfg):
    return (1 << cfg.sp_width) - 1


def test_matmul_reads_two_banks_while_dma_fills_a_third():
    """Banked (8 rows): input rows from bank 0, weight rows from bank 1, STORE from bank 3
    and DMA writes into bank 2, all in every cycle: every read is granted at once."""
    cfg = make_config(rows=8, cols=8)
    assert not shared_read_path(cfg)
    d = cfg.sp_depth
    fill = [{"w": (r, [r * 7 + i for i in range(cfg.sp_width)], full(cfg))} for r in range(2 * d)]
    fill += [{"w": (3 * d + r, [255 - r] * cfg.sp_width, full(cfg))} for r in range(d)]
    stream = [{"rd_in": t % d, "rd_wt": d + t % d, "rd_st": 3 * d + t % d,
               "w": (2 * d + t % d, [t % 256] * cfg.sp_width, full(cfg))}
              for t in range(2 * d)]
    responses, grants = run_schedule(cfg, fill + stream)
    assert grants == 3 * len(stream)
    assert responses[0] == ("rd_in", bytes(range(cfg.sp_width)))


def test_shared_read_path_grants_one_read_per_cycle():
    """Shared (4 rows): the same traffic gets one read per cycle, by priority, while the
    DMA writes every cycle; the losers are granted once the winner stops asking."""
    cfg = make_config()
    assert shared_read_path(cfg) and shared_read_path(preset("icebreaker"))
    d = cfg.sp_depth
    fill = [{"w": (r, [r * 7 + i for i in range(cfg.sp_width)], full(cfg))} for r in range(2 * d)]
    stream = [{"rd_in": t, "rd_wt": d + t, "rd_st": 3 * d + t,
               "w": (2 * d + t, [t] * cfg.sp_width, full(cfg))} for t in range(d)]
    stream += [{"rd_wt": d + t, "rd_st": 3 * d} for t in range(d)] + [{"rd_st": 3 * d}]
    responses, grants = run_schedule(cfg, fill + stream)
    assert grants == len(stream)
    assert [n for n, _ in responses] == ["rd_in"] * d + ["rd_wt"] * d + ["rd_st"]
    assert responses[d] == ("rd_wt", bytes((d * 7 + i) % 256 for i in range(cfg.sp_width)))


def test_same_bank_conflicts_follow_priority():
    cfg = make_config(rows=8, cols=8)
    model = SpModel(cfg)
    schedule = [
        {"rd_in": 1, "rd_wt": 2, "rd_st": 3},   # all in bank 0: only rd_in
        {"rd_wt": 2, "rd_st": 3},               # rd_wt wins
        {"rd_st": 3, "rd_in": 17},              # different banks: both
    ]
    assert [model.grants(r) for r in schedule] == [
        {"rd_in": True, "rd_wt": False, "rd_st": False},
        {"rd_wt": True, "rd_st": False},
        {"rd_in": True, "rd_st": True},
    ]
    run_schedule(cfg, schedule)


@pytest.mark.parametrize("rows", [4, 8])
def test_read_in_the_write_cycle_returns_the_old_row(rows):
    """In simulation, both read paths; on the FPGA the shared path leaves it undefined."""
    cfg = make_config(rows=rows, cols=4)
    schedule = [
        {"w": (5, [1] * cfg.sp_width, full(cfg))},
        {"w": (5, [2] * cfg.sp_width, full(cfg)), "rd_st": 5},
        {"rd_st": 5},
        {"w": (5, [9] * cfg.sp_width, 0b0101)},    # byte enables
        {"rd_in": 5},
    ]
    responses, _ = run_schedule(cfg, schedule)
    n = cfg.sp_width
    assert [r for _, r in responses] == [bytes([1] * n), bytes([2] * n),
                                         bytes([9, 2, 9, 2] + [2] * (n - 4))]


def random_schedule(cfg, rng, cycles, p=0.6):
    hot = [0, 1, cfg.sp_depth, 2 * cfg.sp_depth + 3, cfg.sp_rows - 1]

    def addr():
        if rng.random() < 0.03 and cfg.sp_rows < 1 << (cfg.sp_rows - 1).bit_length():
            return cfg.sp_rows      # beyond the last bank
        return int(rng.choice(hot)) if rng.random() < 0.7 else int(rng.integers(cfg.sp_rows))

    schedule = []
    for _ in range(cycles):
        req = {n: addr() for n in READERS if rng.random() < p}
        if rng.random() < p:
            req["w"] = (addr(), [int(x) for x in rng.integers(0, 256, cfg.sp_width)],
                        int(rng.integers(0, full(cfg) + 1)))
        schedule.append(req)
    return schedule


@pytest.mark.parametrize("banks,rows,cols", [(4, 4, 4), (5, 2, 3), (8, 8, 2), (5, 8, 3)])
def test_random_traffic_matches_model(banks, rows, cols):
    cfg = make_config(banks, 16, rows, cols)
    responses, _ = run_schedule(cfg, random_schedule(cfg, np.random.default_rng(banks), 1500))
    assert len(responses) > 1000


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), p=st.floats(0.1, 1.0))
def test_hypothesis_traffic(seed, p):
    cfg = make_config(4, 16)
    run_schedule(cfg, random_schedule(cfg, np.random.default_rng(seed), 200, p))


@pytest.mark.parametrize("rows", [4, 8])
def test_scoreboard_catches_one_corrupted_byte(rows):
    cfg = make_config(rows=rows, cols=rows)
    schedule = random_schedule(cfg, np.random.default_rng(4), 200)
    run_schedule(cfg, schedule)
    with pytest.raises(AssertionError, match="read .* expected"):
        run_schedule(cfg, schedule, corrupt_read=30)


def test_scoreboard_catches_a_grant_beyond_the_shared_read(monkeypatch):
    """A model that grants per bank disagrees with the shared read path."""
    cfg = make_config()
    schedule = [{"rd_in": 1, "rd_wt": cfg.sp_depth + 1}]
    run_schedule(cfg, schedule)
    monkeypatch.setattr(SpModel, "grants",
                        lambda self, req: {n: True for n in READERS if n in req})
    with pytest.raises(AssertionError, match="rd_wt.ready is 0"):
        run_schedule(cfg, schedule)


# -- Verilog and lint -----------------------------------------------------------------------

BLOCKS = [(Scratchpad, "tiny"), (Scratchpad, "icebreaker"), (Scratchpad, "default"),
          (Accumulator, "tiny"),
          (Accumulator, "default"), (ParamBuffer, "icebreaker"), (PostProcessor, "tiny"),
          (PostProcessor, "icebreaker"), (PostProcessor, "default")]


@pytest.mark.parametrize("block,name", BLOCKS, ids=[f"{b.__name__}-{n}" for b, n in BLOCKS])
def test_converts_to_verilog_and_lints_clean(block, name, tmp_path):
    text = to_verilog(block(config=preset(name)), block.__name__)
    path = tmp_path / f"{block.__name__}.v"
    path.write_text(text)
    lint = subprocess.run(
        ["verilator", "--lint-only", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC",
         "--top-module", block.__name__, str(path)],
        capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stderr
    assert f"module {block.__name__}" in text


@pytest.mark.parametrize("block", [Scratchpad, Accumulator, ParamBuffer, PostProcessor])
def test_constructors_reject_a_non_config(block):
    with pytest.raises(TypeError, match=f"{block.__name__} config must be an AcceleratorConfig"):
        block(config=None)
