"""Bitstream builds of the board tops with the YoWASP Yosys/nextpnr tools, and their reports.

``build_board("icebreaker")`` elaborates the board top through amaranth-boards, runs the
platform's build script (Yosys, nextpnr with ``--report``, the packer) in the build
folder, synthesizes the same design once more without flattening to attribute LUTs to
blocks, and writes ``build/reports/fpga-<board>.json``. A design that does not fit or
misses its clock still gets a report (``fits``, ``timing_closed``, ``failure``); judging
it is the caller's business.

Command line (registered as ``systolic fpga build``)::

    systolic fpga build --board icebreaker [--preset icebreaker] [--target-mhz 12]
"""

import json
import os
import subprocess
import threading
import time
from pathlib import Path

from systolic.config import PRESETS
from systolic.config import preset as named_preset

from .boards import BOARDS
from .report import (
    block_table,
    parse_nextpnr_log,
    parse_nextpnr_report,
    parse_yosys_stat,
    print_report,
)

__all__ = ["NO_ACCELERATOR", "build_board", "fpga_arguments", "fpga_command", "REPORT_DIR"]

NO_ACCELERATOR = "none"
"""Preset name that builds the bridge and system memory without the accelerator."""
REPORT_DIR = Path("build/reports")
TOP = "top"

_STAGES = [("top.rpt", "Yosys: synthesis"), ("top.tim", "nextpnr: place and route"),
           ("top.asc", "packing the bitstream"), ("top.config", "packing the bitstream")]


def _config(board, preset):
    name = board.preset if preset is None else preset
    if name == NO_ACCELERATOR:
        return None
    if isinstance(name, str):
        return named_preset(name)
    return name   # an AcceleratorConfig


def _run_logged(cmd, cwd, log):
    with open(Path(cwd) / log, "w") as f:
        return subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)


# ``-dsp``: multipliers and their registers in SB_MAC16 blocks; ``-dff``: flip-flop
# optimizations (constant and merged flip-flops) before and after ABC, about 70 logic
# cells fewer on the iCEBreaker system
ICE40_SYNTH_OPTS = ["-dsp", "-dff"]


