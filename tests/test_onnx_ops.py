"""Every operator the ONNX front end claims, in small ``onnx.helper`` models compiled for
the default preset and run on the golden device, against ``onnx.reference`` (onnxruntime
for the ``com.microsoft`` ops the reference lacks); and models made by onnxruntime's
``quantize_static`` in both formats, with the split of their nodes between the
accelerator and the host.

``tests/test_onnx_frontend.py`` covers QLinearMatMul, QLinearConv and the QDQ
Add/Relu/MaxPool chain on the tiny preset; this file covers the rest.

Rounding: requantization rounds half up (``numerics.round_shift``) with an integer
multiplier, while ONNX rounds half to even on a float32 product. Results must be exact or
within 1 LSB; every comparison prints how many elements differ. Integer-only ops (raw
MatMulInteger, MaxPool, Reshape, Flatten, Relu, the host's QuantizeLinear) must be exact.
"""

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from systolic.compiler.onnx_compile import compile_onnx
from systolic.compiler.onnx_frontend import UnsupportedOpWarning
from systolic.config import preset
from systolic.runtime.device import GoldenDevice

CONFIG = preset("default")
ELEM = {np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8}


# -- model building ----------------------------------------------------------------------------

def _model(nodes, inputs, outputs, inits, opset=21):
    g = helper.make_graph(nodes, "t", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset),
                                            helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 10
    return m


def _init(name, value):
    return numpy_helper.from_array(np.asarray(value), name)


def _q(prefix, scale, zp, dt):
    return [_init(f"{prefix}_scale", np.float32(scale)), _init(f"{prefix}_zp", dt(zp))]


def _vi(name, dt, shape):
    elem = ELEM.get(dt, dt)
    return helper.make_tensor_value_info(name, elem, shape)


def _rand(rng, dt, shape):
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max + 1, shape).astype(dt)


def _weights(rng, *shape):
    return rng.integers(-127, 128, shape).astype(np.int8)


def _w_scale(rng, n, per_channel):
    return (rng.uniform(0.002, 0.02, n) if per_channel else np.float32(0.01)).astype(np.float32)


# -- comparison --------------------------------------------------------------------------------

def _reference(model, feeds):
    return ReferenceEvaluator(model).run(None, feeds)[0]


