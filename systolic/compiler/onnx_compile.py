"""A :class:`QGraph` from the ONNX front end lowered to device programs and host stages.

Consecutive ops the compiler core can run become one :class:`~systolic.compiler.graph.Graph`
compiled with :func:`~systolic.compiler.graph.compile_graph` (a *device stage*); an op it
cannot run (a :class:`HostOp`, an int32 Clamp, a grouped convolution, a reshape that
would need a transpose) ends the stage and runs on the host with one warning.

Layouts: the front end keeps ONNX's NCHW; the compiler core stores 4-D tensors NHWC.
A device stage transposes 4-D tensors at its edges, and a Flatten of an NHWC tensor keeps
the NHWC element order on the device: the Linear that reads it gets its weight rows
permuted instead (:func:`~systolic.compiler.graph.nchw_flatten_permutation`), and a stage
output in that order is permuted back on the host.
"""

import warnings
from dataclasses import dataclass, field

import numpy as np

from .graph import Graph, compile_graph, nchw_flatten_permutation
from .onnx_frontend import UnsupportedOpWarning, import_onnx
from .quant import AddParams, Requant

__all__ = ["DeviceStage", "HostStage", "compile_qgraph", "compile_onnx", "lower_requant"]


@dataclass
class DeviceStage:
    """One compiled program; ``inputs``/``outputs`` map graph tensors to program tensors.

    ``layouts`` gives, per edge tensor, how the program stores it: ``"nhwc"`` (a 4-D
    tensor transposed), a list (the element order of a flattened tensor: stored element
    ``i`` is logical element ``perm[i]`` of each row) or ``None`` (as is).
    """
    program: object
    inputs: list
    outputs: list
    layouts: dict = field(default_factory=dict)
    kind = "device"


@dataclass
class HostStage:
    """One op of the quantized graph evaluated on the host."""
    op: object
    kind = "host"


def lower_requant(op, info):
    """The compiler core's :class:`Requant` of a front-end op with clamp ``lo..hi``."""
    from .qgraph import dtype_range
    if getattr(op, "raw", False):
        return Requant(out_dtype="int32")
    lo_t, hi_t = dtype_range(info.dtype)
    if op.lo == lo_t and op.hi == hi_t:
        act, clamp = "none", None
    elif op.lo == max(lo_t, op.y_zp) and op.hi == hi_t:
        act, clamp = "relu", None
    else:
        act, clamp = "clamp", (int(op.lo), int(op.hi))
    m, s = np.asarray(op.multiplier), np.asarray(op.shift)
    if np.all(m == m[0]) and np.all(s == s[0]):
        mult, shift = int(m[0]), int(s[0])
    else:
        mult, shift = tuple(int(v) for v in m), tuple(int(v) for v in s)
    return Requant(mult, shift, int(op.y_zp), info.dtype, act, clamp)


