"""The tiled, double-buffered GEMM schedule every matrix lowering uses.

``C[M, N] = A[M, K] @ W[K, N] (+ bias)`` on a weight-stationary array of ``rows x cols``:

* ``K`` is cut into *k-blocks* of at most ``rows`` elements (an input row), ``N`` into
  *n-blocks* of ``cols`` (a weight tile is one k-block by one n-block), ``M`` into
  *m-tiles* of at most ``acc_depth / 2`` rows (one accumulator region).
* Loop order: m-tile, n-block, k-block. A *block* is the output of one (m-tile,
  n-block); one MATMUL per (block, k-block) streams the block's input rows for the
  k-block through the active weight tile and accumulates into the block's accumulator
  region; the same MATMUL preloads the next weight tile (weight tiles are chained across
  blocks and m-tiles, so the array never waits for weights).
* The very last block is cut into *tail blocks* of :attr:`GemmPlan.tail_chunk` rows, each
  with its own k-loop and accumulator region, so that all but the last chunk are stored
  while the array computes, and the store tail after the last MATMUL is short.
* The accumulator has four regions of ``m_tile`` rows, two in each bank; consecutive
  blocks use regions 0, 1, 2, 3 in turn and so alternate banks: while the array
  accumulates into one bank, the store queue drains the previous block from the other
  (the array's accumulating writes take a bank's read port first, so a STORE from the
  bank being accumulated into would wait) and the load queue writes the bias of the next
  one there (LOAD into the accumulator, stride 0 broadcasts the bias row). Without a
  bias the first k-block overwrites instead of accumulating.
* Scratchpad: the input rows from row 0 — *resident* (all k-blocks of the m-tile,
  loaded once and reused by every n-block) when they fit, otherwise a ring of
  *streamed* k-block slots reloaded per n-block — and a ring of
  :attr:`GemmPlan.w_slots` weight-tile slots at the top, in the last bank, so the
  weight preloads never wait for the input reads of the same bank.
* Program order is software-pipelined: every weight load is emitted
  :attr:`GemmPlan.lookahead` MATMULs before the one that needs it and every input load
  :attr:`GemmPlan.a_lookahead` MATMULs before (or right after the last reader of the
  slot it overwrites, if that is later); a block's STORE follows its last MATMUL.
  :class:`~systolic.compiler.program.ProgramBuilder` inserts the tokens.

The caller provides the data movement as callbacks (dense matrices, im2col gathers), so
the same schedule serves linear layers and convolutions.
"""

from dataclasses import dataclass

import numpy as np

from ..isa import MAX_ROWS, LoadDest

__all__ = ["GemmPlan", "plan_gemm", "emit_gemm", "tile_weights", "bias_rows", "param_rows",
           "acc_region"]

REGIONS = 4


