# amaranth: UnusedElaboratable=no
"""Execute unit on the systolic array, in Amaranth's simulator: MATMUL and VECTOR sequences
against the golden model, zero-bubble back-to-back tiles, token timing."""

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from systolic.config import AcceleratorConfig, preset
from systolic.isa import Instruction, Opcode, Queue, VectorOp, encode, to_bytes
from systolic.model import GoldenModel
from systolic.rtl.accumulator import Accumulator
from systolic.rtl.decoder import uop_layout
from systolic.rtl.exec_unit import ExecUnit, matmul_landing
from systolic.rtl.load_unit import LANDING_CYCLES
from systolic.rtl.scratchpad import Scratchpad

WINDOW = 48          # scratchpad rows filled at the start of every bank


class Harness(Elaboratable):
    """The execute unit wired to a scratchpad and an accumulator, as in the top."""

    def __init__(self, config, multiplier="generic"):
        self.config = config
        self.xu = ExecUnit(config=config, multiplier=multiplier)
        self.sp = Scratchpad(config=config)
        self.acc = Accumulator(config=config)

    def elaborate(self, platform):
        m = Module()
        m.submodules.xu, m.submodules.sp, m.submodules.acc = xu, sp, acc = \
            self.xu, self.sp, self.acc
        wiring.connect(m, xu.sp_in, sp.rd_in)
        wiring.connect(m, xu.sp_wt, sp.rd_wt)
        wiring.connect(m, xu.array_w, acc.array_w)
        wiring.connect(m, xu.acc_w, acc.vec_w)
        wiring.connect(m, xu.acc_a, acc.vec_rd_a)
        wiring.connect(m, xu.acc_b, acc.vec_rd_b)
        return m


def uop_value(instr):
    """The execute queue's micro-op for ``instr``, as a constant of its layout."""
    layout = uop_layout(Queue.EXEC)
    flags = {f: int(getattr(instr, f)) for f in ("pop_prev", "pop_next", "push_prev",
                                                 "push_next")}
    body = {instr.opcode.name.lower(): dict(instr.fields)}
    return layout.const({"opcode": instr.opcode, **flags, "body": body})


def sp_rows_used(config):
    return [b * config.sp_depth + r for b in range(config.sp_banks) for r in range(WINDOW)]


def run_exec(config, instrs, sp_content, acc_rows, multiplier="generic"):
    """Run ``instrs`` (execute-queue instructions) back to back on the harness.

    Returns the accumulator rows ``acc_rows`` afterwards and a per-cycle trace of
    (mac_busy, push_prev, push_next, array_w.en).
    """
    h = Harness(config, multiplier)
    xu, sp = h.xu, h.sp
    trace = []
    out = {}

    async def monitor(ctx):
        async for _, _, *values in ctx.tick().sample(xu.mac_busy, xu.push_prev, xu.push_next,
                                                     xu.array_w.en):
            trace.append(tuple(int(v) for v in values))

    async def bench(ctx):
        for row in sp_rows_used(config):
            ctx.set(sp.w.en, 1)
            ctx.set(sp.w.addr, row)
            ctx.set(sp.w.data, int.from_bytes(sp_content[row].tobytes(), "little"))
            ctx.set(sp.w.be, (1 << config.sp_width) - 1)
            await ctx.tick()
        ctx.set(sp.w.en, 0)
        trace.clear()
        for instr in instrs:
            ctx.set(xu.uop.valid, 1)
            ctx.set(xu.uop.p, uop_value(instr))
            await ctx.tick().until(xu.uop.ready)
        ctx.set(xu.uop.valid, 0)
        await ctx.tick().until(xu.idle)
        await ctx.tick().repeat(2)
        out["trace"] = list(trace)
        rd = h.acc.store_rd
        rows = []
        for r in acc_rows:
            ctx.set(rd.en, 1)
            ctx.set(rd.addr, r)
            await ctx.tick().until(rd.ready)
            ctx.set(rd.en, 0)
            await ctx.delay(1e-9)
            rows.append([ctx.get(rd.data[n]) for n in range(config.cols)])
        out["acc"] = np.array(rows, dtype=np.int64)

    sim = Simulator(h)
    sim.add_clock(1e-8)
    sim.add_testbench(monitor, background=True)
    sim.add_testbench(bench)
    sim.run()
    return out["acc"], out["trace"]


