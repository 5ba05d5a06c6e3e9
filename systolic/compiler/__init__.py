"""The compiler: quantized operations to programs of the Systolic ISA.

Layers, from the bottom up:

* :mod:`~systolic.compiler.program` -- :class:`ProgramBuilder` (instruction emission with
  automatic dependency tokens) and :class:`MemoryLayout` (system-memory allocation);
* :mod:`~systolic.compiler.gemm` -- the tiled, double-buffered GEMM schedule;
* :mod:`~systolic.compiler.ops` -- lowerings: GEMM/linear, conv2d (im2col by LOAD),
  elementwise add (RESCALE_ADD), max-pool (VECTOR MAX);
* :mod:`~systolic.compiler.graph` -- a small graph IR and :func:`compile_graph`;
* :mod:`~systolic.compiler.compiled` -- :class:`CompiledProgram`, what a runtime runs.

See docs/compiler.md.
"""

from .compiled import (
    HOST_KERNELS,
    CompiledProgram,
    DeviceStep,
    HostStep,
    register_host_kernel,
)
from .gemm import GemmPlan, plan_gemm
from .graph import Graph, compile_gemm, compile_graph, nchw_flatten_permutation
from .ops import Lowering, TensorDesc
from .program import Buffer, MemoryLayout, ProgramBuilder
from .quant import AddParams, Requant, device_dtype

__all__ = [
    "AddParams", "Buffer", "CompiledProgram", "DeviceStep", "GemmPlan", "Graph",
    "HOST_KERNELS", "HostStep", "Lowering", "MemoryLayout", "ProgramBuilder", "Requant",
    "TensorDesc", "compile_gemm", "compile_graph", "device_dtype", "nchw_flatten_permutation",
    "plan_gemm", "register_host_kernel",
]
