"""The QDQ format: DequantizeLinear -> float op -> QuantizeLinear, matched lazily.

A DequantizeLinear does not compute anything here: it gives its output a :class:`DQ`
value (the quantized source with its scale and zero point). A float Conv, Gemm, MatMul or
Add whose inputs are such values gives a :class:`Pending` value, and the QuantizeLinear
that consumes it emits the quantized op (a Relu in between becomes the op's activation).
MaxPool, Flatten and Reshape commute with dequantization, so on a DQ value they emit the
integer op at once, and ``QuantizeLinear(DequantizeLinear(q))`` with the same scale and
zero point is ``q`` itself. A lazy value that something else needs as a float tensor is
*materialized*: its original nodes run on the host.
"""

from dataclasses import dataclass, field

import numpy as np

__all__ = ["DQ", "Pending", "handle", "materialize"]


@dataclass(frozen=True)
class DQ:
    """``DequantizeLinear(src)``: ``src`` is a ``Const`` or a ``QAct``."""
    src: object
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int
    node: object


@dataclass
class Pending:
    """The float output of a Conv/Gemm/MatMul/Add on DQ inputs, before its QuantizeLinear."""
    kind: str                    # "linear", "conv" or "add"
    node: object                 # the float node (errors and host fallback name it)
    args: dict
    relu: bool = False
    nodes: list = field(default_factory=list)   # original nodes, in order


def _is_dq_act(v):
    from .onnx_frontend import QAct
    return isinstance(v, DQ) and isinstance(v.src, QAct)


def _is_dq_const(v):
    from .onnx_frontend import Const
    return isinstance(v, DQ) and isinstance(v.src, Const)