def _onnxruntime(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _run(model, feeds, batch):
    compiled = compile_onnx(model, CONFIG, batch=batch)
    got, _ = compiled.run(feeds, GoldenDevice(CONFIG))
    return compiled, got[compiled.outputs[0].name]


def lsb_difference(got, want, scale=None):
    """Per-element difference in LSB (float outputs are divided by their ``scale``)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"shape {got.shape}, expected {want.shape}"
    assert got.dtype == want.dtype, f"dtype {got.dtype}, expected {want.dtype}"
    if scale is None:
        return np.abs(got.astype(np.int64) - want.astype(np.int64))
    return np.abs(np.rint((got.astype(np.float64) - want.astype(np.float64)) / scale))


def check(what, got, want, *, max_lsb=1, scale=None):
    """At most ``max_lsb`` LSB apart, and at most 5 % of the elements off at all.
    Returns ``(largest difference, differing elements)``."""
    diff = lsb_difference(got, want, scale)
    worst, count = int(diff.max(initial=0)), int(np.count_nonzero(diff))
    print(f"{what}: largest difference {worst} LSB, {count} of {diff.size} elements differ")
    assert worst <= max_lsb, f"{what}: {worst} LSB from the reference (at most {max_lsb})"
    assert count <= 0.05 * diff.size, f"{what}: {count} of {diff.size} elements differ"
    return worst, count


def test_check_catches_a_wrong_value():
    """Expected fail: 2 LSB off, a wrong exact value, a wrong dtype are all caught."""
    want = np.arange(40, dtype=np.uint8).reshape(4, 10)
    bad = want.copy()
    bad[2, 3] += 2
    with pytest.raises(AssertionError, match="2 LSB from the reference"):
        check("corrupt", bad, want)
    bad[2, 3] -= 1
    with pytest.raises(AssertionError, match="1 LSB from the reference"):
        check("corrupt", bad, want, max_lsb=0)
    with pytest.raises(AssertionError, match="dtype int8"):
        check("corrupt", want.astype(np.int8), want)


# -- MatMulInteger -----------------------------------------------------------------------------

@pytest.mark.parametrize("dt,zp", [(np.uint8, 131), (np.int8, None)])
def test_matmulinteger_exact(dt, zp):
    """Raw int32 GEMM (ragged 9x19x13), with and without an input zero point."""
    rng = np.random.default_rng(10)
    inits = [_init("w", _weights(rng, 19, 13))]
    ins = ["a", "w"]
    if zp is not None:
        inits.append(_init("a_zp", dt(zp)))
        ins.append("a_zp")
    node = helper.make_node("MatMulInteger", ins, ["y"], name="mmi")
    model = _model([node], [_vi("a", dt, ["N", 19])], [_vi("y", TensorProto.INT32, None)],
                   inits)
    feeds = {"a": _rand(rng, dt, (9, 19))}
    compiled, got = _run(model, feeds, 5)
    assert compiled.summary()["host_ops"] == 0
    check("MatMulInteger", got, _reference(model, feeds), max_lsb=0)


# -- com.microsoft.QGemm -----------------------------------------------------------------------

def _qgemm_model(rng, dt, k, n, per_channel, trans_b):
    w = _weights(rng, n, k) if trans_b else _weights(rng, k, n)
    zp = 120 if dt is np.uint8 else -15
    inits = [*_q("a", 0.03, zp, dt), _init("w", w), _init("w_scale", _w_scale(rng, n, per_channel)),
             _init("w_zp", np.zeros(n if per_channel else (), np.int8)),
             _init("bias", rng.integers(-4000, 4000, n).astype(np.int32)),
             *_q("y", 0.25, zp // 4, dt)]
    node = helper.make_node("QGemm", ["a", "a_scale", "a_zp", "w", "w_scale", "w_zp", "bias",
                                      "y_scale", "y_zp"], ["y"], name="qgemm",
                            domain="com.microsoft", transB=int(trans_b))
    return _model([node], [_vi("a", dt, ["N", k])], [_vi("y", dt, None)], inits)


@pytest.mark.parametrize("dt,per_channel,trans_b", [(np.uint8, False, True),
                                                    (np.int8, True, True),
                                                    (np.uint8, True, False)])
def test_qgemm_against_onnxruntime(dt, per_channel, trans_b):
    """QGemm (no onnx.reference kernel) against onnxruntime, ragged 11x27x10."""
    rng = np.random.default_rng(20 + per_channel)
    model = _qgemm_model(rng, dt, 27, 10, per_channel, trans_b)
    feeds = {"a": _rand(rng, dt, (11, 27))}
    compiled, got = _run(model, feeds, 6)
    assert compiled.summary()["host_ops"] == 0
    check("QGemm", got, _onnxruntime(model, feeds))


# -- QuantizeLinear / DequantizeLinear at the edges --------------------------------------------

@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_quantize_dequantize_at_the_edges(dt):
    """float -> QuantizeLinear -> QLinearMatMul -> DequantizeLinear -> float; the input's
    rounding ties (x = (k + 1/2) * scale) must round half to even as ONNX does."""
    rng = np.random.default_rng(30)
    zp = 128 if dt is np.uint8 else 0
    inits = [*_q("x", 0.125, zp, dt), _init("w", _weights(rng, 12, 6)),
             _init("w_scale", np.float32(0.01)), _init("w_zp", np.int8(0)),
             *_q("y", 0.5, zp // 2, dt)]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="q"),
        helper.make_node("QLinearMatMul", ["xq", "x_scale", "x_zp", "w", "w_scale", "w_zp",
                                           "y_scale", "y_zp"], ["yq"], name="mm"),
        helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zp"], ["y"], name="dq"),
    ]
    model = _model(nodes, [_vi("x", TensorProto.FLOAT, ["N", 12])],
                   [_vi("y", TensorProto.FLOAT, None)], inits)
    ties = (rng.integers(-60, 60, (8, 12)) + 0.5) * 0.125
    x = np.concatenate([ties, rng.uniform(-20, 20, (8, 12))]).astype(np.float32)
    compiled, got = _run(model, {"x": x}, 8)
    summary = compiled.summary()
    assert summary["host_ops"] == 0 and summary["device_stages"] == 1
    assert compiled.inputs[0].quantize and compiled.outputs[0].dequantize
    # the edge alone is exact: the quantized input equals QuantizeLinear's
    q_model = _model(nodes[:1], [_vi("x", TensorProto.FLOAT, ["N", 12])], [_vi("xq", dt, None)],
                     inits[:2])
    from systolic.compiler.qgraph import to_input
    ours = to_input(compiled.graph, compiled.inputs[0], x[:8])
    check("QuantizeLinear on ties", ours, _reference(q_model, {"x": x[:8]}), max_lsb=0)
    check("Q -> QLinearMatMul -> DQ", got, _reference(model, {"x": x}), scale=0.5)


# -- Relu ------------------------------------------------------------------------------------

def _mm_nodes(x, y, prefix, name):
    return helper.make_node("QLinearMatMul", [x, f"{x}_scale", f"{x}_zp", f"{prefix}w",
                                              "w_scale", "w_zp", f"{y}_scale", f"{y}_zp"],
                            [y], name=name)


def test_relu_merged_and_standalone():
    """Relu on a QLinearMatMul's int8 output becomes its clamp; a standalone Relu (on a
    graph input read by two ops) runs on the device as a clamp; exact, no host op."""
    rng = np.random.default_rng(40)
    inits = [*_q("a", 0.05, -3, np.int8), _init("w", _weights(rng, 16, 9)),
             _init("w_scale", np.float32(0.01)), _init("w_zp", np.int8(0)),
             *_q("h", 0.2, -20, np.int8), *_q("ar", 0.05, -3, np.int8),
             _init("rw", _weights(rng, 16, 9))]
    nodes = [
        helper.make_node("Relu", ["a"], ["ar"], name="relu_in"),
        _mm_nodes("ar", "h", "", "mm"),
        helper.make_node("Relu", ["h"], ["y"], name="relu_out"),
    ]
    model = _model(nodes, [_vi("a", np.int8, ["N", 16])], [_vi("y", np.int8, None)], inits)
    feeds = {"a": _rand(rng, np.int8, (10, 16))}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsupportedOpWarning)
        compiled, got = _run(model, feeds, 10)
    assert [op.kind for op in compiled.graph.ops] == ["clamp", "linear"]
    assert compiled.summary()["host_ops"] == 0, compiled.summary()
    want = _reference(model, feeds)
    assert (want == 0).any() and (want > 0).any()
    check("Relu -> QLinearMatMul -> Relu", got, want)


def test_relu_on_int32_runs_on_the_host():
    """The raw int32 STORE cannot clamp: Relu after MatMulInteger is one host op with one
    warning naming it, and still exact."""
    rng = np.random.default_rng(41)
    nodes = [helper.make_node("MatMulInteger", ["a", "w"], ["acc"], name="mmi"),
             helper.make_node("Relu", ["acc"], ["y"], name="relu_acc")]
    model = _model(nodes, [_vi("a", np.int8, ["N", 16])], [_vi("y", TensorProto.INT32, None)],
                   [_init("w", _weights(rng, 16, 9))])
    feeds = {"a": _rand(rng, np.int8, (6, 16))}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled, got = _run(model, feeds, 6)
    ours = [str(w.message) for w in caught if issubclass(w.category, UnsupportedOpWarning)]
    assert len(ours) == 1 and "'relu_acc'" in ours[0], ours
    assert compiled.summary()["host_op_names"] == ["relu_acc"]
    want = _reference(model, feeds)
    assert (want == 0).any() and (want > 0).any()
    check("MatMulInteger -> Relu", got, want, max_lsb=0)


# -- com.microsoft.QLinearAdd ------------------------------------------------------------------

@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_qlinearadd_against_onnxruntime(dt):
    """QLinearAdd (no onnx.reference kernel) on the VECTOR unit, NCHW inputs."""
    rng = np.random.default_rng(50)
    zp = (117, 140, 100) if dt is np.uint8 else (-10, 12, -4)
    inits = [*_q("a", 0.031, zp[0], dt), *_q("b", 0.047, zp[1], dt), *_q("y", 0.06, zp[2], dt)]
    node = helper.make_node("QLinearAdd", ["a", "a_scale", "a_zp", "b", "b_scale", "b_zp",
                                           "y_scale", "y_zp"], ["y"], name="qadd",
                            domain="com.microsoft")
    shape = ["N", 3, 5, 4]
    model = _model([node], [_vi("a", dt, shape), _vi("b", dt, shape)], [_vi("y", dt, None)],
                   inits)
    feeds = {"a": _rand(rng, dt, (4, 3, 5, 4)), "b": _rand(rng, dt, (4, 3, 5, 4))}
    compiled, got = _run(model, feeds, 4)
    assert compiled.summary()["host_ops"] == 0
    check("QLinearAdd", got, _onnxruntime(model, feeds))


# -- MaxPool, Flatten, Reshape -----------------------------------------------------------------

@pytest.mark.parametrize("dt,kernel,strides,pads", [
    (np.uint8, [2, 2], [2, 2], [0, 0, 0, 0]),
    (np.int8, [3, 3], [2, 2], [1, 1, 1, 1]),
    (np.uint8, [3, 2], [1, 2], [1, 0, 0, 1]),
])
def test_maxpool_exact(dt, kernel, strides, pads):
    """MaxPool on an integer tensor (QOperator models pool the quantized values)."""
    rng = np.random.default_rng(60)
    node = helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=kernel,
                            strides=strides, pads=pads)
    model = _model([node], [_vi("x", dt, ["N", 5, 7, 6])], [_vi("y", dt, None)], [])
    feeds = {"x": _rand(rng, dt, (3, 5, 7, 6))}
    compiled, got = _run(model, feeds, 3)
    assert compiled.summary()["host_ops"] == 0
    check("MaxPool", got, _reference(model, feeds), max_lsb=0)


def _conv_head(rng, dt, zp, reshape):
    """QLinearConv (2 -> 4 channels, 5x5) -> Flatten or Reshape -> QLinearMatMul."""
    inits = [*_q("x", 0.05, zp, dt), _init("cw", _weights(rng, 4, 2, 3, 3)),
             _init("cw_scale", np.float32(0.01)), _init("w_zp", np.int8(0)),
             *_q("c", 0.15, zp, dt), _init("w", _weights(rng, 100, 7)),
             _init("w_scale", np.float32(0.005)), *_q("f", 0.15, zp, dt),
             *_q("y", 0.4, zp, dt), _init("shape", np.array([0, -1], np.int64))]
    shape_node = helper.make_node("Reshape", ["c", "shape"], ["f"], name="reshape") if reshape         else helper.make_node("Flatten", ["c"], ["f"], name="flatten", axis=1)
    nodes = [
        helper.make_node("QLinearConv", ["x", "x_scale", "x_zp", "cw", "cw_scale", "w_zp",
                                         "c_scale", "c_zp"], ["c"], name="conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        shape_node,
        _mm_nodes("f", "y", "", "mm"),
    ]
    return _model(nodes, [_vi("x", dt, ["N", 2, 5, 5])], [_vi("y", dt, None)], inits)


@pytest.mark.parametrize("dt,per_channel", [(np.int8, True), (np.uint8, False)])
def test_qlinearconv_many_channels_on_default(dt, per_channel):
    """QLinearConv 11 -> 13 channels, stride 2, asymmetric padding, bias, on the 8x8
    default preset (K = 99 and N = 13 cut into ragged blocks of 8)."""
    rng = np.random.default_rng(65)
    zp = 77 if dt is np.uint8 else -12
    w_scale = _w_scale(rng, 13, per_channel)
    inits = [*_q("x", 0.03, zp, dt), _init("w", _weights(rng, 13, 11, 3, 3)),
             _init("w_scale", w_scale), _init("w_zp", np.zeros(w_scale.shape, np.int8)),
             *_q("y", 0.3, zp // 2, dt), _init("b", rng.integers(-4000, 4000, 13).astype(np.int32))]
    node = helper.make_node("QLinearConv", ["x", "x_scale", "x_zp", "w", "w_scale", "w_zp",
                                            "y_scale", "y_zp", "b"], ["y"], name="conv",
                            kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 2, 1])
    model = _model([node], [_vi("x", dt, ["N", 11, 9, 7])], [_vi("y", dt, None)], inits)
    feeds = {"x": _rand(rng, dt, (2, 11, 9, 7))}
    compiled, got = _run(model, feeds, 2)
    assert compiled.summary()["host_ops"] == 0
    check("QLinearConv 11->13", got, _reference(model, feeds))


@pytest.mark.parametrize("reshape", [False, True])
def test_flatten_and_reshape_of_a_conv_output(reshape):
    """A 4-D (NCHW) conv output flattened for a MatMul: stored NHWC on the device, so the
    MatMul's weight rows are permuted; same results as the reference."""
    rng = np.random.default_rng(70)
    model = _conv_head(rng, np.uint8, 110, reshape)
    feeds = {"x": _rand(rng, np.uint8, (6, 2, 5, 5))}
    compiled, got = _run(model, feeds, 6)
    summary = compiled.summary()
    assert summary["host_ops"] == 0 and summary["device_stages"] == 1, summary
    assert [op.kind for op in compiled.graph.ops] == ["conv", "reshape", "linear"]
    check("QLinearConv -> " + ("Reshape" if reshape else "Flatten") + " -> QLinearMatMul",
          got, _reference(model, feeds))


