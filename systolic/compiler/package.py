"""The compiled model: one ``.sysm`` file that ``systolic run`` loads and runs.

A ``.sysm`` file is a ZIP archive (stored, not compressed) holding ``manifest.json`` and
binary members. The manifest gives the format name and version, the configuration the
model was compiled for, the batch size, the input and output descriptors (shape, dtype,
quantization, and how the host converts them), the tensors between stages, and the
stages in order: a device stage is a compiled program (its steps, tensor descriptors
with addresses, and a member holding its memory image: program words, weights, bias and
parameter rows), a host stage is one op (a one-node ONNX model member, or the integer
parameters of a quantized op). Every member's SHA-256 is in the manifest.
"""

import base64
import hashlib
import io
import json
import zipfile
from dataclasses import fields, is_dataclass
from pathlib import Path

import numpy as np

from ..config import AcceleratorConfig
from . import qgraph as qg
from .compiled import CompiledProgram, HostStep
from .onnx_compile import DeviceStage, HostStage

__all__ = ["FORMAT", "VERSION", "PackageError", "CompiledModel", "save", "load"]

FORMAT = "systolic-model"
VERSION = 1
MANIFEST = "manifest.json"

_OPS = {c.kind: c for c in (qg.Linear, qg.Conv, qg.MaxPool, qg.Reshape, qg.Add, qg.Clamp)}


class PackageError(ValueError):
    """A ``.sysm`` file that cannot be read (the message says why)."""


class CompiledModel:
    """A compiled ONNX model: edge descriptors, boundary tensors and stages.

    Parameters
    ----------
    config : AcceleratorConfig
    graph : QGraph
        The front end's graph (its edges and tensor descriptors are used; its ops are in
        the stages).
    stages : list of DeviceStage or HostStage
    """

    def __init__(self, config, graph, stages):
        self.config = config
        self.graph = graph
        self.stages = stages

    @property
    def batch(self):
        return self.graph.batch

    @property
    def inputs(self):
        return self.graph.inputs

    @property
    def outputs(self):
        return self.graph.outputs

    def summary(self):
        """Counts of ops on the accelerator and on the host, and program sizes."""
        dev = [s for s in self.stages if s.kind == "device"]
        return {
            "device_stages": len(dev),
            "host_stages": len(self.stages) - len(dev),
            "device_ops": sum(s.program.stats.get("device_ops", 0) for s in dev),
            "host_ops": len(self.stages) - len(dev)
            + sum(s.program.stats.get("host_ops", 0) for s in dev),
            "host_op_names": [s.op.name for s in self.stages if s.kind == "host"],
            "instructions": sum(s.program.stats.get("instructions", 0) for s in dev),
            "image_bytes": sum(len(s.program.image) for s in dev),
        }

    # -- running ------------------------------------------------------------------------

    def run(self, feeds, device=None, *, progress=None):
        """Run on arrays whose first dimension is any number of samples.

        The samples are cut into chunks of :attr:`batch` (the last padded with zeros, its
        padding dropped from the results); every chunk runs the same programs, so a sample
        gives the same bits whatever chunk it lands in. ``device`` is a
        :class:`~systolic.runtime.device.Device` (default: the golden model).

        Returns
        -------
        outputs : dict
            Output name -> array (float32 where the model dequantizes).
        info : dict
            ``instructions`` and ``macs`` summed over all device runs, ``runs``.
        """
        from ..runtime.device import GoldenDevice
        own = device is None
        device = device or GoldenDevice(self.config)
        try:
            return self._run(feeds, device, progress)
        finally:
            if own:
                device.close()

    def _run(self, feeds, device, progress):
        n = None
        for edge in self.inputs:
            if edge.name not in feeds:
                raise ValueError(f"missing input {edge.name!r}; the model takes "
                                 f"{', '.join(e.name for e in self.inputs)}")
            arr = np.asarray(feeds[edge.name])
            want = tuple(edge.shape[1:])
            if arr.ndim != len(edge.shape) or tuple(arr.shape[1:]) != want:
                raise ValueError(f"input {edge.name!r} must have shape (N, "
                                 f"{', '.join(map(str, want))}), not {arr.shape}")
            if n is not None and arr.shape[0] != n:
                raise ValueError("inputs must have the same number of samples")
            n = arr.shape[0]
        b = self.batch
        chunks = []
        for start in range(0, n, b):
            vals = {}
            for edge in self.inputs:
                arr = np.asarray(feeds[edge.name])[start:start + b]
                if not edge.quantize:
                    arr = arr.astype(qg.DTYPES[edge.dtype], copy=False) \
                        if np.can_cast(arr.dtype, qg.DTYPES[edge.dtype], "same_kind") else arr
                if len(arr) < b:
                    pad = np.zeros((b - len(arr), *arr.shape[1:]), arr.dtype)
                    arr = np.concatenate([arr, pad])
                vals[edge.tensor] = qg.to_input(self.graph, edge, arr)
            chunks.append(vals)
        info = {"instructions": 0, "macs": 0, "runs": 0}
        for stage in self.stages:
            if stage.kind == "host":
                for vals in chunks:
                    vals.update(qg.run_op(stage.op, vals, self.graph.tensors))
            else:
                self._run_device(stage, chunks, device, info, progress)
        outs = {}
        for edge in self.outputs:
            arr = np.concatenate([vals[edge.tensor] for vals in chunks])[:n]
            outs[edge.name] = qg.from_output(self.graph, edge, arr)
        return outs, info

    def _run_device(self, stage, chunks, device, info, progress):
        from ..runtime.device import Job
        prog = stage.program
        mems = []
        for vals in chunks:
            mems.append(prog.memory({name: _to_stored(vals[name], stage.layouts.get(name))
                                     for name in stage.inputs}))
        for step in prog.steps:
            if isinstance(step, HostStep):
                for mem in mems:
                    prog.run_host_step(step, mem)
                continue
            jobs = [Job(bytes(m), step.prog_addr, step.prog_len) for m in mems]
            results = device.run_batch(jobs, progress=progress)
            for r in results:
                if not r.ok:
                    raise RuntimeError(f"device program at 0x{step.prog_addr:x} stopped with "
                                       f"{r.error.name} at instruction {r.error_index}")
                info["instructions"] += int(r.perf.get("instret", 0))
                info["macs"] += int(r.perf.get("macs", 0))
                info["runs"] += 1
            mems = [bytearray(r.memory) for r in results]
        for vals, mem in zip(chunks, mems, strict=True):
            for name in stage.outputs:
                dtype = qg.DTYPES[self.graph.tensors[name].dtype]
                vals[name] = _from_stored(prog.read_output(mem, name),
                                          stage.layouts.get(name)).astype(dtype)

    # -- files --------------------------------------------------------------------------

    def save(self, path):
        save(self, path)

    @classmethod
    def load(cls, path):
        return load(path)


