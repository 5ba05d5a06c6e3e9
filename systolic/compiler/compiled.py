"""A compiled program: memory image, steps (device programs and host kernels), tensors."""

import json
from dataclasses import dataclass, field

import numpy as np

from ..config import AcceleratorConfig
from ..isa import from_bytes
from ..model import GoldenModel
from .ops import TensorDesc
from .quant import DTYPES, from_device, to_device

__all__ = ["DeviceStep", "HostStep", "CompiledProgram", "HOST_KERNELS", "register_host_kernel"]

# kind -> fn(params: dict, *logical_inputs) -> tuple of logical outputs
HOST_KERNELS = {}


def register_host_kernel(kind, fn):
    """Make ``fn(params, *inputs) -> tuple of outputs`` runnable as host step ``kind``.

    Inputs and outputs are logical integer arrays (NumPy); ``params`` is a JSON-able dict.
    """
    HOST_KERNELS[kind] = fn


@dataclass
class DeviceStep:
    """Run ``prog_len`` instructions at ``prog_addr`` on the accelerator."""
    prog_addr: int
    prog_len: int
    kind: str = "device"


@dataclass
class HostStep:
    """Run host kernel ``op`` on tensors ``inputs`` and write ``outputs`` (names)."""
    op: str
    inputs: list
    outputs: list
    params: dict = field(default_factory=dict)
    kind: str = "host"


@dataclass
class CompiledProgram:
    """Everything a runtime needs to run a compiled graph.

    Attributes
    ----------
    config : AcceleratorConfig
        The configuration the program was compiled for.
    image : bytes
        Initial system-memory image: constants and programs in place, inputs zero.
    steps : list of DeviceStep or HostStep
        Run in order; usually one :class:`DeviceStep`.
    tensors : dict of str to TensorDesc
        Every tensor of the graph (inputs, outputs and intermediates).
    inputs, outputs : list of str
        Names of the graph's inputs and outputs.
    """
    config: AcceleratorConfig
    image: bytes
    steps: list
    tensors: dict
    inputs: list
    outputs: list
    stats: dict = field(default_factory=dict)

    # -- the single-program view ------------------------------------------------------------

    @property
    def device_steps(self):
        return [s for s in self.steps if isinstance(s, DeviceStep)]

    def _only(self):
        steps = self.device_steps
        if len(steps) != 1 or len(self.steps) != 1:
            raise ValueError(f"this program has {len(self.steps)} steps ({len(steps)} on the "
                             f"device); run it step by step")
        return steps[0]

    @property
    def prog_addr(self):
        """Address of the program (single-step programs)."""
        return self._only().prog_addr

    @property
    def prog_len(self):
        return self._only().prog_len

    @property
    def words(self):
        """Instruction words of the program (single-step programs)."""
        return self.step_words(self._only())

    def step_words(self, step):
        lo = step.prog_addr
        return from_bytes(bytes(self.image[lo:lo + 16 * step.prog_len]))

    # -- tensors in memory ----------------------------------------------------------------

    def memory(self, inputs=None):
        """A fresh memory image with ``inputs`` (name -> logical array) written in."""
        mem = bytearray(self.image)
        for name, value in (inputs or {}).items():
            self.write_input(mem, name, value)
        return mem

    def write_tensor(self, memory, name, value):
        """Store logical values of tensor ``name`` in its device representation."""
        d = self.tensors[name]
        arr = np.asarray(value)
        if arr.shape != d.shape:
            raise ValueError(f"tensor {name} must have shape {d.shape}, not {arr.shape}")
        lo, hi = DTYPES[d.dtype].range
        if arr.size and (arr.min() < lo or arr.max() > hi):
            raise ValueError(f"tensor {name} values must be in {lo}..{hi} ({d.dtype})")
        dev = to_device(arr, d.dtype, d.device_dtype).astype(DTYPES[d.device_dtype].dtype)
        raw = d.to_layout(dev.astype(dev.dtype.newbyteorder("<"))).tobytes()
        memory[d.addr:d.addr + len(raw)] = raw

    def write_input(self, memory, name, value):
        if name not in self.inputs:
            raise ValueError(f"{name!r} is not an input; inputs: {', '.join(self.inputs)}")
        self.write_tensor(memory, name, value)

    def read_tensor(self, memory, name):
        """Logical values of tensor ``name`` (int64 array of its shape)."""
        d = self.tensors[name]
        dt = np.dtype(DTYPES[d.device_dtype].dtype).newbyteorder("<")
        raw = np.frombuffer(bytes(memory[d.addr:d.addr + d.nbytes]), dtype=dt)
        return from_device(d.from_layout(raw.astype(np.int64)), d.dtype, d.device_dtype)

    def read_output(self, memory, name):
        if name not in self.outputs:
            raise ValueError(f"{name!r} is not an output; outputs: {', '.join(self.outputs)}")
        return self.read_tensor(memory, name)

    # -- running --------------------------------------------------------------------------

    def run_host_step(self, step, memory):
        """Run one :class:`HostStep` on ``memory`` in place."""
        try:
            kernel = HOST_KERNELS[step.op]
        except KeyError:
            raise ValueError(f"no host kernel {step.op!r}") from None
        args = [self.read_tensor(memory, n) for n in step.inputs]
        results = kernel(step.params, *args)
        for name, value in zip(step.outputs, results, strict=True):
            self.write_tensor(memory, name, value)

    def run(self, inputs, run_device=None):
        """Run every step; returns ``(outputs, results)``.

        ``run_device(memory, prog_addr, prog_len)`` runs one device program and returns an
        object with ``memory`` and ``error`` (a :class:`~systolic.model.RunResult`); by
        default a :class:`~systolic.model.GoldenModel` of :attr:`config` (race checks on).
        A device error raises :class:`RuntimeError`.
        """
        if run_device is None:
            model = GoldenModel(self.config)

            def run_device(mem, addr, length):
                return model.run(mem, addr, length)

        mem = self.memory(inputs)
        results = []
        for step in self.steps:
            if isinstance(step, HostStep):
                self.run_host_step(step, mem)
                continue
            res = run_device(mem, step.prog_addr, step.prog_len)
            results.append(res)
            if not res.ok:
                raise RuntimeError(f"device program at 0x{step.prog_addr:x} stopped with "
                                   f"{res.error.name} at instruction {res.error_index}")
            mem = bytearray(bytes(res.memory))
        return {n: self.read_output(mem, n) for n in self.outputs}, results

    # -- serialization --------------------------------------------------------------------

    def to_dict(self):
        """A JSON-able description (without the image)."""
        return {
            "config": self.config.to_dict(),
            "steps": [dict(vars(s)) for s in self.steps],
            "tensors": {n: d.to_dict() for n, d in self.tensors.items()},
            "inputs": list(self.inputs), "outputs": list(self.outputs),
            "stats": self.stats,
        }

    @classmethod
    def from_dict(cls, d, image):
        cfg = dict(d["config"])
        config = AcceleratorConfig(**cfg)
        steps = []
        for s in d["steps"]:
            s = dict(s)
            kind = s.pop("kind")
            steps.append(DeviceStep(**s) if kind == "device" else HostStep(**s))
        tensors = {n: TensorDesc.from_dict(t) for n, t in d["tensors"].items()}
        return cls(config, bytes(image), steps, tensors, list(d["inputs"]),
                   list(d["outputs"]), d.get("stats", {}))

    def to_json(self):
        return json.dumps(self.to_dict(), default=_jsonable)


def _jsonable(x):
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON serializable")