def test_flatten_and_reshape_as_outputs():
    """MaxPool -> Flatten (NCHW order restored on the host) and a 2-D QLinearMatMul output
    reshaped to 3-D, as graph outputs: exact, all on the device."""
    rng = np.random.default_rng(71)
    inits = [*_q("a", 0.05, 4, np.int8), _init("w", _weights(rng, 10, 18)),
             _init("w_scale", np.float32(0.01)), _init("w_zp", np.int8(0)),
             *_q("h", 0.2, -2, np.int8), _init("shape", np.array([-1, 9, 2], np.int64))]
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["flat"], name="flatten"),
             _mm_nodes("a", "h", "", "mm"),
             helper.make_node("Reshape", ["h", "shape"], ["r"], name="reshape")]
    model = _model(nodes, [_vi("x", np.int8, ["N", 3, 4, 6]), _vi("a", np.int8, ["N", 10])],
                   [_vi("flat", np.int8, None), _vi("r", np.int8, None)], inits)
    feeds = {"x": _rand(rng, np.int8, (4, 3, 4, 6)), "a": _rand(rng, np.int8, (4, 10))}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsupportedOpWarning)
        compiled = compile_onnx(model, CONFIG, batch=4)
    assert compiled.summary()["host_ops"] == 0
    got, _ = compiled.run(feeds, GoldenDevice(CONFIG))
    want = ReferenceEvaluator(model).run(None, feeds)
    check("MaxPool -> Flatten", got["flat"], want[0], max_lsb=0)
    check("QLinearMatMul -> Reshape", got["r"], want[1])


