"""A hand-assembled tiled GEMM: double-buffered loads that overlap compute, via tokens.

``C[M, N] = A[M, K] @ B[K, N]`` with int8 ``A`` and ``B`` (row-major in system memory) and
an int32 ``C``, for M, K, N multiples of the array size. On a weight-stationary array of
``rows x cols`` the weight tile is ``B[k0:k0+rows, n0:n0+cols]``; a step ``s = (j, k)``
streams all M rows of ``A[:, k-tile]`` through it and accumulates into the accumulator
rows of output tile ``j``.

Schedule (``X_s`` are the execute queue's MATMULs)::

    load  L_s : [A k-tile, during the first N tile only] + weight tile s -> wbuf[s % 2]
    exec  X_0 : preload W_0
          X_s : compute step s-1 with W_{s-1}, preload W_s (the array's shadow weights)
    store S_j : C tile j (int32) once its last K step is done; acc bank j % 2

Tokens: ``L_s`` pushes L2E, popped by ``X_s``; ``X_s`` pushes E2L when it has read
``wbuf[s % 2]``, popped by ``L_{s+2}`` (double buffering); the MATMUL that ends an output
tile pushes E2S for ``S_j``; ``S_j`` pushes S2E, popped by the first MATMUL of tile
``j + 2`` (the accumulator ping-pong). So the load of step ``s + 1`` and the store of tile
``j - 1`` run while the array computes step ``s``.
"""

from dataclasses import dataclass

import numpy as np

from ..isa import INSTR_BYTES, Instruction, LoadDest, Opcode, encode, to_bytes
from ..numerics import OutType

__all__ = ["GemmProgram", "tiled_gemm"]


@dataclass
class GemmProgram:
    """A tiled GEMM program with its operands in a system-memory image.

    Attributes
    ----------
    image : bytes
        A at ``a_addr``, B at ``b_addr``, C (output, zero) at ``c_addr``, then the program.
    prog_addr, prog_len : int
    words : list of int
    a, b : numpy.ndarray
        The int8 operands.
    m, n, k : int
    c_addr : int
    """
    image: bytes
    prog_addr: int
    prog_len: int
    words: list
    a: np.ndarray
    b: np.ndarray
    m: int
    n: int
    k: int
    c_addr: int

    @property
    def expected(self):
        """The NumPy reference ``A @ B`` (int64)."""
        return self.a.astype(np.int64) @ self.b.astype(np.int64)

    @property
    def macs(self):
        """Useful multiply-accumulates: M * N * K."""
        return self.m * self.n * self.k

    def result(self, memory):
        """C read back from a system-memory image (int32, M x N)."""
        raw = bytes(memory)[self.c_addr:self.c_addr + self.m * self.n * 4]
        return np.frombuffer(raw, dtype="<i4").reshape(self.m, self.n)

    def __iter__(self):
        return iter((self.image, self.prog_addr, self.prog_len))


def _load(n_rows, addr, length, stride, dram_addr):
    return {"dest": LoadDest.SP.value, "n_rows": n_rows, "addr": addr, "length": length,
            "stride": stride, "dram_addr": dram_addr}