def _dequantize_const(v):
    q = np.asarray(v.src.value)
    scale = np.asarray(v.scale, np.float32)
    zp = np.asarray(v.zero_point)
    if scale.ndim == 1 and q.ndim > 1:
        shape = [1] * q.ndim
        shape[v.axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((q.astype(np.int64) - zp.astype(np.int64)).astype(np.float32) * scale)


def _bias(imp, node, v, x_scale, w_scale, n):
    """The int32 bias in the scale ``x_scale * w_scale`` from a DQ or float constant."""
    from .onnx_frontend import Const, ModelError
    if v is None:
        return None
    target = (np.float32(x_scale) * np.asarray(w_scale, np.float32).reshape(-1)).astype(
        np.float32)
    if _is_dq_const(v) and np.asarray(v.src.value).dtype == np.int32 \
            and not np.any(np.asarray(v.zero_point)) \
            and np.allclose(np.asarray(v.scale, np.float32).reshape(-1), target, rtol=1e-6):
        return np.asarray(v.src.value, np.int32).reshape(-1)
    if _is_dq_const(v):
        real = _dequantize_const(v)
    elif isinstance(v, Const):
        real = np.asarray(v.value, np.float32)
    else:
        return False
    real = np.broadcast_to(real.reshape(-1), (n,)).astype(np.float64)
    q = np.rint(real / target.astype(np.float64))
    if np.abs(q).max(initial=0) >= 2 ** 31:
        raise ModelError(f"node {node.name!r} ({node.op_type}): bias does not fit int32 in "
                         "the scale x_scale * w_scale")
    return q.astype(np.int32)


def _scalar(imp, node, v, what):
    from .onnx_frontend import ModelError
    s = np.asarray(v.scale)
    if s.size != 1:
        raise ModelError(f"node {v.node.name!r} (DequantizeLinear): {what} of {node.name!r} "
                         "must be quantized per tensor")
    return s.reshape(()), np.asarray(v.zero_point).reshape(())


def _weights(imp, node, v):
    q = np.asarray(v.src.value)
    imp.check_weights(v.node, q, v.zero_point)
    return q, np.asarray(v.scale, np.float32).reshape(-1)


def _attrs(node):
    from .onnx_frontend import _attrs as attrs
    return attrs(node)


def _float_op(imp, node, values):
    """A Pending value for a float Conv/Gemm/MatMul/Add on DQ inputs, or None."""
    op = node.op_type
    if op in ("Conv", "Gemm", "MatMul") and len(values) >= 2 and _is_dq_act(values[0]) \
            and _is_dq_const(values[1]):
        x_scale, x_zp = _scalar(imp, node, values[0], "the input")
        w, w_scale = _weights(imp, node, values[1])
        args = dict(x=values[0].src, x_scale=x_scale, x_zp=x_zp, w_scale=w_scale)
        if op == "Conv":
            if w.ndim != 4:
                return None
            bias = _bias(imp, node, values[2] if len(values) > 2 else None, x_scale, w_scale,
                         w.shape[0])
            if bias is False:
                return None
            return Pending("conv", node, dict(args, w=w, bias=bias, attrs=_attrs(node)))
        if w.ndim != 2:
            return None
        if op == "Gemm":
            a = _attrs(node)
            if a.get("transA", 0) or float(a.get("alpha", 1.0)) != 1.0 \
                    or float(a.get("beta", 1.0)) != 1.0:
                return None
            if a.get("transB", 0):
                w = w.T
        bias = _bias(imp, node, values[2] if len(values) > 2 else None, x_scale, w_scale,
                     w.shape[1])
        if bias is False:
            return None
        return Pending("linear", node, dict(args, w=w, bias=bias))
    if op == "Add" and len(values) == 2 and all(_is_dq_act(v) for v in values) \
            and imp.info(values[0].src).shape == imp.info(values[1].src).shape:
        (a_s, a_zp), (b_s, b_zp) = (_scalar(imp, node, v, "an input") for v in values)
        return Pending("add", node, dict(a=values[0].src, a_s=a_s, a_zp=a_zp,
                                         b=values[1].src, b_s=b_s, b_zp=b_zp))
    return None


def _emit(imp, q_node, p, y_scale, y_zp):
    """Emit the quantized op of Pending ``p`` whose QuantizeLinear is ``q_node``."""
    y = q_node.output[0]
    a = p.args
    node = p.node
    if p.kind == "linear":
        imp.emit_linear(node, a["x"], a["x_scale"], a["x_zp"], a["w"], a["w_scale"], a["bias"],
                        y, y_scale, y_zp, relu=p.relu)
        return True
    if p.kind == "conv":
        return imp.emit_conv(node, a["x"], a["x_scale"], a["x_zp"], a["w"], a["w_scale"],
                             a["bias"], y, y_scale, y_zp, a["attrs"], relu=p.relu)
    imp.emit_add(node, a["a"], a["a_s"], a["a_zp"], a["b"], a["b_s"], a["b_zp"], y, y_scale,
                 y_zp, relu=p.relu)
    return True


def handle(imp, node):
    """Take ``node`` as part of a QDQ pattern; False if it is not one."""
    from .onnx_frontend import Const, Host, QAct
    if node.domain not in ("", "ai.onnx"):
        return False
    values = [imp.values.get(n) if n else None for n in node.input]
    op = node.op_type
    out = node.output[0] if node.output else None
    if op == "DequantizeLinear" and values and isinstance(values[0], Const | QAct) \
            and all(isinstance(v, Const) for v in values[1:] if v is not None):
        scale = np.asarray(values[1].value)
        zp = np.asarray(values[2].value) if len(values) > 2 and values[2] is not None \
            else np.zeros(scale.shape, np.asarray(values[0].value).dtype
                          if isinstance(values[0], Const) else imp.info(values[0]).dtype)
        imp.values[out] = DQ(values[0], scale, zp, int(_attrs(node).get("axis", 1)), node)
        return True
    if op == "QuantizeLinear" and values and len(values) > 1 and isinstance(values[1], Const):
        y_scale = np.asarray(values[1].value)
        y_zp = np.asarray(values[2].value) if len(values) > 2 and values[2] is not None \
            else np.zeros((), np.uint8)
        if y_scale.size != 1:
            return False
        y_scale, y_zp = y_scale.reshape(()), y_zp.reshape(())
        v = values[0]
        if _is_dq_act(v):
            info = imp.info(v.src)
            s, zp = np.asarray(v.scale).reshape(-1), np.asarray(v.zero_point).reshape(-1)
            if s.size == 1 and np.float32(s[0]) == np.float32(y_scale) and zp[0] == y_zp \
                    and info.dtype == y_zp.dtype.name:
                imp.values[out] = v.src
                return True
            return False
        if isinstance(v, Pending):
            return _emit(imp, node, v, y_scale, y_zp)
        if isinstance(v, Host):
            imp.host(node, warn=False)   # back from a host op: the boundary, not an op
            return True
        return False
    v0 = values[0] if values else None
    if op == "Relu" and isinstance(v0, Pending) and not v0.relu:
        imp.values[out] = Pending(v0.kind, v0.node, v0.args, True, v0.nodes + [node])
        return True
    if op == "Relu" and _is_dq_act(v0) and np.asarray(v0.scale).size == 1:
        from .qgraph import Clamp, dtype_range
        info = imp.info(v0.src)
        lo, hi = dtype_range(info.dtype)
        y = imp.fresh(out)
        imp.add_tensor(y, info.shape, info.dtype, info.scale, info.zero_point)
        imp.graph.ops.append(Clamp(node.name, v0.src.tensor, y,
                                   max(lo, int(np.asarray(v0.zero_point).reshape(()))), hi))
        imp.values[out] = DQ(QAct(y), v0.scale, v0.zero_point, v0.axis, v0.node)
        return True
    if op in ("MaxPool", "Flatten", "Reshape") and _is_dq_act(v0):
        saved = imp.values[node.input[0]]
        imp.values[node.input[0]] = v0.src
        y = imp.fresh(out)
        renamed = type(node)()
        renamed.CopyFrom(node)
        renamed.output[0] = y
        try:
            handler = getattr(imp, f"op_{op}")
            ok = handler(renamed) is not False
        finally:
            imp.values[node.input[0]] = saved
        if not ok:
            return False
        imp.values[out] = DQ(QAct(y), v0.scale, v0.zero_point, v0.axis, v0.node)
        return True
    if op in ("Conv", "Gemm", "MatMul", "Add"):
        p = _float_op(imp, node, values)
        if p is None:
            return False
        p.nodes = [node]
        imp.values[out] = p
        return True
    return False


def materialize(imp, name):
    """Make ``name`` a concrete value (``QAct``, ``Host`` or ``Const``), running lazy
    DequantizeLinear and float nodes on the host."""
    from .onnx_frontend import Const
    v = imp.values[name]
    if isinstance(v, DQ):
        if isinstance(v.src, Const):
            imp.values[name] = Const(_dequantize_const(v))
        else:
            from onnx import helper
            imp.values[v.src.tensor] = v.src
            scale, zp = imp.fresh(name + "_scale"), imp.fresh(name + "_zero_point")
            imp.values[scale] = Const(np.asarray(v.scale))
            imp.values[zp] = Const(np.asarray(v.zero_point))
            node = helper.make_node("DequantizeLinear", [v.src.tensor, scale, zp], [name],
                                    name=f"{v.node.name}:host", axis=v.axis)
            imp.host(node, warn=False)
    elif isinstance(v, Pending):
        for node in v.nodes:
            imp.host(node)
    return imp.values[name]
