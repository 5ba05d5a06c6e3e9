"""One device interface with interchangeable backends: golden model, RTL, board."""

import abc
from dataclasses import dataclass, field

import numpy as np

from ..isa import ErrorCode

__all__ = ["Job", "DeviceResult", "Device", "GoldenDevice", "DeviceError", "open_device"]


class DeviceError(RuntimeError):
    """A device could not run a program (not a program error: those are in the result)."""


@dataclass(frozen=True)
class Job:
    """One program run: a system-memory image holding program and data."""
    memory: bytes
    prog_addr: int
    prog_len: int


@dataclass
class DeviceResult:
    """What a run gives back: the memory image after the run, the error state and the
    performance counters (empty where a backend has none)."""
    memory: bytes
    error: ErrorCode = ErrorCode.NONE
    error_index: int = 0
    acc_overflow: bool = False
    perf: dict = field(default_factory=dict)

    @property
    def ok(self):
        return self.error is ErrorCode.NONE

    def read(self, addr, nbytes):
        return self.memory[addr:addr + nbytes]


class Device(abc.ABC):
    """A backend that runs programs of one :class:`AcceleratorConfig`.

    ``run`` takes a memory image (program included) and returns a :class:`DeviceResult`;
    ``run_batch`` runs several jobs, which backends with a costly start (a simulator
    process, a serial link) do in one session.
    """

    name = "device"

    def __init__(self, config):
        self.config = config

    def run(self, memory, prog_addr, prog_len):
        return self.run_batch([Job(bytes(memory), prog_addr, prog_len)])[0]

    @abc.abstractmethod
    def run_batch(self, jobs, progress=None):
        """Run ``jobs`` in order; ``progress`` (if given) is called once per finished job."""

    def close(self):
        """Release the backend's resources (simulator process, serial port)."""
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class GoldenDevice(Device):
    """The golden model as a device. State persists across runs of one device, as in
    hardware."""

    name = "golden"

    def __init__(self, config, *, check_races=False):
        super().__init__(config)
        from ..model import GoldenModel
        self.model = GoldenModel(config, check_races=check_races)

    def run_batch(self, jobs, progress=None):
        results = []
        for job in jobs:
            r = self.model.run(job.memory, job.prog_addr, job.prog_len)
            results.append(DeviceResult(
                memory=np.asarray(r.memory, dtype=np.uint8).tobytes(), error=r.error,
                error_index=r.error_index, acc_overflow=r.acc_overflow,
                perf={"instret": r.retired, "macs": r.macs}))
            if progress:
                progress()
        return results


def open_device(spec, config, **kwargs):
    """A device from a spec string: ``golden``, ``verilator`` or ``serial:PORT``."""
    if spec == "golden":
        return GoldenDevice(config, **kwargs)
    if spec == "verilator":
        from .verilator import VerilatorDevice
        return VerilatorDevice(config, **kwargs)
    if spec.startswith("serial:"):
        from .serial import SerialDevice
        return SerialDevice(config, spec.partition(":")[2], **kwargs)
    raise ValueError(f"unknown device {spec!r}; use golden, verilator or serial:PORT")
