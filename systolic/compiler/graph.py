"""A small graph IR of quantized operations, compiled to one program and memory image.

Tensors are named; every operation method of :class:`Graph` returns the name of its
output. Quantization is explicit: each tensor has a logical dtype, an optional scale and
a zero point; matrix operations carry a :class:`~systolic.compiler.quant.Requant`.
Activations are row-major, 4-D ones NHWC. :func:`compile_graph` lowers every operation
the configuration can run and runs the rest as host kernels (with one warning per kind).
"""

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..isa import to_bytes
from .compiled import HOST_KERNELS, CompiledProgram, DeviceStep, HostStep, register_host_kernel
from .ops import (
    Lowering,
    TensorDesc,
    lower_add,
    lower_clamp,
    lower_conv2d,
    lower_gemm,
    lower_max_pool,
)
from .program import MemoryLayout
from .quant import (
    DTYPES,
    AddParams,
    Requant,
    add_ref,
    conv2d_ref,
    device_dtype,
    gemm_ref,
    max_pool_ref,
)

__all__ = ["Graph", "Op", "TensorSpec", "compile_graph", "compile_gemm",
           "nchw_flatten_permutation"]


@dataclass
class TensorSpec:
    name: str
    shape: tuple
    dtype: str
    scale: float | None = None
    zero_point: int = 0

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class Op:
    kind: str             # gemm, conv2d, add, clamp, max_pool, reshape, host
    name: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)


def _pair(v):
    return (int(v), int(v)) if np.ndim(v) == 0 else tuple(int(x) for x in v)


def _pads(p):
    if np.ndim(p) == 0:
        return (int(p),) * 4
    p = tuple(int(x) for x in p)
    return p if len(p) == 4 else (p[0], p[1], p[0], p[1])


