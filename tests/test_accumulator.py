"""Accumulator in Amaranth's simulator against a cycle-level NumPy model."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from systolic.config import AcceleratorConfig
from systolic.numerics import INT32_MAX, INT32_MIN, sat32
from systolic.rtl.accumulator import Accumulator

WRITERS = Accumulator.WRITE_PORTS
READERS = Accumulator.READ_PORTS


def make_config(cols=4, acc_depth=8, vector_unit=True):
    return AcceleratorConfig(rows=2, cols=cols, sp_depth=16, acc_depth=acc_depth,
                             vector_unit=vector_unit)


class AccModel:
    """The documented behaviour: arbitration, a read seeing every write accepted before
    its cycle (a read of the row written in the previous cycle waits), saturating
    accumulation, the sticky overflow flag two cycles after the acceptance."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.split = cfg.vector_unit        # one memory per bank, else one shared memory
        self.mem = np.zeros((cfg.acc_rows, cfg.cols), dtype=np.int64)
        self.overflow = 0
        self.sat_commit = False   # a write accepted last cycle saturates when it commits
        self.staged = None        # row of the write accepted last cycle
        self.committing = None    # row of the write accepted two cycles ago

    def bank(self, addr):
        return addr // self.cfg.acc_depth

    def memory(self, addr):
        return self.bank(addr) if self.split else 0

    def grants(self, req):
        """Which requests of one cycle are accepted, per the fixed priorities."""
        granted = {}
        arr = "array_w" in req
        vec = self.split and "vec_w" in req
        if arr:
            granted["array_w"] = True
        if "vec_w" in req:
            granted["vec_w"] = vec and not arr
        if "load_w" in req:
            granted["load_w"] = not arr and not vec
        taken = set()
        if arr and req["array_w"][2]:
            taken.add(self.memory(req["array_w"][0]))
        for name in READERS:
            if name in req:
                addr = req[name]
                ask = addr != self.staged
                if not self.split and name != "store_rd":
                    ask = False               # no vector unit: never granted
                granted[name] = ask and self.memory(addr) not in taken
                if ask:
                    taken.add(self.memory(addr))
        return granted

    def busy(self, req, granted):
        """``busy`` in this cycle: the writes accepted in the two cycles before."""
        rows = [r for r in (self.staged, self.committing) if r is not None]
        return sum(1 << b for b in {self.bank(r) for r in rows})

    def step(self, req, granted):
        """Advance one cycle; returns the rows the granted reads will return."""
        reads = {n: self.mem[req[n]].copy() for n in READERS if granted.get(n)}
        overflow_next = self.sat_commit or (self.overflow and not req.get("clear"))
        self.sat_commit = False
        self.committing, self.staged = self.staged, None
        for name in WRITERS:
            if not granted.get(name):
                continue
            addr, data, acc = (req[name] + (False,))[:3]
            data = np.asarray(data, dtype=np.int64)
            if acc:
                data, over = sat32(self.mem[addr] + data)
                self.sat_commit |= over
            self.mem[addr] = data
            self.staged = addr
        self.overflow = int(overflow_next)
        return reads


