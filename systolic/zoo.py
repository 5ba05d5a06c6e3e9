"""Small networks trained in NumPy on scikit-learn's bundled digits, exported to ONNX and
quantized with onnxruntime's ``quantize_static``: the path a user takes with a real model.

``build_models(out_dir)`` trains (or loads from ``out_dir``) an MLP and a CNN, writes the
float ONNX models and their QOperator and QDQ quantized versions, and returns their paths.
"""

import fcntl
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["digits_split", "train_mlp", "train_cnn", "export_mlp", "export_cnn",
           "quantize", "build_models", "ZooModel"]

SEED = 0
OPSET = 17


def digits_split(test_fraction=0.2, seed=SEED):
    """``(x_train, y_train, x_test, y_test)``: 8x8 digits scaled to [0, 1] as float32."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


class _Adam:
    def __init__(self, params, lr):
        self.params, self.lr = params, lr
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            mh = m / (1 - 0.9 ** self.t)
            vh = v / (1 - 0.999 ** self.t)
            p -= self.lr * mh / (np.sqrt(vh) + 1e-8)


def _softmax_grad(logits, y):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return p / len(y)


def train_mlp(x, y, hidden=32, epochs=60, batch=32, lr=0.01, seed=SEED):
    """A 64-hidden-10 ReLU MLP; returns ``{"w1", "b1", "w2", "b2"}`` (w as in x @ w)."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((x.shape[1], hidden)) * np.sqrt(2 / x.shape[1])).astype(np.float32)
    b1 = np.zeros(hidden, np.float32)
    w2 = (rng.standard_normal((hidden, 10)) * np.sqrt(2 / hidden)).astype(np.float32)
    b2 = np.zeros(10, np.float32)
    opt = _Adam([w1, b1, w2, b2], lr)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for s in range(0, len(x), batch):
            idx = order[s:s + batch]
            xb, yb = x[idx], y[idx]
            h_pre = xb @ w1 + b1
            h = np.maximum(h_pre, 0)
            g = _softmax_grad(h @ w2 + b2, yb)
            gw2, gb2 = h.T @ g, g.sum(0)
            gh = (g @ w2.T) * (h_pre > 0)
            gw1, gb1 = xb.T @ gh, gh.sum(0)
            opt.step([gw1, gb1, gw2, gb2])
    return {"w1": w1, "b1": b1, "w2": w2, "b2": b2}


def mlp_forward(p, x):
    return np.maximum(x @ p["w1"] + p["b1"], 0) @ p["w2"] + p["b2"]


