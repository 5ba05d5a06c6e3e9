"""A board over a serial port: the :class:`Device` API on the UART host-link protocol.

Each job writes its memory image to system memory, sets PROG_ADDR and PROG_LEN, starts the
program, polls STATUS until DONE, and reads back the memory image and the error and
performance CSRs. The protocol itself (framing, CRC, retries on NAK) is
:class:`systolic.runtime.protocol.Link`; this module only sequences CSR and memory
accesses, so it runs unchanged against a simulated board.
"""

import time

from ..csr import (
    CSR,
    CSR_MAP,
    CTRL_IRQ_ENABLE,
    CTRL_SOFT_RESET,
    CTRL_START,
    STATUS_ACC_OVERFLOW,
    STATUS_BUSY,
    STATUS_DONE,
    STATUS_ERROR,
    id_words,
    perf_name,
)
from ..isa import ErrorCode
from .device import Device, DeviceError, DeviceResult
from .protocol import Command, Link, LinkError

__all__ = ["SerialDevice", "DEFAULT_BAUD", "STATUS_BUSY", "STATUS_DONE", "STATUS_ERROR",
           "STATUS_ACC_OVERFLOW", "CTRL_START", "CTRL_SOFT_RESET", "CTRL_IRQ_ENABLE"]

DEFAULT_BAUD = 1_000_000


_PERF = {perf_name(reg.name): reg.offset for reg in CSR_MAP if reg.perf}


class SerialDevice(Device):
    """A Systolic board behind a UART bridge.

    Parameters
    ----------
    config : AcceleratorConfig
        The configuration the board was built with; checked against the board's ID and
        CONFIG registers when the device opens.
    port : str or object
        A serial port name (``/dev/ttyUSB1``, opened with pyserial at ``baud``) or an open
        port with ``read(n)`` and ``write(data)`` (a :class:`serial.Serial`, or a simulated
        board's adapter).
    baud : int
        Baud rate when ``port`` is a name.
    timeout : float
        Seconds to wait for each response frame.
    retries : int
        Extra attempts of a request after a NAK for a link error or no response.
    run_timeout : float
        Seconds a program may run before the device is soft-reset and an error raised.
    poll_interval : float
        Seconds between STATUS polls while a program runs.
    clock, sleep : callable
        Time source and sleep (seconds); a simulation passes simulated time.
    check_id : bool
        Read the ID registers at open and compare them with ``config``.

    Raises
    ------
    DeviceError
        When no board answers, the board is not a Systolic bridge, or its configuration
        differs from ``config``.
    """

    name = "serial"

    def __init__(self, config, port, *, baud=DEFAULT_BAUD, timeout=1.0, retries=3,
                 run_timeout=10.0, poll_interval=0.001, clock=time.monotonic,
                 sleep=time.sleep, check_id=True):
        super().__init__(config)
        if not run_timeout > 0:
            raise ValueError(f"run_timeout must be positive, not {run_timeout!r}")
        self._owned = None
        if isinstance(port, str):
            try:
                import serial
            except ImportError as exc:  # pragma: no cover - a pinned dependency
                raise DeviceError("the serial backend needs pyserial") from exc
            try:
                self._owned = serial.Serial(port, baud, timeout=0.01)
            except (OSError, serial.SerialException) as exc:
                raise DeviceError(f"cannot open serial port {port}: {exc}") from exc
            port_obj = self._owned
        else:
            port_obj = port
        self.link = Link(port_obj, timeout=timeout, retries=retries, clock=clock,
                         name=port if isinstance(port, str) else None)
        self.run_timeout, self.poll_interval = run_timeout, poll_interval
        self.clock, self.sleep = clock, sleep
        try:
            self.link.ping()
            if check_id:
                self._check_id()
        except LinkError as exc:
            self.close()
            raise DeviceError(str(exc)) from exc

    def _check_id(self):
        want = id_words(self.config)
        got = {name: self.link.read_csr(CSR[name].offset) for name in want}
        wrong = [f"{n}=0x{got[n]:08X} (expected 0x{want[n]:08X})" for n in want
                 if got[n] != want[n]]
        if wrong:
            raise DeviceError(f"{self.link.name}: the board's accelerator does not match "
                              f"config {self.config.name!r}: {', '.join(wrong)}")

    # -- runs ------------------------------------------------------------------------------

    def run_batch(self, jobs, progress=None):
        results = []
        for job in jobs:
            try:
                results.append(self._run(job))
            except LinkError as exc:
                raise DeviceError(str(exc)) from exc
            if progress:
                progress()
        return results

    def _csr(self, name, value=None):
        if value is None:
            return self.link.read_csr(CSR[name].offset)
        self.link.write_csr(CSR[name].offset, value)
        return None

    def _run(self, job):
        link = self.link
        link.write_mem(0, job.memory)
        self._csr("PROG_ADDR", job.prog_addr)
        self._csr("PROG_LEN", job.prog_len)
        self._csr("IRQ_STATUS", 1)                         # clear a stale interrupt
        self._csr("CTRL", CTRL_START | CTRL_IRQ_ENABLE)
        deadline = self.clock() + self.run_timeout
        while True:
            status = self._csr("STATUS")
            if status & STATUS_DONE and not status & STATUS_BUSY:
                break
            if self.clock() > deadline:
                self._csr("CTRL", CTRL_SOFT_RESET)
                raise DeviceError(f"{link.name}: the program did not finish within "
                                  f"{self.run_timeout} s (STATUS=0x{status:08X}); the "
                                  f"accelerator was soft-reset")
            self.sleep(self.poll_interval)
        memory = link.read_mem(0, len(job.memory))
        code = self._csr("ERROR_CODE")
        try:
            error = ErrorCode(code)
        except ValueError:
            raise DeviceError(f"{link.name}: unknown error code {code}") from None
        perf = {}
        if self.config.perf_counters:
            words = link.transact(Command.READ_CSR, min(_PERF.values()),
                                  length=max(_PERF.values()) - min(_PERF.values()) + 4)
            for name, offset in _PERF.items():
                at = offset - min(_PERF.values())
                perf[name] = int.from_bytes(words[at:at + 4], "little")
        return DeviceResult(memory=bytes(memory), error=error,
                            error_index=self._csr("ERROR_INDEX"),
                            acc_overflow=bool(status & STATUS_ACC_OVERFLOW), perf=perf)

    def close(self):
        if self._owned is not None:
            self._owned.close()
            self._owned = None