def acc_region(config, m_tile, index):
    """First accumulator row of region ``index`` (0..3): regions 0 and 2 in bank 0,
    1 and 3 in bank 1."""
    return (index % 2) * config.acc_depth + (index // 2) * m_tile


@dataclass(frozen=True)
class GemmPlan:
    """Tiling of one GEMM on one configuration.

    Attributes
    ----------
    m_tile : int
        Input rows per MATMUL (the last m-tile may be shorter).
    k_blocks, n_blocks : int
    resident : bool
        All k-blocks of an m-tile stay in the scratchpad (else: streamed ring).
    a_slots, w_slots : int
        Scratchpad slots for input blocks (``m_tile`` rows each) and weight tiles.
    lookahead : int
        MATMULs a weight load is emitted ahead of its consumer. A resident m-tile's
        input loads wait for the last reader of their rows; when the load queue falls
        behind there (every input row of the next m-tile is loaded during one block),
        the weights it loads this far ahead keep the array busy.
    tail_chunk : int
        Rows of each tail block (the last block is cut into such blocks).
    a_lookahead : int
        MATMULs a streamed input load is emitted ahead of its consumer.
    """
    m_tile: int
    k_blocks: int
    n_blocks: int
    resident: bool
    a_slots: int
    w_slots: int
    lookahead: int = 12
    tail_chunk: int = 32
    a_lookahead: int = 2


def plan_gemm(config, m, k_blocks, n):
    """Choose the tiling of an ``m`` x (``k_blocks`` k-blocks) x ``n`` GEMM."""
    c = config
    if m < 1 or k_blocks < 1 or n < 1:
        raise ValueError(f"GEMM dimensions must be positive, not M={m} k-blocks={k_blocks} N={n}")
    a_lookahead = 2
    lookahead = 12
    w_slots = lookahead + 2
    avail = c.sp_rows - w_slots * c.rows
    acc_cap = min(c.acc_depth // 2, MAX_ROWS)
    m_cap = min(m, acc_cap)
    resident_cap = avail // k_blocks
    if resident_cap >= min(m_cap, 16):
        resident, m_cap, a_slots = True, min(m_cap, resident_cap), k_blocks
    else:
        a_slots = a_lookahead + 2
        resident, m_cap = False, min(m_cap, avail // a_slots)
    if m_cap < 1:
        raise ValueError(f"the scratchpad ({c.sp_rows} rows) is too small for this GEMM")
    tiles = -(-m // m_cap)
    m_tile = -(-m // tiles)   # balanced tiles
    n_blocks = -(-n // c.cols)
    return GemmPlan(m_tile=m_tile, k_blocks=k_blocks, n_blocks=n_blocks, resident=resident,
                    a_slots=a_slots, w_slots=w_slots, lookahead=lookahead,
                    tail_chunk=max(8, min(32, m_tile)), a_lookahead=a_lookahead)


def tile_weights(config, w):
    """``w`` (K x N integers) as contiguous zero-padded ``rows x cols`` byte tiles.

    Tile ``(kb, nb)`` starts at byte ``(nb * k_blocks + kb) * rows * cols``.
    """
    c = config
    k, n = w.shape
    kb, nb = -(-k // c.rows), -(-n // c.cols)
    padded = np.zeros((kb * c.rows, nb * c.cols), dtype=np.int64)
    padded[:k, :n] = w
    tiles = padded.reshape(kb, c.rows, nb, c.cols).transpose(2, 0, 1, 3)
    return (tiles.astype(np.int64) & 0xFF).astype(np.uint8).tobytes()


def bias_rows(config, bias):
    """The bias (N int32) as one zero-padded row of ``cols`` int32 per n-block."""
    c = config
    n = len(bias)
    nb = -(-n // c.cols)
    rows = np.zeros(nb * c.cols, dtype="<i4")
    rows[:n] = bias
    return rows.tobytes()


def param_rows(config, mult, shift):
    """Per-channel (M, s) as two rows (multipliers, shifts) of ``cols`` int32 per n-block."""
    c = config
    n = len(mult)
    nb = -(-n // c.cols)
    out = np.zeros((nb, 2, c.cols), dtype="<i4")
    for j in range(nb):
        part = slice(j * c.cols, min(n, (j + 1) * c.cols))
        width = part.stop - part.start
        out[j, 0, :width] = mult[part]
        out[j, 1, :width] = shift[part]
    return out.tobytes()


def emit_gemm(b, plan, *, m, n, load_a, w_tile_addr, store, bias_addr=None, param_addr=None):
    """Emit the schedule of one GEMM into ProgramBuilder ``b``.

    Parameters
    ----------
    b : ProgramBuilder
    plan : GemmPlan
    m, n : int
        Output rows and columns.
    load_a : callable
        ``load_a(b, m0, m1, kb, sp_row)`` emits the loads that put input rows ``m0:m1``
        of k-block ``kb`` into scratchpad rows ``sp_row...`` (lanes past the k-block's
        width may hold anything: the weight tile is zero there).
    w_tile_addr : callable
        ``w_tile_addr(kb, nb)``: byte address of the contiguous weight tile.
    store : callable
        ``store(b, acc_row, m0, m1, nb, param_row)`` emits the STOREs of output rows
        ``m0:m1`` of n-block ``nb`` held in accumulator rows ``acc_row...``; the block's
        per-channel parameters (if any) are in parameter rows ``param_row``, ``+1``.
    bias_addr : callable or None
        ``bias_addr(nb)``: byte address of the n-block's bias row (``cols`` int32).
    param_addr : callable or None
        ``param_addr(nb)``: byte address of the n-block's per-channel parameter rows
        (multipliers, then shifts: ``cols`` int32 each).
    """
    c = b.config
    p = plan
    kbs, nbs = p.k_blocks, p.n_blocks
    w_base = c.sp_rows - p.w_slots * c.rows
    mtiles = [(m0, min(m, m0 + p.m_tile)) for m0 in range(0, m, p.m_tile)]
    # blocks: (m-tile, n-block, first row, end row), rows relative to the m-tile
    blocks = [(t, j, 0, m1 - m0) for t, (m0, m1) in enumerate(mtiles) for j in range(nbs)]
    t, j, _, rows = blocks[-1]
    if rows > p.tail_chunk:
        blocks[-1:] = [(t, j, r0, min(rows, r0 + p.tail_chunk))
                       for r0 in range(0, rows, p.tail_chunk)]
    steps = [(bi, kb) for bi in range(len(blocks)) for kb in range(kbs)]
    n_steps = len(steps)
    region = [acc_region(c, p.m_tile, bi % REGIONS) for bi in range(len(blocks))]
    param_slots = max(1, c.param_rows // 2)
    # exec position e: 0 is the first preload, e = s + 1 runs step s; loads[e] are
    # emitted before exec position e. A load that overwrites rows step s reads (a weight
    # slot is read by the preload of the step before) goes at e >= s + 2.
    loads = [[] for _ in range(n_steps + 2)]

    def at(e_desired, e_earliest):
        return max(0, e_earliest, e_desired)

    last_read = {}   # resident input slot (k-block) -> last step reading it
    for s in range(n_steps):
        bi, kb = steps[s]
        t, j, r0, _ = blocks[bi]
        slot = s % p.w_slots
        loads[at(s - p.lookahead, s - p.w_slots + 1)].append(("w", s, w_base + slot * c.rows))
        if p.resident:
            if j == 0 and r0 == 0:
                loads[at(s + 1 - p.a_lookahead, last_read.get(kb, -2) + 2)].append(
                    ("a", s, kb * p.m_tile))
            last_read[kb] = s
        else:
            aslot = s % p.a_slots
            loads[at(s + 1 - p.a_lookahead, s + 2 - p.a_slots)].append(
                ("a", s, aslot * p.m_tile))
        if kb == 0:
            first = s + 1
            earliest = (bi - REGIONS + 1) * kbs + 1 if bi >= REGIONS else 0
            if bias_addr is not None:
                loads[at(first - p.lookahead, earliest)].append(("bias", bi, None))
            if param_addr is not None:
                pe = (bi - param_slots + 1) * kbs + 1 if bi >= param_slots else 0
                loads[at(first - p.lookahead, pe)].append(("param", bi, (bi % param_slots) * 2))

    def emit_load(item):
        kind, idx, where = item
        if kind == "w":
            bi, kb = steps[idx]
            b.load(LoadDest.SP, where, w_tile_addr(kb, blocks[bi][1]), c.rows, c.cols, c.cols,
                   note=f"weights k{kb} n{blocks[bi][1]}")
        elif kind == "a":
            bi, kb = steps[idx]
            t, _, r0, r1 = blocks[bi]
            m0, m1 = mtiles[t]
            if p.resident:
                load_a(b, m0, m1, kb, where)
            else:
                load_a(b, m0 + r0, m0 + r1, kb, where)
        elif kind == "bias":
            _, j, r0, r1 = blocks[idx]
            b.load(LoadDest.ACC, region[idx], bias_addr(j), r1 - r0, c.cols, 0,
                   note=f"bias n{j}")
        else:
            b.load(LoadDest.PARAM, where, param_addr(blocks[idx][1]), 2, c.cols, 4 * c.cols,
                   note=f"params n{blocks[idx][1]}")

    def a_row(s):
        bi, kb = steps[s]
        if p.resident:
            return kb * p.m_tile + blocks[bi][2]
        return (s % p.a_slots) * p.m_tile

    def w_row(s):
        return w_base + (s % p.w_slots) * c.rows

    for e in range(n_steps + 1):
        for item in loads[e]:
            emit_load(item)
        if e == 0:
            b.matmul(compute=False, preload=True, w_addr=w_row(0), note="preload")
            continue
        s = e - 1
        bi, kb = steps[s]
        t, j, r0, r1 = blocks[bi]
        nxt = s + 1 < n_steps
        b.matmul(a_addr=a_row(s), c_addr=region[bi], n_rows=r1 - r0,
                 accumulate=kb > 0 or bias_addr is not None, preload=nxt,
                 w_addr=w_row(s + 1) if nxt else 0, note=f"block {bi} k{kb}")
        if kb == kbs - 1:
            m0 = mtiles[t][0]
            store(b, region[bi], m0 + r0, m0 + r1, j, (bi % param_slots) * 2)
