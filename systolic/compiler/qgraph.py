"""The quantized graph the ONNX front end produces, and its integer reference semantics.

Tensors keep the element types and zero points of the ONNX model (uint8 or int8
activations, int8 weights); only the arithmetic is fixed here, bit for bit as the
accelerator does it: int32 accumulation of ``x * w`` plus a bias into which the input
zero point is folded, then :func:`systolic.numerics.requantize` with an integer
multiplier and shift. :func:`run_reference` evaluates a graph with that arithmetic in
NumPy; a compiled program must give the same bits.
"""

from dataclasses import dataclass, field

import numpy as np

from ..numerics import INT32_MAX, INT32_MIN, requantize, round_shift

__all__ = [
    "DTYPES", "dtype_range", "TensorInfo", "InputEdge", "OutputEdge",
    "Linear", "Conv", "MaxPool", "Reshape", "Add", "Clamp", "HostOp", "QGraph",
    "run_reference", "run_op", "fold_zero_point", "to_input", "from_output",
    "conv_output_hw",
]

DTYPES = {"int8": np.int8, "uint8": np.uint8, "int32": np.int32, "float32": np.float32,
          "int64": np.int64}


def dtype_range(dtype):
    """``(lo, hi)`` of an integer element type name."""
    info = np.iinfo(DTYPES[dtype])
    return int(info.min), int(info.max)


@dataclass(frozen=True)
class TensorInfo:
    """A tensor of the graph: its shape (batch first), element type and, for quantized
    tensors, the scale and zero point that give it a real value."""
    name: str
    shape: tuple
    dtype: str
    scale: float | None = None
    zero_point: int = 0


@dataclass(frozen=True)
class InputEdge:
    """A graph input. ``quantize`` is True when the model takes floats and quantizes them
    (QuantizeLinear at the edge): the host does that with ``scale`` and ``zero_point``
    into ``tensor``, rounding half to even as ONNX does."""
    name: str            # the model's input name
    tensor: str          # the graph tensor it becomes
    shape: tuple
    dtype: str           # element type the user passes (float32 when quantize)
    quantize: bool = False
    scale: float | None = None
    zero_point: int = 0


@dataclass(frozen=True)
class OutputEdge:
    """A graph output. ``dequantize`` is True when the model ends in DequantizeLinear:
    the host computes ``(q - zero_point) * scale`` as float32."""
    name: str
    tensor: str
    shape: tuple
    dtype: str           # element type the user gets back
    dequantize: bool = False
    scale: float | None = None
    zero_point: int = 0


@dataclass(eq=False)
class Linear:
    """``y = requantize((x - x_zp) @ w + bias)`` over the last axis of ``x``.

    ``w`` is (K, N) int8; ``bias`` (N,) int32 in the scale ``x_scale * w_scale`` with the
    input zero point folded in (``bias - x_zp * sum_k w[k, n]``, so the array computes
    ``x @ w + bias`` on the stored values);
    ``multiplier``/``shift`` (N,) hold the combined scale ``x_scale * w_scale / y_scale``;
    ``lo``/``hi`` the clamp after the output zero point (saturation and ReLU).
    ``raw`` (MatMulInteger) writes the int32 accumulator instead.
    """
    name: str
    x: str
    y: str
    w: np.ndarray
    bias: np.ndarray
    x_zp: int
    multiplier: np.ndarray
    shift: np.ndarray
    y_zp: int
    lo: int
    hi: int
    raw: bool = False
    kind = "linear"


@dataclass(eq=False)
class Conv:
    """2-D convolution, NCHW, ``w`` (Cout, Cin/group, kh, kw) int8; padding takes the
    input zero point, so padded elements contribute nothing. Requantized as
    :class:`Linear`."""
    name: str
    x: str
    y: str
    w: np.ndarray
    bias: np.ndarray
    x_zp: int
    multiplier: np.ndarray
    shift: np.ndarray
    y_zp: int
    lo: int
    hi: int
    strides: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)      # top, left, bottom, right
    dilations: tuple = (1, 1)
    group: int = 1
    kind = "conv"


@dataclass(eq=False)
class MaxPool:
    """2-D max pooling on integers, NCHW; padding never wins (it is the type's minimum)."""
    name: str
    x: str
    y: str
    kernel: tuple
    strides: tuple
    pads: tuple = (0, 0, 0, 0)
    kind = "maxpool"


@dataclass(eq=False)
class Reshape:
    """Reshape (Flatten) to ``shape``; the bytes do not change."""
    name: str
    x: str
    y: str
    shape: tuple
    kind = "reshape"