def _im2col(x, k=3, pad=1):
    """x: (N, C, H, W) -> (N*H*W, C*k*k) for stride 1, 'same' padding."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = np.empty((n, c, k, k, h, w), x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = xp[:, :, i:i + h, j:j + w]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * h * w, c * k * k)


def cnn_forward(p, x, cache=False):
    n = len(x)
    img = x.reshape(n, 1, 8, 8)
    cols = _im2col(img)
    conv = cols @ p["wc"].reshape(p["wc"].shape[0], -1).T + p["bc"]     # (n*64, C)
    act = np.maximum(conv, 0).reshape(n, 8, 8, -1)                        # NHWC
    pooled = act.reshape(n, 4, 2, 4, 2, -1).max(axis=(2, 4))             # (n, 4, 4, C)
    flat = pooled.transpose(0, 3, 1, 2).reshape(n, -1)                    # NCHW flatten
    logits = flat @ p["wf"] + p["bf"]
    if cache:
        return logits, (cols, conv, act, pooled, flat)
    return logits


def train_cnn(x, y, channels=8, epochs=25, batch=32, lr=0.005, seed=SEED):
    """conv3x3(1->C, pad 1) -> ReLU -> maxpool 2 -> flatten -> linear(C*16 -> 10)."""
    rng = np.random.default_rng(seed)
    wc = (rng.standard_normal((channels, 1, 3, 3)) * np.sqrt(2 / 9)).astype(np.float32)
    bc = np.zeros(channels, np.float32)
    wf = (rng.standard_normal((channels * 16, 10)) * np.sqrt(2 / (channels * 16))).astype(
        np.float32)
    bf = np.zeros(10, np.float32)
    p = {"wc": wc, "bc": bc, "wf": wf, "bf": bf}
    opt = _Adam([wc, bc, wf, bf], lr)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for s in range(0, len(x), batch):
            idx = order[s:s + batch]
            n = len(idx)
            logits, (cols, conv, act, pooled, flat) = cnn_forward(p, x[idx], cache=True)
            g = _softmax_grad(logits, y[idx])
            gwf, gbf = flat.T @ g, g.sum(0)
            gpool = (g @ wf.T).reshape(n, channels, 4, 4).transpose(0, 2, 3, 1)
            # route the gradient to the max of each 2x2 window
            win = act.reshape(n, 4, 2, 4, 2, channels)
            mask = win == pooled[:, :, None, :, None, :]
            mask = mask / mask.sum(axis=(2, 4), keepdims=True)
            gact = (mask * gpool[:, :, None, :, None, :]).reshape(n, 8, 8, channels)
            gconv = (gact.reshape(-1, channels) * (conv > 0))
            gwc = (gconv.T @ cols).reshape(wc.shape)
            gbc = gconv.sum(0)
            opt.step([gwc, gbc, gwf, gbf])
    return p


def export_mlp(p, path):
    """Float ONNX: Gemm -> Relu -> Gemm."""
    from onnx import TensorProto, helper, numpy_helper, save

    inits = [numpy_helper.from_array(v, k) for k, v in p.items()]
    nodes = [
        helper.make_node("Gemm", ["input", "w1", "b1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["h_relu"], name="relu1"),
        helper.make_node("Gemm", ["h_relu", "w2", "b2"], ["logits"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes, "digits_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    save(model, str(path))


def export_cnn(p, path):
    """Float ONNX: Conv -> Relu -> MaxPool -> Flatten -> Gemm, input (N, 1, 8, 8)."""
    from onnx import TensorProto, helper, numpy_helper, save

    inits = [numpy_helper.from_array(v, k) for k, v in p.items()]
    nodes = [
        helper.make_node("Conv", ["input", "wc", "bc"], ["c"], name="conv1",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["c_relu"], name="relu1"),
        helper.make_node("MaxPool", ["c_relu"], ["pool"], name="pool1",
                         kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes, "digits_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    save(model, str(path))


def quantize(float_path, out_path, calibration, input_shape, *, fmt="qoperator",
             activation="uint8", per_channel=False):
    """Quantize with onnxruntime's ``quantize_static`` (QOperator or QDQ format)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": x.reshape(input_shape)} for x in calibration])

        def get_next(self):
            return next(self.items, None)

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's advice about pre-processing is noise here
    try:
        quantize_static(
            str(float_path), str(out_path), Reader(),
            quant_format={"qoperator": QuantFormat.QOperator, "qdq": QuantFormat.QDQ}[fmt],
            activation_type={"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[activation],
            weight_type=QuantType.QInt8, per_channel=per_channel)
    finally:
        root.setLevel(level)


@dataclass(frozen=True)
class ZooModel:
    name: str          # "mlp" or "cnn"
    float_path: Path
    quantized: dict    # variant name -> path
    input_shape: tuple
    accuracy_float: float


def build_models(out_dir, *, names=("mlp", "cnn")):
    """Train (or reuse) the zoo under ``out_dir``; returns ``{name: ZooModel}``.

    Safe to call from several processes at once (parallel test workers): they take turns
    on a lock file in ``out_dir``, so the quantizer's temporary files never clash.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _build_models(out_dir, names)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_models(out_dir, names):
    x_train, y_train, x_test, y_test = digits_split()
    calibration = x_train[:200]
    models = {}
    for name in names:
        float_path = out_dir / f"{name}_float.onnx"
        meta_path = out_dir / f"{name}.json"
        shape = (1, 64) if name == "mlp" else (1, 1, 8, 8)
        if not (float_path.exists() and meta_path.exists()):
            if name == "mlp":
                p = train_mlp(x_train, y_train)
                export_mlp(p, float_path)
                acc = float((mlp_forward(p, x_test).argmax(1) == y_test).mean())
            else:
                p = train_cnn(x_train, y_train)
                export_cnn(p, float_path)
                acc = float((cnn_forward(p, x_test).argmax(1) == y_test).mean())
            meta_path.write_text(json.dumps({"accuracy_float": acc}))
        acc = json.loads(meta_path.read_text())["accuracy_float"]
        variants = {}
        for fmt in ("qoperator", "qdq"):
            for act in ("uint8", "int8"):
                for pc in (False, True):
                    key = f"{fmt}_{act}" + ("_perchannel" if pc else "")
                    path = out_dir / f"{name}_{key}.onnx"
                    if not path.exists():
                        quantize(float_path, path, calibration, shape, fmt=fmt,
                                 activation=act, per_channel=pc)
                    variants[key] = path
        models[name] = ZooModel(name, float_path, variants, shape, acc)
    return models
