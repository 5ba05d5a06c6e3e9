"""Lowerings of quantized operations to instructions: GEMM/linear, conv2d, add, max-pool.

Each function takes a :class:`Lowering` (the configuration, the program builder and the
memory layout), the device descriptors of its tensors (:class:`TensorDesc`) and the
operation's constants, allocates its constants in system memory and emits its
instructions. Tensors are row-major; 4-D activations are NHWC.
"""

import numpy as np

from ..isa import ConfigReg, LoadDest, VectorOp
from ..numerics import Activation, OutType
from .gemm import bias_rows, emit_gemm, param_rows, plan_gemm, tile_weights
from .program import MemoryLayout, ProgramBuilder
from .quant import DTYPES, Requant, dtype_offset

__all__ = ["Lowering", "TensorDesc", "lower_gemm", "lower_conv2d", "lower_add",
           "lower_clamp", "lower_max_pool", "vector_ops_supported"]

_ACT = {"none": Activation.NONE, "relu": Activation.RELU, "clamp": Activation.CLAMP}


class TensorDesc:
    """Where and how a tensor lives in system memory.

    Attributes
    ----------
    name : str
    shape : tuple of int
    dtype : str
        Logical element type (``int8``, ``uint8``, ``int32``).
    device_dtype : str
        Type of the stored bytes (see :mod:`systolic.compiler.quant`).
    addr : int
        Byte address of the first element.
    scale : float or None
    zero_point : int
        Logical zero point.
    block : int
        0: row-major (C order, no gaps). ``B > 0``: *blocked*: viewed as a matrix
        ``(M, K)`` (``K`` the last axis), stored as ``ceil(K / B)`` column blocks, each
        ``M`` rows of ``B`` elements (zero padded), one after the other. A GEMM reads a
        blocked input with contiguous bursts instead of ``B``-byte rows at a pitch of
        ``K``; the compiler uses it for GEMM inputs and GEMM-to-GEMM tensors.
    """

    def __init__(self, name, shape, dtype, device_dtype, addr, scale=None, zero_point=0,
                 block=0):
        self.name = name
        self.shape = tuple(int(s) for s in shape)
        self.dtype = dtype
        self.device_dtype = device_dtype
        self.addr = int(addr)
        self.scale = None if scale is None else float(scale)
        self.zero_point = int(zero_point)
        self.block = int(block)

    def __repr__(self):
        return (f"TensorDesc({self.name!r}, shape={self.shape}, dtype={self.dtype}, "
                f"device_dtype={self.device_dtype}, addr=0x{self.addr:x}, "
                f"scale={self.scale}, zero_point={self.zero_point}, block={self.block})")

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def itemsize(self):
        return DTYPES[self.device_dtype].nbytes

    @property
    def matrix(self):
        """``(M, K)``: the tensor as a matrix over its last axis."""
        k = self.shape[-1] if self.shape else 1
        return (self.size // k if k else 0), k

    @property
    def nbytes(self):
        if self.block:
            m, k = self.matrix
            return -(-k // self.block) * self.block * m * self.itemsize
        return self.size * self.itemsize

    @property
    def offset(self):
        return dtype_offset(self.dtype, self.device_dtype)

    @property
    def device_zero_point(self):
        return self.zero_point - self.offset

    def to_layout(self, values):
        """Device values (array of :attr:`shape`) in storage order (flat)."""
        v = np.asarray(values)
        if not self.block:
            return v.reshape(-1)
        m, k = self.matrix
        kb = -(-k // self.block)
        padded = np.zeros((m, kb * self.block), dtype=v.dtype)
        padded[:, :k] = v.reshape(m, k)
        return padded.reshape(m, kb, self.block).transpose(1, 0, 2).reshape(-1)

    def from_layout(self, flat):
        """Inverse of :meth:`to_layout`."""
        flat = np.asarray(flat)
        if not self.block:
            return flat.reshape(self.shape)
        m, k = self.matrix
        kb = -(-k // self.block)
        blocks = flat.reshape(kb, m, self.block).transpose(1, 0, 2).reshape(m, kb * self.block)
        return blocks[:, :k].reshape(self.shape)

    def to_dict(self):
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "device_dtype": self.device_dtype, "addr": self.addr, "scale": self.scale,
                "zero_point": self.zero_point, "block": self.block}

    @classmethod
    def from_dict(cls, d):
        return cls(d["name"], d["shape"], d["dtype"], d["device_dtype"], d["addr"],
                   d.get("scale"), d.get("zero_point", 0), d.get("block", 0))


class Lowering:
    """State shared by the lowerings of one device program.

    Parameters
    ----------
    config : AcceleratorConfig
    layout : MemoryLayout or None
    """

    def __init__(self, config, layout=None):
        if config.input_bits != 8 or config.weight_bits != 8:
            raise ValueError(f"the compiler needs 8-bit inputs and weights, not "
                             f"input_bits={config.input_bits}, weight_bits={config.weight_bits}")
        self.config = config
        self.layout = layout if layout is not None else MemoryLayout()
        self.builder = ProgramBuilder(config)
        self._names = 0

    def const(self, hint, array):
        self._names += 1
        return self.layout.const(f"{hint}.{self._names}", array)


def vector_ops_supported(config):
    return config.vector_unit


def _weights_in_range(config, w, what):
    lo, hi = config.weight_range
    if w.size and (w.min() < lo or w.max() > hi):
        raise ValueError(f"{what} weights (after subtracting the weight zero point) must be in "
                         f"{lo}..{hi} for this array, not {w.min()}..{w.max()}")


def _config_requant(b, requant, out, channels):
    """CONFIG the store queue for ``requant`` writing tensor ``out``."""
    c = b.config
    if requant.out_dtype == "int32":
        return OutType.INT32
    requant.check(c.requant_bits, channels)
    if not requant.per_channel:
        b.config_reg(ConfigReg.REQ_MULT, int(requant.multiplier))
        b.config_reg(ConfigReg.REQ_SHIFT, int(requant.shift))
    b.config_reg(ConfigReg.REQ_ZP, requant.zero_point - out.offset)
    b.config_reg(ConfigReg.ACTIVATION, _ACT[requant.activation])
    if requant.activation == "clamp":
        lo, hi = requant.bounds(out.offset)
        b.config_reg(ConfigReg.CLAMP_LO, lo)
        b.config_reg(ConfigReg.CLAMP_HI, hi)
    return DTYPES[out.device_dtype]


def _gemm_core(low, *, m, n, w_blocks, colsum, bias, requant, a_zp_dev, out, load_a, name):
    """Constants, CONFIGs and schedule of a GEMM whose k-blocks ``w_blocks`` (rows*kb x N)
    are already in k-block order; output rows ``m`` x ``n`` row-major in ``out``."""
    c, b = low.config, low.builder
    if out.shape and out.size != m * n:
        raise ValueError(f"{name}: output {out.name} has {out.size} elements, not {m * n}")
    if requant.out_dtype != "int32" and out.dtype != requant.out_dtype:
        raise ValueError(f"{name}: output {out.name} is {out.dtype} but requantizes to "
                         f"{requant.out_dtype}")
    k_blocks = w_blocks.shape[0] // c.rows
    total_bias = np.zeros(n, dtype=np.int64) if bias is None else np.asarray(bias, np.int64)
    if total_bias.shape != (n,):
        raise ValueError(f"{name}: bias must have {n} elements, not {total_bias.shape}")
    total_bias = total_bias - a_zp_dev * colsum
    if total_bias.min() < -(1 << 31) or total_bias.max() >= 1 << 31:
        raise ValueError(f"{name}: bias with the folded zero point does not fit int32")
    plan = plan_gemm(c, m, k_blocks, n)
    wbuf = low.const(f"{name}.weights", np.frombuffer(tile_weights(c, w_blocks), np.uint8))
    tile_bytes = c.rows * c.cols
    has_bias = bool(np.any(total_bias))
    bbuf = low.const(f"{name}.bias", np.frombuffer(bias_rows(c, total_bias), np.uint8)) \
        if has_bias else None
    out_type = _config_requant(b, requant, out, n)
    pbuf = None
    if out_type is not OutType.INT32 and requant.per_channel:
        pbuf = low.const(f"{name}.params", np.frombuffer(
            param_rows(c, np.asarray(requant.multiplier), np.asarray(requant.shift)), np.uint8))
    eb = out_type.nbytes

    if out.block and out.block != c.cols:
        raise ValueError(f"{name}: a blocked output needs blocks of cols ({c.cols}), not "
                         f"{out.block}")

    def store(bb, acc_row, m0, m1, nb, param_row):
        width = min(c.cols, n - nb * c.cols)
        if out.block:
            addr, pitch = out.addr + (nb * m + m0) * c.cols * eb, c.cols * eb
        else:
            addr, pitch = out.addr + (m0 * n + nb * c.cols) * eb, n * eb
        bb.store(acc_row, addr, m1 - m0, width, pitch, out_type=out_type,
                 per_channel=pbuf is not None, param_addr=param_row,
                 note=f"{name} out n{nb}")

    emit_gemm(b, plan, m=m, n=n, load_a=load_a,
              w_tile_addr=lambda kb, nb: wbuf.addr + (nb * k_blocks + kb) * tile_bytes,
              store=store,
              bias_addr=(lambda nb: bbuf.addr + nb * c.cols * 4) if bbuf else None,
              param_addr=(lambda nb: pbuf.addr + nb * 2 * c.cols * 4) if pbuf else None)
    return plan


def lower_gemm(low, a, out, weight, bias=None, requant=None, *,
               weight_zero_point=0, name="gemm"):
    """``out = requant((a - zp_a) @ (weight - zp_w) + bias)``.

    ``a`` is ``(..., K)`` (leading axes flattened into M), ``weight`` ``K x N`` integers,
    ``bias`` N int32 or ``None``; ``out`` is ``(..., N)``. Any M, N, K.
    """
    c = low.config
    requant = requant or Requant(out_dtype="int32")
    w = np.asarray(weight, dtype=np.int64) - weight_zero_point
    if w.ndim != 2 or a.shape[-1] != w.shape[0]:
        raise ValueError(f"{name}: weight must be K x N with K = {a.shape[-1]}, not "
                         f"{w.shape}")
    _weights_in_range(c, w, name)
    k, n = w.shape
    m = a.size // k
    kb = -(-k // c.rows)
    blocks = np.zeros((kb * c.rows, n), dtype=np.int64)
    blocks[:k] = w

    if a.block and a.block != c.rows:
        raise ValueError(f"{name}: a blocked input needs blocks of rows ({c.rows}), not "
                         f"{a.block}")

    def load_a(bb, m0, m1, kbi, sp_row):
        width = min(c.rows, k - kbi * c.rows)
        if a.block:
            addr, pitch = a.addr + (kbi * m + m0) * c.rows, c.rows
        else:
            addr, pitch = a.addr + m0 * k + kbi * c.rows, k
        bb.load(LoadDest.SP, sp_row, addr, m1 - m0, width, pitch, note=f"{name} in k{kbi}")

    return _gemm_core(low, m=m, n=n, w_blocks=blocks, colsum=w.sum(axis=0), bias=bias,
                      requant=requant, a_zp_dev=a.device_zero_point, out=out, load_a=load_a,
                      name=name)


def _pad_rows(bb, sp_row, count, width, note):
    """Rows of nothing but the pad value (LOAD with no memory rows; <= 30 per LOAD)."""
    while count:
        part = min(count, 30)
        top = min(part, 15)
        bb.load(LoadDest.SP, sp_row, 0, part, width, 0, pad_top=top, pad_bottom=part - top,
                note=note)
        sp_row += part
        count -= part


def lower_conv2d(low, x, out, weight, bias=None, requant=None, *,
                 stride=(1, 1), padding=(0, 0, 0, 0), weight_zero_point=0, name="conv"):
    """2-D convolution of NHWC ``x`` with ``weight`` (KH, KW, C, F) into NHWC ``out``.

    im2col is done by the LOAD engine: k-block ``(tap, c-block)`` of output pixel rows
    ``(n, oy, ox)`` is one strided LOAD per output row segment (stride ``sx * C`` bytes),
    with LOAD padding (pad value = the input zero point) for pixels outside the image.
    ``padding`` is (top, left, bottom, right).
    """
    c, b = low.config, low.builder
    requant = requant or Requant(out_dtype="int32")
    w = np.asarray(weight, dtype=np.int64) - weight_zero_point
    if w.ndim != 4 or len(x.shape) != 4 or w.shape[2] != x.shape[3]:
        raise ValueError(f"{name}: weight must be (KH, KW, C, F) with C = {x.shape[-1]}, not "
                         f"{w.shape}")
    _weights_in_range(c, w, name)
    kh, kw, ch, f = w.shape
    nb_, h, wd, _ = x.shape
    (sy, sx), (pt, pl, pb, pr) = stride, padding
    if min(sy, sx) < 1 or min(padding) < 0:
        raise ValueError(f"{name}: stride must be positive and padding non-negative")
    oh, ow = (h + pt + pb - kh) // sy + 1, (wd + pl + pr - kw) // sx + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"{name}: kernel {kh}x{kw} is larger than the padded input")
    if out.shape != (nb_, oh, ow, f):
        raise ValueError(f"{name}: output must be {(nb_, oh, ow, f)}, not {out.shape}")
    cblocks = -(-ch // c.rows)
    blocks = np.zeros((kh * kw * cblocks * c.rows, f), dtype=np.int64)
    for t in range(kh * kw):
        for cb in range(cblocks):
            part = w[t // kw, t % kw, cb * c.rows:(cb + 1) * c.rows]
            r0 = (t * cblocks + cb) * c.rows
            blocks[r0:r0 + len(part)] = part
    b.config_reg(ConfigReg.PAD_VALUE, x.device_zero_point)

    def load_a(bb, m0, m1, kbi, sp_row):
        tap, cb = divmod(kbi, cblocks)
        ky, kx = divmod(tap, kw)
        width = min(c.rows, ch - cb * c.rows)
        row = m0
        while row < m1:
            img, rest = divmod(row, oh * ow)
            oy, ox0 = divmod(rest, ow)
            ox1 = min(ow, ox0 + (m1 - row))
            count = ox1 - ox0
            iy = oy * sy + ky - pt
            dst = sp_row + row - m0
            note = f"{name} im2col k{kbi}"
            lo = max(ox0, -(-(pl - kx) // sx))            # first ox with ix >= 0
            hi = min(ox1, (wd - 1 - kx + pl) // sx + 1)   # one past the last with ix < W
            if not 0 <= iy < h or hi <= lo:
                _pad_rows(bb, dst, count, width, note)
            else:
                lead, trail = lo - ox0, ox1 - hi
                if lead > 15:
                    _pad_rows(bb, dst, lead, width, note)
                    dst, lead = dst + lead, 0
                tail_rows = trail if trail > 15 else 0
                trail -= tail_rows
                ix = lo * sx + kx - pl
                addr = x.addr + ((img * h + iy) * wd + ix) * ch + cb * c.rows
                bb.load(LoadDest.SP, dst, addr, lead + (hi - lo) + trail, width, sx * ch,
                        pad_top=lead, pad_bottom=trail, note=note)
                if tail_rows:
                    _pad_rows(bb, dst + lead + (hi - lo) + trail, tail_rows, width, note)
            row += count

    return _gemm_core(low, m=nb_ * oh * ow, n=f, w_blocks=blocks, colsum=w.sum(axis=(0, 1, 2)),
                      bias=bias, requant=requant, a_zp_dev=x.device_zero_point, out=out,
                      load_a=load_a, name=name)


def _identity_tile(low, name):
    c = low.config
    eye = np.zeros((c.rows, c.cols), dtype=np.uint8)
    lanes = min(c.rows, c.cols)
    eye[np.arange(lanes), np.arange(lanes)] = 1
    return low.const(f"{name}.identity", eye), lanes


def lower_add(low, a, b_in, out, params, requant, *, name="add"):
    """``out = a + b`` requantized (:class:`AddParams`), on the VECTOR unit's RESCALE_ADD.

    Both inputs are widened into accumulator rows by MATMUL with an identity weight tile
    on top of a broadcast ``-zero_point`` row; RESCALE_ADD scales and adds them; STORE
    applies ``round_shift(t, pre_shift) + zp`` and the activation.
    """
    c, b = low.config, low.builder
    if not c.vector_unit:
        raise ValueError(f"{name}: this configuration has no vector unit")
    if a.shape != b_in.shape or a.shape != out.shape:
        raise ValueError(f"{name}: shapes must match, not {a.shape}, {b_in.shape}, {out.shape}")
    eye, lanes = _identity_tile(low, name)
    zps = np.zeros((2, c.cols), dtype="<i4")
    zps[0, :], zps[1, :] = -a.device_zero_point, -b_in.device_zero_point
    zbuf = low.const(f"{name}.zp", zps)
    total = a.size
    rows_all = -(-total // lanes)
    chunk = min(c.acc_rows // 4, (c.sp_rows - c.rows) // 4, 4096)
    p = params
    for reg, val in ((ConfigReg.VEC_MULT_A, p.mult_a), (ConfigReg.VEC_SHIFT_A, p.shift_a),
                     (ConfigReg.VEC_MULT_B, p.mult_b), (ConfigReg.VEC_SHIFT_B, p.shift_b)):
        b.config_reg(reg, val)
    rq = Requant(1, params.pre_shift, requant.zero_point, requant.out_dtype, requant.activation,
                 requant.clamp)
    out_type = _config_requant(b, rq, out, 1)
    b.load(LoadDest.SP, 0, eye.addr, c.rows, c.cols, c.cols, note=f"{name} identity")
    b.matmul(compute=False, preload=True, w_addr=0, note=f"{name} identity")
    for i, r0 in enumerate(range(0, rows_all, chunk)):
        r1 = min(rows_all, r0 + chunk)
        n = r1 - r0
        par = i % 2
        acc_a, acc_b = (2 * par) * chunk, (2 * par + 1) * chunk
        sp_a, sp_b = c.rows + 2 * par * chunk, c.rows + (2 * par + 1) * chunk
        for src, sp, acc, z in ((a, sp_a, acc_a, 0), (b_in, sp_b, acc_b, 1)):
            b.load(LoadDest.ACC, acc, zbuf.addr + z * 4 * c.cols, n, c.cols, 0,
                   note=f"{name} -zp")
            b.load(LoadDest.SP, sp, src.addr + r0 * lanes, n, lanes, lanes, note=f"{name} in")
            b.matmul(a_addr=sp, c_addr=acc, n_rows=n, accumulate=True, note=f"{name} widen")
        b.vector(VectorOp.RESCALE_ADD, acc_a, acc_a, n, src_b=acc_b, note=name)
        _store_flat(b, acc_a, out, r0, n, rows_all, lanes, out_type, name)


def lower_clamp(low, x, out, lo, hi, *, name="clamp"):
    """``out = clamp(x, lo, hi)`` elementwise (logical values; a standalone ReLU): rows of
    ``min(rows, cols)`` elements are widened by an identity MATMUL and stored through the
    CLAMP activation with ``M = 1``. Needs no vector unit."""
    c, b = low.config, low.builder
    if x.shape != out.shape or x.dtype != out.dtype or x.zero_point != out.zero_point:
        raise ValueError(f"{name}: output must have the input's shape, dtype and zero point")
    eye, lanes = _identity_tile(low, name)
    for reg, val in ((ConfigReg.REQ_MULT, 1), (ConfigReg.REQ_SHIFT, 0), (ConfigReg.REQ_ZP, 0),
                     (ConfigReg.ACTIVATION, Activation.CLAMP),
                     (ConfigReg.CLAMP_LO, lo - x.offset), (ConfigReg.CLAMP_HI, hi - x.offset)):
        b.config_reg(reg, val)
    out_type = DTYPES[out.device_dtype]
    total = x.size
    rows_all = -(-total // lanes)
    chunk = min(c.acc_rows // 2, (c.sp_rows - c.rows) // 2, 4096)
    b.load(LoadDest.SP, 0, eye.addr, c.rows, c.cols, c.cols, note=f"{name} identity")
    b.matmul(compute=False, preload=True, w_addr=0, note=f"{name} identity")
    for i, r0 in enumerate(range(0, rows_all, chunk)):
        n = min(rows_all, r0 + chunk) - r0
        sp, acc = c.rows + (i % 2) * chunk, (i % 2) * chunk
        b.load(LoadDest.SP, sp, x.addr + r0 * lanes, n, lanes, lanes, note=f"{name} in")
        b.matmul(a_addr=sp, c_addr=acc, n_rows=n, note=f"{name} widen")
        _store_flat(b, acc, out, r0, n, rows_all, lanes, out_type, name)


def _store_flat(b, acc, out, r0, n, rows_all, lanes, out_type, name):
    """STORE accumulator rows ``r0...`` of a flat tensor cut into rows of ``lanes``."""
    total = out.size
    full = n if r0 + n < rows_all or total % lanes == 0 else n - 1
    if full:
        b.store(acc, out.addr + r0 * lanes, full, lanes, lanes, out_type=out_type,
                note=f"{name} out")
    if full < n:
        b.store(acc + full, out.addr + (r0 + full) * lanes, 1, total % lanes, lanes,
                out_type=out_type, note=f"{name} out tail")


def lower_max_pool(low, x, out, *, kernel, stride, padding=(0, 0, 0, 0), name="maxpool"):
    """NHWC max-pool on the VECTOR unit: per output image row and channel block, each
    window tap is gathered by a strided LOAD (padding = the type's minimum), widened by an
    identity MATMUL and folded in with VECTOR MAX; the result is stored unchanged."""
    c, b = low.config, low.builder
    if not c.vector_unit:
        raise ValueError(f"{name}: this configuration has no vector unit")
    (kh, kw), (sy, sx), (pt, pl, pb, pr) = kernel, stride, padding
    n_, h, wd, ch = x.shape
    oh, ow = (h + pt + pb - kh) // sy + 1, (wd + pl + pr - kw) // sx + 1
    if out.shape != (n_, oh, ow, ch) or out.dtype != x.dtype:
        raise ValueError(f"{name}: output must be {(n_, oh, ow, ch)} {x.dtype}, not "
                         f"{out.shape} {out.dtype}")
    if max(pt, pb) >= kh or max(pl, pr) >= kw:
        raise ValueError(f"{name}: padding must be smaller than the kernel")
    eye, lanes = _identity_tile(low, name)
    for reg, val in ((ConfigReg.REQ_MULT, 1), (ConfigReg.REQ_SHIFT, 0), (ConfigReg.REQ_ZP, 0),
                     (ConfigReg.ACTIVATION, Activation.NONE)):
        b.config_reg(reg, val)
    out_type = DTYPES[out.device_dtype]
    b.config_reg(ConfigReg.PAD_VALUE, DTYPES[x.device_dtype].range[0])
    group = min(oh, (c.acc_rows // 4) // ow, (c.sp_rows - c.rows) // (2 * ow), 4096 // ow)
    if group < 1 or max(kh, kw) > 16:
        raise ValueError(f"{name}: output rows of {ow} pixels or a {kh}x{kw} window do not "
                         f"fit this configuration")
    b.load(LoadDest.SP, 0, eye.addr, c.rows, c.cols, c.cols, note=f"{name} identity")
    b.matmul(compute=False, preload=True, w_addr=0, note=f"{name} identity")
    cblocks = -(-ch // lanes)
    it = 0
    for img in range(n_):
        for cb in range(cblocks):
            width = min(lanes, ch - cb * lanes)
            for oy0 in range(0, oh, group):
                oy1 = min(oh, oy0 + group)
                par = it % 2
                it += 1
                res, tmp = 2 * par * group * ow, (2 * par + 1) * group * ow
                sp = c.rows + par * group * ow
                for tap in range(kh * kw):
                    ky, kx = divmod(tap, kw)
                    for oy in range(oy0, oy1):
                        iy = oy * sy + ky - pt
                        dst = sp + (oy - oy0) * ow
                        lo = max(0, -(-(pl - kx) // sx))
                        hi = min(ow, (wd - 1 - kx + pl) // sx + 1)
                        if not 0 <= iy < h or hi <= lo:
                            _pad_rows(b, dst, ow, width, name)
                            continue
                        ix = lo * sx + kx - pl
                        addr = x.addr + ((img * h + iy) * wd + ix) * ch + cb * lanes
                        b.load(LoadDest.SP, dst, addr, ow, width, sx * ch, pad_top=lo,
                               pad_bottom=ow - hi, note=f"{name} tap {tap}")
                    rows = (oy1 - oy0) * ow
                    b.matmul(a_addr=sp, c_addr=res if tap == 0 else tmp, n_rows=rows,
                             note=f"{name} widen")
                    if tap:
                        b.vector(VectorOp.MAX, res, res, rows, src_b=tmp, note=name)
                b.store(res, out.addr + ((img * oh + oy0) * ow) * ch + cb * lanes,
                        (oy1 - oy0) * ow, width, ch, out_type=out_type, note=f"{name} out")