@dataclass(eq=False)
class Add:
    """Rescale-and-add (QLinearAdd)::

        acc = round_shift((a - a_zp) * ma, sa) + round_shift((b - b_zp) * mb, sb)
        y   = requantize(acc, 1, frac_bits, y_zp, lo, hi)

    ``ma / 2**sa`` is ``a_scale / y_scale`` times ``2**frac_bits`` (likewise for b): the
    sum keeps ``frac_bits`` fraction bits, so it is rounded once, at the end.
    """
    name: str
    a: str
    b: str
    y: str
    a_zp: int
    ma: int
    sa: int
    b_zp: int
    mb: int
    sb: int
    frac_bits: int
    y_zp: int
    lo: int
    hi: int
    kind = "add"

    @property
    def x(self):
        return self.a


@dataclass(eq=False)
class Clamp:
    """``y = clamp(x, lo, hi)`` elementwise (a Relu on quantized values)."""
    name: str
    x: str
    y: str
    lo: int
    hi: int
    kind = "clamp"


@dataclass(eq=False)
class HostOp:
    """A node the accelerator cannot run: the host evaluates ``model`` (a one-node ONNX
    model, serialized) with :class:`onnx.reference.ReferenceEvaluator`, or onnxruntime
    where the reference has no kernel for it."""
    name: str
    op_type: str
    inputs: tuple          # graph tensors read
    outputs: tuple         # graph tensors written (the model's output names)
    model: bytes
    model_inputs: tuple = ()   # the model's input names, one per ``inputs`` (default: same)
    kind = "host"

    def _evaluate(self, feeds):
        """onnx.reference first; onnxruntime for what it lacks (contrib ops, old opsets)."""
        engine = getattr(self, "_engine", None)
        if engine is None:
            from onnx.reference import ReferenceEvaluator
            try:
                engine = ReferenceEvaluator(self.model)
                out = engine.run(None, feeds)
                self._engine = engine
                return out
            except Exception:
                import onnxruntime
                engine = onnxruntime.InferenceSession(self.model,
                                                      providers=["CPUExecutionProvider"])
                self._engine = engine
        return engine.run(None, feeds)

    def run(self, values):
        names = self.model_inputs or self.inputs
        out = self._evaluate({m: values[t] for m, t in zip(names, self.inputs, strict=True)})
        return dict(zip(self.outputs, out, strict=True))


@dataclass
class QGraph:
    """Ops in execution order over named tensors, with the host's edge conversions."""
    name: str
    batch: int
    inputs: list
    outputs: list
    tensors: dict = field(default_factory=dict)    # name -> TensorInfo
    ops: list = field(default_factory=list)

    def device_ops(self):
        return [op for op in self.ops if op.kind != "host"]

    def host_ops(self):
        return [op for op in self.ops if op.kind == "host"]


def fold_zero_point(bias, w_kn, x_zp, name):
    """``bias - x_zp * sum_k w[k, n]`` as int32; the folded bias of a layer.

    Raises
    ------
    ValueError
        When the folded bias leaves int32 (the message names the node).
    """
    folded = np.asarray(bias, np.int64) - int(x_zp) * w_kn.astype(np.int64).sum(axis=0)
    if folded.min(initial=0) < INT32_MIN or folded.max(initial=0) > INT32_MAX:
        raise ValueError(f"node {name!r}: the bias with the input zero point folded in "
                         f"leaves int32 ({folded.min()}..{folded.max()})")
    return folded.astype(np.int32)


def _accumulate(xq, w_kn, folded_bias):
    """``x @ w + bias'`` in int32 (saturating), as the array and accumulator compute it."""
    acc = xq.astype(np.int64) @ w_kn.astype(np.int64) + folded_bias.astype(np.int64)
    return np.clip(acc, INT32_MIN, INT32_MAX)


