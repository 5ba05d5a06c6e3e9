"""Shared pytest set-up: tool paths, the slow-test option and the Verilator build budget.

Verilator builds in ``make test`` (CI's budget is about a dozen, each ~10-20 s of C++):
one build folder per parameter set under ``build/sim/``. Keep this list current.

| build folder                 | what                                          |
|------------------------------|-----------------------------------------------|
| (filled in by the benches that add builds; see each test module's BUILDS) |
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
