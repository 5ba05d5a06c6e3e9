"""Shared pytest set-up: tool paths, the slow-test option and the Verilator build budget.

Verilator builds in ``make test`` (CI's budget is about a dozen, each ~10-20 s of C++):
one build folder per parameter set under ``build/sim/``. Keep this list current.

| build folder                    | test module                 | what                           |
|---------------------------------|-----------------------------|--------------------------------|
| build/sim/array_ws_2x3          | tests/test_array.py         | 2x3 WS array, int8 x uint8     |
| build/sim/array_ws_8x8_u8i8     | tests/test_array.py         | 8x8 WS array, uint8 x int8     |
| build/sim/array_os_4x4          | tests/test_array.py         | 4x4 OS array                   |
| build/sim/dma-default           | tests/test_dma.py           | DMA, 64-bit AXI                |
| build/sim/dma-tiny              | tests/test_dma.py           | DMA, 32-bit AXI                |
| build/sim/accel-tiny            | tests/test_accelerator.py   | Accelerator, tiny preset       |
| build/sim/accel-icebreaker      | tests/test_accelerator.py   | Accelerator, icebreaker preset |
| build/sim/accel-default         | tests/test_accelerator.py   | Accelerator, default (also the |
|                                 |                             | runtime's VerilatorDevice and  |
|                                 |                             | `make sim`)                    |
| build/sim/board-icebreaker      | tests/test_board.py         | iCEBreaker board top with UART |
| build/sim/board-ulx3s           | tests/test_board.py         | ULX3S board top with UART      |

Ten builds. Verilog comes from :func:`systolic.verilog.convert`; Verilator builds it
with the two width-warning waivers only.
"""

import pytest

from systolic.toolchain import setup_env

setup_env()


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run long campaigns marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long campaign: run with --run-slow (make test-long)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
