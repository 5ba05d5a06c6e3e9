"""Quantization parameters, the device representation of tensors, and NumPy references.

Device representation
---------------------
The array reads activations with the configuration's signedness
(``config.input_signed``). A tensor whose logical type differs (uint8 activations on an
int8 array, or int8 on a uint8 array) is stored shifted by 128: ``q_dev = q - offset``
with ``offset = 128`` (uint8 -> int8) or ``-128`` (int8 -> uint8), and its zero point
shifts the same way, so ``q_dev - zp_dev == q - zp`` and every result is unchanged.
:meth:`CompiledProgram.write_input` and :meth:`read_output` convert at the edges.

Zero points
-----------
Activation zero points are folded into the bias:
``sum_k (a - zp_a) * w = a @ w - zp_a * colsum(w)``, so the device computes
``a_dev @ w + (bias - zp_dev * colsum(w))``. Weight zero points are subtracted from the
weights at compile time (``w - zp_w`` must fit the array's weight type).

The reference functions here compute every operation from logical values with plain
integer NumPy; the compiled programs must equal them bit for bit.
"""

from dataclasses import dataclass

import numpy as np

from ..numerics import (
    INT32_MAX,
    INT32_MIN,
    SHIFT_MAX,
    Activation,
    OutType,
    activation_bounds,
    requantize,
    round_shift,
    scale_to_multiplier,
)

__all__ = [
    "DTYPES", "Requant", "AddParams", "device_dtype", "dtype_offset", "to_device",
    "from_device", "gemm_ref", "conv2d_ref", "add_ref", "max_pool_ref", "im2col",
]

DTYPES = {"int8": OutType.INT8, "uint8": OutType.UINT8, "int32": OutType.INT32}
_ACT = {"none": Activation.NONE, "relu": Activation.RELU, "clamp": Activation.CLAMP}


def device_dtype(config):
    """The dtype activations have on this configuration's array."""
    return "int8" if config.input_signed else "uint8"


def dtype_offset(dtype, dev_dtype):
    """``offset`` with ``q_dev = q - offset`` (0, 128 or -128)."""
    if dtype == dev_dtype or "int32" in (dtype, dev_dtype):
        return 0
    return 128 if dtype == "uint8" else -128


def to_device(values, dtype, dev_dtype):
    """Logical values as device-representation values (int64)."""
    return np.asarray(values, dtype=np.int64) - dtype_offset(dtype, dev_dtype)


def from_device(values, dtype, dev_dtype):
    return np.asarray(values, dtype=np.int64) + dtype_offset(dtype, dev_dtype)


