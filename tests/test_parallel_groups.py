"""The parallel test run keeps tests that share a build folder on one worker.

``make test`` runs ``pytest -n 2 --dist loadgroup``, and the Verilator benches rely on
``xdist_group`` marks so that two workers never build one folder at once (see the table in
``conftest.py``). Some pytest and pytest-xdist pairs silently stop grouping (pytest 9.2.0
with pytest-xdist 3.8.0 hands grouped tests out one by one), so this checks the pinned
pair on a throwaway test file.
"""

import re
import subprocess
import sys
import textwrap


def test_loadgroup_keeps_a_group_on_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(textwrap.dedent("""
        import time
        import pytest

        @pytest.mark.xdist_group("shared-folder")
        @pytest.mark.parametrize("i", range(6))
        def test_grouped(i):
            time.sleep(0.1)

        @pytest.mark.parametrize("i", range(6))
        def test_free(i):
            time.sleep(0.1)
    """))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    workers = {}
    for worker, name in re.findall(r"\[(gw\d+)\] \[ *\d+%\] PASSED \S*::(test_\w+)\[",
                                   run.stdout):
        workers.setdefault(name, set()).add(worker)
    assert sum(len(w) for w in workers.values()) >= 2, run.stdout[-2000:]
    assert len(workers["test_grouped"]) == 1, (
        f"grouped tests ran on {sorted(workers['test_grouped'])}: --dist loadgroup does "
        f"not group with this pytest and pytest-xdist")
