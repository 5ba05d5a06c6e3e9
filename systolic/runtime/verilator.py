"""The RTL as a device: the Verilated accelerator, one simulator process per batch."""

import hashlib
import pickle
import tempfile
import threading
import time
from pathlib import Path

from ..csr import STATUS_ACC_OVERFLOW, perf_name
from ..isa import ErrorCode
from .device import Device, DeviceError, DeviceResult

__all__ = ["VerilatorDevice"]



class VerilatorDevice(Device):
    """Runs programs on ``Accelerator(config)`` built with Verilator (cached under
    ``build/sim/``). A batch of jobs runs in one simulator process.

    Parameters
    ----------
    config : AcceleratorConfig
    waves : bool
        Build with tracing and dump a VCD waveform of each batch.
    build_root : path, optional
        Where build folders live (default ``build/sim`` in the repository).
    """

    name = "verilator"

    def __init__(self, config, *, waves=False, build_root=None):
        super().__init__(config)
        if config.dataflow != "ws":
            raise ValueError("VerilatorDevice needs a weight-stationary config (dataflow='ws')")
        self.waves = waves
        self.build_root = Path(build_root) if build_root else None
        self.last_stats = {}
        self._work = None
        self._source = None   # the emitted Verilog, once per device: elaboration is slow

    def build_dir(self):
        from systolic.sim.verilator import BUILD

        root = self.build_root or BUILD / "sim"
        from systolic.config import PRESETS

        if PRESETS.get(self.config.name) == self.config:
            name = f"accel-{self.config.name}"
        else:
            digest = hashlib.sha1(repr(sorted(self.config.to_dict().items())).encode())
            name = f"accel-{digest.hexdigest()[:10]}"
        return root / (name + ("-waves" if self.waves else ""))

    @property
    def waveform(self):
        """Path of the VCD waveform of the last batch (with ``waves=True``)."""
        return self._work / "dump.vcd" if self._work else None

    def run_batch(self, jobs, progress=None):
        from systolic.sim.build import TOPLEVEL
        from systolic.sim.verilator import emit_verilog, run_cocotb

        from ..rtl.top import Accelerator

        if not jobs:
            return []
        bdir = self.build_dir()
        if self._source is None:
            self._source = emit_verilog(Accelerator(self.config), TOPLEVEL,
                                        bdir / f"{TOPLEVEL}.v")
        source = self._source
        work = Path(tempfile.mkdtemp(prefix="jobs-", dir=bdir))
        self._work = work
        job_file, result_file, progress_file = (work / "jobs.pkl", work / "results.pkl",
                                                work / "progress")
        with open(job_file, "wb") as f:
            pickle.dump({"config": self.config, "jobs": [
                {"memory": bytes(j.memory), "prog_addr": j.prog_addr, "prog_len": j.prog_len}
                for j in jobs]}, f)
        progress_file.write_text("")
        env = {"SYSTOLIC_JOBS": str(job_file), "SYSTOLIC_RESULTS": str(result_file),
               "SYSTOLIC_PROGRESS": str(progress_file)}
        done = threading.Event()
        errors = []

        def simulate():
            try:
                run_cocotb(sources=[source], toplevel=TOPLEVEL, test_module="run_jobs",
                           build_dir=bdir, extra_env=env, waves=self.waves,
                           test_dir=work)
            except BaseException as exc:  # reported on the calling thread
                errors.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=simulate, daemon=True)
        started = time.perf_counter()
        thread.start()
        reported = 0
        while not done.wait(0.5):
            reported = self._report(progress_file, reported, progress)
        self._report(progress_file, reported, progress)
        thread.join()
        if errors:
            raise DeviceError(f"RTL simulation failed: {errors[0]}") from errors[0]
        with open(result_file, "rb") as f:
            out = pickle.load(f)
        self.last_stats = {"sim_cycles": out["sim_cycles"], "sim_wall_s": out["wall_s"],
                           "total_wall_s": time.perf_counter() - started}
        results = []
        for r in out["results"]:
            csrs = r["csrs"]
            code = csrs["ERROR_CODE"]
            perf = {perf_name(k): v for k, v in csrs.items() if k.startswith("PERF_")}
            results.append(DeviceResult(
                memory=r["memory"],
                error=ErrorCode(code) if code in ErrorCode._value2member_map_ else code,
                error_index=csrs["ERROR_INDEX"],
                acc_overflow=bool(csrs["STATUS"] & STATUS_ACC_OVERFLOW),
                perf=perf))
        return results

    @staticmethod
    def _report(progress_file, reported, progress):
        try:
            count = progress_file.read_text().count("\n")
        except OSError:
            return reported
        if progress:
            for _ in range(count - reported):
                progress()
        return count