def model_acc(config, instrs, sp_content, acc_rows):
    """The golden model's accumulator rows after ``instrs`` (plus HALT)."""
    words = [encode(i) for i in instrs] + [encode(Instruction(Opcode.HALT, {}))]
    image = to_bytes(words)
    model = GoldenModel(config)
    model.sp[:] = sp_content
    result = model.run(image, 0, len(words))
    assert result.ok, result.error
    return model.acc[acc_rows]


def check_acc(got, want):
    """Scoreboard: accumulator rows equal, with the first differing row named."""
    bad = np.flatnonzero((got != want).any(axis=1))
    assert bad.size == 0, f"{bad.size} accumulator rows differ, first row {bad[0]}: " \
                          f"{got[bad[0]].tolist()} != {want[bad[0]].tolist()}"


def random_sp(config, rng):
    return rng.integers(0, 256, (config.sp_rows, config.sp_width), dtype=np.uint8)


def acc_windows(config, size):
    return [b * config.acc_depth + r for b in range(config.acc_banks) for r in range(size)]


def random_program(config, rng, count):
    """Execute-queue instructions: MATMULs of every flag mix and short and long row counts,
    addresses in any bank (so input and weight reads collide sometimes), VECTORs on results."""
    c = config
    out_rows = min(32, c.acc_depth)
    instrs = []
    for _ in range(count):
        push = {"push_prev": bool(rng.integers(2)), "push_next": bool(rng.integers(2))}
        if c.vector_unit and rng.random() < 0.15:
            n = int(rng.integers(1, out_rows + 1))
            bank = int(rng.integers(c.acc_banks))
            src = bank * c.acc_depth + int(rng.integers(0, out_rows - n + 1))
            other = ((bank + 1) % c.acc_banks) * c.acc_depth + \
                int(rng.integers(0, out_rows - n + 1))
            instrs.append(Instruction(Opcode.VECTOR, {
                "op": VectorOp.ADD.value, "n_rows": n, "dst": src, "src_a": src,
                "src_b": other, "imm": 0}, **push))
            continue
        kind = rng.integers(3)
        n = int(rng.choice([1, c.rows, int(rng.integers(1, 2 * c.rows + 4)),
                            int(rng.integers(1, out_rows + 1))]))
        n = min(n, out_rows, WINDOW)

        def sp_addr(length):
            bank = int(rng.integers(c.sp_banks))
            return bank * c.sp_depth + int(rng.integers(0, WINDOW - length + 1))

        bank = int(rng.integers(c.acc_banks))
        fields = {"compute": int(kind != 1), "preload": int(kind != 0),
                  "accumulate": int(rng.integers(2)), "n_rows": n if kind != 1 else 0,
                  "a_addr": sp_addr(n) if kind != 1 else 0,
                  "w_addr": sp_addr(c.rows) if kind != 0 else 0,
                  "c_addr": bank * c.acc_depth + int(rng.integers(0, out_rows - n + 1))}
        instrs.append(Instruction(Opcode.MATMUL, fields, **push))
    return instrs, acc_windows(c, out_rows)


