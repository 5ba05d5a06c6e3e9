"""Compiler: token insertion, GEMM/conv/add/max-pool lowerings and compiled graphs, all run
on the golden model against plain NumPy references (bit-exact, no races)."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from systolic.compiler import (
    CompiledProgram,
    Graph,
    MemoryLayout,
    ProgramBuilder,
    Requant,
    compile_gemm,
    compile_graph,
    nchw_flatten_permutation,
    plan_gemm,
)
from systolic.compiler.quant import AddParams, conv2d_ref, gemm_ref
from systolic.config import preset
from systolic.isa import LoadDest, Opcode, decode, encode
from systolic.model import GoldenModel, run_program

PRESETS = ["tiny", "icebreaker", "default"]
SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def run_checked(cp, inputs):
    """Run on the golden model; assert no error, no race, no accumulator overflow."""
    outs, results = cp.run(inputs)
    for r in results:
        assert r.ok, r.error
        assert r.races == [], r.races[:3]
        assert not r.acc_overflow
    return outs, results


def random_requant(rng, config, n, out_dtype):
    if out_dtype == "int32":
        return Requant(out_dtype="int32")
    lo, hi = (-128, 127) if out_dtype == "int8" else (0, 255)
    act = rng.choice(["none", "relu", "clamp"])
    clamp = (int(rng.integers(lo, 0 if lo < 0 else 100)), int(rng.integers(110, hi + 1))) \
        if act == "clamp" else None
    scale = rng.uniform(1e-4, 3e-2, n) if rng.random() < 0.5 else float(rng.uniform(1e-4, 3e-2))
    return Requant.from_scale(scale, requant_bits=config.requant_bits,
                              zero_point=int(rng.integers(lo, hi + 1)), out_dtype=out_dtype,
                              activation=str(act), clamp=clamp)


def check_gemm(config, m, k, n, seed, *, blocked=True):
    rng = np.random.default_rng(seed)
    a_dtype = str(rng.choice(["int8", "uint8"]))
    out_dtype = str(rng.choice(["int8", "uint8", "int32"]))
    alo, ahi = (-128, 127) if a_dtype == "int8" else (0, 255)
    a_zp = int(rng.integers(alo, ahi + 1))
    w = rng.integers(-128, 128, (k, n))
    bias = rng.integers(-5000, 5000, n) if rng.random() < 0.7 else None
    rq = random_requant(rng, config, n, out_dtype)
    g = Graph()
    a = g.input("a", (m, k), a_dtype, zero_point=a_zp)
    g.output(g.gemm(a, w, bias, rq, name="y"))
    cp = compile_graph(g, config, blocked=blocked)
    x = rng.integers(alo, ahi + 1, (m, k))
    outs, _ = run_checked(cp, {"a": x})
    np.testing.assert_array_equal(outs["y"], gemm_ref(x, w, bias, rq, a_zp))
    return cp


# -- the program builder ------------------------------------------------------------------

def test_builder_inserts_exact_tokens_and_relays_store_to_load():
    c = preset("tiny")
    lay = MemoryLayout()
    a = lay.const("a", np.arange(8, dtype=np.int8))
    y = lay.alloc("y", 64, kind="output")
    b = ProgramBuilder(c)
    first = b.load(LoadDest.SP, 0, a.addr, 4, 2, 2)
    b.load(LoadDest.SP, 4, a.addr, 2, 2, 2)
    b.matmul(w_addr=4, compute=False, preload=True)
    mm = b.matmul(a_addr=0, c_addr=0, n_rows=4)
    st_ = b.store(0, y.addr, 4, 2, 8, out_type=2)
    last = b.load(LoadDest.ACC, 0, a.addr, 1, 1, 0)    # overwrites rows the STORE reads
    instrs = b.instructions()
    assert not instrs[first].push_next           # the later load carries the token
    assert instrs[mm].push_next and instrs[st_].pop_prev
    assert instrs[last - 1].opcode is Opcode.SYNC and instrs[last].pop_next
    assert b.stats()["relay_syncs"] == 1
    words = b.words()
    pushes = sum(decode(w).push_next + decode(w).push_prev for w in words)
    pops = sum(decode(w).pop_next + decode(w).pop_prev for w in words)
    assert pushes == pops
    r = run_program(c, words, lay.image() + bytes(256), prog_addr=lay.size)
    assert r.ok and r.races == []
    got = np.frombuffer(bytes(r.memory[y.addr:y.addr + 32]), "<i4").reshape(4, 2)
    np.testing.assert_array_equal(got, np.arange(8).reshape(4, 2) @ np.arange(4).reshape(2, 2))


def test_race_detector_catches_missing_tokens():
    """Expected fail: the same program without its tokens has races."""
    c = preset("default")
    cp = compile_gemm(c, 40, 20, 20, np.ones((20, 20), int), np.arange(20),
                      Requant(1, 4, 0, "int8"))
    words = []
    for w in cp.words:
        i = decode(w)
        words.append(encode(type(i)(i.opcode, i.fields)))
    mem = cp.memory({"a": np.ones((40, 20), int)})
    mem[cp.prog_addr:cp.prog_addr + 16 * len(words)] = b"".join(
        w.to_bytes(16, "little") for w in words)
    r = GoldenModel(c).run(mem, cp.prog_addr, len(words))
    assert r.ok and r.races, "a program without tokens must report races"


def test_builder_rejects_bad_fields_and_skips_redundant_config():
    b = ProgramBuilder(preset("tiny"))
    with pytest.raises(ValueError, match="BAD_FIELD"):
        b.matmul(a_addr=0, c_addr=0, n_rows=0)
    assert b.config_reg(2, 0) is None               # REQ_SHIFT already 0
    assert b.config_reg(2, 3) is not None
    assert b.config_reg(2, 3) is None


# -- GEMM -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PRESETS + ["ulx3s"])
@SETTINGS
@given(m=st.integers(1, 40), k=st.integers(1, 40), n=st.integers(1, 40),
       seed=st.integers(0, 2**31))
def test_gemm_random_shapes(name, m, k, n, seed):
    check_gemm(preset(name), m, k, n, seed)


@settings(max_examples=5, deadline=None)
@given(m=st.integers(1, 300), k=st.integers(1, 300), n=st.integers(1, 300),
       seed=st.integers(0, 2**31))
def test_gemm_random_large_shapes_on_default(m, k, n, seed):
    check_gemm(preset("default"), m, k, n, seed)


@pytest.mark.parametrize("name,m,k,n", [
    ("default", 300, 300, 300), ("default", 257, 131, 1), ("default", 1, 293, 97),
    ("icebreaker", 131, 67, 29), ("tiny", 67, 3, 37), ("tiny", 1, 1, 1),
])
def test_gemm_large_and_prime_shapes(name, m, k, n):
    check_gemm(preset(name), m, k, n, seed=m * 7 + k * 3 + n)


@pytest.mark.parametrize("blocked", [False, True])
def test_gemm_row_major_and_blocked_inputs(blocked):
    cp = check_gemm(preset("default"), 70, 45, 19, seed=5, blocked=blocked)
    assert cp.tensors["a"].block == (8 if blocked else 0)


def test_gemm_streams_k_blocks_when_the_scratchpad_is_too_small():
    c = preset("tiny").replace(sp_depth=16)          # 64 rows: no room for resident input
    assert not plan_gemm(c, 30, 51, 5).resident
    check_gemm(c, 30, 101, 5, seed=3)


def test_gemm_on_an_unsigned_array_and_weight_zero_point():
    c = preset("tiny").replace(input_signed=False)
    rng = np.random.default_rng(0)
    w_u8 = rng.integers(0, 256, (9, 5))
    g = Graph()
    a = g.input("a", (6, 9), "int8", zero_point=-3)
    rq = Requant.from_scale(0.01, zero_point=10, out_dtype="int8")
    g.output(g.gemm(a, w_u8, None, rq, weight_zero_point=128, name="y"))
    cp = compile_graph(g, c)
    assert cp.tensors["a"].device_dtype == "uint8"
    x = rng.integers(-128, 128, (6, 9))
    outs, _ = run_checked(cp, {"a": x})
    np.testing.assert_array_equal(outs["y"], gemm_ref(x, w_u8, None, rq, -3, 128))


def test_gemm_errors_name_the_problem():
    c = preset("tiny")
    with pytest.raises(ValueError, match="weights"):
        compile_gemm(c, 2, 2, 2, np.full((2, 2), 200), None, Requant(1, 0))
    with pytest.raises(ValueError, match="out_dtype"):
        Requant(1, 0, out_dtype="int16")
    with pytest.raises(ValueError, match="16-bit M"):
        compile_gemm(preset("icebreaker"), 2, 2, 2, np.ones((2, 2)), None,
                     Requant(1 << 20, 30))


def test_corrupted_weight_changes_the_result():
    """Expected fail: one corrupted weight byte makes the scoreboard comparison fail."""
    c = preset("tiny")
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, (5, 3))
    cp = compile_gemm(c, 4, 5, 3, w, None, Requant(out_dtype="int32"))
    x = rng.integers(-128, 128, (4, 5))
    img = bytearray(cp.image)
    needle = (w[:2, :2] & 0xFF).astype(np.uint8).tobytes()    # the first 2x2 weight tile
    at = bytes(img).find(needle)
    assert at >= 0
    img[at] ^= 0x01
    bad = CompiledProgram(c, bytes(img), cp.steps, cp.tensors, cp.inputs, cp.outputs)
    good, _ = run_checked(cp, {"a": x})
    worse, _ = run_checked(bad, {"a": x})
    np.testing.assert_array_equal(good["y"], x @ w)
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(worse["y"], x @ w)


# -- conv2d, add, max-pool ------------------------------------------------------------------

def conv_loops(x, w, stride, pad, zp):
    """A direct-loop convolution (checks the im2col reference itself)."""
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    (sy, sx), (pt, pl, pb, pr) = stride, pad
    oh, ow = (h + pt + pb - kh) // sy + 1, (wd + pl + pr - kw) // sx + 1
    y = np.zeros((n, oh, ow, f), dtype=np.int64)
    for i in range(n):
        for oy in range(oh):
            for ox in range(ow):
                for ky in range(kh):
                    for kx in range(kw):
                        iy, ix = oy * sy + ky - pt, ox * sx + kx - pl
                        v = x[i, iy, ix] if 0 <= iy < h and 0 <= ix < wd else np.full(c, zp)
                        y[i, oy, ox] += (v - zp) @ w[ky, kx]
    return y


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("shape", [
    # n, h, w, c, f, k, stride, padding (top, left, bottom, right)
    (1, 5, 5, 1, 2, 3, (1, 1), (1, 1, 1, 1)),
    (2, 7, 6, 3, 5, 3, (2, 2), (1, 0, 2, 1)),
    (1, 9, 8, 9, 10, 3, (1, 2), (0, 0, 0, 0)),
    (1, 20, 19, 3, 4, 5, (2, 1), (2, 2, 2, 2)),
    (1, 3, 40, 2, 3, 1, (1, 1), (0, 17, 0, 18)),
])
def test_conv2d_against_reference(name, shape):
    c = preset(name)
    n, h, w, ci, co, k, stride, pad = shape
    rng = np.random.default_rng(sum(shape[:6]))
    wt = rng.integers(-128, 128, (k, k, ci, co))
    bias = rng.integers(-2000, 2000, co)
    rq = random_requant(rng, c, co, "uint8")
    g = Graph()
    x = g.input("x", (n, h, w, ci), "uint8", zero_point=9)
    g.output(g.conv2d(x, wt, bias, rq, stride=stride, padding=pad, name="y"))
    cp = compile_graph(g, c)
    xv = rng.integers(0, 256, (n, h, w, ci))
    outs, _ = run_checked(cp, {"x": xv})
    ref = conv2d_ref(xv, wt, bias, rq, stride, pad, 9)
    np.testing.assert_array_equal(outs["y"], ref)
    raw = conv2d_ref(xv, wt, None, Requant(out_dtype="int32"), stride, pad, 9)
    np.testing.assert_array_equal(raw, conv_loops(xv, wt, stride, pad, 9))


def add_graph(shape, dtype="int8", scales=(0.05, 0.11, 0.08), zps=(3, -7, 1), **kw):
    g = Graph()
    a = g.input("a", shape, dtype, scale=scales[0], zero_point=zps[0])
    b = g.input("b", shape, dtype, scale=scales[1], zero_point=zps[1])
    g.output(g.add(a, b, out_scale=scales[2], zero_point=zps[2], out_dtype=dtype, name="y",
                   **kw))
    return g


@pytest.mark.parametrize("name", ["tiny", "default"])
@pytest.mark.parametrize("shape,act", [((1, 5, 5, 3), "none"), ((300, 7), "relu"),
                                       ((1, 1), "none"), ((4100,), "relu")])
def test_add_on_the_vector_unit(name, shape, act):
    c = preset(name)
    rng = np.random.default_rng(len(shape))
    g = add_graph(shape, activation=act)
    cp = compile_graph(g, c)
    assert cp.stats["host_ops"] == 0
    xa, xb = rng.integers(-128, 128, shape), rng.integers(-128, 128, shape)
    outs, _ = run_checked(cp, {"a": xa, "b": xb})
    np.testing.assert_array_equal(outs["y"], g.reference({"a": xa, "b": xb}, c)["y"])
    ideal = np.round((0.05 * (xa - 3) + 0.11 * (xb + 7)) / 0.08) + 1
    lo = 1 if act == "relu" else -128
    assert np.abs(outs["y"] - np.clip(ideal, lo, 127)).max() <= 1


def test_add_falls_back_to_the_host_without_a_vector_unit():
    c = preset("icebreaker")
    g = add_graph((3, 9), dtype="uint8", zps=(100, 120, 128))
    with pytest.warns(UserWarning, match="runs on the host"):
        cp = compile_graph(g, c)
    assert cp.stats["host_ops"] == 1
    rng = np.random.default_rng(0)
    xa, xb = rng.integers(0, 256, (3, 9)), rng.integers(0, 256, (3, 9))
    outs, _ = cp.run({"a": xa, "b": xb})
    np.testing.assert_array_equal(outs["y"], g.reference({"a": xa, "b": xb}, c)["y"])
    assert AddParams.from_scales(0.05, 0.11, 0.08, 16).mult_a < 1 << 15


@pytest.mark.parametrize("name", ["tiny", "default", "icebreaker"])
@pytest.mark.parametrize("shape,kernel,stride,pad", [
    ((1, 8, 8, 3), 2, 2, 0), ((2, 7, 9, 10), 3, 2, 1), ((1, 5, 6, 1), 3, 1, (0, 1, 2, 0)),
])
def test_max_pool(name, shape, kernel, stride, pad):
    c = preset(name)
    rng = np.random.default_rng(shape[1])
    g = Graph()
    x = g.input("x", shape, "uint8", zero_point=5)
    g.output(g.max_pool(x, kernel, stride, pad, name="y"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cp = compile_graph(g, c)
    assert cp.stats["host_ops"] == (0 if c.vector_unit else 1)
    xv = rng.integers(0, 256, shape)
    outs, _ = run_checked(cp, {"x": xv})
    np.testing.assert_array_equal(outs["y"], g.reference({"x": xv}, c)["y"])


# -- graphs -------------------------------------------------------------------------------

def small_cnn(rng, config):
    g = Graph("cnn")
    x = g.input("x", (2, 8, 8, 1), "uint8", scale=1 / 255, zero_point=0)
    c1 = g.conv2d(x, rng.integers(-128, 128, (3, 3, 1, 8)), rng.integers(-500, 500, 8),
                  Requant.from_scale(rng.uniform(0.002, 0.01, 8),
                                     requant_bits=config.requant_bits, zero_point=-128,
                                     activation="relu"),
                  padding=1, out_scale=0.05)
    p1 = g.max_pool(c1, 2)
    c2 = g.conv2d(p1, rng.integers(-128, 128, (3, 3, 8, 12)), None,
                  Requant.from_scale(0.001, requant_bits=config.requant_bits, zero_point=4),
                  padding=1, out_scale=0.1, name="c2")
    r = g.add(c2, c2, out_scale=0.15, zero_point=0, name="res")
    f = g.flatten(r)
    y = g.gemm(f, rng.integers(-128, 128, (4 * 4 * 12, 10)), rng.integers(-99, 99, 10),
               Requant.from_scale(0.0007, requant_bits=config.requant_bits), name="logits")
    g.output(y, "c2")
    return g


@pytest.mark.parametrize("name", PRESETS)
def test_small_cnn_end_to_end(name):
    c = preset(name)
    rng = np.random.default_rng(7)
    g = small_cnn(rng, c)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cp = compile_graph(g, c)
    xv = rng.integers(0, 256, (2, 8, 8, 1))
    outs, _ = run_checked(cp, {"x": xv})
    ref = g.reference({"x": xv}, c)
    for k in ("logits", "c2"):
        np.testing.assert_array_equal(outs[k], ref[k])
    # the description round-trips and runs the same
    again = CompiledProgram.from_dict(cp.to_dict(), cp.image)
    outs2, _ = again.run({"x": xv})
    np.testing.assert_array_equal(outs2["logits"], outs["logits"])


def test_mlp_single_program_and_descriptors():
    c = preset("default")
    rng = np.random.default_rng(3)
    g = Graph("mlp")
    x = g.input("x", (5, 64), "uint8", scale=0.02, zero_point=128)
    h = g.linear(x, rng.integers(-128, 128, (64, 32)), rng.integers(-999, 999, 32),
                 Requant.from_scale(0.004, zero_point=-128, activation="relu"), name="h")
    g.output(g.linear(h, rng.integers(-128, 128, (32, 10)), None,
                      Requant(out_dtype="int32"), name="y"))
    cp = compile_graph(g, c)
    assert len(cp.steps) == 1 and cp.prog_len == len(cp.words)
    assert cp.tensors["h"].block == 8 and cp.tensors["y"].dtype == "int32"
    xv = rng.integers(0, 256, (5, 64))
    mem = cp.memory({"x": xv})
    res = GoldenModel(c).run(mem, cp.prog_addr, cp.prog_len)
    assert res.ok and not res.races
    np.testing.assert_array_equal(cp.read_output(res.memory, "y"),
                                  g.reference({"x": xv}, c)["y"])
    with pytest.raises(ValueError, match="shape"):
        cp.write_input(mem, "x", np.zeros((4, 64), int))
    with pytest.raises(ValueError, match="values must be in"):
        cp.write_input(mem, "x", np.full((5, 64), 300))
    with pytest.raises(ValueError, match="not an output"):
        cp.read_output(mem, "h")


def test_nchw_flatten_permutation():
    rng = np.random.default_rng(0)
    x = rng.integers(-9, 9, (3, 4, 5))                        # c, h, w
    w = rng.integers(-9, 9, (60, 7))
    p = nchw_flatten_permutation(3, 4, 5)
    np.testing.assert_array_equal(x.transpose(1, 2, 0).reshape(-1) @ w[p], x.reshape(-1) @ w)


@pytest.mark.parametrize("name", ["icebreaker", "default"])
def test_standalone_clamp_runs_on_the_device(name):
    c = preset(name)
    rng = np.random.default_rng(2)
    g = Graph()
    x = g.input("x", (3, 11, 5), "uint8", zero_point=77)
    g.output(g.clamp(x, 77, 200, name="y"))
    cp = compile_graph(g, c)
    assert cp.stats["host_ops"] == 0
    xv = rng.integers(0, 256, (3, 11, 5))
    outs, _ = run_checked(cp, {"x": xv})
    np.testing.assert_array_equal(outs["y"], np.clip(xv, 77, 200))


def test_add_with_explicit_integer_parameters():
    c = preset("tiny")
    p = AddParams(mult_a=3 << 20, shift_a=21, mult_b=5 << 19, shift_b=21, pre_shift=1)
    g = Graph()
    a = g.input("a", (4, 6), "int8", zero_point=2)
    b = g.input("b", (4, 6), "int8", zero_point=-2)
    g.output(g.add(a, b, params=p, zero_point=-1, name="y"))
    cp = compile_graph(g, c)
    rng = np.random.default_rng(4)
    xa, xb = rng.integers(-128, 128, (4, 6)), rng.integers(-128, 128, (4, 6))
    outs, _ = run_checked(cp, {"a": xa, "b": xb})
    t = ((xa - 2) * 3 + 1) // 2 + ((xb + 2) * 5 + 2) // 4        # the two rescales
    np.testing.assert_array_equal(outs["y"], np.clip((t + 1) // 2 - 1, -128, 127))


def test_narrow_element_widths_are_refused():
    with pytest.raises(ValueError, match="8-bit inputs"):
        compile_gemm(preset("tiny").replace(input_bits=4), 2, 2, 2, np.ones((2, 2)), None,
                     Requant(1, 0))