def _to_stored(value, layout):
    if layout == "nhwc":
        return np.asarray(value).transpose(0, 2, 3, 1)
    if isinstance(layout, list):
        return np.asarray(value)[..., np.asarray(layout)]
    return value


def _from_stored(value, layout):
    if layout == "nhwc":
        return np.asarray(value).transpose(0, 3, 1, 2)
    if isinstance(layout, list):
        out = np.empty_like(value)
        out[..., np.asarray(layout)] = value
        return out
    return value


# -- serialization ------------------------------------------------------------------------

def _enc(v):
    if isinstance(v, np.ndarray):
        return {"dtype": v.dtype.name, "shape": list(v.shape),
                "data": base64.b64encode(np.ascontiguousarray(v).tobytes()).decode()}
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def _dec(v):
    if isinstance(v, dict) and set(v) == {"dtype", "shape", "data"}:
        return np.frombuffer(base64.b64decode(v["data"]), np.dtype(v["dtype"])).reshape(
            v["shape"]).copy()
    return v


def _dataclass_dict(obj):
    return {f.name: _enc(getattr(obj, f.name)) for f in fields(obj)}


def save(model, path):
    """Write ``model`` to ``path`` as a ``.sysm`` file."""
    members = {}
    stages = []
    for i, st in enumerate(model.stages):
        if st.kind == "device":
            name = f"stage{i}.image"
            members[name] = bytes(st.program.image)
            stages.append({"kind": "device", "program": json.loads(st.program.to_json()),
                           "image": name, "inputs": st.inputs, "outputs": st.outputs,
                           "layouts": st.layouts})
        elif st.op.kind == "host":
            name = f"stage{i}.onnx"
            members[name] = st.op.model
            stages.append({"kind": "host", "op": "onnx", "name": st.op.name,
                           "op_type": st.op.op_type, "inputs": list(st.op.inputs),
                           "outputs": list(st.op.outputs),
                           "model_inputs": list(st.op.model_inputs), "model": name})
        else:
            stages.append({"kind": "host", "op": st.op.kind, "params": _dataclass_dict(st.op)})
    g = model.graph
    manifest = {
        "format": FORMAT, "version": VERSION, "name": g.name, "batch": g.batch,
        "config": model.config.to_dict(),
        "inputs": [_dataclass_dict(e) for e in g.inputs],
        "outputs": [_dataclass_dict(e) for e in g.outputs],
        "tensors": {n: _dataclass_dict(t) for n, t in g.tensors.items()},
        "stages": stages,
        "members": {n: hashlib.sha256(d).hexdigest() for n, d in members.items()},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(MANIFEST, json.dumps(manifest, indent=1, default=_enc))
        for n, d in members.items():
            z.writestr(n, d)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def load(path):
    """Read a ``.sysm`` file.

    Raises
    ------
    PackageError
        For a file that is not a compiled model, of an unknown version, or damaged.
    OSError
        If the file cannot be read.
    """
    data = Path(path).read_bytes()

    def fail(why):
        raise PackageError(f"{path}: {why}")

    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        names = set(z.namelist())
    except zipfile.BadZipFile:
        fail("not a compiled model (.sysm): not a ZIP archive")
    if MANIFEST not in names:
        fail(f"not a compiled model (.sysm): no {MANIFEST}")

    def member(name):
        if name not in names:
            fail(f"member {name!r} is missing")
        try:
            blob = z.read(name)
        except (zipfile.BadZipFile, OSError) as exc:
            fail(f"member {name!r} is damaged ({exc})")
        return blob

    try:
        manifest = json.loads(member(MANIFEST))
    except ValueError as exc:
        fail(f"{MANIFEST} is not valid JSON ({exc})")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        fail(f"not a compiled model (.sysm): format is not {FORMAT!r}")
    version = manifest.get("version")
    if version != VERSION:
        fail(f"format version {version!r} is not supported (this systolic reads version "
             f"{VERSION})")
    try:
        blobs = {}
        for name, digest in manifest["members"].items():
            blob = member(name)
            if hashlib.sha256(blob).hexdigest() != digest:
                fail(f"member {name!r} is corrupted (SHA-256 mismatch)")
            blobs[name] = blob
        return _from_manifest(manifest, blobs)
    except PackageError:
        raise
    except KeyError as exc:
        fail(f"manifest field {exc} is missing")
    except (TypeError, ValueError, AttributeError) as exc:
        fail(f"manifest is malformed ({type(exc).__name__}: {exc})")


def _build(cls, d):
    return cls(**{k: _dec(v) for k, v in d.items()})


def _from_manifest(m, blobs):
    config = AcceleratorConfig(**m["config"])
    tensors = {}
    for n, t in m["tensors"].items():
        t = dict(t)
        t["shape"] = tuple(t["shape"])
        tensors[n] = qg.TensorInfo(**t)
    inputs = [_build(qg.InputEdge, dict(e, shape=tuple(e["shape"]))) for e in m["inputs"]]
    outputs = [_build(qg.OutputEdge, dict(e, shape=tuple(e["shape"]))) for e in m["outputs"]]
    graph = qg.QGraph(m["name"], int(m["batch"]), inputs, outputs, tensors)
    stages = []
    for s in m["stages"]:
        if s["kind"] == "device":
            prog = CompiledProgram.from_dict(s["program"], blobs[s["image"]])
            stages.append(DeviceStage(prog, list(s["inputs"]), list(s["outputs"]),
                                      dict(s["layouts"])))
        elif s["kind"] == "host" and s["op"] == "onnx":
            stages.append(HostStage(qg.HostOp(s["name"], s["op_type"], tuple(s["inputs"]),
                                              tuple(s["outputs"]), blobs[s["model"]],
                                              tuple(s["model_inputs"]))))
        elif s["kind"] == "host" and s["op"] in _OPS:
            cls = _OPS[s["op"]]
            params = {k: (tuple(v) if isinstance(v, list) else _dec(v))
                      for k, v in s["params"].items()}
            stages.append(HostStage(cls(**params)))
        else:
            raise ValueError(f"unknown stage {s.get('kind')!r}/{s.get('op')!r}")
    for st in stages:
        if st.kind == "device" and not is_dataclass(st):
            raise ValueError("bad device stage")
    return CompiledModel(config, graph, stages)