CONFIGS = {
    "tiny": preset("tiny"),
    "icebreaker": preset("icebreaker"),
    "default": preset("default"),
    "2x3-p1": AcceleratorConfig(rows=2, cols=3, sp_depth=64, acc_depth=64, pipeline_every=1),
    "4x4-p2-unsigned": AcceleratorConfig(rows=4, cols=4, sp_depth=64, acc_depth=64,
                                         pipeline_every=2, input_signed=False),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_random_sequences_match_model(name):
    config = CONFIGS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    instrs, rows = random_program(config, rng, 14)
    sp = random_sp(config, rng)
    want = model_acc(config, instrs, sp, rows)
    got, trace = run_exec(config, instrs, sp, rows)
    check_acc(got, want)
    pushes = np.array(trace)[:, 1:3].sum(axis=0)
    assert pushes.tolist() == [sum(i.push_prev for i in instrs), sum(i.push_next for i in instrs)]
    computed = sum(i.n_rows for i in instrs if i.opcode is Opcode.MATMUL and i.compute)
    assert sum(t[0] for t in trace) == computed
    assert sum(t[3] for t in trace) == computed


@pytest.mark.parametrize("name", ["icebreaker", "tiny"])
def test_random_sequences_on_ice40_blocks_match_model(name):
    """The board builds' multiplier: on icebreaker the SB_MAC16 blocks (behavioral model)
    hold the inputs and weights; tiny (pipelined) keeps its own registers."""
    config = CONFIGS[name]
    rng = np.random.default_rng(11)
    instrs, rows = random_program(config, rng, 14)
    sp = random_sp(config, rng)
    got, trace = run_exec(config, instrs, sp, rows, multiplier="ice40")
    check_acc(got, model_acc(config, instrs, sp, rows))
    computed = sum(i.n_rows for i in instrs if i.opcode is Opcode.MATMUL and i.compute)
    assert sum(t[3] for t in trace) == computed


def test_scoreboard_catches_one_corrupted_value():
    config = CONFIGS["tiny"]
    rng = np.random.default_rng(3)
    instrs, rows = random_program(config, rng, 6)
    sp = random_sp(config, rng)
    want = model_acc(config, instrs, sp, rows)
    got, _ = run_exec(config, instrs, sp, rows)
    check_acc(got, want)
    assert want.any(), "nothing computed to corrupt"
    bad = want.copy()
    r, n = np.argwhere(bad != 0)[0]
    bad[r, n] += 1
    with pytest.raises(AssertionError, match="1 accumulator rows differ"):
        check_acc(got, bad)


def back_to_back(config, tiles, n, *, same_bank=False):
    """Preload W0, then ``tiles`` MATMULs that each compute ``n`` rows with the previous
    tile and preload the next; inputs in bank 0, weights in bank 1 (or bank 0)."""
    c = config
    w_base = 0 if same_bank else c.sp_depth
    a_rows = [k * n for k in range(tiles)]
    w_rows = [w_base + WINDOW - 2 * c.rows + (k % 2) * c.rows for k in range(tiles + 1)]
    assert tiles * n <= WINDOW - 2 * c.rows
    instrs = [Instruction(Opcode.MATMUL, {"preload": 1, "w_addr": w_rows[0]})]
    for k in range(tiles):
        instrs.append(Instruction(Opcode.MATMUL, {
            "compute": 1, "accumulate": int(k % 2), "n_rows": n, "a_addr": a_rows[k],
            "c_addr": (k // 2) * n, "preload": 1, "w_addr": w_rows[k + 1]},
            push_next=k == tiles - 1))
    return instrs, list(range((tiles + 1) // 2 * n))


@pytest.mark.parametrize("name", ["default", "default-p1"])
def test_back_to_back_tiles_keep_the_array_busy(name):
    config = preset("default")
    if name == "default-p1":
        config = config.replace(pipeline_every=1)
    tiles, n = 4, 8
    rng = np.random.default_rng(7)
    sp = random_sp(config, rng)
    instrs, rows = back_to_back(config, tiles, n)
    got, trace = run_exec(config, instrs, sp, rows)
    check_acc(got, model_acc(config, instrs, sp, rows))
    busy = [t[0] for t in trace]
    first = busy.index(1)
    last = len(busy) - 1 - busy[::-1].index(1)
    ratio = sum(busy) / (last - first + 1)
    print(f"{name}: {tiles} MATMULs of {n} rows: MAC-busy {sum(busy)} of "
          f"{last - first + 1} cycles, ratio {ratio:.3f}")
    assert sum(busy) == tiles * n and ratio == 1.0
    # the token is pushed LANDING_CYCLES after the last result row was written
    writes = [k for k, t in enumerate(trace) if t[3]]
    pushes = [k for k, t in enumerate(trace) if t[2]]
    assert pushes == [writes[-1] + LANDING_CYCLES]
    assert writes[-1] - last == matmul_landing(config) - 1 - LANDING_CYCLES


def test_back_to_back_32_row_tiles_on_default():
    """The figure the tracker asks for: 4 MATMULs of 32 rows, no bank conflict."""
    config = preset("default")
    rng = np.random.default_rng(8)
    sp = random_sp(config, rng)
    c = config
    instrs = [Instruction(Opcode.MATMUL, {"preload": 1, "w_addr": c.sp_depth})]
    for k in range(4):
        instrs.append(Instruction(Opcode.MATMUL, {
            "compute": 1, "accumulate": 1, "n_rows": 32, "a_addr": (k % 2) * 8,
            "c_addr": 0, "preload": 1, "w_addr": c.sp_depth + ((k + 1) % 4) * c.rows}))
    rows = list(range(32))
    got, trace = run_exec(config, instrs, sp, rows)
    check_acc(got, model_acc(config, instrs, sp, rows))
    busy = [t[0] for t in trace]
    first = busy.index(1)
    last = len(busy) - 1 - busy[::-1].index(1)
    print(f"default, 4 x 32 rows: MAC-busy {sum(busy)} / {last - first + 1} cycles")
    assert sum(busy) == 128 and last - first + 1 == 128


def test_bank_conflicts_stall_but_stay_correct():
    """Inputs and weights in one bank (on icebreaker's shared scratchpad read path, any
    two banks would do): weight reads lose to input reads, the tiles wait for their
    weights (bubbles), the results stay exact."""
    config = preset("icebreaker")
    rng = np.random.default_rng(9)
    sp = random_sp(config, rng)
    tiles, n = 3, 8
    instrs, rows = back_to_back(config, tiles, n, same_bank=True)
    got, trace = run_exec(config, instrs, sp, rows)
    check_acc(got, model_acc(config, instrs, sp, rows))
    busy = [t[0] for t in trace]
    first = busy.index(1)
    last = len(busy) - 1 - busy[::-1].index(1)
    print(f"icebreaker, weights in the input bank: MAC-busy {sum(busy)} of "
          f"{last - first + 1} cycles")
    assert sum(busy) == tiles * n and last - first + 1 > tiles * n


def test_config_is_checked():
    with pytest.raises(TypeError, match="ExecUnit config must be an AcceleratorConfig, "
                                        "not 'tiny'"):
        ExecUnit(config="tiny")
    with pytest.raises(ValueError, match="ExecUnit supports dataflow 'ws' only, not 'os'"):
        ExecUnit(config=preset("tiny").replace(dataflow="os"))


@pytest.mark.parametrize("name", ["tiny", "2x3-p1"])
def test_vector_waits_for_matmul_results(name):
    """A VECTOR right behind the MATMUL that writes its rows reads the new rows."""
    config = CONFIGS[name]
    rng = np.random.default_rng(11)
    sp = random_sp(config, rng)
    n = 2 * config.rows + 1
    instrs = [
        Instruction(Opcode.MATMUL, {"preload": 1, "w_addr": config.sp_depth}),
        Instruction(Opcode.MATMUL, {"compute": 1, "n_rows": n, "a_addr": 0, "c_addr": 3}),
        Instruction(Opcode.VECTOR, {"op": VectorOp.ADDI.value, "n_rows": n, "dst": 3,
                                    "src_a": 3, "src_b": 0, "imm": 1000}, push_next=True),
        Instruction(Opcode.MATMUL, {"compute": 1, "accumulate": 1, "n_rows": n, "a_addr": 1,
                                    "c_addr": 3}),
    ]
    rows = list(range(3 + n))
    got, _ = run_exec(config, instrs, sp, rows)
    check_acc(got, model_acc(config, instrs, sp, rows))
