"""cocotb entry of the runtime's RTL backend: run a batch of programs in one simulator.

The job file (``SYSTOLIC_JOBS``, a pickle) holds the configuration and the jobs; results
go to ``SYSTOLIC_RESULTS`` (a pickle) and one line per finished job to
``SYSTOLIC_PROGRESS``, which the host side turns into a progress bar.
"""

import os
import pickle
import time

import cocotb
from cocotb.utils import get_sim_time

from systolic.sim.harness import AcceleratorTB


@cocotb.test()
async def run_jobs(dut):
    with open(os.environ["SYSTOLIC_JOBS"], "rb") as f:
        spec = pickle.load(f)
    config, jobs = spec["config"], spec["jobs"]
    mem_size = max([len(j["memory"]) for j in jobs] + [4096])
    tb = AcceleratorTB(dut, config, mem_size=mem_size)
    await tb.reset()
    results = []
    progress = open(os.environ["SYSTOLIC_PROGRESS"], "a", buffering=1)
    start_wall = time.perf_counter()
    start_sim = get_sim_time("ns")
    for job in jobs:
        memory, csrs = await tb.run_program(job["memory"], job["prog_addr"], job["prog_len"],
                                            timeout_cycles=job.get("timeout_cycles", 5_000_000))
        results.append({"memory": memory, "csrs": csrs})
        progress.write("1\n")
    progress.close()
    cycles = (get_sim_time("ns") - start_sim) / tb.period
    with open(os.environ["SYSTOLIC_RESULTS"], "wb") as f:
        pickle.dump({"results": results, "sim_cycles": cycles,
                     "wall_s": time.perf_counter() - start_wall}, f)
