"""Directed programs: one small program per instruction and variant, in assembly.

Each program reads the data area (``DATA``: random bytes, then int32 words from
``WORDS``), writes the output area (``OUT``) and is placed at ``PROG``; the result is
whatever the golden model says. They complement the random programs with cases a reader
can check by eye.
"""

import numpy as np

from ..isa import VectorOp, assemble, to_bytes
from ..numerics import Activation

__all__ = ["DATA", "WORDS", "OUT", "PROG", "directed_programs", "directed_image",
           "far_error_programs", "persistence_programs"]

DATA, WORDS, OUT, PROG = 0x000, 0x200, 0x400, 0x800
IMAGE_BYTES = 0x1000


def directed_image(words, seed=0):
    """The memory image of a directed program: data, output area, program."""
    rng = np.random.default_rng(seed)
    image = bytearray(rng.integers(0, 256, IMAGE_BYTES, dtype=np.uint8).tobytes())
    values = rng.integers(-3000, 3000, (OUT - WORDS) // 4).astype("<i4")
    values[:4] = [2**31 - 1, -(2**31), 2**30, -(2**30)]
    image[WORDS:OUT] = values.tobytes()
    code = to_bytes(words)
    if PROG + len(code) > IMAGE_BYTES:
        raise ValueError(f"directed program of {len(words)} instructions is too long")
    image[PROG:PROG + len(code)] = code
    return bytes(image)


def _acc_rows(c, n, addr=0, flags="push_next"):
    """LOAD n int32 rows (from WORDS) into the accumulator at ``addr``."""
    return (f"LOAD dest=acc n_rows={n} addr={addr} length={c.cols} stride={4 * c.cols} "
            f"dram_addr={WORDS} {flags}")


def _hand_over():
    """Exec passes the load queue's token on to the store queue."""
    return "SYNC queue=exec pop_prev push_next"


def _store_acc(c, n, out="int32", extra="", addr=0):
    return (f"STORE src=acc out_type={out} n_rows={n} addr={addr} length={c.cols} "
            f"stride={4 * c.cols} dram_addr={OUT} {extra} pop_prev")


def _programs(c):
    R, C, W = c.rows, c.cols, c.sp_width
    mmax = (1 << (c.requant_bits - 1)) - 1
    p = {}
    p["nop_halt"] = "NOP\nNOP\nHALT"
    p["halt_stops_fetch"] = "NOP\nHALT\nLOAD n_rows=0\n"     # the bad word is never decoded
    p["sync_every_queue"] = "\n".join([
        "SYNC queue=load push_next", "SYNC queue=exec pop_prev push_next push_prev",
        "SYNC queue=store pop_prev push_prev", "SYNC queue=exec pop_next",
        "SYNC queue=load pop_next", "HALT"])
    p["load_sp_padded_store_sp"] = "\n".join([
        "CONFIG reg=pad_value value=0xA5",
        f"LOAD dest=sp n_rows=9 addr=3 length={max(1, W - 1)} pad_left=1 pad_top=2 "
        f"pad_bottom=3 stride={W + 3} dram_addr={DATA + 5} push_next",
        _hand_over(),
        f"STORE src=sp out_type=int8 n_rows=11 addr=2 length={W} stride={W + 1} "
        f"dram_addr={OUT + 1} pop_prev", "HALT"])
    p["load_sp_stride0_length0"] = "\n".join([
        "CONFIG reg=pad_value value=-7",
        f"LOAD dest=sp n_rows=4 addr=0 length={W} stride=0 dram_addr={DATA + 17}",
        "LOAD dest=sp n_rows=3 addr=4 length=0 push_next", _hand_over(),
        f"STORE src=sp out_type=int8 n_rows=7 addr=0 length={W} stride={W} dram_addr={OUT} "
        "pop_prev", "HALT"])
    p["load_acc_bias_stride0"] = "\n".join([
        f"LOAD dest=acc n_rows=5 addr=2 length={C} pad_top=1 stride=0 dram_addr={WORDS + 8} "
        "push_next", _hand_over(), _store_acc(c, 7), "HALT"])
    for out in ("int8", "uint8", "int32"):
        p[f"store_acc_{out}_per_tensor"] = "\n".join([
            _acc_rows(c, 6), _hand_over(),
            f"CONFIG reg=req_mult value={mmax // 3}", "CONFIG reg=req_shift value=12",
            "CONFIG reg=req_zp value=-3", _store_acc(c, 6, out), "HALT"])
    for out in ("int8", "uint8"):
        p[f"store_acc_{out}_per_channel"] = "\n".join([
            f"LOAD dest=param n_rows=2 addr=0 length={C} stride={4 * C} "
            f"dram_addr={WORDS + 64}", _acc_rows(c, 4), _hand_over(),
            _store_acc(c, 4, out, "per_channel=1 param_addr=0"), "HALT"])
    for act, extra in (("relu", ""), ("clamp", "CONFIG reg=clamp_lo value=-20\n"
                                               "CONFIG reg=clamp_hi value=40")):
        p[f"activation_{act}"] = "\n".join([
            _acc_rows(c, 4), _hand_over(), "CONFIG reg=req_mult value=1",
            "CONFIG reg=req_shift value=4", "CONFIG reg=req_zp value=5",
            f"CONFIG reg=activation value={Activation[act.upper()].value}", extra,
            _store_acc(c, 4, "int8"), "HALT"])
    p["matmul_preload_compute_accumulate"] = "\n".join([
        f"LOAD dest=sp n_rows={R} addr=0 length={C} stride={C} dram_addr={DATA}",
        f"LOAD dest=sp n_rows={2 * R} addr={R} length={C} stride={C} "
        f"dram_addr={DATA + R * C}",
        f"LOAD dest=sp n_rows=5 addr={3 * R} length={R} stride={R + 2} dram_addr={DATA + 99} "
        "push_next",
        "MATMUL preload=1 w_addr=0 pop_prev",
        f"MATMUL compute=1 preload=1 n_rows=5 a_addr={3 * R} c_addr=0 w_addr={R}",
        f"MATMUL compute=1 accumulate=1 n_rows=5 a_addr={3 * R} c_addr=0",
        f"MATMUL compute=1 n_rows=1 a_addr={3 * R + 4} c_addr=5 push_next",
        _store_acc(c, 6), "HALT"])
    if c.vector_unit:
        for vop in VectorOp:
            imm = {"SHIFT": 3, "MULI": -5}.get(vop.name, 1234)
            p[f"vector_{vop.name.lower()}"] = "\n".join([
                _acc_rows(c, 6), "CONFIG reg=vec_mult_a value=3",
                "CONFIG reg=vec_shift_a value=1", "CONFIG reg=vec_mult_b value=5",
                "CONFIG reg=vec_shift_b value=2",
                f"VECTOR op={vop.name.lower()} n_rows=3 dst=6 src_a=0 src_b=3 imm={imm} "
                "pop_prev",
                f"VECTOR op={vop.name.lower()} n_rows=2 dst=0 src_a=0 src_b=4 imm={-imm} "
                "push_next", _store_acc(c, 9), "HALT"])
        p["vector_shift_left_saturates"] = "\n".join([
            _acc_rows(c, 2), "VECTOR op=shift n_rows=2 dst=2 src_a=0 imm=-31 pop_prev "
            "push_next", _store_acc(c, 4), "HALT"])
    return p


def directed_programs(config, seed=0):
    """``{name: (image, prog_addr, prog_len)}`` for ``config``: one program per
    instruction and variant (opcodes, load destinations, store types, activations,
    MATMUL modes, every vector op, SYNC in every queue)."""
    out = {}
    for name, text in _programs(config).items():
        words = assemble(text)
        image = directed_image(words, seed)
        out[name] = (image, PROG, len(words))
    return out



def persistence_programs(config, seed=0):
    """Two programs run back to back: the first fills the scratchpad, accumulator and
    parameter buffer and preloads weights; the second only reads them (the model keeps
    memories and weights between runs, and resets CONFIG registers at each START)."""
    c = config
    R, C = c.rows, c.cols
    first = "\n".join([
        "CONFIG reg=req_mult value=7",                       # must not survive the run
        f"LOAD dest=sp n_rows={R} addr=0 length={C} stride={C} dram_addr={DATA}",
        f"LOAD dest=sp n_rows=4 addr={R} length={R} stride={R} dram_addr={DATA + 64}",
        _acc_rows(c, 4, flags=""),
        f"LOAD dest=param n_rows=2 addr=0 length={C} stride={4 * C} dram_addr={WORDS + 64} "
        "push_next",
        "MATMUL preload=1 w_addr=0 pop_prev", "HALT"])
    second = "\n".join([
        f"MATMUL compute=1 n_rows=4 a_addr={R} c_addr=8 push_next",
        f"STORE src=acc out_type=int32 n_rows=4 addr=0 length={C} stride={4 * C} "
        f"dram_addr={OUT} pop_prev",
        f"STORE src=acc out_type=int32 n_rows=4 addr=8 length={C} stride={4 * C} "
        f"dram_addr={OUT + 16 * C}",
        f"STORE src=acc out_type=int8 per_channel=1 param_addr=0 n_rows=4 addr=8 "
        f"length={C} stride={C} dram_addr={OUT + 32 * C}",
        f"STORE src=acc out_type=int8 n_rows=4 addr=8 length={C} stride={C} "
        f"dram_addr={OUT + 36 * C}",
        f"STORE src=sp out_type=int8 n_rows=4 addr={R} length={R} stride={R} "
        f"dram_addr={OUT + 40 * C}", "HALT"])
    out = []
    for text in (first, second):
        words = assemble(text)
        out.append((directed_image(words, seed), PROG, len(words)))
    return out


def far_error_programs(config, seed=0, gap=600):
    """``{name: (image, prog_addr, prog_len)}``: AXI errors of LOAD and STORE micro-ops
    whose instruction index is far from the others (``gap`` NOPs before or after them),
    reading or writing just past the end of the image. The controller keeps only an
    index's low bits with a queued micro-op; these programs check the full index comes
    back, across wrap-arounds of those bits and with decode far ahead of a queue's head."""
    c = config
    W, rows = c.sp_width, min(c.sp_rows, 1024)
    prog = 0x1000
    size = prog + 16 * (gap + 8)
    nops = ["NOP"] * gap
    fill = [f"LOAD dest=sp n_rows={rows} addr=0 length={W} stride=0 dram_addr={DATA} "
            "push_next", _hand_over()]
    bad_load = f"LOAD dest=sp n_rows=1 addr=0 length={W} stride={W} dram_addr={size}"
    bad_store = (f"STORE src=sp out_type=int8 n_rows=1 addr=0 length={W} stride={W} "
                 f"dram_addr={size}")
    texts = {
        "load_error_after_nops": [*nops, bad_load, "HALT"],
        "store_error_after_nops": [*fill, *nops, bad_store + " pop_prev", "HALT"],
        # the bad LOAD waits at its queue's head for a long STORE while decode goes on
        "load_error_behind_store": [
            *fill, f"STORE src=sp out_type=int8 n_rows={rows} addr=0 length={W} stride=0 "
            f"dram_addr={OUT} pop_prev push_prev", "SYNC queue=exec pop_next push_prev",
            bad_load + " pop_next", *nops, "HALT"],
    }
    rng = np.random.default_rng(seed)
    out = {}
    for name, lines in texts.items():
        words = assemble("\n".join(lines))
        image = bytearray(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        image[prog:prog + 16 * len(words)] = to_bytes(words)
        out[name] = (bytes(image), prog, len(words))
    return out
