"""ONNX front end: a quantized ONNX model (QOperator or QDQ format) to a :class:`QGraph`.

Nodes are read in order; every tensor name gets a *value*: a constant, a quantized
activation held by the device (:class:`QAct`), a float tensor on the host, or a lazy
value of the QDQ format (:mod:`systolic.compiler.qdq`) that becomes a quantized op once
its QuantizeLinear is seen. QuantizeLinear on a graph input and DequantizeLinear on a
graph output are the host's edge conversions. Any other node the accelerator cannot run
becomes a :class:`HostOp` with one :class:`UnsupportedOpWarning` naming it.
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import AcceleratorConfig
from ..numerics import scale_to_multiplier
from . import qdq
from .qgraph import (
    DTYPES,
    Add,
    Clamp,
    Conv,
    HostOp,
    InputEdge,
    Linear,
    MaxPool,
    OutputEdge,
    QGraph,
    Reshape,
    TensorInfo,
    conv_output_hw,
    dtype_range,
    fold_zero_point,
)

__all__ = ["ModelError", "UnsupportedOpWarning", "load_model", "import_onnx", "QAct",
           "Const", "Host"]


class ModelError(ValueError):
    """A malformed or inconsistent model; the message names the node."""


class UnsupportedOpWarning(UserWarning):
    """A node runs on the host CPU instead of the accelerator."""


@dataclass(frozen=True)
class Const:
    value: np.ndarray


@dataclass(frozen=True)
class QAct:
    """An integer tensor of the graph (``TensorInfo`` in ``QGraph.tensors``)."""
    tensor: str


@dataclass(frozen=True)
class Host:
    """A tensor computed on the host (float graph input, host-op output)."""
    tensor: str


def load_model(model):
    """An :class:`onnx.ModelProto` from a path, bytes or a model.

    Raises
    ------
    ModelError
        If the file cannot be read as an ONNX model.
    """
    import onnx
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        if isinstance(model, bytes | bytearray):
            return onnx.load_from_string(bytes(model))
        path = Path(model)
        data = path.read_bytes()
        proto = onnx.load_from_string(data)
    except OSError:
        raise
    except Exception as exc:  # protobuf raises its own DecodeError
        raise ModelError(f"{model}: not an ONNX model ({exc})") from None
    if not proto.graph.node:
        raise ModelError(f"{model}: not an ONNX model (no graph nodes)")
    return proto


def _attrs(node):
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Importer:
    def __init__(self, model, config, batch):
        from onnx import numpy_helper
        self.model = model
        self.config = config
        self.batch = batch
        g = model.graph
        self.graph = QGraph(name=g.name or "model", batch=batch, inputs=[], outputs=[])
        self.values = {}
        self.node_of = {}
        self.consumers = {}
        for init in g.initializer:
            self.values[init.name] = Const(numpy_helper.to_array(init))
        for node in g.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.graph_outputs = {o.name for o in g.output}
        self.warned = set()
        self.opsets = list(model.opset_import)
        self.uid = 0

    # -- helpers --------------------------------------------------------------------------

    def fresh(self, base):
        self.uid += 1
        return f"{base}:{self.uid}"

    def add_tensor(self, name, shape, dtype, scale=None, zp=0):
        info = TensorInfo(name, tuple(int(d) for d in shape), dtype,
                          None if scale is None else float(scale), int(zp))
        self.graph.tensors[name] = info
        return info

    def value(self, node, name):
        if name == "":
            return None
        try:
            return self.values[name]
        except KeyError:
            raise ModelError(f"node {node.name!r} ({node.op_type}): input {name!r} is neither "
                             "a graph input, an initializer nor an earlier node's output") from None

    def const(self, node, index, what, *, optional=False):
        name = node.input[index] if index < len(node.input) else ""
        v = self.value(node, name)
        if v is None and optional:
            return None
        if not isinstance(v, Const):
            raise ModelError(f"node {node.name!r} ({node.op_type}): {what} ({name!r}) must be "
                             "a constant initializer")
        return v.value

    def act(self, node, index):
        v = self.value(node, node.input[index])
        return v if isinstance(v, QAct) else None

    def info(self, act):
        return self.graph.tensors[act.tensor]

    def scalar(self, node, index, what):
        v = np.asarray(self.const(node, index, what))
        if v.size != 1:
            raise ModelError(f"node {node.name!r} ({node.op_type}): {what} must be a scalar, "
                             f"not shape {v.shape}")
        return v.reshape(())

    # -- node dispatch --------------------------------------------------------------------

    def run(self):
        g = self.model.graph
        consts = set(self.values)
        for inp in g.input:
            if inp.name in consts:
                continue
            self.graph_input(inp)
        for node in g.node:
            name = node.name or f"{node.op_type}_{len(self.node_of)}"
            if not node.name:
                node.name = name
            for out in node.output:
                self.node_of[out] = node
            self.dispatch(node)
        for out in g.output:
            self.graph_output(out)
        self.fuse_clamps()
        return self.graph

    def dispatch(self, node):
        handler = None
        if node.domain in ("", "ai.onnx", "com.microsoft"):
            handler = getattr(self, f"op_{node.op_type}", None)
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            from onnx import numpy_helper
            attrs = {a.name: a for a in node.attribute}
            if "value" not in attrs:
                raise ModelError(f"node {node.name!r} (Constant): only the 'value' form is "
                                 "supported")
            self.values[node.output[0]] = Const(numpy_helper.to_array(attrs["value"].t))
            return
        if handler is not None and handler(node) is not False:
            return
        if qdq.handle(self, node):
            return
        self.host(node)

    def graph_input(self, inp):
        from onnx import helper
        t = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if not dims:
            raise ModelError(f"graph input {inp.name!r} has no shape")
        if dims[0] not in (None, self.batch):
            raise ModelError(f"graph input {inp.name!r}: batch dimension is {dims[0]}, "
                             f"not {self.batch}")
        if any(d is None for d in dims[1:]):
            raise ModelError(f"graph input {inp.name!r}: dimensions after the first must be "
                             f"fixed, not {dims}")
        shape = (self.batch, *dims[1:])
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name
        if dtype not in DTYPES:
            raise ModelError(f"graph input {inp.name!r}: element type {dtype} is not supported")
        consumers = self.consumers.get(inp.name, [])
        if dtype == "float32" and consumers and all(
                n.op_type == "QuantizeLinear" for n in consumers) and len(consumers) == 1:
            self.pending_input = inp.name
            self.values[inp.name] = Host(inp.name)
            self.add_tensor(inp.name, shape, dtype)
            self.input_edges_float = getattr(self, "input_edges_float", {})
            self.input_edges_float[inp.name] = shape
            return
        self.add_tensor(inp.name, shape, dtype)
        if dtype in ("int8", "uint8"):
            self.values[inp.name] = QAct(inp.name)
        else:
            self.values[inp.name] = Host(inp.name)
        self.graph.inputs.append(InputEdge(inp.name, inp.name, shape, dtype))

    def graph_output(self, out):
        v = self.values.get(out.name)
        if v is None:
            raise ModelError(f"graph output {out.name!r} is not produced by any node")
        edge = getattr(self, "dequant_edges", {}).get(out.name)
        if edge is not None:
            self.graph.outputs.append(edge)
            return
        v = qdq.materialize(self, out.name)
        info = self.graph.tensors[v.tensor]
        self.graph.outputs.append(OutputEdge(out.name, v.tensor, info.shape, info.dtype))

    # -- edges ------------------------------------------------------------------------------

    def op_QuantizeLinear(self, node):
        x = self.values.get(node.input[0])
        src = node.input[0]
        if not (isinstance(x, Host) and src in getattr(self, "input_edges_float", {})):
            return False
        scale = float(self.scalar(node, 1, "y_scale"))
        zp = self.scalar(node, 2, "y_zero_point") if len(node.input) > 2 else np.uint8(0)
        dtype = zp.dtype.name
        if dtype not in ("int8", "uint8"):
            raise ModelError(f"node {node.name!r} (QuantizeLinear): output type {dtype} is not "
                             "supported (int8 or uint8)")
        shape = self.input_edges_float.pop(src)
        self.add_tensor(node.output[0], shape, dtype, scale, int(zp))
        self.values[node.output[0]] = QAct(node.output[0])
        self.graph.inputs.append(InputEdge(src, node.output[0], shape, "float32", True,
                                           scale, int(zp)))
        return True

    def op_DequantizeLinear(self, node):
        x = self.values.get(node.input[0])
        out = node.output[0]
        if isinstance(x, QAct) and out in self.graph_outputs and len(node.input) > 1 \
                and isinstance(self.values.get(node.input[1]), Const) \
                and self.consumers.get(out, []) == []:
            info = self.info(x)
            scale = self.scalar(node, 1, "x_scale")
            zp = int(self.scalar(node, 2, "x_zero_point")) if len(node.input) > 2 else 0
            self.dequant_edges = getattr(self, "dequant_edges", {})
            self.dequant_edges[out] = OutputEdge(out, x.tensor, info.shape, "float32", True,
                                                 float(scale), zp)
            self.values[out] = Host(out)
            return True
        return False   # the QDQ matcher takes it

    # -- QOperator ops ----------------------------------------------------------------------

    def requant(self, node, x_scale, w_scale, y_scale):
        """Per-channel (M, s) of ``x_scale * w_scale / y_scale`` (float32, as onnxruntime)."""
        combined = (np.float32(x_scale) * np.asarray(w_scale, np.float32).reshape(-1)
                    / np.float32(y_scale)).astype(np.float32)
        ms = []
        for c in combined:
            try:
                ms.append(scale_to_multiplier(float(c), self.config.requant_bits))
            except ValueError as exc:
                raise ModelError(f"node {node.name!r} ({node.op_type}): {exc}") from None
        m = np.array([p[0] for p in ms], np.int64)
        s = np.array([p[1] for p in ms], np.int64)
        return m, s

    def check_weights(self, node, w, w_zp):
        if w.dtype != np.int8:
            raise ModelError(f"node {node.name!r} ({node.op_type}): weights must be int8, not "
                             f"{w.dtype}")
        if w_zp is not None and np.any(np.asarray(w_zp) != 0):
            raise ModelError(f"node {node.name!r} ({node.op_type}): weight zero point must be 0 "
                             "(symmetric int8 weights)")

    def check_act(self, node, x, x_zp, what="input"):
        if x is None:
            return False
        info = self.info(x)
        if info.dtype not in ("int8", "uint8"):
            return False
        if np.asarray(x_zp).dtype.name != info.dtype:
            raise ModelError(f"node {node.name!r} ({node.op_type}): {what} zero point type "
                             f"{np.asarray(x_zp).dtype} does not match the tensor ({info.dtype})")
        return True

    def annotate(self, x, scale, zp):
        """Give a tensor whose quantization only its consumer states (a graph input, a
        host op's output) that scale and zero point."""
        info = self.info(x)
        if info.scale is None and info.zero_point == 0:
            self.graph.tensors[x.tensor] = TensorInfo(
                info.name, info.shape, info.dtype, None if scale is None else float(scale),
                int(zp))

    def out_range(self, node, y_zp):
        dtype = np.asarray(y_zp).dtype.name
        if dtype not in ("int8", "uint8"):
            raise ModelError(f"node {node.name!r} ({node.op_type}): output type {dtype} is not "
                             "supported (int8 or uint8)")
        return dtype, dtype_range(dtype)

    def channel_params(self, node, n, x_scale, w_scale, bias, y_scale, y_zp, relu):
        """Per-output-channel parameters of a linear or convolution node with ``n`` output
        channels: ``(bias, multiplier, shift, dtype, y_zp, lo, hi)``, checked."""
        w_scale = np.asarray(w_scale, np.float32).reshape(-1)
        if w_scale.size not in (1, n):
            raise ModelError(f"node {node.name!r} ({node.op_type}): {w_scale.size} weight scales "
                             f"for {n} output channels")
        bias = np.zeros(n, np.int32) if bias is None else np.asarray(bias)
        if bias.shape != (n,):
            raise ModelError(f"node {node.name!r} ({node.op_type}): bias has shape {bias.shape}, "
                             f"expected ({n},)")
        dtype, (lo, hi) = self.out_range(node, y_zp)
        m, s = self.requant(node, x_scale, w_scale, y_scale)
        y_zp = int(y_zp)
        if relu:
            lo = max(lo, y_zp)
        return (bias, np.broadcast_to(m, (n,)).copy(), np.broadcast_to(s, (n,)).copy(), dtype,
                y_zp, lo, hi)

    def emit_linear(self, node, x, x_scale, x_zp, w_kn, w_scale, bias, y_name, y_scale, y_zp,
                    *, relu=False):
        """Add a :class:`Linear` from float scales; ``w_kn`` (K, N) int8, bias int32 or None."""
        self.annotate(x, x_scale, x_zp)
        info = self.info(x)
        k, n = w_kn.shape
        if info.shape[-1] != k:
            raise ModelError(f"node {node.name!r} ({node.op_type}): input has {info.shape[-1]} "
                             f"features but the weights expect {k} (shapes {info.shape} and "
                             f"{w_kn.shape})")
        bias, m, s, dtype, y_zp, lo, hi = self.channel_params(
            node, n, x_scale, w_scale, bias, y_scale, y_zp, relu)
        self.add_tensor(y_name, (*info.shape[:-1], n), dtype, y_scale, y_zp)
        self.graph.ops.append(Linear(
            node.name, x.tensor, y_name, w_kn.astype(np.int8),
            fold_zero_point(bias, w_kn, x_zp, node.name), int(x_zp), m, s, y_zp, lo, hi))
        self.values[y_name] = QAct(y_name)

    def emit_conv(self, node, x, x_scale, x_zp, w, w_scale, bias, y_name, y_scale, y_zp, attrs,
                  *, relu=False):
        info = self.info(x)
        if len(info.shape) != 4 or w.ndim != 4:
            return False   # only 2-D convolutions run on the accelerator
        self.annotate(x, x_scale, x_zp)
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            return False
        cout, cin_g, kh, kw = w.shape
        group = int(attrs.get("group", 1))
        if info.shape[1] != cin_g * group or cout % group:
            raise ModelError(f"node {node.name!r} ({node.op_type}): input has {info.shape[1]} "
                             f"channels but the weights {w.shape} with group {group} expect "
                             f"{cin_g * group}")
        strides = tuple(attrs.get("strides", (1, 1)))
        dil = tuple(attrs.get("dilations", (1, 1)))
        p = tuple(attrs.get("pads", (0, 0, 0, 0)))
        pads = (p[0], p[1], p[2], p[3])
        oh, ow = conv_output_hw(info.shape[2], info.shape[3], (kh, kw), strides, pads, dil)
        if oh <= 0 or ow <= 0:
            raise ModelError(f"node {node.name!r} ({node.op_type}): output would be empty")
        bias, m, s, dtype, y_zp, lo, hi = self.channel_params(
            node, cout, x_scale, w_scale, bias, y_scale, y_zp, relu)
        w_kn = w.reshape(cout, -1).T
        folded = np.concatenate([
            fold_zero_point(bias[g * (cout // group):(g + 1) * (cout // group)],
                            w_kn[:, g * (cout // group):(g + 1) * (cout // group)], x_zp,
                            node.name) for g in range(group)])
        self.add_tensor(y_name, (info.shape[0], cout, oh, ow), dtype, y_scale, y_zp)
        self.graph.ops.append(Conv(
            node.name, x.tensor, y_name, w.astype(np.int8), folded, int(x_zp), m, s, y_zp, lo,
            hi, strides, pads, dil, group))
        self.values[y_name] = QAct(y_name)
        return True

    def op_QLinearConv(self, node):
        x = self.act(node, 0)
        x_scale, x_zp = self.scalar(node, 1, "x_scale"), self.scalar(node, 2, "x_zero_point")
        if not self.check_act(node, x, x_zp):
            return False
        w = self.const(node, 3, "w")
        w_scale, w_zp = self.const(node, 4, "w_scale"), self.const(node, 5, "w_zero_point")
        self.check_weights(node, w, w_zp)
        y_scale, y_zp = self.scalar(node, 6, "y_scale"), self.scalar(node, 7, "y_zero_point")
        bias = self.const(node, 8, "B", optional=True)
        return self.emit_conv(node, x, x_scale, x_zp, w, w_scale, bias, node.output[0],
                              y_scale, y_zp, _attrs(node))

    def op_QLinearMatMul(self, node):
        x = self.act(node, 0)
        x_scale, x_zp = self.scalar(node, 1, "a_scale"), self.scalar(node, 2, "a_zero_point")
        if not self.check_act(node, x, x_zp) or not isinstance(
                self.values.get(node.input[3]), Const):
            return False
        w = self.const(node, 3, "b")
        if w.ndim != 2:
            return False
        w_scale, w_zp = self.const(node, 4, "b_scale"), self.const(node, 5, "b_zero_point")
        self.check_weights(node, w, w_zp)
        y_scale, y_zp = self.scalar(node, 6, "y_scale"), self.scalar(node, 7, "y_zero_point")
        self.emit_linear(node, x, x_scale, x_zp, w, w_scale, None, node.output[0], y_scale, y_zp)
        return True

    def op_QGemm(self, node):
        if node.domain != "com.microsoft":
            return False
        a = _attrs(node)
        if len(node.input) < 9 or a.get("transA", 0) or float(a.get("alpha", 1.0)) != 1.0:
            return False   # float output, transposed input or scaled product: host
        x = self.act(node, 0)
        x_scale, x_zp = self.scalar(node, 1, "a_scale"), self.scalar(node, 2, "a_zero_point")
        if not self.check_act(node, x, x_zp) or len(self.info(x).shape) != 2:
            return False
        w = self.const(node, 3, "B")
        w_scale, w_zp = self.const(node, 4, "b_scale"), self.const(node, 5, "b_zero_point")
        self.check_weights(node, w, w_zp)
        if a.get("transB", 0):
            w = w.T
        bias = self.const(node, 6, "C", optional=True)
        y_scale, y_zp = self.scalar(node, 7, "y_scale"), self.scalar(node, 8, "y_zero_point")
        self.emit_linear(node, x, x_scale, x_zp, w, w_scale, bias, node.output[0], y_scale, y_zp)
        return True

    def op_MatMulInteger(self, node):
        x = self.act(node, 0)
        x_zp = self.scalar(node, 2, "a_zero_point") if len(node.input) > 2 and node.input[2] \
            else np.zeros((), self.info(x).dtype if x else np.uint8)
        if not self.check_act(node, x, x_zp) or not isinstance(
                self.values.get(node.input[1]), Const):
            return False
        w = self.const(node, 1, "B")
        if w.ndim != 2:
            return False
        w_zp = self.const(node, 3, "b_zero_point", optional=True)
        self.check_weights(node, w, w_zp)
        self.annotate(x, None, x_zp)
        info = self.info(x)
        if info.shape[-1] != w.shape[0]:
            raise ModelError(f"node {node.name!r} (MatMulInteger): shapes {info.shape} and "
                             f"{w.shape} do not multiply")
        n = w.shape[1]
        y = node.output[0]
        self.add_tensor(y, (*info.shape[:-1], n), "int32")
        one = np.ones(n, np.int64)
        self.graph.ops.append(Linear(node.name, x.tensor, y, w.astype(np.int8),
                                     fold_zero_point(np.zeros(n), w, x_zp, node.name),
                                     int(x_zp), one, 0 * one, 0, *dtype_range("int32"),
                                     raw=True))
        self.values[y] = QAct(y)
        return True

    def op_QLinearAdd(self, node):
        if node.domain != "com.microsoft":
            return False
        a, b = self.act(node, 0), self.act(node, 3)
        if a is None or b is None or self.info(a).shape != self.info(b).shape:
            return False   # broadcasting adds run on the host
        a_s, a_zp = self.scalar(node, 1, "A_scale"), self.scalar(node, 2, "A_zero_point")
        b_s, b_zp = self.scalar(node, 4, "B_scale"), self.scalar(node, 5, "B_zero_point")
        y_s, y_zp = self.scalar(node, 6, "C_scale"), self.scalar(node, 7, "C_zero_point")
        if not (self.check_act(node, a, a_zp, "A") and self.check_act(node, b, b_zp, "B")):
            return False
        self.emit_add(node, a, a_s, a_zp, b, b_s, b_zp, node.output[0], y_s, y_zp)
        return True

    def emit_add(self, node, a, a_s, a_zp, b, b_s, b_zp, y_name, y_s, y_zp, *, relu=False):
        from .quant import AddParams
        self.annotate(a, a_s, a_zp)
        self.annotate(b, b_s, b_zp)
        dtype, (lo, hi) = self.out_range(node, y_zp)
        try:
            p = AddParams.from_scales(float(a_s), float(b_s), float(y_s),
                                      self.config.requant_bits)
        except ValueError as exc:
            raise ModelError(f"node {node.name!r} ({node.op_type}): {exc}") from None
        ma, sa, mb, sb, f = p.mult_a, p.shift_a, p.mult_b, p.shift_b, p.pre_shift
        y_zp = int(y_zp)
        if relu:
            lo = max(lo, y_zp)
        self.add_tensor(y_name, self.info(a).shape, dtype, y_s, y_zp)
        self.graph.ops.append(Add(node.name, a.tensor, b.tensor, y_name, int(a_zp), ma, sa,
                                  int(b_zp), mb, sb, f, y_zp, lo, hi))
        self.values[y_name] = QAct(y_name)

    def op_MaxPool(self, node):
        x = self.act(node, 0)
        a = _attrs(node)
        if x is None or len(self.info(x).shape) != 4 or len(node.output) > 1 \
                or a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", (1, 1))) \
                or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") \
                or a.get("storage_order", 0):
            return False
        self.emit_maxpool(node, x, node.output[0], a)
        return True

    def emit_maxpool(self, node, x, y_name, attrs):
        info = self.info(x)
        kernel = tuple(attrs["kernel_shape"])
        strides = tuple(attrs.get("strides", (1, 1)))
        pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
        oh, ow = conv_output_hw(info.shape[2], info.shape[3], kernel, strides, pads, (1, 1))
        if oh <= 0 or ow <= 0:
            raise ModelError(f"node {node.name!r} (MaxPool): output would be empty")
        self.add_tensor(y_name, (info.shape[0], info.shape[1], oh, ow), info.dtype,
                        info.scale, info.zero_point)
        self.graph.ops.append(MaxPool(node.name, x.tensor, y_name, kernel, strides, pads))
        self.values[y_name] = QAct(y_name)

    def reshape_target(self, node, shape):
        if node.op_type == "Flatten":
            axis = int(_attrs(node).get("axis", 1))
            axis = axis + len(shape) if axis < 0 else axis
            return (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))
        target = [int(d) for d in self.const(node, 1, "shape")]
        allow_zero = _attrs(node).get("allowzero", 0)
        target = [shape[i] if d == 0 and not allow_zero else d for i, d in enumerate(target)]
        if target.count(-1) == 1:
            known = int(np.prod([d for d in target if d != -1]))
            if known == 0 or int(np.prod(shape)) % known:
                raise ModelError(f"node {node.name!r} (Reshape): cannot reshape {tuple(shape)} "
                                 f"to {tuple(target)}")
            target[target.index(-1)] = int(np.prod(shape)) // known
        if int(np.prod(target)) != int(np.prod(shape)):
            raise ModelError(f"node {node.name!r} (Reshape): cannot reshape {tuple(shape)} to "
                             f"{tuple(target)}")
        return tuple(target)

    def emit_reshape(self, node, x, y_name):
        info = self.info(x)
        target = self.reshape_target(node, info.shape)
        self.add_tensor(y_name, target, info.dtype, info.scale, info.zero_point)
        self.graph.ops.append(Reshape(node.name, x.tensor, y_name, target))
        self.values[y_name] = QAct(y_name)

    def op_Flatten(self, node):
        x = self.act(node, 0)
        if x is None:
            return False
        self.emit_reshape(node, x, node.output[0])
        return True

    def op_Reshape(self, node):
        x = self.act(node, 0)
        if x is None or not isinstance(self.values.get(node.input[1]), Const):
            return False
        self.emit_reshape(node, x, node.output[0])
        return True

    def op_Relu(self, node):
        x = self.act(node, 0)
        if x is None or self.info(x).dtype not in ("int8", "int32"):
            return False   # Relu of an integer tensor is max(x, 0), defined for signed types
        info = self.info(x)
        lo, hi = dtype_range(info.dtype)
        y = node.output[0]
        self.add_tensor(y, info.shape, info.dtype, info.scale, info.zero_point)
        self.graph.ops.append(Clamp(node.name, x.tensor, y, max(lo, 0), hi))
        self.values[y] = QAct(y)
        return True

    def fuse_clamps(self):
        """Merge a Clamp into the op that produces its input when nothing else reads it."""
        readers = {}
        for op in self.graph.ops:
            for name in _op_inputs(op):
                readers[name] = readers.get(name, 0) + 1
        for e in self.graph.outputs:
            readers[e.tensor] = readers.get(e.tensor, 0) + 1
        producer = {}
        ops = []
        for op in self.graph.ops:
            p = producer.get(getattr(op, "x", None))
            if op.kind == "clamp" and p is not None and p.kind in ("linear", "conv", "add") \
                    and not getattr(p, "raw", False) and readers.get(op.x) == 1:
                p.lo, p.hi = max(p.lo, op.lo), min(p.hi, op.hi)
                old = self.graph.tensors.pop(p.y)
                p.y = op.y
                self.graph.tensors[op.y] = TensorInfo(op.y, old.shape, old.dtype, old.scale,
                                                      old.zero_point)
                producer[op.y] = p
                continue
            ops.append(op)
            if op.kind != "host":
                producer[op.y] = op
        self.graph.ops = ops

    # -- host fallback --------------------------------------------------------------------

    def host(self, node, *, warn=True):
        """Run ``node`` on the host: one warning, and a one-node model evaluated there."""
        import onnx
        from onnx import helper, numpy_helper
        inputs, tensors, inits, feeds = [], [], [], {}
        for name in node.input:
            if name == "" or name in feeds:
                continue
            self.value(node, name)
            v = qdq.materialize(self, name)
            if isinstance(v, Const):
                inits.append(numpy_helper.from_array(np.asarray(v.value), name))
                feeds[name] = None
                continue
            info = self.graph.tensors[v.tensor]
            inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(np.dtype(DTYPES[info.dtype])),
                list(info.shape)))
            tensors.append(v.tensor)
            feeds[v.tensor] = np.zeros(info.shape, DTYPES[info.dtype])
        outs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
        graph = helper.make_graph([node], f"host_{node.name}", inputs, outs, inits)
        model = helper.make_model(graph, opset_imports=self.opsets)
        model.ir_version = self.model.ir_version
        try:   # output types, which onnxruntime needs
            model = onnx.shape_inference.infer_shapes(model)
        except Exception:
            pass
        op = HostOp(node.name, node.op_type, tuple(tensors),
                    tuple(o for o in node.output if o), model.SerializeToString(),
                    tuple(i.name for i in inputs))
        try:
            results = op.run({k: v for k, v in feeds.items() if v is not None})
        except Exception as exc:
            raise ModelError(f"node {node.name!r} ({node.op_type}) is not supported by the "
                             f"accelerator and the host cannot evaluate it: "
                             f"{type(exc).__name__}: {exc}") from None
        if warn:
            warnings.warn(f"node {node.name!r} ({node.domain + '.' if node.domain else ''}"
                          f"{node.op_type}) is not supported by the accelerator; it runs on "
                          "the host", UnsupportedOpWarning, stacklevel=4)
        for name, arr in results.items():
            arr = np.asarray(arr)
            if arr.dtype.name not in DTYPES:
                raise ModelError(f"node {node.name!r} ({node.op_type}): output type "
                                 f"{arr.dtype} is not supported")
            self.add_tensor(name, arr.shape, arr.dtype.name)
            self.values[name] = QAct(name) if arr.dtype.name in ("int8", "uint8", "int32") \
                else Host(name)
        self.graph.ops.append(op)


def _op_inputs(op):
    if op.kind == "host":
        return list(op.inputs)
    if op.kind == "add":
        return [op.a, op.b]
    return [op.x]


def import_onnx(model, *, config=None, batch=1):
    """Import a quantized ONNX model as a :class:`QGraph`.

    Parameters
    ----------
    model : str, Path, bytes or onnx.ModelProto
    config : AcceleratorConfig, optional
        Fixes the width of the requantization multiplier (``requant_bits``).
    batch : int
        Size of the first (batch) dimension of every graph input.

    Raises
    ------
    ModelError
        For a malformed model (the message names the node).
    """
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, not {batch!r}")
    config = config or AcceleratorConfig()
    proto = load_model(model)
    return _Importer(proto, config, batch).run()