class _Stage:
    def __init__(self, qgraph, index):
        self.q = qgraph
        self.g = Graph(f"{qgraph.name}.{index}")
        self.produced = []
        self.inputs = []
        self.perm = {}        # tensor -> flatten permutation (stored order)

    def has(self, name):
        return name in self.g.tensors

    def zero_point(self, name):
        """The zero point the compiler core gives ``name`` (a tensor a stage produced keeps
        its input's, which may differ from the one a consumer later stated for it)."""
        if self.has(name):
            return self.g.tensors[name].zero_point
        return self.q.tensors[name].zero_point

    def read(self, name):
        """Make ``name`` available in this stage (a program input if it comes from outside)."""
        if not self.has(name):
            info = self.q.tensors[name]
            if info.dtype not in ("int8", "uint8", "int32"):
                return None
            shape = info.shape
            if len(shape) == 4:
                shape = (shape[0], shape[2], shape[3], shape[1])
            self.g.input(name, shape, info.dtype, scale=info.scale, zero_point=info.zero_point)
            self.inputs.append(name)
        return name

    def lower(self, op):
        """Add ``op`` to this stage; False if the compiler core cannot run it here."""
        q, g = self.q, self.g
        if op.kind == "host":
            return False
        if op.kind == "clamp":
            # a standalone clamp (a Relu nothing could absorb): STORE's CLAMP after an
            # identity MATMUL; the raw int32 STORE cannot clamp, so int32 stays on the host
            if q.tensors[op.x].dtype not in ("int8", "uint8"):
                return False
            self.read(op.x)
            g.clamp(op.x, op.lo, op.hi, name=op.y)
            if op.x in self.perm:
                self.perm[op.y] = self.perm[op.x]
            self.produced.append(op.y)
            return True
        ins = [op.a, op.b] if op.kind == "add" else [op.x]
        if any(q.tensors[n].dtype not in ("int8", "uint8", "int32") for n in ins):
            return False
        info = q.tensors[op.y]
        perms = [self.perm.get(n) for n in ins]
        if op.kind == "linear":
            w = op.w
            if perms[0] is not None:
                w = w[perms[0]]
            # the core folds the zero point of the tensor it reads; undo the fold with that
            t_zp = self.zero_point(op.x)
            bias = op.bias.astype(np.int64) + t_zp * op.w.astype(np.int64).sum(axis=0)
            self.read(op.x)
            g.gemm(op.x, w, bias, lower_requant(op, info), out_scale=info.scale, name=op.y)
        elif op.kind == "conv":
            if op.group != 1 or tuple(op.dilations) != (1, 1) or perms[0] is not None \
                    or self.zero_point(op.x) != op.x_zp:
                return False   # (the core pads with the tensor's zero point)
            cout, _, kh, kw = op.w.shape
            w_kn = op.w.reshape(cout, -1).T
            bias = op.bias.astype(np.int64) + op.x_zp * w_kn.astype(np.int64).sum(axis=0)
            self.read(op.x)
            g.conv2d(op.x, op.w.transpose(2, 3, 1, 0), bias, lower_requant(op, info),
                     stride=tuple(op.strides), padding=tuple(op.pads), out_scale=info.scale,
                     name=op.y)
        elif op.kind == "maxpool":
            if perms[0] is not None:
                return False
            self.read(op.x)
            g.max_pool(op.x, tuple(op.kernel), tuple(op.strides), tuple(op.pads), name=op.y)
        elif op.kind == "add":
            if perms[0] is not None or perms[1] is not None or \
                    (self.zero_point(op.a), self.zero_point(op.b)) != (op.a_zp, op.b_zp):
                return False   # (the core takes the zero points from the tensors)
            self.read(op.a)
            self.read(op.b)
            rq = lower_requant(_AddView(op), info)
            g.add(op.a, op.b, out_scale=info.scale, zero_point=op.y_zp, out_dtype=info.dtype,
                  activation=rq.activation, clamp=rq.clamp, name=op.y,
                  params=AddParams(op.ma, op.sa, op.mb, op.sb, op.frac_bits))
        elif op.kind == "reshape":
            src = q.tensors[op.x]
            if perms[0] is not None:
                return False
            if len(src.shape) == 4:
                if len(op.shape) != 2 or op.shape[0] != src.shape[0]:
                    return False
                self.read(op.x)
                g.flatten(op.x, name=op.y)
                _, c, h, w = src.shape
                if c > 1 and h * w > 1:
                    self.perm[op.y] = nchw_flatten_permutation(c, h, w)
            elif len(op.shape) == 4:
                return False
            else:
                self.read(op.x)
                g.reshape(op.x, op.shape, name=op.y)
        else:
            return False
        self.produced.append(op.y)
        return True


class _AddView:
    """An Add seen as a requantizing op (for :func:`lower_requant`)."""

    def __init__(self, op):
        self.lo, self.hi, self.y_zp = op.lo, op.hi, op.y_zp
        self.multiplier = np.array([1])
        self.shift = np.array([0])


def _layout(stage, name):
    info = stage.q.tensors[name]
    if name in stage.perm:
        return [int(v) for v in stage.perm[name]]
    return "nhwc" if len(info.shape) == 4 else None


def compile_qgraph(qgraph, config):
    """Lower a :class:`QGraph` to a list of :class:`DeviceStage` and :class:`HostStage`."""
    stages, current = [], None
    warned = set()
    for op in qgraph.ops:
        if current is None:
            current = _Stage(qgraph, len(stages))
        if current.lower(op):
            continue
        if current.produced:
            stages.append(current)
        current = None
        if op.kind != "host" and op.name not in warned:
            warned.add(op.name)
            warnings.warn(f"{op.kind} {op.name!r} cannot run on the accelerator here; it runs "
                          "on the host", UnsupportedOpWarning, stacklevel=2)
        stages.append(HostStage(op))
    if current is not None and current.produced:
        stages.append(current)
    # which tensors each device stage must hand on
    needed = {e.tensor for e in qgraph.outputs}
    out = []
    for st in reversed(stages):
        if isinstance(st, HostStage):
            op = st.op
            ins = list(op.inputs) if op.kind == "host" else (
                [op.a, op.b] if op.kind == "add" else [op.x])
            needed.update(ins)
            out.append(st)
            continue
        outputs = [t for t in st.produced if t in needed]
        st.g.output(*outputs)
        needed.update(st.inputs)
        program = compile_graph(st.g, config)
        layouts = {n: _layout(st, n) for n in st.inputs + outputs}
        out.append(DeviceStage(program, list(st.inputs), outputs, layouts))
    return list(reversed(out))


def compile_onnx(model, config, *, batch=1):
    """Import an ONNX model and compile it for ``config``.

    Returns
    -------
    CompiledModel
        See :mod:`systolic.compiler.package`; ``batch`` samples per program run.
    """
    from .package import CompiledModel
    qgraph = import_onnx(model, config=config, batch=batch)
    stages = compile_qgraph(qgraph, config)
    return CompiledModel(config, qgraph, stages)