def _block_synthesis(board, cwd, *, abc=True):
    """Synthesize ``top.il`` again without flattening; per-module cell counts as JSON.

    With ``abc=False`` LUTs are mapped without ABC (iCE40) or with the older ABC flow
    instead of ABC9 (ECP5): the fallback when ABC9 fails on the unflattened design.
    """
    synth = ("synth_ice40 " + " ".join(ICE40_SYNTH_OPTS) if board.family == "ice40"
             else "synth_ecp5")
    if not abc:   # synth_ecp5 has no -noabc: there, the older ABC flow instead of ABC9
        synth += " -noabc9 -noabc" if board.family == "ice40" else " -noabc9"
    script = (f"read_rtlil {TOP}.il; rename -hide w:*]; {synth} -noflatten -top {TOP}; "
              f"tee -q -o blocks.json stat -json")
    return subprocess.Popen([os.environ["YOSYS"], "-q", "-p", script], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


class _Spinner:
    """A rich live status line naming the running tool and the elapsed time."""

    def __init__(self, enabled, title):
        self.enabled, self.title = enabled, title
        self._status = None
        self.start = time.monotonic()

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            self._status = Console(stderr=True).status(self.title)
            self._status.__enter__()
        return self

    def update(self, text):
        if self._status is not None:
            self._status.update(f"{self.title}: {text} ({time.monotonic() - self.start:.0f} s)")

    def __exit__(self, *exc):
        if self._status is not None:
            self._status.__exit__(*exc)


def build_board(board, preset=None, out_dir="build/fpga", progress=True, *, target_mhz=None,
                baud=1_000_000, blocks=True, report_dir=REPORT_DIR, seed=1):
    """Build the bitstream of one board and return its report.

    Parameters
    ----------
    board : str
        ``icebreaker`` or ``ulx3s``.
    preset : str or AcceleratorConfig, optional
        Accelerator configuration; default the board's preset; ``"none"`` builds the
        bridge and system memory alone.
    out_dir : path
        Build folders go to ``out_dir/<board>-<preset>``.
    progress : bool
        Show a live status line while the tools run, and print the report table.
    target_mhz : float, optional
        Clock target; default the board's. A PLL makes it from the board's oscillator.
    baud : int
        UART baud rate of the bridge.
    blocks : bool
        Also synthesize without flattening for the per-block LUT table.
    report_dir : path
        Where ``fpga-<board>.json`` is written.
    seed : int
        nextpnr placement seed.

    Returns
    -------
    dict
        The report (see :func:`systolic.fpga.report.parse_nextpnr_report` for the fields).
    """
    from systolic.toolchain import setup_env

    setup_env()
    if board not in BOARDS:
        raise ValueError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    b = BOARDS[board]
    config = _config(b, preset)
    preset_name = NO_ACCELERATOR if config is None else config.name
    target_mhz = b.target_mhz if target_mhz is None else float(target_mhz)
    top = b.top(config=config, target_hz=round(target_mhz * 1e6), baud=baud)
    platform = b.make_platform()
    build_dir = Path(out_dir) / f"{board}-{preset_name}"
    opts = {"nextpnr_opts": ["--report", "report.json", "--timing-allow-fail",
                             "--seed", str(seed)],
            "script_after_synth": "tee -q -o stat.json stat -json"}
    if b.family == "ice40":
        opts["synth_opts"] = ICE40_SYNTH_OPTS

    started = time.monotonic()
    with _Spinner(progress, f"building {board} ({preset_name})") as spin:
        spin.update("elaborating")
        plan = platform.build(top, name=TOP, build_dir=str(build_dir), do_build=False, **opts)
        for stale in ("report.json", "stat.json", "blocks.json", "top.tim", "top.asc",
                      "top.config", "top.bin", "top.bit"):
            (build_dir / stale).unlink(missing_ok=True)
        plan.extract(str(build_dir))
        side = _block_synthesis(b, build_dir) if blocks else None
        result = {}
        worker = threading.Thread(target=lambda: result.update(
            rc=_run_logged(["sh", f"build_{TOP}.sh"], build_dir, "build.log").returncode))
        worker.start()
        while worker.is_alive():
            stage = "starting"
            for name, text in _STAGES:
                if (build_dir / name).exists():
                    stage = text
            spin.update(stage + (" + per-block synthesis" if side and side.poll() is None
                                 else ""))
            worker.join(0.5)
        if side is not None:
            while side.poll() is None:
                spin.update("per-block synthesis")
                time.sleep(0.5)
    elapsed = time.monotonic() - started

    report = {
        "board": board, "device": b.device, "preset": preset_name,
        "config": None if config is None else config.to_dict(),
        "target_mhz": target_mhz, "clock_mhz": round(top.clock_hz / 1e6, 4),
        "baud": baud, "uart_divisor": top.divisor,
        "luts_available": b.luts_available, "dsps_available": b.dsps_available,
        "brams_available": b.brams_available,
        "build_dir": str(build_dir), "seconds": round(elapsed, 1),
        "command": f"systolic fpga build --board {board} --preset {preset_name}"
                   f" --target-mhz {target_mhz:g}",
    }
    stat_path = build_dir / "stat.json"
    if stat_path.exists():
        report.update(parse_yosys_stat(json.loads(stat_path.read_text()), b.family))
    pnr_path = build_dir / "report.json"
    report["placed"] = pnr_path.exists()
    if pnr_path.exists():
        report.update(parse_nextpnr_report(json.loads(pnr_path.read_text()), b.family))
    log_path = build_dir / f"{TOP}.tim"
    if log_path.exists():
        report.update(parse_nextpnr_log(log_path.read_text(errors="replace"), b.family))
    if "luts" not in report and "packed_luts" in report:   # packed but not placed
        report["luts"] = report["packed_luts"]
    for key in ("luts", "ffs", "dsps", "brams", "sprams"):
        if key not in report and f"synth_{key}" in report:   # not placed: Yosys' count
            report[key] = report[f"synth_{key}"]
    report.setdefault("fmax_mhz", {})
    report["fits"] = bool(report["placed"] and report.get("luts", 1 << 30)
                          <= b.luts_available)
    fmax = report.get("fmax_mhz", {})
    report["timing_closed"] = bool(fmax) and all(v >= target_mhz for v in fmax.values())
    report["bitstream"] = next((str(build_dir / f"{TOP}.{ext}") for ext in ("bin", "bit")
                                if (build_dir / f"{TOP}.{ext}").exists()), None)
    if result.get("rc"):
        log = (build_dir / "build.log").read_text(errors="replace").splitlines()
        errors = [line for line in log if line.startswith("ERROR")]
        report["failure"] = (errors or log or ["build script failed"])[-1].strip()
    if side is not None:
        blocks_path = build_dir / "blocks.json"
        if side.returncode != 0 or not blocks_path.exists():
            side = _block_synthesis(b, build_dir, abc=False)
            side.wait()
            report["blocks_mapping"] = (
                "without ABC" if b.family == "ice40" else "ABC instead of ABC9") + (
                " (relative sizes; totals above are exact)")
        if side.returncode == 0 and blocks_path.exists():
            report["blocks"] = block_table(json.loads(blocks_path.read_text()), b.family)
        else:
            report["blocks_failure"] = side.stderr.read()[-500:] if side.stderr else "failed"

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    report["report"] = str(report_dir / f"fpga-{board}.json")
    (report_dir / f"fpga-{board}.json").write_text(json.dumps(report, indent=2) + "\n")
    if progress:
        print_report(report)
    return report


def fpga_arguments(parser):
    """Arguments of ``systolic fpga``: ``build --board B [--preset P] [--target-mhz F]``."""
    sub = parser.add_subparsers(dest="fpga_action", required=True, metavar="ACTION")
    build = sub.add_parser("build", help="build a board's bitstream and write its report")
    build.add_argument("--board", required=True, choices=sorted(BOARDS))
    build.add_argument("--preset", choices=[*PRESETS, NO_ACCELERATOR],
                       help="accelerator preset (default: the board's); "
                            f"'{NO_ACCELERATOR}' builds the UART bridge and memory alone")
    build.add_argument("--target-mhz", type=float, help="clock target (default: the board's)")
    build.add_argument("--baud", type=int, default=1_000_000, help="UART baud rate")
    build.add_argument("-o", "--out-dir", default="build/fpga", help="build folder root")
    build.add_argument("--no-blocks", action="store_true",
                       help="skip the per-block synthesis")
    build.add_argument("--quiet", action="store_true", help="no live status, no table")


def fpga_command(args):
    """Run ``systolic fpga build``; exit status 1 when the design does not fit or misses
    timing (the report is written either way)."""
    report = build_board(args.board, args.preset, args.out_dir, not args.quiet,
                         target_mhz=args.target_mhz, baud=args.baud,
                         blocks=not args.no_blocks)
    return 0 if report["fits"] and report["timing_closed"] else 1