def run_schedule(cfg, schedule, *, corrupt_read=None):
    """Drive one request dict per cycle; check grants, read data, ``busy`` and ``overflow``
    against :class:`AccModel` every cycle. ``corrupt_read`` (an index into the read
    responses) flips one expected value, to show the scoreboard catches it. Returns the
    model, the list of (port, row) read responses and the grants of every cycle."""
    dut = Accumulator(config=cfg)
    model = AccModel(cfg)
    responses = []
    grants = []
    errors = []

    async def bench(ctx):
        pending = {}
        for cycle, req in enumerate(schedule + [{}]):
            for name in WRITERS:
                port = getattr(dut, name)
                ctx.set(port.en, name in req)
                if name in req:
                    ctx.set(port.addr, req[name][0])
                    ctx.set(port.data, [int(x) for x in req[name][1]])
                    if name == "array_w":
                        ctx.set(port.accumulate, req[name][2])
            for name in READERS:
                port = getattr(dut, name)
                ctx.set(port.en, name in req)
                if name in req:
                    ctx.set(port.addr, req[name])
            ctx.set(dut.overflow_clear, bool(req.get("clear")))
            probes = [getattr(dut, n).ready for n in WRITERS[1:] + READERS]
            probes += [getattr(dut, n).valid for n in READERS]
            probes += [getattr(dut, n).data for n in READERS]
            probes += [dut.overflow, dut.busy]
            _, _, *vals = await ctx.tick().sample(*probes)
            nw, nr = len(WRITERS) - 1, len(READERS)
            ready = dict(zip(WRITERS[1:] + READERS, vals[: nw + nr], strict=True))
            valid = dict(zip(READERS, vals[nw + nr: nw + 2 * nr], strict=True))
            rdata = dict(zip(READERS, vals[nw + 2 * nr: nw + 3 * nr], strict=True))
            overflow, busy = vals[-2], vals[-1]

            granted = model.grants(req)
            grants.append(granted)
            want_busy = model.busy(req, granted)
            if (overflow, busy) != (model.overflow, want_busy):
                errors.append(f"cycle {cycle}: overflow/busy {overflow}/{busy:b}, "
                              f"expected {model.overflow}/{want_busy:b}")
            for name in READERS:
                if bool(valid[name]) != (name in pending):
                    errors.append(f"cycle {cycle}: {name}.valid is {valid[name]}")
                elif name in pending:
                    got = [int(x) for x in rdata[name]]
                    want = [int(x) for x in pending[name]]
                    if corrupt_read is not None and len(responses) == corrupt_read:
                        want[0] ^= 1
                    responses.append((name, got))
                    if got != want:
                        errors.append(f"cycle {cycle}: {name} read {got}, expected {want}")
            for name, g in granted.items():
                if name in ready and bool(ready[name]) != g:
                    errors.append(f"cycle {cycle}: {name}.ready is {ready[name]}, rule says {g}")
            pending = model.step(req, granted)
            if errors:
                return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    if errors:
        raise AssertionError("; ".join(errors[:3]))
    return model, responses, grants


# -- directed -------------------------------------------------------------------------------

def row_of(cfg, value):
    return [value] * cfg.cols


BOTH = pytest.mark.parametrize("vector_unit", [True, False], ids=["split", "shared"])


@BOTH
def test_back_to_back_accumulate_forwards(vector_unit):
    """Row r accumulated on consecutive cycles, with gaps of one and two cycles, and
    interleaved with another row of the same bank, must see every earlier write."""
    cfg = make_config(vector_unit=vector_unit)
    r, s = 3, 5
    adds = [(r, 1), (r, 2), (r, 4), (s, 8), (r, 16), (None, 0), (r, 32), (None, 0),
            (None, 0), (r, 64), (s, 128), (s, 256), (r, 512)]
    schedule = [{"array_w": (r, row_of(cfg, 1000), False)}]     # overwrite first
    for addr, v in adds:
        schedule.append({} if addr is None else {"array_w": (addr, row_of(cfg, v), True)})
    schedule.append({})
    schedule.append({"store_rd": r})
    schedule.append({"store_rd": s})
    model, responses, _ = run_schedule(cfg, schedule)
    assert responses == [("store_rd", row_of(cfg, 1000 + 1 + 2 + 4 + 16 + 32 + 64 + 512)),
                         ("store_rd", row_of(cfg, 8 + 128 + 256))]


@BOTH
def test_read_of_a_committing_row_waits(vector_unit):
    """A read of the row written in the previous cycle (array or LOAD) is not granted;
    one cycle later it is, and returns the new row. A read in the cycle a write is
    accepted returns the old row."""
    cfg = make_config(vector_unit=vector_unit)
    schedule = [
        {"load_w": (2, row_of(cfg, 7))},
        {"store_rd": 2, "array_w": (2, row_of(cfg, 5), True)},   # array takes the port
        {"store_rd": 2},                                          # row 2 is committing
        {"store_rd": 2},
        {"load_w": (6, row_of(cfg, -9)), "store_rd": 6},          # old row
        {"store_rd": 6},                                          # LOAD row: waits
        {"store_rd": 6},
    ]
    _, responses, grants = run_schedule(cfg, schedule)
    assert responses == [("store_rd", row_of(cfg, 12)), ("store_rd", row_of(cfg, 0)),
                         ("store_rd", row_of(cfg, -9))]
    assert [g.get("store_rd") for g in grants[:7]] == [None, False, False, True, True, False,
                                                      True]
    assert grants[0]["load_w"] and grants[4]["load_w"]


