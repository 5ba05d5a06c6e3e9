"""The vector unit against the golden model's elementwise semantics."""

import random

import pytest
from amaranth.sim import Simulator

from systolic.config import preset
from systolic.isa import VectorOp
from systolic.numerics import INT32_MAX, INT32_MIN, round_shift
from systolic.rtl.vector import VectorUnit


def reference(op, a, b, imm, ma, sa, mb, sb):
    """One element as in ``GoldenModel._vector`` (Python ints), saturated to int32."""
    v = VectorOp(op)
    out = {
        VectorOp.ADD: lambda: a + b, VectorOp.MAX: lambda: max(a, b),
        VectorOp.MIN: lambda: min(a, b), VectorOp.ADDI: lambda: a + imm,
        VectorOp.MAXI: lambda: max(a, imm), VectorOp.MINI: lambda: min(a, imm),
        VectorOp.SHIFT: lambda: round_shift(a, imm) if imm >= 0 else a << -imm,
        VectorOp.MULI: lambda: a * imm,
        VectorOp.RESCALE_ADD: lambda: round_shift(a * ma, sa) + round_shift(b * mb, sb),
    }[v]()
    return max(min(out, INT32_MAX), INT32_MIN)


def _check(cases, corrupt=None):
    dut = VectorUnit(config=preset("tiny"))
    bad = []

    async def bench(ctx):
        for n, (op, a, b, imm, ma, sa, mb, sb) in enumerate(cases):
            for sig, v in ((dut.op, op), (dut.imm, imm), (dut.mult_a, ma), (dut.mult_b, mb),
                           (dut.shift_a, sa), (dut.shift_b, sb)):
                ctx.set(sig, v)
            for i in range(2):
                ctx.set(dut.a[i], a[i])
                ctx.set(dut.b[i], b[i])
            got = [ctx.get(dut.result[i]) for i in range(2)]
            want = [reference(op, a[i], b[i], imm, ma, sa, mb, sb) for i in range(2)]
            if n == corrupt:
                want[0] += 1
            if got != want:
                bad.append((op, a, b, imm, got, want))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return bad


def _cases(seed, n):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        op = rng.randrange(9)
        a = [rng.choice([rng.randrange(INT32_MIN, INT32_MAX + 1), rng.randrange(-99, 99)])
             for _ in range(2)]
        b = [rng.randrange(INT32_MIN, INT32_MAX + 1) for _ in range(2)]
        imm = (rng.randrange(-31, 64) if op == VectorOp.SHIFT.value
               else rng.randrange(INT32_MIN, INT32_MAX + 1))
        out.append((op, a, b, imm, rng.randrange(1 << 31), rng.randrange(64),
                    rng.randrange(1 << 31), rng.randrange(64)))
    return out


def test_random_operations_match_model():
    assert not _check(_cases(1, 2000))


def test_checker_catches_a_wrong_result():
    assert len(_check(_cases(2, 5), corrupt=3)) == 1


def test_rejects_non_config():
    with pytest.raises(TypeError, match="VectorUnit config must be an AcceleratorConfig"):
        VectorUnit(config=None)