def tiled_gemm(config, m, n, k, *, seed=0, a=None, b=None, w_buffers=2, acc_buffers=2):
    """Build the double-buffered tiled GEMM program for ``config``.

    Parameters
    ----------
    config : AcceleratorConfig
    m, n, k : int
        ``k`` a multiple of ``config.rows``, ``n`` of ``config.cols``; ``m`` in 1..4096.
    seed : int
        Seed of the random int8 operands (ignored when ``a`` and ``b`` are given).
    a, b : numpy.ndarray, optional
        Operands (element values in the configured input and weight ranges).
    w_buffers, acc_buffers : int
        Scratchpad weight buffers and accumulator buffers in rotation (2: double
        buffering; more lets loads and stores run further ahead of the array).

    Returns
    -------
    GemmProgram
    """
    c = config
    R, C = c.rows, c.cols
    if k <= 0 or k % R:
        raise ValueError(f"GEMM k must be a positive multiple of rows ({R}), not {k}")
    if n <= 0 or n % C:
        raise ValueError(f"GEMM n must be a positive multiple of cols ({C}), not {n}")
    if not isinstance(w_buffers, int) or w_buffers < 2:
        raise ValueError(f"GEMM w_buffers must be an integer of at least 2, not {w_buffers}")
    if not isinstance(acc_buffers, int) or acc_buffers < 2:
        raise ValueError(f"GEMM acc_buffers must be an integer of at least 2, not "
                         f"{acc_buffers}")
    mmax = min(4096, c.acc_rows // acc_buffers)
    if not 1 <= m <= mmax:
        raise ValueError(f"GEMM m must be in 1..{mmax}, not {m}")
    kt, nt = k // R, n // C
    # Weights in a different scratchpad bank from the inputs, and consecutive output tiles
    # in alternate accumulator banks, so MATMUL's reads and STORE's drain never collide.
    a_base, w_base = 0, m * kt                        # scratchpad rows
    w_bank = -(-w_base // c.sp_depth) * c.sp_depth
    if w_bank + w_buffers * R <= c.sp_rows and w_buffers * R <= c.sp_depth:
        w_base = w_bank
    per_bank = acc_buffers // 2
    split = acc_buffers % 2 == 0 and per_bank * m <= c.acc_depth

    def acc_tile(j):
        if split:
            return (j % 2) * c.acc_depth + ((j // 2) % per_bank) * m
        return (j % acc_buffers) * m

    if w_base + w_buffers * R > c.sp_rows:
        raise ValueError(f"GEMM m * k / rows + w_buffers * rows must fit {c.sp_rows} "
                         f"scratchpad rows, not {w_base + w_buffers * R}")
    if n * 4 >= 1 << 24:
        raise ValueError(f"GEMM n must be below {1 << 22} (the STORE stride), not {n}")
    rng = np.random.default_rng(seed)
    if a is None:
        a = rng.integers(*c.input_range, (m, k), endpoint=True)
    if b is None:
        b = rng.integers(*c.weight_range, (k, n), endpoint=True)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    a_addr, b_addr = 0, m * k
    c_addr = (b_addr + k * n + 63) & ~63
    prog_addr = (c_addr + m * n * 4 + 63) & ~63

    steps = [(j, kk) for j in range(nt) for kk in range(kt)]
    S = len(steps)

    def load_step(s):
        """L_s: the A k-tile (first output tile only), then weight tile s."""
        j, kk = steps[s]
        loads = [_load(R, w_base + (s % w_buffers) * R, C, n, b_addr + kk * R * n + j * C)]
        if j == 0:
            loads.insert(0, _load(m, a_base + kk * m, R, k, a_addr + kk * R))
        return [Instruction(Opcode.LOAD, fields, pop_next=(i == 0 and s >= w_buffers),
                            push_next=(i == len(loads) - 1))
                for i, fields in enumerate(loads)]

    def matmul(s):
        """X_s: compute step s-1 (if s > 0) and preload W_s (if s < S)."""
        fields, flags = {}, {}
        if s < S:
            fields.update(preload=1, w_addr=w_base + (s % w_buffers) * R)
            flags["pop_prev"] = True
            if s + w_buffers < S:
                flags["push_prev"] = True
        if s > 0:
            j, kk = steps[s - 1]
            fields.update(compute=1, n_rows=m, a_addr=a_base + kk * m, c_addr=acc_tile(j),
                          accumulate=int(kk > 0))
            if kk == 0 and j >= acc_buffers:
                flags["pop_next"] = True
            if kk == kt - 1:
                flags["push_next"] = True
        return Instruction(Opcode.MATMUL, fields, **flags)

    def store(j):
        return Instruction(Opcode.STORE, {
            "out_type": OutType.INT32.value, "length": C, "n_rows": m,
            "addr": acc_tile(j), "stride": n * 4, "dram_addr": c_addr + j * C * 4},
            pop_prev=True, push_prev=j + acc_buffers < nt)

    program = [i for s in range(min(w_buffers, S)) for i in load_step(s)] + [matmul(0)]
    for s in range(S):
        if s + w_buffers < S:
            program += load_step(s + w_buffers)
        program.append(matmul(s + 1))
        j, kk = steps[s]
        if kk == kt - 1:
            program.append(store(j))
    program.append(Instruction(Opcode.HALT, {}))
    words = [encode(i) for i in program]

    size = (prog_addr + len(words) * INSTR_BYTES + 4095) & ~4095
    image = bytearray(size)
    image[a_addr:a_addr + m * k] = (a & 0xFF).astype(np.uint8).tobytes()
    image[b_addr:b_addr + k * n] = (b & 0xFF).astype(np.uint8).tobytes()
    image[prog_addr:prog_addr + len(words) * INSTR_BYTES] = to_bytes(words)
    return GemmProgram(bytes(image), prog_addr, len(words), words, a, b, m, n, k, c_addr)