def test_vector_read_of_same_cycle_write_is_old():
    cfg = make_config()
    schedule = [
        {"load_w": (2, row_of(cfg, 7))},
        {},
        {"vec_w": (2, row_of(cfg, -9)), "vec_rd_a": 2},           # same-cycle write unseen
        {"vec_rd_b": 1},
        {"vec_rd_b": 2},
    ]
    _, responses, _ = run_schedule(cfg, schedule)
    assert responses == [("vec_rd_a", row_of(cfg, 7)), ("vec_rd_b", row_of(cfg, 0)),
                         ("vec_rd_b", row_of(cfg, -9))]


@BOTH
def test_overwrite_versus_accumulate(vector_unit):
    cfg = make_config(vector_unit=vector_unit)
    vals = [[1, -2, 3, -4], [10, 20, 30, 40], [-5, -5, -5, -5]]
    schedule = [
        {"array_w": (9, vals[0], False)},
        {"array_w": (9, vals[1], True)},
        {"array_w": (9, vals[2], False)},   # overwrite right behind an accumulate
        {"array_w": (9, vals[1], True)},
        {"load_w": (9, vals[0])},           # right behind the array's write
        {"load_w": (9, vals[0])},
        {"array_w": (9, vals[2], True)},    # accumulates onto the LOAD row
        {}, {"store_rd": 9},
    ]
    _, responses, grants = run_schedule(cfg, schedule)
    assert responses == [("store_rd", [-4, -7, -2, -9])]
    assert [grants[4]["load_w"], grants[5]["load_w"]] == [True, True]


@BOTH
def test_saturation_and_sticky_overflow(vector_unit):
    cfg = make_config(vector_unit=vector_unit)
    schedule = [
        {"array_w": (1, [INT32_MAX - 1, INT32_MIN + 1, 0, 5], False)},
        {"array_w": (1, [2, -2, 0, -5], True)},          # saturates both ways
        {}, {"array_w": (4, row_of(cfg, 1), True)},       # no overflow: flag stays
        {}, {"clear": True},
        {"store_rd": 1},
        {"array_w": (1, [1, 0, 0, 0], True), "clear": True},   # saturation beats clear
        {"load_w": (3, [INT32_MAX, INT32_MIN, 0, 0])},   # an overwrite never overflows
        {}, {"clear": True}, {},
    ]
    model, responses, _ = run_schedule(cfg, schedule)
    assert responses == [("store_rd", [INT32_MAX, INT32_MIN, 0, 0])]
    assert model.overflow == 0


def test_ping_pong_streams_both_banks_every_cycle():
    """With a memory per bank the array accumulates into bank 0 while STORE reads bank 1:
    the read never waits; LOAD waits while the array writes."""
    cfg = make_config()
    d = cfg.acc_depth
    schedule = []
    for t in range(3 * d):
        schedule.append({"array_w": (t % d, row_of(cfg, t), True),
                         "store_rd": d + t % d,
                         "load_w": (d + (t + 3) % d, row_of(cfg, -t))})
    _, _, grants = run_schedule(cfg, schedule)   # every cycle's ready is checked
    assert all(g["store_rd"] and not g["load_w"] for g in grants[:-1])


def test_shared_memory_reads_take_the_array_free_cycles():
    """With one shared memory STORE reads in every cycle in which the array does not
    read an old row (an accumulating write); the array still writes one row per cycle."""
    cfg = make_config(vector_unit=False)
    d = cfg.acc_depth
    schedule = []
    for t in range(2 * d):
        req = {"store_rd": d + t % d}
        if t % 4 < 2:
            req["array_w"] = (t % d, row_of(cfg, t), t % 2 == 0)
        schedule.append(req)
    _, responses, grants = run_schedule(cfg, schedule)
    assert [g["store_rd"] for g in grants[:-1]] == [t % 4 != 0 for t in range(2 * d)]
    assert len(responses) == 3 * d // 2


