"""Program builders for verification: constrained-random programs and a tiled GEMM."""