@dataclass(frozen=True)
class Requant:
    """How an accumulator becomes an output: ``clamp(round_shift(acc * M, s) + zp)``.

    Parameters
    ----------
    multiplier, shift : int or sequence of int
        Per tensor (ints) or per output channel (one per column of the output).
    zero_point : int
        Output zero point (logical, in ``out_dtype``).
    out_dtype : str
        ``"int8"``, ``"uint8"`` or ``"int32"`` (raw accumulator: no requantization).
    activation : str
        ``"none"``, ``"relu"`` (clamp below at the zero point) or ``"clamp"``.
    clamp : (int, int) or None
        Bounds (logical output values) of the ``"clamp"`` activation.
    """
    multiplier: object = 1
    shift: object = 0
    zero_point: int = 0
    out_dtype: str = "int8"
    activation: str = "none"
    clamp: tuple | None = None

    def __post_init__(self):
        if self.out_dtype not in DTYPES:
            raise ValueError(f"Requant out_dtype must be int8, uint8 or int32, not "
                             f"{self.out_dtype!r}")
        if self.activation not in _ACT:
            raise ValueError(f"Requant activation must be none, relu or clamp, not "
                             f"{self.activation!r}")
        if self.activation == "clamp" and (self.clamp is None or len(self.clamp) != 2):
            raise ValueError(f"Requant clamp must be (lo, hi) with activation 'clamp', not "
                             f"{self.clamp!r}")
        lo, hi = DTYPES[self.out_dtype].range
        if self.out_dtype != "int32" and not lo <= self.zero_point <= hi:
            raise ValueError(f"Requant zero_point must be in {lo}..{hi} for "
                             f"{self.out_dtype}, not {self.zero_point}")
        m, s = np.asarray(self.multiplier), np.asarray(self.shift)
        if m.shape != s.shape:
            raise ValueError(f"Requant multiplier and shift must have the same shape, not "
                             f"{m.shape} and {s.shape}")
        if np.any(s < 0) or np.any(s > SHIFT_MAX) or np.any(m < 0):
            raise ValueError("Requant shift must be in 0..63 and multiplier non-negative")

    @classmethod
    def from_scale(cls, scale, *, requant_bits=32, **kwargs):
        """From a real scale (``in_scale * w_scale / out_scale``), per tensor or channel."""
        arr = np.asarray(scale, dtype=np.float64)
        pairs = [scale_to_multiplier(float(x), requant_bits) for x in arr.reshape(-1)]
        if arr.ndim == 0:
            return cls(pairs[0][0], pairs[0][1], **kwargs)
        return cls(tuple(p[0] for p in pairs), tuple(p[1] for p in pairs), **kwargs)

    @property
    def per_channel(self):
        return np.ndim(self.multiplier) > 0

    @property
    def out_type(self):
        return DTYPES[self.out_dtype]

    def check(self, requant_bits, channels):
        """Raise if the multipliers do not fit ``requant_bits`` or the channel count."""
        m = np.asarray(self.multiplier)
        if np.any(m >= 1 << (requant_bits - 1)):
            raise ValueError(f"requantization multiplier {int(m.max())} does not fit "
                             f"{requant_bits}-bit M (at most {(1 << (requant_bits - 1)) - 1})")
        if self.per_channel and len(m) != channels:
            raise ValueError(f"per-channel requantization needs {channels} multipliers, "
                             f"not {len(m)}")

    def bounds(self, offset=0):
        """``(lo, hi)`` of the output after the activation, shifted by ``-offset``."""
        lo, hi = self.clamp if self.clamp is not None else (INT32_MIN, INT32_MAX)
        blo, bhi = activation_bounds(self.out_type, _ACT[self.activation], self.zero_point,
                                     lo, hi)
        return blo - offset, bhi - offset

    def apply(self, acc):
        """Requantize an int64 accumulator array (last axis = channels), logical values."""
        acc = np.asarray(acc, dtype=np.int64)
        if self.out_dtype == "int32":
            return np.clip(acc, INT32_MIN, INT32_MAX)
        lo, hi = self.bounds()
        return requantize(acc, np.asarray(self.multiplier), np.asarray(self.shift),
                          self.zero_point, lo, hi)


@dataclass(frozen=True)
class AddParams:
    """Integer parameters of a quantized elementwise add.

    ``t = round_shift((a - zp_a) * Ma, sa) + round_shift((b - zp_b) * Mb, sb)`` (the VECTOR
    unit's RESCALE_ADD), then ``y = clamp(round_shift(t, pre_shift) + zp_y)`` (STORE with
    ``M = 1``). ``Ma / 2**sa ~= scale_a / scale_y * 2**pre_shift``.
    """
    mult_a: int
    shift_a: int
    mult_b: int
    shift_b: int
    pre_shift: int

    @classmethod
    def from_scales(cls, scale_a, scale_b, scale_y, requant_bits=32):
        ra, rb = scale_a / scale_y, scale_b / scale_y
        if not (ra > 0 and rb > 0):
            raise ValueError(f"add scales must be positive, not {scale_a}, {scale_b}, {scale_y}")
        room = (INT32_MAX - 4) / (256.0 * (ra + rb))
        if room < 1:
            raise ValueError(f"add input scales {scale_a}, {scale_b} are too large for output "
                             f"scale {scale_y}")
        mroom = ((1 << (requant_bits - 1)) - 1) / max(ra, rb)
        pre = int(min(20, np.floor(np.log2(room)), np.floor(np.log2(mroom))))
        if pre < 0:
            raise ValueError(f"add scale ratios {ra}, {rb} do not fit {requant_bits}-bit "
                             f"multipliers")
        ma, sa = scale_to_multiplier(ra * 2.0**pre, requant_bits)
        mb, sb = scale_to_multiplier(rb * 2.0**pre, requant_bits)
        return cls(ma, sa, mb, sb, pre)


