"""Compiled programs on the RTL: ``VerilatorDevice`` equals ``GoldenDevice`` byte for byte.

A ragged GEMM (bias, per-channel requantization, ReLU), convolutions (3x3, stride 1 and
2, padding, a few channels), a program that stops with an error, and the digits MLP
compiled from ONNX run on ``Accelerator(preset("default"))`` in Verilator and on the
golden model. Every job's memory image after the run, error code and index, overflow
flag and retired-instruction count must match. All RTL tests share the default preset's
build folder (``build/sim/accel-default``, also used by ``tests/test_accelerator.py``),
hence the common xdist group; each test runs its jobs in one ``run_batch`` (one simulator
process).
"""

from dataclasses import dataclass

import numpy as np
import pytest

from systolic.compiler import Graph, Requant, compile_graph
from systolic.config import preset
from systolic.isa import ErrorCode, Opcode, decode
from systolic.runtime.device import Device, GoldenDevice, Job

CONFIG = preset("default")

pytestmark = [pytest.mark.verilator, pytest.mark.xdist_group("accel-default")]


@pytest.fixture(scope="module")
def rtl_device():
    from systolic.runtime.verilator import VerilatorDevice

    return VerilatorDevice(CONFIG)


# -- the scoreboard ----------------------------------------------------------------------------

def assert_same_results(want, got, names):
    """Golden results ``want`` and RTL results ``got``, job by job: error code and index,
    overflow flag, instructions retired and (unless the bus failed) every memory byte."""
    assert len(got) == len(want), f"{len(got)} RTL results for {len(want)} jobs"
    problems = []
    for name, w, g in zip(names, want, got, strict=True):
        if (g.error, g.error_index) != (w.error, w.error_index):
            problems.append(f"{name}: error {g.error} at {g.error_index}, golden {w.error} at "
                            f"{w.error_index}")
            continue
        if g.acc_overflow != w.acc_overflow:
            problems.append(f"{name}: overflow flag {g.acc_overflow}, golden {w.acc_overflow}")
        if g.perf.get("instret") != w.perf.get("instret"):
            problems.append(f"{name}: {g.perf.get('instret')} instructions retired, golden "
                            f"{w.perf.get('instret')}")
        if w.error is ErrorCode.AXI_ERROR:
            continue      # memory is implementation-defined after a bus error
        if len(g.memory) != len(w.memory):
            problems.append(f"{name}: {len(g.memory)} bytes of memory, golden {len(w.memory)}")
            continue
        a, b = np.frombuffer(g.memory, np.uint8), np.frombuffer(w.memory, np.uint8)
        bad = np.flatnonzero(a != b)
        if bad.size:
            problems.append(f"{name}: {bad.size} bytes differ, first at 0x{bad[0]:x} "
                            f"(RTL 0x{a[bad[0]]:02x}, golden 0x{b[bad[0]]:02x})")
    assert not problems, "RTL differs from the golden model:\n" + "\n".join(problems)


# -- compiled programs -------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    program: object
    graph: object
    inputs: dict
    memory: bytearray
    expect_error: ErrorCode = ErrorCode.NONE

    @property
    def job(self):
        return Job(bytes(self.memory), self.program.prog_addr, self.program.prog_len)


def _random(rng, dtype, shape):
    lo, hi = {"int8": (-128, 127), "uint8": (0, 255)}[dtype]
    return rng.integers(lo, hi + 1, shape)


def _gemm_case(rng, m, n, k, dtype, zp):
    """``m x k`` by ``k x n``, bias, per-channel (M, s), ReLU at the output zero point."""
    g = Graph(f"gemm{m}x{n}x{k}")
    x = g.input("a", (m, k), dtype, scale=0.05, zero_point=zp)
    requant = Requant.from_scale(rng.uniform(0.0005, 0.004, n), zero_point=-7,
                                 activation="relu", requant_bits=CONFIG.requant_bits)
    y = g.gemm(x, rng.integers(-128, 128, (k, n)), bias=rng.integers(-3000, 3000, n),
               requant=requant, out_scale=0.1, name="y")
    g.output(y)
    return _case(f"gemm {m}x{n}x{k} {dtype}", g, {"a": _random(rng, dtype, (m, k))})


def _conv_case(rng, hw, c, f, stride, padding, dtype="int8"):
    g = Graph(f"conv{c}to{f}s{stride}")
    x = g.input("x", (2, *hw, c), dtype, scale=0.04, zero_point=-9 if dtype == "int8" else 131)
    requant = Requant.from_scale(rng.uniform(0.0005, 0.004, f), zero_point=5,
                                 activation="relu", requant_bits=CONFIG.requant_bits)
    y = g.conv2d(x, rng.integers(-128, 128, (3, 3, c, f)), bias=rng.integers(-2000, 2000, f),
                 requant=requant, stride=stride, padding=padding, out_scale=0.2, name="y")
    g.output(y)
    return _case(f"conv 3x3 {c}->{f} stride {stride} pad {padding} {dtype}", g,
                 {"x": _random(rng, dtype, (2, *hw, c))})


def _case(name, graph, inputs):
    program = compile_graph(graph, CONFIG)
    return Case(name, program, graph, inputs, program.memory(inputs))


def _error_case(case):
    """``case`` with its first STORE's opcode made illegal: stops with ILLEGAL_OPCODE."""
    prog = case.program
    mem = bytearray(case.memory)
    index = next(i for i, w in enumerate(prog.words) if decode(w).opcode is Opcode.STORE)
    illegal = next(v for v in range(16) if v not in {o.value for o in Opcode})
    addr = prog.prog_addr + 16 * index
    mem[addr] = (mem[addr] & 0xF0) | illegal
    return Case(case.name + " (illegal opcode)", prog, case.graph, case.inputs, mem,
                ErrorCode.ILLEGAL_OPCODE)


