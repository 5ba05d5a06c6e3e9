"""The ONNX front end against onnxruntime and onnx.reference.

Rounding: our requantization rounds half up (``numerics.round_shift``) while ONNX's
QuantizeLinear and onnxruntime's QLinear kernels round half to even, and the float
scale is a 31-bit (or 15-bit) multiplier here; so on an exact tie (or within the
multiplier's precision of one) a value may differ by 1 LSB. Layer tests therefore allow
1 LSB; whole networks are compared by prediction.
"""

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from systolic.compiler.onnx_compile import compile_onnx
from systolic.compiler.onnx_frontend import ModelError, UnsupportedOpWarning, import_onnx
from systolic.compiler.qgraph import run_op, run_reference
from systolic.config import preset
from systolic.zoo import build_models, digits_split

VARIANTS = [f"{f}_{a}{p}" for f in ("qoperator", "qdq") for a in ("uint8", "int8")
            for p in ("", "_perchannel")]


@pytest.fixture(scope="module")
def zoo():
    return build_models("build/models")


@pytest.fixture(scope="module")
def test_images():
    _, _, x, y = digits_split()
    return x, y


def _ort(model, feeds, extra=()):
    m = onnx.load(model) if not isinstance(model, onnx.ModelProto) else model
    for name, dtype in dict(extra).items():
        m.graph.output.append(helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds), strict=True))


def _lsb(a, b, edge):
    return int(np.abs(np.rint(a / edge.scale) - np.rint(b / edge.scale)).max())


# -- zoo networks ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_zoo_layers_within_one_lsb(zoo, test_images, name, variant):
    """Each quantized layer, fed onnxruntime's own input tensor, is within 1 LSB."""
    path = zoo[name].quantized[variant]
    x = test_images[0].reshape(-1, *zoo[name].input_shape[1:])
    graph = import_onnx(path, config=preset("default"), batch=len(x))
    model = onnx.load(path)
    known = {v for n in model.graph.node for v in n.output}
    layers = [op for op in graph.ops if op.kind in ("linear", "conv", "add")
              and op.y in known and op.x in known | {e.tensor for e in graph.inputs}]
    assert layers, "no layer to compare"
    want = _ort(model, {"input": x}, [(t, graph.tensors[t].dtype) for op in layers
                                      for t in (op.x, op.y)])
    for op in layers:
        got = run_op(op, {op.x: want[op.x]}, graph.tensors)[op.y]
        dev = np.abs(got.astype(np.int64) - want[op.y].astype(np.int64)).max()
        print(f"{name} {variant} {op.name}: largest deviation {dev} LSB")
        assert dev <= 1, f"{op.name} differs from onnxruntime by {dev} LSB"


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_zoo_predictions_agree(zoo, test_images, name, variant):
    """Whole network, all 359 test images: predictions agree with onnxruntime on >= 99%.

    A 1-LSB tie difference may grow through later layers, so the largest deviation of the
    output is printed, not bounded by 1.
    """
    path = zoo[name].quantized[variant]
    x = test_images[0].reshape(-1, *zoo[name].input_shape[1:])
    graph = import_onnx(path, config=preset("default"), batch=len(x))
    ours = run_reference(graph, {"input": x})["logits"]
    theirs = _ort(path, {"input": x})["logits"]
    agree = float((ours.argmax(1) == theirs.argmax(1)).mean())
    dev = _lsb(ours, theirs, graph.outputs[0])
    print(f"{name} {variant}: agreement {agree:.2%} of {len(x)}, largest deviation {dev} LSB")
    assert len(x) == 359     # the digits test split (20% of 1797)
    assert agree >= 0.99