def test_reshape_of_a_flattened_nchw_tensor_runs_on_the_host():
    """A Reshape of a flattened 4-D tensor would need a transpose on the device (the
    device keeps NHWC order): one host op with one warning, exact."""
    rng = np.random.default_rng(72)
    nodes = [helper.make_node("Flatten", ["x"], ["flat"], name="flatten"),
             helper.make_node("Reshape", ["flat", "shape"], ["y"], name="reshape")]
    model = _model(nodes, [_vi("x", np.uint8, ["N", 3, 2, 3])], [_vi("y", np.uint8, None)],
                   [_init("shape", np.array([-1, 2, 9], np.int64))])
    feeds = {"x": _rand(rng, np.uint8, (5, 3, 2, 3))}
    with pytest.warns(UnsupportedOpWarning, match="reshape 'reshape'"):
        compiled, got = _run(model, feeds, 5)
    assert compiled.summary()["host_op_names"] == ["reshape"]
    check("Flatten -> Reshape", got, _reference(model, feeds), max_lsb=0)


def test_zero_point_stated_after_a_reshape():
    """Regression: an int8 input without quantization, reshaped, then read by a
    QLinearMatMul with zero point -3. The front end gives the reshaped tensor that zero
    point, the compiler core gives it the input's (0); the GEMM's bias must undo the core's
    fold, not the front end's (it was off by up to 5 LSB)."""
    rng = np.random.default_rng(73)
    inits = [*_q("f", 0.05, -3, np.int8), _init("w", _weights(rng, 16, 9)),
             _init("w_scale", np.float32(0.01)), _init("w_zp", np.int8(0)),
             *_q("y", 0.2, -20, np.int8), _init("shape", np.array([0, -1], np.int64))]
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["f"], name="reshape"),
             _mm_nodes("f", "y", "", "mm")]
    model = _model(nodes, [_vi("x", np.int8, ["N", 2, 8])], [_vi("y", np.int8, None)], inits)
    feeds = {"x": _rand(rng, np.int8, (5, 2, 8))}
    compiled, got = _run(model, feeds, 5)
    assert compiled.summary()["host_ops"] == 0
    check("Reshape -> QLinearMatMul", got, _reference(model, feeds))