def _cases():
    rng = np.random.default_rng(2024)
    gemm = _gemm_case(rng, 13, 21, 19, "int8", 3)
    return [
        gemm,
        _gemm_case(rng, 29, 11, 37, "uint8", 140),
        _conv_case(rng, (7, 6), 3, 5, 1, 1),
        _conv_case(rng, (9, 8), 3, 6, 2, (1, 0, 2, 1), "uint8"),
        _conv_case(rng, (6, 5), 11, 9, 2, 1),
        _error_case(gemm),
    ]


@pytest.fixture(scope="module")
def program_runs(rtl_device):
    """Every case run on the golden model and, in one batch, on the RTL."""
    cases = _cases()
    jobs = [c.job for c in cases]
    golden = GoldenDevice(CONFIG).run_batch(jobs)
    rtl = rtl_device.run_batch(jobs)
    stats = rtl_device.last_stats
    print(f"\n{len(jobs)} programs on the RTL: {stats['sim_cycles']:.0f} cycles in "
          f"{stats['total_wall_s']:.1f} s")
    return cases, golden, rtl


def test_programs_equal_golden_byte_for_byte(program_runs):
    cases, golden, rtl = program_runs
    assert_same_results(golden, rtl, [c.name for c in cases])
    for case, r in zip(cases, rtl, strict=True):
        assert r.error is case.expect_error, case.name
        print(f"{case.name}: {r.perf.get('cycles')} cycles, {r.perf.get('instret')} "
              f"instructions, error {r.error.name}")


def test_programs_compute_the_reference(program_runs):
    """The common result is also right: outputs equal the graph's NumPy reference."""
    cases, _, rtl = program_runs
    for case, r in zip(cases, rtl, strict=True):
        if case.expect_error is not ErrorCode.NONE:
            continue
        want = case.graph.reference(case.inputs, CONFIG)["y"]
        got = case.program.read_output(r.memory, "y")
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want, err_msg=case.name)
        assert np.count_nonzero(got != case.program.tensors["y"].zero_point) > got.size // 4, \
            f"{case.name}: output almost all at the ReLU floor, a weak test"


def test_scoreboard_catches_one_corrupt_byte(program_runs):
    """Expected fail: one byte of one RTL output changed, or one error index, is caught."""
    cases, golden, rtl = program_runs
    names = [c.name for c in cases]
    out = cases[2].program.tensors["y"]
    corrupt = list(rtl)
    mem = bytearray(rtl[2].memory)
    mem[out.addr + out.nbytes // 2] ^= 0x01
    corrupt[2] = _replace(rtl[2], memory=bytes(mem))
    with pytest.raises(AssertionError, match=r"conv 3x3 3->5 .*: 1 bytes differ"):
        assert_same_results(golden, corrupt, names)
    corrupt = list(rtl)
    corrupt[-1] = _replace(rtl[-1], error_index=rtl[-1].error_index + 1)
    with pytest.raises(AssertionError, match="illegal opcode"):
        assert_same_results(golden, corrupt, names)


def _replace(result, **changes):
    from dataclasses import replace
    return replace(result, **changes)


# -- a whole network from ONNX -----------------------------------------------------------------

class Recorder(Device):
    """Passes jobs to a device and keeps every job, result and ``run_batch`` call."""

    def __init__(self, inner):
        super().__init__(inner.config)
        self.inner = inner
        self.jobs, self.results, self.calls = [], [], 0

    def run_batch(self, jobs, progress=None):
        results = self.inner.run_batch(jobs, progress=progress)
        self.calls += 1
        self.jobs += list(jobs)
        self.results += list(results)
        return results


def test_digits_mlp_equals_golden_on_rtl(rtl_device):
    """The digits MLP (QOperator, uint8) on the 359 test images, six chunks of 60 in one
    simulator process: every job's memory identical, logits identical."""
    from systolic.compiler.onnx_compile import compile_onnx
    from systolic.zoo import build_models, digits_split

    zoo = build_models("build/models", names=("mlp",))
    compiled = compile_onnx(zoo["mlp"].quantized["qoperator_uint8"], CONFIG, batch=60)
    summary = compiled.summary()
    assert summary["device_stages"] == 1 and summary["host_ops"] == 0, summary
    _, _, x_test, y_test = digits_split()
    x, y = x_test, y_test
    golden, rtl = Recorder(GoldenDevice(CONFIG)), Recorder(rtl_device)
    want, _ = compiled.run({"input": x}, golden)
    got, _ = compiled.run({"input": x}, rtl)
    assert len(x) == 359 and rtl.calls == 1 and len(rtl.jobs) == 6
    assert rtl.jobs == golden.jobs
    assert_same_results(golden.results, rtl.results, [f"chunk {i}" for i in range(6)])
    assert all(r.ok for r in rtl.results)
    np.testing.assert_array_equal(got["logits"], want["logits"])
    accuracy = float((got["logits"].argmax(1) == y).mean())
    cycles = sum(r.perf.get("cycles", 0) for r in rtl.results)
    print(f"\ndigits MLP on RTL: {len(x)} images, accuracy {accuracy:.2%}, {cycles} cycles, "
          f"{rtl_device.last_stats['total_wall_s']:.1f} s")
    assert accuracy > 0.8
    bad = dict(got)
    bad["logits"] = got["logits"].copy()
    bad["logits"][7, 3] += np.float32(compiled.outputs[0].scale)
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(bad["logits"], want["logits"])