@pytest.mark.parametrize("name,variant,n", [
    *[("mlp", v, 359) for v in VARIANTS],
    ("cnn", "qoperator_uint8_perchannel", 96),
    ("cnn", "qdq_int8", 96),
])
def test_zoo_on_golden_device_equals_reference(zoo, test_images, name, variant, n):
    """Compiled and run on the golden model in batches, bit for bit the reference."""
    path = zoo[name].quantized[variant]
    x = test_images[0][:n].reshape(-1, *zoo[name].input_shape[1:])
    compiled = compile_onnx(path, preset("default"), batch=48)
    assert compiled.summary()["host_ops"] == 0
    got, info = compiled.run({"input": x})
    graph = import_onnx(path, config=preset("default"), batch=n)
    want = run_reference(graph, {"input": x})
    np.testing.assert_array_equal(got["logits"], want["logits"])
    theirs = _ort(path, {"input": x})["logits"]
    agree = float((got["logits"].argmax(1) == theirs.argmax(1)).mean())
    print(f"{name} {variant} golden: agreement {agree:.2%} of {n}, largest deviation "
          f"{_lsb(got['logits'], theirs, compiled.outputs[0])} LSB, {info}")
    assert agree >= 0.99


def test_batch_position_does_not_change_bits(zoo, test_images):
    """A sample gives the same bits whatever its place in a batch (or a padded chunk)."""
    path = zoo["mlp"].quantized["qoperator_uint8"]
    x = test_images[0][:13]
    compiled = compile_onnx(path, preset("tiny"), batch=5)
    all_at_once = compiled.run({"input": x})[0]["logits"]
    one_by_one = np.concatenate([compiled.run({"input": x[i:i + 1]})[0]["logits"]
                                 for i in (12, 3, 0)])
    np.testing.assert_array_equal(one_by_one, all_at_once[[12, 3, 0]])


# -- small graphs against onnx.reference ---------------------------------------------------------

def _model(nodes, inputs, outputs, inits, opset=21):
    g = helper.make_graph(nodes, "t", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset),
                                            helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 9
    return m


def _init(name, value):
    return numpy_helper.from_array(np.asarray(value), name)


def _qparams(prefix, scale, zp, dtype):
    return [_init(f"{prefix}_scale", np.float32(scale)), _init(f"{prefix}_zp", dtype(zp))]