# -- the QDQ format: Gemm, MatMul, Conv --------------------------------------------------------

def _dq(name, src, axis=None):
    kw = {} if axis is None else {"axis": axis}
    return helper.make_node("DequantizeLinear", [src, f"{src}_scale", f"{src}_zp"], [name],
                            name=f"dq_{src}", **kw)


def _qdq_dense_model(rng, op, dt, per_channel, *, bias, relu, k=23, n=12):
    """DQ(x), DQ(w) [, bias] -> Gemm(transB=1) or MatMul [-> Relu] -> Q(y)."""
    zp = 125 if dt is np.uint8 else 6
    trans = op == "Gemm"
    w = _weights(rng, n, k) if trans else _weights(rng, k, n)
    w_scale = _w_scale(rng, n, per_channel)
    inits = [*_q("x", 0.04, zp, dt), _init("w", w), _init("w_scale", w_scale),
             _init("w_zp", np.zeros(w_scale.shape, np.int8)), *_q("y", 0.3, zp // 2, dt)]
    axis = (0 if trans else 1) if per_channel else None
    nodes = [_dq("xf", "x"), _dq("wf", "w", axis)]
    ins = ["xf", "wf"]
    if bias == "int32":
        b_scale = (np.float32(0.04) * w_scale).astype(np.float32)
        inits += [_init("b", rng.integers(-5000, 5000, n).astype(np.int32)),
                  _init("b_scale", b_scale), _init("b_zp", np.zeros(b_scale.shape, np.int32))]
        nodes.append(_dq("bf", "b", 0 if per_channel else None))
        ins.append("bf")
    elif bias == "float":
        inits.append(_init("bf", rng.uniform(-2, 2, n).astype(np.float32)))
        ins.append("bf")
    nodes.append(helper.make_node(op, ins, ["s"], name=op.lower(),
                                  **({"transB": 1} if trans else {})))
    last = "s"
    if relu:
        nodes.append(helper.make_node("Relu", ["s"], ["r"], name="relu"))
        last = "r"
    nodes.append(helper.make_node("QuantizeLinear", [last, "y_scale", "y_zp"], ["y"], name="q"))
    return _model(nodes, [_vi("x", dt, ["N", k])], [_vi("y", dt, None)], inits)


@pytest.mark.parametrize("op,dt,per_channel,bias,relu", [
    ("Gemm", np.uint8, False, "int32", True),
    ("Gemm", np.int8, True, "int32", False),
    ("Gemm", np.uint8, True, "float", True),
    ("MatMul", np.int8, False, None, True),
    ("MatMul", np.uint8, True, None, False),
])
def test_qdq_gemm_and_matmul(op, dt, per_channel, bias, relu):
    """QDQ Gemm (transB, int32 or float bias) and MatMul, matched into one quantized linear
    layer on the device, against onnx.reference's float path."""
    rng = np.random.default_rng(80 + per_channel)
    model = _qdq_dense_model(rng, op, dt, per_channel, bias=bias, relu=relu)
    feeds = {"x": _rand(rng, dt, (14, 23))}
    compiled, got = _run(model, feeds, 7)
    assert [o.kind for o in compiled.graph.ops] == ["linear"]
    assert compiled.summary()["host_ops"] == 0
    want = _reference(model, feeds)
    if relu:
        assert (want == want.min()).any() and want.min() == (125 if dt is np.uint8 else 6) // 2
    check(f"QDQ {op}", got, want)


@pytest.mark.parametrize("dt,per_channel,stride,pads", [
    (np.uint8, True, 1, [1, 1, 1, 1]), (np.int8, False, 2, [1, 0, 0, 1])])
def test_qdq_conv(dt, per_channel, stride, pads):
    """DQ -> Conv (bias as DQ int32) -> Relu -> Q, NCHW 3 -> 10 channels."""
    rng = np.random.default_rng(90)
    zp = 100 if dt is np.uint8 else -7
    w_scale = _w_scale(rng, 10, per_channel)
    b_scale = (np.float32(0.05) * w_scale).astype(np.float32)
    inits = [*_q("x", 0.05, zp, dt), _init("w", _weights(rng, 10, 3, 3, 3)),
             _init("w_scale", w_scale), _init("w_zp", np.zeros(w_scale.shape, np.int8)),
             _init("b", rng.integers(-3000, 3000, 10).astype(np.int32)),
             _init("b_scale", b_scale), _init("b_zp", np.zeros(b_scale.shape, np.int32)),
             *_q("y", 0.25, zp, dt)]
    axis = 0 if per_channel else None
    nodes = [_dq("xf", "x"), _dq("wf", "w", axis), _dq("bf", "b", axis),
             helper.make_node("Conv", ["xf", "wf", "bf"], ["s"], name="conv",
                              kernel_shape=[3, 3], strides=[stride, stride], pads=pads),
             helper.make_node("Relu", ["s"], ["r"], name="relu"),
             helper.make_node("QuantizeLinear", ["r", "y_scale", "y_zp"], ["y"], name="q")]
    model = _model(nodes, [_vi("x", dt, ["N", 3, 7, 6])], [_vi("y", dt, None)], inits)
    feeds = {"x": _rand(rng, dt, (3, 3, 7, 6))}
    compiled, got = _run(model, feeds, 3)
    assert [o.kind for o in compiled.graph.ops] == ["conv"]
    assert compiled.summary()["host_ops"] == 0
    check("QDQ Conv", got, _reference(model, feeds))


# -- quantize_static models: the split between the accelerator and the host -------------------

def _residual_float_model(path, tail):
    """conv3x3(1->4) -> Relu -> conv3x3(4->4) -> Add(residual) -> Relu -> MaxPool 2 ->
    Flatten -> Gemm(64 -> 10) [-> Sigmoid], float, for 8x8 digits."""
    rng = np.random.default_rng(100)
    inits = [_init("w1", rng.normal(0, 0.4, (4, 1, 3, 3)).astype(np.float32)),
             _init("b1", rng.normal(0, 0.1, 4).astype(np.float32)),
             _init("w2", rng.normal(0, 0.3, (4, 4, 3, 3)).astype(np.float32)),
             _init("b2", rng.normal(0, 0.1, 4).astype(np.float32)),
             _init("wf", rng.normal(0, 0.2, (10, 64)).astype(np.float32)),
             _init("bf", rng.normal(0, 0.1, 10).astype(np.float32))]
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", **conv),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", **conv),
             helper.make_node("Add", ["c2", "r1"], ["s"], name="add"),
             helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
             helper.make_node("MaxPool", ["r2"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["fc" if tail else "logits"],
                              name="fc", transB=1)]
    if tail:
        nodes.append(helper.make_node("Sigmoid", ["fc"], ["logits"], name="sigmoid"))
    g = helper.make_graph(nodes, "residual", [_vi("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [_vi("logits", TensorProto.FLOAT, ["N", 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    onnx.save(m, str(path))


# ONNX nodes of each format: (on the accelerator, host edges, fallback to the host)
SPLITS = {
    ("qoperator", False): (["QLinearConv", "QLinearConv", "QLinearAdd", "MaxPool", "Flatten",
                            "QGemm"], ["QuantizeLinear", "DequantizeLinear"], []),
    ("qoperator", True): (["QLinearConv", "QLinearConv", "QLinearAdd", "MaxPool", "Flatten",
                           "QGemm"], ["QuantizeLinear", "DequantizeLinear"],
                          ["QLinearSigmoid"]),
}


@pytest.fixture(scope="module")
def digits():
    from systolic.zoo import digits_split
    x_train, _, x_test, _ = digits_split()
    return x_train[:100].reshape(-1, 1, 8, 8), x_test[:96].reshape(-1, 1, 8, 8)


@pytest.mark.filterwarnings("ignore::systolic.compiler.onnx_frontend.UnsupportedOpWarning")
@pytest.mark.parametrize("tail", [False, True], ids=["all-device", "sigmoid"])
@pytest.mark.parametrize("fmt,act", [("qoperator", "uint8"), ("qoperator", "int8"),
                                     ("qdq", "uint8"), ("qdq", "int8")])
def test_quantize_static_split(tmp_path, digits, fmt, act, tail):
    """A residual CNN quantized by onnxruntime (per-channel int8 weights): the nodes that
    run on the accelerator and on the host, and the output against onnxruntime."""
    from systolic.compiler.qgraph import run_reference
    from systolic.zoo import quantize

    calibration, x = digits
    float_path, path = tmp_path / "float.onnx", tmp_path / f"{fmt}_{act}.onnx"
    _residual_float_model(float_path, tail)
    quantize(float_path, path, calibration, (1, 1, 8, 8), fmt=fmt, activation=act,
             per_channel=True)
    model = onnx.load(path)
    ops = [n.op_type for n in model.graph.node]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = compile_onnx(path, CONFIG, batch=48)
    fallback = [str(w.message) for w in caught if issubclass(w.category, UnsupportedOpWarning)]
    summary = compiled.summary()
    kinds = [op.kind for op in compiled.graph.ops]
    device_kinds = [k for k in kinds if k != "host"]
    print(f"\n{fmt} {act} {'with' if tail else 'without'} Sigmoid: {len(ops)} ONNX nodes, "
          f"{len(device_kinds)} ops on the accelerator ({', '.join(device_kinds)}), "
          f"{summary['host_ops']} on the host {summary['host_op_names']}")
    assert device_kinds == ["conv", "conv", "add", "maxpool", "reshape", "linear"]
    assert summary["device_stages"] == 1
    if fmt == "qoperator":
        on_device, edges, host = SPLITS[fmt, tail]
        assert sorted(ops) == sorted(on_device + edges + host)
        assert summary["host_ops"] == len(host)
    else:
        assert set(ops) == {"QuantizeLinear", "DequantizeLinear", "Conv", "Add", "MaxPool",
                            "Flatten", "Gemm"} | ({"Sigmoid"} if tail else set())
        # the Sigmoid runs on the host with the DequantizeLinear before it and the
        # QuantizeLinear after it (its float boundary)
        assert summary["host_ops"] == (3 if tail else 0)
    assert len(fallback) == int(tail), fallback
    if tail:
        assert "igmoid" in fallback[0]
        assert any("sigmoid" in n for n in summary["host_op_names"])
    got, _ = compiled.run({"input": x}, GoldenDevice(CONFIG))
    got = got["logits"]
    graph_ref = np.concatenate([run_reference(compiled.graph, {"input": x[i:i + 48]})["logits"]
                                for i in range(0, len(x), 48)])
    np.testing.assert_array_equal(got, graph_ref)
    want = _onnxruntime(model, {"input": x})
    edge = compiled.outputs[0]
    diff = lsb_difference(got, want, edge.scale)
    agree = float((got.argmax(1) == want.argmax(1)).mean())
    print(f"  against onnxruntime on {len(x)} images: largest difference "
          f"{int(diff.max())} LSB, {int(np.count_nonzero(diff))} of {diff.size} elements "
          f"differ, predictions agree on {agree:.1%}")
    assert agree >= 0.99