def test_same_bank_conflicts_follow_priority():
    cfg = make_config()
    schedule = [
        {"array_w": (0, row_of(cfg, 1), True), "vec_w": (1, row_of(cfg, 2)),
         "load_w": (2, row_of(cfg, 3)), "store_rd": 3, "vec_rd_a": 4, "vec_rd_b": 5},
        {"vec_w": (1, row_of(cfg, 2)), "load_w": (2, row_of(cfg, 3)),
         "store_rd": 3, "vec_rd_a": 4},
        {"load_w": (2, row_of(cfg, 3)), "vec_rd_a": 4, "vec_rd_b": 5},
        {"load_w": (2, row_of(cfg, 3)), "vec_rd_a": 4, "vec_rd_b": 5},
    ]
    _, _, g = run_schedule(cfg, schedule)   # the hardware agrees, cycle by cycle
    assert g[0] == {"array_w": True, "vec_w": False, "load_w": False,
                    "store_rd": False, "vec_rd_a": False, "vec_rd_b": False}
    assert g[1] == {"vec_w": True, "load_w": False, "store_rd": True, "vec_rd_a": False}
    assert g[2] == {"load_w": True, "vec_rd_a": True, "vec_rd_b": False}    # one read port
    assert g[3] == {"load_w": True, "vec_rd_a": True, "vec_rd_b": False}


# -- random traffic -------------------------------------------------------------------------

def random_schedule(cfg, rng, cycles, p=0.5):
    def row():
        if rng.random() < 0.2:
            return [int(x) for x in rng.choice([INT32_MAX, INT32_MIN, -1, 1 << 30], cfg.cols)]
        return [int(x) for x in rng.integers(-(1 << 20), 1 << 20, cfg.cols)]

    def addr():   # few rows, so back-to-back hits on one row are frequent
        return int(rng.choice([0, 1, cfg.acc_depth, cfg.acc_depth + 1, cfg.acc_rows - 1]))

    schedule = []
    for _ in range(cycles):
        req = {}
        if rng.random() < p:
            req["array_w"] = (addr(), row(), bool(rng.random() < 0.7))
        for name in ("vec_w", "load_w"):
            if rng.random() < p / 3:
                req[name] = (addr(), row())
        for name in READERS:
            if rng.random() < p / 2:
                req[name] = addr()
        if rng.random() < 0.05:
            req["clear"] = True
        schedule.append(req)
    return schedule


@pytest.mark.parametrize("cols,seed,vector_unit", [
    (4, 1, True), (1, 2, True), (3, 3, True), (4, 5, False), (2, 6, False)])
def test_random_traffic_matches_model(cols, seed, vector_unit):
    cfg = make_config(cols, vector_unit=vector_unit)
    model, responses, _ = run_schedule(
        cfg, random_schedule(cfg, np.random.default_rng(seed), 1500))
    assert len(responses) > (300 if vector_unit else 50)
    assert model.overflow in (0, 1)


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), p=st.floats(0.2, 1.0))
def test_hypothesis_traffic(seed, p):
    cfg = make_config(2)
    run_schedule(cfg, random_schedule(cfg, np.random.default_rng(seed), 200, p))


@BOTH
def test_scoreboard_catches_one_corrupted_value(vector_unit):
    cfg = make_config(vector_unit=vector_unit)
    schedule = random_schedule(cfg, np.random.default_rng(9), 200)
    _, responses, _ = run_schedule(cfg, schedule)
    assert len(responses) > 5
    with pytest.raises(AssertionError, match="read .* expected"):
        run_schedule(cfg, schedule, corrupt_read=5)


def test_without_vector_unit_matches_model_and_ignores_vector_ports():
    """``vector_unit=False`` keeps the vector ports but never grants them; the array,
    LOAD and STORE traffic still follows the model cycle by cycle."""
    cfg = make_config().replace(vector_unit=False)
    vec = ("vec_w", "vec_rd_a", "vec_rd_b")
    schedule = [{k: v for k, v in req.items() if k not in vec}
                for req in random_schedule(cfg, np.random.default_rng(4), 600)]
    _, responses, _ = run_schedule(cfg, schedule)
    assert len(responses) > 25

    dut = Accumulator(config=cfg)
    seen = []

    async def bench(ctx):
        for port in (dut.vec_rd_a, dut.vec_rd_b):
            ctx.set(port.en, 1)
            ctx.set(port.addr, 1)
        ctx.set(dut.vec_w.en, 1)
        ctx.set(dut.vec_w.addr, 1)
        ctx.set(dut.vec_w.data, row_of(cfg, 5))
        for _ in range(3):
            _, _, *vals = await ctx.tick().sample(
                dut.vec_w.ready, dut.vec_rd_a.ready, dut.vec_rd_b.ready,
                dut.vec_rd_a.valid, dut.vec_rd_b.valid, dut.busy)
            seen.append(tuple(int(v) for v in vals))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [(0, 0, 0, 0, 0, 0)] * 3