class Graph:
    """A quantized network as a list of operations on named tensors."""

    def __init__(self, name="graph"):
        self.name = name
        self.tensors = {}
        self.ops = []
        self.inputs = []
        self.outputs = []

    def _tensor(self, name, shape, dtype, scale=None, zero_point=0):
        if name in self.tensors:
            raise ValueError(f"tensor {name!r} already exists")
        if dtype not in DTYPES:
            raise ValueError(f"tensor dtype must be int8, uint8 or int32, not {dtype!r}")
        self.tensors[name] = TensorSpec(name, tuple(int(s) for s in shape), dtype,
                                        None if scale is None else float(scale), int(zero_point))
        return name

    def _name(self, kind, name):
        return name or f"{kind}{len(self.ops)}"

    def input(self, name, shape, dtype="int8", *, scale=None, zero_point=0):
        self._tensor(name, shape, dtype, scale, zero_point)
        self.inputs.append(name)
        return name

    def output(self, *names):
        for n in names:
            if n not in self.tensors:
                raise ValueError(f"unknown tensor {n!r}")
            self.outputs.append(n)

    def gemm(self, a, weight, bias=None, requant=None, *, weight_zero_point=0, out_scale=None,
             name=None):
        """``(a - zp_a) @ (weight - zp_w) + bias`` requantized; ``a`` is ``(..., K)``,
        ``weight`` ``K x N``. ``requant`` defaults to raw int32."""
        requant = requant or Requant(out_dtype="int32")
        name = self._name("gemm", name)
        w = np.asarray(weight, dtype=np.int64)
        shape = self.tensors[a].shape[:-1] + (w.shape[1],)
        out = self._tensor(name, shape, requant.out_dtype, out_scale, requant.zero_point)
        self.ops.append(Op("gemm", name, [a], [out], dict(
            weight=w, bias=None if bias is None else np.asarray(bias, np.int64),
            requant=requant, weight_zero_point=int(weight_zero_point))))
        return out

    linear = gemm

    def conv2d(self, x, weight, bias=None, requant=None, *, stride=1, padding=0,
               weight_zero_point=0, out_scale=None, name=None):
        """NHWC convolution; ``weight`` is (KH, KW, C, F); ``padding`` an int, (py, px) or
        (top, left, bottom, right)."""
        requant = requant or Requant(out_dtype="int32")
        name = self._name("conv", name)
        w = np.asarray(weight, dtype=np.int64)
        n, h, wd, _ = self.tensors[x].shape
        (sy, sx), (pt, pl, pb, pr) = _pair(stride), _pads(padding)
        shape = (n, (h + pt + pb - w.shape[0]) // sy + 1, (wd + pl + pr - w.shape[1]) // sx + 1,
                 w.shape[3])
        out = self._tensor(name, shape, requant.out_dtype, out_scale, requant.zero_point)
        self.ops.append(Op("conv2d", name, [x], [out], dict(
            weight=w, bias=None if bias is None else np.asarray(bias, np.int64),
            requant=requant, stride=(sy, sx), padding=(pt, pl, pb, pr),
            weight_zero_point=int(weight_zero_point))))
        return out

    def add(self, a, b, *, out_scale=None, zero_point=0, out_dtype="int8", activation="none",
            clamp=None, params=None, name=None):
        """Quantized elementwise add of two same-shape tensors.

        The integer parameters (:class:`AddParams`) come from the scales of ``a``, ``b``
        and ``out_scale`` for the configuration's ``requant_bits``, or are given as
        ``params`` (then no scale is needed).
        """
        name = self._name("add", name)
        ta, tb = self.tensors[a], self.tensors[b]
        if ta.shape != tb.shape:
            raise ValueError(f"add shapes must match, not {ta.shape} and {tb.shape}")
        if params is None and (ta.scale is None or tb.scale is None or out_scale is None):
            raise ValueError("add needs the scales of both inputs and the output, or params")
        requant = Requant(1, 0, zero_point, out_dtype, activation, clamp)
        out = self._tensor(name, ta.shape, out_dtype, out_scale, zero_point)
        self.ops.append(Op("add", name, [a, b], [out], dict(requant=requant, params=params)))
        return out

    def clamp(self, x, lo, hi, name=None):
        """``clamp(x, lo, hi)`` on logical values (a standalone ReLU is ``lo = zp``)."""
        name = self._name("clamp", name)
        t = self.tensors[x]
        out = self._tensor(name, t.shape, t.dtype, t.scale, t.zero_point)
        self.ops.append(Op("clamp", name, [x], [out], dict(lo=int(lo), hi=int(hi))))
        return out

    def max_pool(self, x, kernel, stride=None, padding=0, name=None):
        name = self._name("maxpool", name)
        t = self.tensors[x]
        (kh, kw) = _pair(kernel)
        (sy, sx) = _pair(stride if stride is not None else kernel)
        pt, pl, pb, pr = _pads(padding)
        n, h, wd, c = t.shape
        shape = (n, (h + pt + pb - kh) // sy + 1, (wd + pl + pr - kw) // sx + 1, c)
        out = self._tensor(name, shape, t.dtype, t.scale, t.zero_point)
        self.ops.append(Op("max_pool", name, [x], [out], dict(
            kernel=(kh, kw), stride=(sy, sx), padding=(pt, pl, pb, pr))))
        return out

    def reshape(self, x, shape, name=None):
        """Same bytes, new shape (row-major): no instructions."""
        name = self._name("reshape", name)
        t = self.tensors[x]
        shape = tuple(int(s) for s in shape)
        if int(np.prod(shape)) != t.size:
            raise ValueError(f"cannot reshape {t.shape} to {shape}")
        out = self._tensor(name, shape, t.dtype, t.scale, t.zero_point)
        self.ops.append(Op("reshape", name, [x], [out]))
        return out

    def flatten(self, x, name=None):
        """``(N, ...) -> (N, rest)`` in NHWC order (see :func:`nchw_flatten_permutation`)."""
        shape = self.tensors[x].shape
        return self.reshape(x, (shape[0], int(np.prod(shape[1:]))), name)

    def host(self, kind, inputs, outputs, *, name=None, **params):
        """A host kernel (see :func:`register_host_kernel`); ``outputs`` is a list of
        ``(shape, dtype, scale, zero_point)``. Returns the output names."""
        if kind not in HOST_KERNELS:
            raise ValueError(f"no host kernel {kind!r}")
        name = self._name(kind, name)
        outs = [self._tensor(f"{name}" if len(outputs) == 1 else f"{name}.{i}", *spec)
                for i, spec in enumerate(outputs)]
        self.ops.append(Op("host", name, list(inputs), outs, dict(kind=kind, params=params)))
        return outs

    # -- reference --------------------------------------------------------------------------

    def reference(self, inputs, config):
        """Every tensor's logical values computed in NumPy (the bit-exact reference)."""
        vals = {n: np.asarray(v, np.int64) for n, v in inputs.items()}
        for op in self.ops:
            ins = [vals[n] for n in op.inputs]
            vals.update(zip(op.outputs, _evaluate(self, op, ins, config), strict=True))
        return vals


def _add_params(graph, op, config):
    if op.attrs.get("params") is not None:
        return op.attrs["params"]
    ta, tb = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    ty = graph.tensors[op.outputs[0]]
    if ty.scale is None:
        raise ValueError(f"{op.name}: add needs the output scale")
    return AddParams.from_scales(ta.scale, tb.scale, ty.scale, config.requant_bits)


def _evaluate(graph, op, ins, config):
    a = op.attrs
    t = graph.tensors
    if op.kind == "gemm":
        x = ins[0]
        k = x.shape[-1]
        y = gemm_ref(x.reshape(-1, k), a["weight"], a["bias"], a["requant"],
                     t[op.inputs[0]].zero_point, a["weight_zero_point"])
        return [y.reshape(t[op.outputs[0]].shape)]
    if op.kind == "conv2d":
        return [conv2d_ref(ins[0], a["weight"], a["bias"], a["requant"], a["stride"],
                           a["padding"], t[op.inputs[0]].zero_point, a["weight_zero_point"])]
    if op.kind == "add":
        p = _add_params(graph, op, config)
        return [add_ref(ins[0], ins[1], p, t[op.inputs[0]].zero_point,
                        t[op.inputs[1]].zero_point, a["requant"])]
    if op.kind == "max_pool":
        return [max_pool_ref(ins[0], a["kernel"], a["stride"], a["padding"])]
    if op.kind == "clamp":
        return [np.clip(ins[0], a["lo"], a["hi"])]
    if op.kind == "reshape":
        return [ins[0].reshape(t[op.outputs[0]].shape)]
    return list(HOST_KERNELS[a["kind"]](a["params"], *ins))


# -- host kernels for the fallbacks -------------------------------------------------------------

def _host_add(params, a, b):
    p = AddParams(**params["add"])
    rq = Requant(**params["requant"])
    return (add_ref(a, b, p, params["zp_a"], params["zp_b"], rq),)


def _host_max_pool(params, x):
    return (max_pool_ref(x, params["kernel"], params["stride"], params["padding"]),)


register_host_kernel("add", _host_add)
register_host_kernel("max_pool", _host_max_pool)


# -- compilation -----------------------------------------------------------------------------

def _fallback_step(graph, op, config):
    """The :class:`HostStep` replacing a device op the configuration cannot run."""
    t = graph.tensors
    if op.kind == "add":
        p = _add_params(graph, op, config)
        rq = op.attrs["requant"]
        params = {"add": vars(p).copy(), "zp_a": t[op.inputs[0]].zero_point,
                  "zp_b": t[op.inputs[1]].zero_point,
                  "requant": {"multiplier": 1, "shift": 0, "zero_point": rq.zero_point,
                              "out_dtype": rq.out_dtype, "activation": rq.activation,
                              "clamp": rq.clamp}}
        return HostStep("add", list(op.inputs), list(op.outputs), params)
    a = op.attrs
    return HostStep("max_pool", list(op.inputs), list(op.outputs),
                    {"kernel": list(a["kernel"]), "stride": list(a["stride"]),
                     "padding": list(a["padding"])})


def _blocked(graph, config):
    """Tensors stored blocked (see :class:`TensorDesc`): read only by GEMMs, and written
    by the host (graph inputs) or by a GEMM whose n-blocks are k-blocks (rows == cols)."""
    readers, producer = {}, {}
    for op in graph.ops:
        for n in op.inputs:
            readers.setdefault(n, []).append(op.kind)
        for n in op.outputs:
            producer[n] = op.kind
    out = set()
    for name, spec in graph.tensors.items():
        kinds = readers.get(name, [])
        if spec.dtype == "int32" or not kinds or any(k != "gemm" for k in kinds):
            continue
        if name in graph.inputs or (producer.get(name) == "gemm" and config.rows == config.cols):
            out.add(name)
    return out


def compile_graph(graph, config, *, blocked=True):
    """Lower ``graph`` for ``config``: one :class:`CompiledProgram`.

    Operations the configuration cannot run (add and max-pool without a vector unit,
    ``host`` operations) become host steps between device programs, with one
    :class:`UserWarning` per kind. ``blocked`` lets GEMM inputs use the blocked layout.
    """
    if not graph.outputs:
        raise ValueError("the graph has no outputs; call Graph.output(...)")
    layout = MemoryLayout()
    descs = {}
    dev = device_dtype(config)
    aliases = {op.outputs[0]: op.inputs[0] for op in graph.ops if op.kind == "reshape"}
    blocked = _blocked(graph, config) - set(aliases) - set(aliases.values()) if blocked \
        else set()
    for name, spec in graph.tensors.items():
        if name in aliases:
            continue
        kind = "input" if name in graph.inputs else "output" if name in graph.outputs \
            else "scratch"
        ddt = "int32" if spec.dtype == "int32" else dev
        desc = TensorDesc(name, spec.shape, spec.dtype, ddt, 0, spec.scale, spec.zero_point,
                          config.rows if name in blocked else 0)
        desc.addr = layout.alloc(f"tensor.{name}", desc.nbytes, kind=kind).addr
        descs[name] = desc
    for out, src in aliases.items():
        while src in aliases:
            src = aliases[src]
        s, d = graph.tensors[out], descs[src]
        descs[out] = TensorDesc(out, s.shape, s.dtype, d.device_dtype, d.addr, s.scale,
                                s.zero_point)
    steps, segments, warned = [], [], set()
    low = None
    for op in graph.ops:
        if op.kind == "reshape":
            continue
        device = op.kind in ("gemm", "conv2d", "clamp") or (
            op.kind in ("add", "max_pool") and config.vector_unit)
        if not device:
            step = HostStep(op.attrs["kind"], list(op.inputs), list(op.outputs),
                            dict(op.attrs["params"])) if op.kind == "host" \
                else _fallback_step(graph, op, config)
            if step.op not in warned:
                warned.add(step.op)
                warnings.warn(f"{op.kind} {op.name!r} runs on the host ({step.op})", stacklevel=2)
            if low is not None:
                segments.append((len(steps), low))
                steps.append(None)
                low = None
            steps.append(step)
            continue
        if low is None:
            low = Lowering(config, layout)
        _lower(graph, op, low, descs, config)
    if low is not None:
        segments.append((len(steps), low))
        steps.append(None)
    stats = {"instructions": 0, "relay_syncs": 0, "device_ops": 0, "host_ops": 0}
    for index, lw in segments:
        words = lw.builder.words()
        buf = layout.alloc(f"program.{index}", len(words) * 16, kind="program",
                           data=to_bytes(words))
        steps[index] = DeviceStep(buf.addr, len(words))
        st = lw.builder.stats()
        stats["instructions"] += st["instructions"]
        stats["relay_syncs"] += st["relay_syncs"]
    stats["host_ops"] = sum(isinstance(s, HostStep) for s in steps)
    stats["device_ops"] = sum(op.kind != "reshape" for op in graph.ops) - stats["host_ops"]
    return CompiledProgram(config, bytes(layout.image()), steps, descs, list(graph.inputs),
                           list(graph.outputs), stats)


def _lower(graph, op, low, descs, config):
    a = op.attrs
    ins = [descs[n] for n in op.inputs]
    out = descs[op.outputs[0]]
    if op.kind == "gemm":
        lower_gemm(low, ins[0], out, a["weight"], a["bias"], a["requant"],
                   weight_zero_point=a["weight_zero_point"], name=op.name)
    elif op.kind == "conv2d":
        lower_conv2d(low, ins[0], out, a["weight"], a["bias"], a["requant"], stride=a["stride"],
                     padding=a["padding"], weight_zero_point=a["weight_zero_point"],
                     name=op.name)
    elif op.kind == "add":
        lower_add(low, ins[0], ins[1], out, _add_params(graph, op, config), a["requant"],
                  name=op.name)
    elif op.kind == "clamp":
        lower_clamp(low, ins[0], out, a["lo"], a["hi"], name=op.name)
    elif op.kind == "max_pool":
        lower_max_pool(low, ins[0], out, kernel=a["kernel"], stride=a["stride"],
                       padding=a["padding"], name=op.name)


def compile_gemm(config, m, k, n, weight, bias=None, requant=None, *, a_dtype="int8",
                 a_zero_point=0, weight_zero_point=0):
    """One GEMM as a program: input ``"a"`` (M x K), output ``"y"`` (M x N)."""
    g = Graph("gemm")
    a = g.input("a", (m, k), a_dtype, zero_point=a_zero_point)
    g.output(g.gemm(a, weight, bias, requant, weight_zero_point=weight_zero_point, name="y"))
    return compile_graph(g, config)


def nchw_flatten_permutation(c, h, w):
    """Index ``p`` with ``x_nhwc.reshape(-1)[i] == x_nchw.reshape(-1)[p[i]]``.

    A GEMM whose weight rows follow ONNX's NCHW flatten order (``w_nchw``, K x N) gives the
    same result on this compiler's NHWC flatten with ``w_nchw[p]``.
    """
    idx = np.arange(c * h * w).reshape(c, h, w)       # NCHW flat index of (c, y, x)
    return idx.transpose(1, 2, 0).reshape(-1)          # in NHWC order