def _qmatmul_model(rng, k, n, act, per_channel):
    dt = np.uint8 if act == "uint8" else np.int8
    w = rng.integers(-127, 128, (k, n)).astype(np.int8)
    w_scale = (rng.uniform(0.002, 0.02, n) if per_channel else np.float32(0.01)).astype(
        np.float32)
    zp = 100 if act == "uint8" else -20
    inits = [*_qparams("a", 0.05, zp, dt), _init("w", w), _init("w_scale", w_scale),
             _init("w_zp", np.zeros(w_scale.shape, np.int8)), *_qparams("y", 0.4, zp // 2, dt)]
    node = helper.make_node("QLinearMatMul", ["a", "a_scale", "a_zp", "w", "w_scale", "w_zp",
                                              "y_scale", "y_zp"], ["y"], name="mm")
    elem = TensorProto.UINT8 if act == "uint8" else TensorProto.INT8
    return _model([node], [helper.make_tensor_value_info("a", elem, ["N", k])],
                  [helper.make_tensor_value_info("y", elem, ["N", n])], inits), dt


def _qconv_model(rng, c, f, act, per_channel, stride, pads):
    dt = np.uint8 if act == "uint8" else np.int8
    w = rng.integers(-127, 128, (f, c, 3, 3)).astype(np.int8)
    w_scale = (rng.uniform(0.002, 0.02, f) if per_channel else np.float32(0.01)).astype(
        np.float32)
    zp = 90 if act == "uint8" else 10
    bias = rng.integers(-3000, 3000, f).astype(np.int32)
    inits = [*_qparams("x", 0.05, zp, dt), _init("w", w), _init("w_scale", w_scale),
             _init("w_zp", np.zeros(w_scale.shape, np.int8)), *_qparams("y", 0.3, zp // 3, dt),
             _init("b", bias)]
    node = helper.make_node("QLinearConv", ["x", "x_scale", "x_zp", "w", "w_scale", "w_zp",
                                            "y_scale", "y_zp", "b"], ["y"], name="conv",
                            kernel_shape=[3, 3], strides=[stride, stride], pads=pads)
    elem = TensorProto.UINT8 if act == "uint8" else TensorProto.INT8
    return _model([node], [helper.make_tensor_value_info("x", elem, ["N", c, 7, 6])],
                  [helper.make_tensor_value_info("y", elem, None)], inits), dt


def _random_input(rng, dt, shape):
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max + 1, shape).astype(dt)


def _compare_reference(model, feeds, compiled_batch):
    """Golden-device result vs onnx.reference: at most 1 LSB, and mostly exact."""
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    compiled = compile_onnx(model, preset("tiny"), batch=compiled_batch)
    got = compiled.run(feeds)[0][compiled.outputs[0].name]
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    print(f"max {diff.max()} LSB, {int((diff > 0).sum())} of {diff.size} differ (ties)")
    assert got.shape == want.shape and got.dtype == want.dtype
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.05
    return got, want


@pytest.mark.parametrize("act", ["uint8", "int8"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_qlinearmatmul_against_onnx_reference(act, per_channel):
    rng = np.random.default_rng(1 + per_channel)
    model, dt = _qmatmul_model(rng, 19, 7, act, per_channel)
    _compare_reference(model, {"a": _random_input(rng, dt, (6, 19))}, 4)


@pytest.mark.parametrize("act,per_channel,stride,pads", [
    ("uint8", False, 1, [1, 1, 1, 1]), ("int8", True, 2, [0, 1, 2, 0]),
    ("uint8", True, 1, [0, 0, 0, 0]), ("int8", False, 2, [1, 1, 1, 1])])
def test_qlinearconv_against_onnx_reference(act, per_channel, stride, pads):
    rng = np.random.default_rng(7)
    model, dt = _qconv_model(rng, 3, 5, act, per_channel, stride, pads)
    _compare_reference(model, {"x": _random_input(rng, dt, (2, 3, 7, 6))}, 2)


def test_scoreboard_catches_a_wrong_lsb():
    """Expected fail: the comparison of the tests above sees a result off by 2."""
    rng = np.random.default_rng(3)
    model, dt = _qmatmul_model(rng, 8, 4, "uint8", False)
    x = _random_input(rng, dt, (3, 8))
    want = ReferenceEvaluator(model).run(None, {"a": x})[0]
    bad = want.astype(np.int64)
    bad[1, 2] += 2
    with pytest.raises(AssertionError):
        assert np.abs(bad - want.astype(np.int64)).max() <= 1


def test_qdq_add_relu_maxpool_against_onnx_reference():
    """QDQ: DQ -> Add -> Relu -> Q, DQ -> MaxPool -> Q, matched and run on the device."""
    rng = np.random.default_rng(5)
    inits = [*_qparams("a", 0.04, 120, np.uint8), *_qparams("b", 0.07, 110, np.uint8),
             *_qparams("y", 0.05, 30, np.uint8)]
    nodes = [
        helper.make_node("DequantizeLinear", ["a", "a_scale", "a_zp"], ["af"], name="dqa"),
        helper.make_node("DequantizeLinear", ["b", "b_scale", "b_zp"], ["bf"], name="dqb"),
        helper.make_node("Add", ["af", "bf"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["r"], name="relu"),
        helper.make_node("QuantizeLinear", ["r", "y_scale", "y_zp"], ["q"], name="q"),
        helper.make_node("DequantizeLinear", ["q", "y_scale", "y_zp"], ["qf"], name="dq"),
        helper.make_node("MaxPool", ["qf"], ["p"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("QuantizeLinear", ["p", "y_scale", "y_zp"], ["y"], name="qy"),
    ]
    shape = ["N", 2, 4, 6]
    model = _model(nodes, [helper.make_tensor_value_info("a", TensorProto.UINT8, shape),
                           helper.make_tensor_value_info("b", TensorProto.UINT8, shape)],
                   [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    graph = import_onnx(model, batch=3)
    assert [op.kind for op in graph.ops] == ["add", "maxpool"]
    assert graph.ops[0].lo == 30     # the Relu became the add's clamp at the zero point
    feeds = {"a": _random_input(rng, np.uint8, (3, 2, 4, 6)),
             "b": _random_input(rng, np.uint8, (3, 2, 4, 6))}
    _compare_reference(model, feeds, 3)


# -- host fallback and malformed models ---------------------------------------------------------

def _host_model():
    """QLinearMatMul -> DequantizeLinear -> Sigmoid (float: host) -> QuantizeLinear ->
    QLinearMatMul."""
    rng = np.random.default_rng(11)
    w1 = rng.integers(-100, 100, (6, 5)).astype(np.int8)
    w2 = rng.integers(-100, 100, (5, 3)).astype(np.int8)
    inits = [*_qparams("a", 0.05, 128, np.uint8), _init("w1", w1), _init("w2", w2),
             _init("w_scale", np.float32(0.01)), _init("w_zp", np.int8(0)),
             *_qparams("h", 0.3, 128, np.uint8), *_qparams("s", 1 / 255, 0, np.uint8),
             *_qparams("y", 0.02, 100, np.uint8)]
    nodes = [
        helper.make_node("QLinearMatMul", ["a", "a_scale", "a_zp", "w1", "w_scale", "w_zp",
                                           "h_scale", "h_zp"], ["h"], name="mm1"),
        helper.make_node("DequantizeLinear", ["h", "h_scale", "h_zp"], ["hf"], name="dq"),
        helper.make_node("Sigmoid", ["hf"], ["sf"], name="sigmoid"),
        helper.make_node("QuantizeLinear", ["sf", "s_scale", "s_zp"], ["s"], name="q"),
        helper.make_node("QLinearMatMul", ["s", "s_scale", "s_zp", "w2", "w_scale", "w_zp",
                                           "y_scale", "y_zp"], ["y"], name="mm2"),
    ]
    return _model(nodes, [helper.make_tensor_value_info("a", TensorProto.UINT8, ["N", 6])],
                  [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)


def test_unsupported_op_runs_on_host_with_one_warning():
    model = _host_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = compile_onnx(model, preset("tiny"), batch=4)
    ours = [w for w in caught if issubclass(w.category, UnsupportedOpWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert "Sigmoid" in str(ours[0].message) and "'sigmoid'" in str(ours[0].message)
    summary = compiled.summary()
    assert summary["device_stages"] == 2 and "sigmoid" in summary["host_op_names"]
    rng = np.random.default_rng(2)
    x = _random_input(rng, np.uint8, (7, 6))
    got = compiled.run({"a": x})[0]["y"]
    want = ReferenceEvaluator(model).run(None, {"a": x})[0]
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def _replace_init(model, name, value):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for i, init in enumerate(m.graph.initializer):
        if init.name == name:
            m.graph.initializer[i].CopyFrom(_init(name, value))
    return m


@pytest.mark.filterwarnings("ignore::systolic.compiler.onnx_frontend.UnsupportedOpWarning")
def test_malformed_models_give_one_clear_error(tmp_path):
    model = _host_model()
    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = [i for i in m.graph.initializer if i.name != "w2"]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    with pytest.raises(ModelError, match=r"node 'mm2' \(QLinearMatMul\): input 'w2' is "
                                         "neither"):
        import_onnx(m)
    bad = _replace_init(model, "w2", np.zeros((4, 3), np.int8))
    with pytest.raises(ModelError, match=r"node 'mm2'.*5 features but the weights expect 4"):
        import_onnx(bad)
    zp = _replace_init(model, "w_zp", np.int8(3))
    with pytest.raises(ModelError, match=r"node 'mm1'.*weight zero point must be 0"):
        import_onnx(zp)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x01garbage" * 10)
    with pytest.raises(ModelError, match="not an ONNX model"):
        import_onnx(junk)