def _im2col(x, kh, kw, strides, pads, dilations, pad_value):
    """(N, C, H, W) -> (N, OH, OW, C*kh*kw) patches, channel-major like the weights."""
    n, c, h, w = x.shape
    top, left, bottom, right = pads
    xp = np.full((n, c, h + top + bottom, w + left + right), pad_value, x.dtype)
    xp[:, :, top:top + h, left:left + w] = x
    sh, sw = strides
    dh, dw = dilations
    oh = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    ow = (w + left + right - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((n, oh, ow, c, kh, kw), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, :, i, j] = xp[:, :, i * dh:i * dh + sh * oh:sh,
                                        j * dw:j * dw + sw * ow:sw].transpose(0, 2, 3, 1)
    return cols.reshape(n, oh, ow, c * kh * kw)


def conv_output_hw(h, w, kernel, strides, pads, dilations):
    kh, kw = kernel
    oh = (h + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    return oh, ow


def _run_linear(op, x):
    lead = x.shape[:-1]
    acc = _accumulate(x.reshape(-1, x.shape[-1]), op.w, op.bias)
    if op.raw:
        return acc.astype(np.int32).reshape(*lead, -1)
    y = requantize(acc, op.multiplier, op.shift, op.y_zp, op.lo, op.hi)
    return y.reshape(*lead, -1)


def _run_conv(op, x):
    cout, cin_g, kh, kw = op.w.shape
    n = x.shape[0]
    outs = []
    for g in range(op.group):
        xg = x[:, g * cin_g:(g + 1) * cin_g]
        cols = _im2col(xg, kh, kw, op.strides, op.pads, op.dilations, op.x_zp)
        oh, ow = cols.shape[1:3]
        per = cout // op.group
        sl = slice(g * per, (g + 1) * per)
        w_kn = op.w[sl].reshape(per, -1).T
        acc = _accumulate(cols.reshape(-1, cols.shape[-1]), w_kn, op.bias[sl])
        y = requantize(acc, op.multiplier[sl], op.shift[sl], op.y_zp, op.lo, op.hi)
        outs.append(y.reshape(n, oh, ow, per).transpose(0, 3, 1, 2))
    return np.concatenate(outs, axis=1)


def _run_maxpool(op, x):
    lo = np.iinfo(x.dtype).min
    kh, kw = op.kernel
    cols = _im2col(x, kh, kw, op.strides, op.pads, (1, 1), lo)
    n, oh, ow, _ = cols.shape
    c = x.shape[1]
    return cols.reshape(n, oh, ow, c, kh * kw).max(axis=-1).transpose(0, 3, 1, 2)


def _run_add(op, a, b):
    ra = round_shift((a.astype(np.int64) - op.a_zp) * op.ma, op.sa)
    rb = round_shift((b.astype(np.int64) - op.b_zp) * op.mb, op.sb)
    acc = np.clip(ra + rb, INT32_MIN, INT32_MAX)
    return requantize(acc, 1, op.frac_bits, op.y_zp, op.lo, op.hi)


def run_op(op, values, tensors):
    """Evaluate one op on ``values`` (name -> array); returns name -> array."""
    if op.kind == "host":
        return op.run(values)
    if op.kind == "add":
        y = _run_add(op, values[op.a], values[op.b])
    elif op.kind == "linear":
        y = _run_linear(op, values[op.x])
    elif op.kind == "conv":
        y = _run_conv(op, values[op.x])
    elif op.kind == "maxpool":
        y = _run_maxpool(op, values[op.x])
    elif op.kind == "reshape":
        y = values[op.x].reshape(op.shape)
    elif op.kind == "clamp":
        y = np.clip(values[op.x], op.lo, op.hi)
    else:
        raise ValueError(f"unknown op kind {op.kind!r}")
    info = tensors[op.y]
    return {op.y: np.asarray(y).astype(DTYPES[info.dtype]).reshape(info.shape)}


def to_input(graph, edge, x):
    """What the host writes for input ``edge``: the user's array checked against the
    descriptor and, for a float input, quantized as ONNX QuantizeLinear does (round half
    to even, saturate)."""
    info = graph.tensors[edge.tensor]
    x = np.asarray(x)
    if tuple(x.shape) != tuple(edge.shape):
        raise ValueError(f"input {edge.name!r} must have shape {tuple(edge.shape)}, "
                         f"not {tuple(x.shape)}")
    if not edge.quantize:
        if x.dtype != DTYPES[edge.dtype]:
            raise ValueError(f"input {edge.name!r} must be {edge.dtype}, not {x.dtype}")
        return x
    lo, hi = dtype_range(info.dtype)
    q = np.rint(x.astype(np.float32) / np.float32(edge.scale)) + edge.zero_point
    return np.clip(q, lo, hi).astype(DTYPES[info.dtype])


def from_output(graph, edge, y):
    """What the user gets for output ``edge``: dequantized (float32) where the model ends
    in DequantizeLinear, else the tensor itself."""
    if not edge.dequantize:
        return np.asarray(y)
    return ((np.asarray(y, np.int32) - edge.zero_point).astype(np.float32)
            * np.float32(edge.scale))


def run_reference(graph, feeds):
    """Evaluate ``graph`` on ``feeds`` (input name -> array) with the accelerator's
    integer arithmetic; returns output name -> array (dequantized where the model does).
    """
    values = {}
    for edge in graph.inputs:
        values[edge.tensor] = to_input(graph, edge, feeds[edge.name])
    for op in graph.ops:
        values.update(run_op(op, values, graph.tensors))
    return {edge.name: from_output(graph, edge, values[edge.tensor]) for edge in graph.outputs}