# -- references -----------------------------------------------------------------------------

def gemm_ref(a, w, bias, requant, a_zp=0, w_zp=0):
    """``requant((a - a_zp) @ (w - w_zp) + bias)`` on logical integer arrays."""
    acc = (np.asarray(a, np.int64) - a_zp) @ (np.asarray(w, np.int64) - w_zp)
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    return requant.apply(acc)


def im2col(x, kh, kw, stride, padding, pad_value):
    """NHWC ``x`` as rows ``(n, oy, ox)`` of ``(ky, kx, c)`` patches, padded with ``pad_value``."""
    n, h, w, c = x.shape
    (sy, sx), (pt, pl, pb, pr) = stride, padding
    xp = np.full((n, h + pt + pb, w + pl + pr, c), pad_value, dtype=np.int64)
    xp[:, pt:pt + h, pl:pl + w] = x
    oh, ow = (h + pt + pb - kh) // sy + 1, (w + pl + pr - kw) // sx + 1
    cols = np.empty((n, oh, ow, kh, kw, c), dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            ys, xs = slice(ky, ky + sy * (oh - 1) + 1, sy), slice(kx, kx + sx * (ow - 1) + 1, sx)
            cols[:, :, :, ky, kx] = xp[:, ys, xs]
    return cols.reshape(n * oh * ow, kh * kw * c), (n, oh, ow)


def conv2d_ref(x, w, bias, requant, stride, padding, x_zp=0, w_zp=0):
    """NHWC convolution with HWCF weights, padding with the input zero point."""
    kh, kw, c, f = w.shape
    cols, (n, oh, ow) = im2col(x, kh, kw, stride, padding, x_zp)
    y = gemm_ref(cols, np.asarray(w, np.int64).reshape(kh * kw * c, f), bias, requant, x_zp,
                 w_zp)
    return y.reshape(n, oh, ow, f)


def add_ref(a, b, params, a_zp, b_zp, requant):
    """The quantized add of :class:`AddParams` (``requant`` gives zp, type, activation)."""
    p = params
    ta = round_shift((np.asarray(a, np.int64) - a_zp) * p.mult_a, p.shift_a)
    tb = round_shift((np.asarray(b, np.int64) - b_zp) * p.mult_b, p.shift_b)
    t = np.clip(ta + tb, INT32_MIN, INT32_MAX)
    lo, hi = requant.bounds()
    return requantize(t, 1, p.pre_shift, requant.zero_point, lo, hi)


def max_pool_ref(x, kernel, stride, padding):
    """NHWC max-pool; padding never wins (it acts as minus infinity)."""
    (kh, kw), (sy, sx), (pt, pl, pb, pr) = kernel, stride, padding
    x = np.asarray(x, np.int64)
    n, h, w, c = x.shape
    low = np.iinfo(np.int64).min
    xp = np.full((n, h + pt + pb, w + pl + pr, c), low, dtype=np.int64)
    xp[:, pt:pt + h, pl:pl + w] = x
    oh, ow = (h + pt + pb - kh) // sy + 1, (w + pl + pr - kw) // sx + 1
    out = np.full((n, oh, ow, c), low, dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            ys, xs = slice(ky, ky + sy * (oh - 1) + 1, sy), slice(kx, kx + sx * (ow - 1) + 1, sx)
            out = np.maximum(out, xp[:, ys, xs])
    return out
