"""Integer numerics shared by the golden model, the compiler and (bit for bit) the RTL.

Rounding rule
-------------
Requantization computes ``clamp(round_shift(acc * M, s) + zp)`` where ``M`` is a
non-negative multiplier of ``requant_bits - 1`` magnitude bits (``0 <= M < 2**(b-1)``),
``s`` a shift in ``0..63`` and::

    round_shift(x, s) = (x + 2**(s-1)) >> s     for s >= 1   (arithmetic shift)
    round_shift(x, 0) = x

i.e. round half towards positive infinity, the single-rounding rule of TFLite's
``MultiplyByQuantizedMultiplier``. ``acc * M`` plus the rounding term always fits in a
signed 64-bit integer. Float-scale operators (ONNX QLinear*) round half to even, so on an
exact tie the result may differ from ``onnx.reference`` by one LSB.

Saturation clamps to the output type; an activation narrows the clamp range (ReLU to
``[zp, max]``, CLAMP to the configured bounds). A clamp is ``max(lo, min(hi, x))``, so
bounds with ``lo > hi`` give ``lo``. Accumulator arithmetic saturates to int32.
"""

import enum
import math

import numpy as np

__all__ = [
    "INT32_MIN", "INT32_MAX", "Activation", "OutType",
    "round_shift", "saturate", "sat32", "requantize", "activation_bounds",
    "scale_to_multiplier", "multiplier_to_scale", "sign_extend", "as_elements",
]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
SHIFT_MAX = 63


class Activation(enum.IntEnum):
    """Activation applied after requantization."""
    NONE = 0
    RELU = 1
    CLAMP = 2


class OutType(enum.IntEnum):
    """Element type a STORE writes."""
    INT8 = 0
    UINT8 = 1
    INT32 = 2

    @property
    def range(self):
        return {0: (-128, 127), 1: (0, 255), 2: (INT32_MIN, INT32_MAX)}[self.value]

    @property
    def nbytes(self):
        return 4 if self is OutType.INT32 else 1

    @property
    def dtype(self):
        return {0: np.int8, 1: np.uint8, 2: np.int32}[self.value]


def round_shift(x, s):
    """``x / 2**s`` rounded half towards +inf, on int64 arrays or Python ints."""
    if isinstance(x, np.ndarray):
        x = x.astype(np.int64)
        s = np.asarray(s, dtype=np.int64)
        half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
        return np.right_shift(x + half, s)
    if s < 0 or s > SHIFT_MAX:
        raise ValueError(f"shift must be in 0..{SHIFT_MAX}, not {s}")
    return (x + (1 << (s - 1))) >> s if s else x


def saturate(x, lo, hi):
    """``max(lo, min(hi, x))`` (arrays or ints): with ``lo > hi`` the result is ``lo``,
    the rule the hardware follows too."""
    if isinstance(x, np.ndarray):
        return np.maximum(lo, np.minimum(hi, x))
    return max(lo, min(hi, x))


def sat32(x):
    """Saturate to int32; returns ``(value, overflowed)`` with int64 arrays or ints."""
    if isinstance(x, np.ndarray):
        x = x.astype(np.int64)
        over = bool(np.any((x < INT32_MIN) | (x > INT32_MAX)))
        return np.clip(x, INT32_MIN, INT32_MAX), over
    return saturate(x, INT32_MIN, INT32_MAX), not (INT32_MIN <= x <= INT32_MAX)


def activation_bounds(out_type, activation, zp=0, clamp_lo=None, clamp_hi=None):
    """The ``[lo, hi]`` an output is clamped to after the activation."""
    lo, hi = OutType(out_type).range
    activation = Activation(activation)
    if activation is Activation.RELU:
        lo = max(lo, zp)
    elif activation is Activation.CLAMP:
        if clamp_lo is None or clamp_hi is None:
            raise ValueError("CLAMP activation needs clamp_lo and clamp_hi")
        lo = max(lo, clamp_lo)
        hi = min(hi, clamp_hi)
    return lo, hi


def requantize(acc, multiplier, shift, zp, lo, hi):
    """``clamp(round_shift(acc * M, s) + zp, lo, hi)``, elementwise; int64 result.

    ``multiplier`` and ``shift`` may be scalars or per-element (per-channel) arrays.
    """
    acc = np.asarray(acc, dtype=np.int64)
    if np.any(acc < INT32_MIN) or np.any(acc > INT32_MAX):
        raise ValueError(f"accumulator values must be int32, not {acc.min()}..{acc.max()}")
    m = np.asarray(multiplier, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    if np.any(m < 0) or np.any(m >= 1 << 31):
        raise ValueError(
            f"requantization multiplier must be in 0..2**31-1, not {m.min()}..{m.max()}")
    if np.any(s < 0) or np.any(s > SHIFT_MAX):
        raise ValueError(
            f"requantization shift must be in 0..{SHIFT_MAX}, not {s.min()}..{s.max()}")
    y = round_shift(acc * m, s) + np.int64(zp)
    return np.maximum(np.int64(lo), np.minimum(np.int64(hi), y))


def scale_to_multiplier(scale, requant_bits=32):
    """Convert a positive real scale to ``(M, s)`` with ``scale ~= M / 2**s``.

    ``M`` uses ``requant_bits - 1`` magnitude bits, normalized to ``[2**(b-2), 2**(b-1))``
    when the shift allows it. Raises :class:`ValueError` for a scale that is not finite,
    negative, or too large to represent.
    """
    if requant_bits not in (16, 32):
        raise ValueError(f"requant_bits must be 16 or 32, not {requant_bits}")
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"scale must be a finite non-negative number, not {scale}")
    if scale == 0:
        return 0, 0
    mbits = requant_bits - 1
    mant, exp = math.frexp(scale)  # scale = mant * 2**exp, mant in [0.5, 1)
    m = round(mant * (1 << mbits))
    if m == 1 << mbits:
        m >>= 1
        exp += 1
    s = mbits - exp
    if s < 0:
        raise ValueError(
            f"scale {scale} is too large for a {requant_bits}-bit multiplier (at most "
            f"{float((1 << mbits) - 1)})"
        )
    if s > SHIFT_MAX:
        m = round(m / (1 << (s - SHIFT_MAX)))
        s = SHIFT_MAX
        if m == 0:
            return 0, 0
    return int(m), int(s)


def multiplier_to_scale(multiplier, shift):
    return multiplier / float(1 << shift)


def sign_extend(values, bits, signed):
    """Interpret the low ``bits`` of byte values as signed or unsigned elements (int64)."""
    v = np.asarray(values, dtype=np.int64) & ((1 << bits) - 1)
    if signed:
        v = np.where(v >= 1 << (bits - 1), v - (1 << bits), v)
    return v


def as_elements(raw_bytes, bits, signed):
    """Scratchpad bytes (uint8) as element values of the configured width."""
    return sign_extend(np.asarray(raw_bytes, dtype=np.uint8), bits, signed)
