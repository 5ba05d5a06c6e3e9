"""Requantization, saturation, activation and scale conversion against exact references."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from systolic.numerics import (
    INT32_MAX,
    INT32_MIN,
    SHIFT_MAX,
    Activation,
    OutType,
    activation_bounds,
    as_elements,
    multiplier_to_scale,
    requantize,
    round_shift,
    sat32,
    saturate,
    scale_to_multiplier,
    sign_extend,
)

int32s = st.integers(INT32_MIN, INT32_MAX)
multipliers = st.integers(0, (1 << 31) - 1)
shifts = st.integers(0, SHIFT_MAX)
out_types = st.sampled_from(list(OutType))


def exact_round(value):
    """The documented rule on an exact rational: floor(value + 1/2), ties towards +inf."""
    return math.floor(Fraction(value) + Fraction(1, 2))


def reference_requantize(acc, m, s, zp, lo, hi):
    y = exact_round(Fraction(acc * m, 1 << s)) + zp
    return min(max(y, lo), hi)


# -- round_shift ---------------------------------------------------------------------------

@given(x=st.integers(-(1 << 62), (1 << 62) - 1), s=shifts)
def test_round_shift_is_floor_plus_half(x, s):
    expected = exact_round(Fraction(x, 1 << s))
    assert round_shift(x, s) == expected
    assert int(round_shift(np.array([x], dtype=np.int64), s)[0]) == expected


@pytest.mark.parametrize("x, s, expected", [
    (5, 1, 3), (-5, 1, -2), (3, 1, 2), (-3, 1, -1), (1, 1, 1), (-1, 1, 0),
    (6, 2, 2), (-6, 2, -1), (10, 2, 3), (-10, 2, -2), (7, 0, 7), (-7, 0, -7),
])
def test_exact_ties_round_towards_positive_infinity(x, s, expected):
    assert round_shift(x, s) == expected
    assert int(round_shift(np.array(x), s)) == expected


@pytest.mark.parametrize("s", [-1, SHIFT_MAX + 1])
def test_round_shift_rejects_bad_shifts(s):
    with pytest.raises(ValueError, match=rf"^shift must be in 0\.\.{SHIFT_MAX}, not {s}$"):
        round_shift(1, s)


# -- requantize ----------------------------------------------------------------------------

@given(acc=int32s, m=multipliers, s=shifts, zp=st.integers(-256, 255), out_type=out_types)
def test_requantize_equals_exact_reference(acc, m, s, zp, out_type):
    lo, hi = out_type.range
    got = requantize(acc, m, s, zp, lo, hi)
    assert got.dtype == np.int64
    assert int(got) == reference_requantize(acc, m, s, zp, lo, hi)


@given(acc=int32s, m=multipliers, s=shifts)
def test_requantize_is_within_half_an_lsb_of_float64(acc, m, s):
    """The float64 reference agrees except where float64 itself cannot resolve the tie."""
    exact = Fraction(acc * m, 1 << s)
    got = int(requantize(acc, m, s, 0, INT32_MIN << 32, INT32_MAX << 32))
    assert abs(got - exact) <= Fraction(1, 2)
    approx = float(acc) * float(m) / 2.0 ** s
    assert abs(got - approx) <= 0.5 + abs(approx) * 2.0 ** -52 + 1e-12


@given(data=st.data(), n=st.integers(1, 16))
def test_requantize_per_channel_matches_the_reference_elementwise(data, n):
    acc = data.draw(st.lists(int32s, min_size=n, max_size=n))
    m = data.draw(st.lists(multipliers, min_size=n, max_size=n))
    s = data.draw(st.lists(shifts, min_size=n, max_size=n))
    zp = data.draw(st.integers(-128, 127))
    got = requantize(np.array(acc, dtype=np.int32), np.array(m), np.array(s), zp, -128, 127)
    expected = [reference_requantize(a, mi, si, zp, -128, 127)
                for a, mi, si in zip(acc, m, s, strict=True)]
    assert got.tolist() == expected


@given(acc=int32s, m=multipliers, s=shifts, zp=st.integers(-128, 127), out_type=out_types)
def test_requantize_saturates_to_the_output_type(acc, m, s, zp, out_type):
    lo, hi = out_type.range
    y = int(requantize(acc, m, s, zp, lo, hi))
    assert lo <= y <= hi
    unclamped = exact_round(Fraction(acc * m, 1 << s)) + zp
    if unclamped < lo:
        assert y == lo
    elif unclamped > hi:
        assert y == hi
    else:
        assert y == unclamped


def test_requantize_extremes_fit_in_int64():
    m = (1 << 31) - 1
    for acc in (INT32_MIN, INT32_MAX):
        for s in (0, 1, 31, SHIFT_MAX):
            big = INT32_MIN << 32, INT32_MAX << 32
            assert int(requantize(acc, m, s, 0, *big)) == reference_requantize(acc, m, s, 0, *big)


@pytest.mark.parametrize("m, s, message", [
    (-1, 0, r"^requantization multiplier must be in 0\.\.2\*\*31-1, not -1\.\.-1$"),
    (1 << 31, 0, r"^requantization multiplier must be in 0\.\.2\*\*31-1, not "
                 r"2147483648\.\.2147483648$"),
    (1, -1, r"^requantization shift must be in 0\.\.63, not -1\.\.-1$"),
    (1, 64, r"^requantization shift must be in 0\.\.63, not 64\.\.64$"),
])
def test_requantize_rejects_bad_parameters(m, s, message):
    with pytest.raises(ValueError, match=message):
        requantize(1, m, s, 0, -128, 127)


# -- saturation ----------------------------------------------------------------------------

@given(x=st.integers(-(1 << 40), 1 << 40))
def test_sat32_clamps_and_flags_overflow(x):
    value, over = sat32(x)
    assert value == min(max(x, INT32_MIN), INT32_MAX)
    assert over == (x != value)
    arr, arr_over = sat32(np.array([x, 0], dtype=np.int64))
    assert arr.tolist() == [value, 0]
    assert arr_over == over


@given(x=st.integers(-1000, 1000), lo=st.integers(-500, 0), hi=st.integers(0, 500))
def test_saturate_scalar_and_array_agree(x, lo, hi):
    y = saturate(x, lo, hi)
    assert lo <= y <= hi
    assert y == x or (x < lo and y == lo) or (x > hi and y == hi)
    assert int(saturate(np.array([x]), lo, hi)[0]) == y


@pytest.mark.parametrize("out_type, lo, hi, nbytes, dtype", [
    (OutType.INT8, -128, 127, 1, np.int8),
    (OutType.UINT8, 0, 255, 1, np.uint8),
    (OutType.INT32, INT32_MIN, INT32_MAX, 4, np.int32),
])
def test_output_types(out_type, lo, hi, nbytes, dtype):
    assert out_type.range == (lo, hi)
    assert out_type.nbytes == nbytes
    assert out_type.dtype is dtype
    assert (np.iinfo(dtype).min, np.iinfo(dtype).max) == (lo, hi)


# -- activation ----------------------------------------------------------------------------

@given(out_type=out_types, zp=st.integers(-128, 255))
def test_activation_none_and_relu_bounds(out_type, zp):
    lo, hi = out_type.range
    assert activation_bounds(out_type, Activation.NONE, zp) == (lo, hi)
    assert activation_bounds(out_type, Activation.RELU, zp) == (max(lo, zp), hi)


@given(out_type=out_types, a=st.integers(-300, 300), b=st.integers(-300, 300))
def test_activation_clamp_bounds_intersect_the_output_range(out_type, a, b):
    lo, hi = out_type.range
    clamp_lo, clamp_hi = min(a, b), max(a, b)
    got_lo, got_hi = activation_bounds(out_type, Activation.CLAMP, 0, clamp_lo, clamp_hi)
    assert (got_lo, got_hi) == (max(lo, clamp_lo), min(hi, clamp_hi))


@given(acc=int32s, zp=st.integers(-128, 127))
def test_relu_never_outputs_below_the_zero_point(acc, zp):
    lo, hi = activation_bounds(OutType.INT8, Activation.RELU, zp)
    y = int(requantize(acc, 1 << 30, 31, zp, lo, hi))
    assert zp <= y <= 127
    assert y == max(zp, min(127, exact_round(Fraction(acc, 2)) + zp))


def test_activation_codes_are_stable():
    assert [(a.name, a.value) for a in Activation] == [("NONE", 0), ("RELU", 1), ("CLAMP", 2)]
    assert [(t.name, t.value) for t in OutType] == [("INT8", 0), ("UINT8", 1), ("INT32", 2)]


# -- scale conversion ----------------------------------------------------------------------

def _smallest_full_precision_scale(bits):
    """Below this the shift would exceed SHIFT_MAX, so M loses magnitude bits."""
    return 2.0 ** (bits - 1 - SHIFT_MAX - 1)


@pytest.mark.parametrize("bits", [16, 32])
@given(data=st.data())
def test_scale_to_multiplier_round_trips(bits, data):
    lo = _smallest_full_precision_scale(bits)
    hi = float((1 << (bits - 1)) - 1)
    scale = data.draw(st.floats(lo, hi, allow_nan=False, allow_infinity=False))
    m, s = scale_to_multiplier(scale, bits)
    assert isinstance(m, int) and isinstance(s, int)
    assert 0 <= s <= SHIFT_MAX
    assert 1 << (bits - 2) <= m < 1 << (bits - 1)
    rel = abs(Fraction(m, 1 << s) - Fraction(scale)) / Fraction(scale)
    assert rel <= Fraction(1, 1 << (bits - 2))
    # M is scale * 2**s rounded to the nearest integer (half an LSB of M at most).
    assert abs(Fraction(scale) * (1 << s) - m) <= Fraction(1, 2)
    assert multiplier_to_scale(m, s) == m / 2.0 ** s


@pytest.mark.parametrize("bits", [16, 32])
@given(data=st.data())
def test_tiny_scales_stay_within_one_lsb_at_the_largest_shift(bits, data):
    scale = data.draw(st.floats(0.0, _smallest_full_precision_scale(bits), allow_nan=False))
    m, s = scale_to_multiplier(scale, bits)
    assert 0 <= m < 1 << (bits - 1)
    if m == 0:
        assert s == 0
        assert Fraction(scale) * (1 << SHIFT_MAX) <= 1
    else:
        assert s == SHIFT_MAX
        assert abs(Fraction(scale) * (1 << SHIFT_MAX) - m) <= 1


@pytest.mark.parametrize("bits", [16, 32])
def test_scale_one_and_powers_of_two_are_exact(bits):
    for k in range(-20, 10):
        m, s = scale_to_multiplier(2.0 ** k, bits)
        assert Fraction(m, 1 << s) == Fraction(2) ** k
    assert scale_to_multiplier(0.0, bits) == (0, 0)


@pytest.mark.parametrize("scale, bits, message", [
    (-0.5, 32, r"^scale must be a finite non-negative number, not -0\.5$"),
    (math.nan, 32, r"^scale must be a finite non-negative number, not nan$"),
    (math.inf, 16, r"^scale must be a finite non-negative number, not inf$"),
    (2.0 ** 31, 32, r"^scale 2147483648\.0 is too large for a 32-bit multiplier "
                    r"\(at most 2147483647\.0\)$"),
    (40000.0, 16, r"^scale 40000\.0 is too large for a 16-bit multiplier \(at most 32767\.0\)$"),
    (0.5, 8, r"^requant_bits must be 16 or 32, not 8$"),
])
def test_scale_to_multiplier_rejects_bad_input(scale, bits, message):
    with pytest.raises(ValueError, match=message):
        scale_to_multiplier(scale, bits)


# -- element interpretation ----------------------------------------------------------------

@given(byte=st.integers(0, 255), bits=st.integers(1, 8), signed=st.booleans())
def test_sign_extend_reads_the_low_bits(byte, bits, signed):
    low = byte & ((1 << bits) - 1)
    expected = low - (1 << bits) if signed and low >> (bits - 1) else low
    assert int(sign_extend(byte, bits, signed)) == expected
    assert as_elements(np.array([byte], dtype=np.uint8), bits, signed).tolist() == [expected]
