"""The kernels' activation functions against float64 math.

float32 tanh and sigmoid are rational approximations (kernels/activations.py):
their documented maximum errors are checked on a dense sweep of the whole
float32 range, on every float32 near the fitted interval's end, on random
floats, and at +-inf (saturation, never NaN). float64 must be libm itself.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from streamgru.kernels import activations as A
from streamgru.layers import Activation

# the bounds stated in activations.py's docstring (measured over every
# float32 in [-20, 20]: 3.35e-7 and 1.97e-7)
TANH_MAX_ERR = 3.4e-7
SIGMOID_MAX_ERR = 2.0e-7

f32 = np.float32


def _apply(code, values, dtype, alpha=0.0, beta=0.0):
    buf = np.array(values, dtype=dtype)
    A.apply(buf, 0, buf.size, code, dtype(alpha), dtype(beta))
    return buf


def _sweep() -> np.ndarray:
    """float32 values covering the whole range: dense where the functions bend,
    every power of two from the smallest subnormal to the largest float."""
    dense = np.linspace(-20, 20, 2_000_001, dtype=np.float64)
    mags = np.float32(2.0) ** np.arange(-149, 128, dtype=np.float64)
    tiny = np.logspace(-45, 1, 20_000)
    v = np.concatenate([dense, mags, -mags, tiny, -tiny, [0.0, -0.0]])
    with np.errstate(over="ignore"):
        v32 = v.astype(np.float32)
    return v32[np.isfinite(v32)]


def _sigmoid64(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def test_float32_tanh_error_bound_over_the_whole_range():
    x = _sweep()
    y = _apply(A.TANH, x, f32)
    assert y.dtype == np.float32
    err = np.abs(y.astype(np.float64) - np.tanh(x.astype(np.float64)))
    assert err.max() <= TANH_MAX_ERR, (err.max(), x[err.argmax()])
    assert np.all(np.abs(y) <= 1)


def test_float32_sigmoid_error_bound_over_the_whole_range():
    x = _sweep()
    y = _apply(A.SIGMOID, x, f32)
    err = np.abs(y.astype(np.float64) - _sigmoid64(x.astype(np.float64)))
    assert err.max() <= SIGMOID_MAX_ERR, (err.max(), x[err.argmax()])
    assert np.all((y >= 0) & (y <= 1))


def test_float32_every_float_near_the_clamp():
    """Every float32 in [8.5, 9.5] and its negative: where the clamp at 9 takes over."""
    lo, hi = np.array([8.5, 9.5], np.float32).view(np.int32)
    x = np.arange(lo, hi + 1, dtype=np.int32).view(np.float32)
    x = np.concatenate([x, -x])
    t = _apply(A.TANH, x, f32).astype(np.float64)
    s = _apply(A.SIGMOID, 2 * x, f32).astype(np.float64)
    xd = x.astype(np.float64)
    assert np.abs(t - np.tanh(xd)).max() <= TANH_MAX_ERR
    assert np.abs(s - _sigmoid64(2 * xd)).max() <= SIGMOID_MAX_ERR


def test_float32_tanh_is_odd_and_sigmoid_symmetric():
    x = np.linspace(-12, 12, 400_001).astype(np.float32)
    t = _apply(A.TANH, x, f32)
    np.testing.assert_array_equal(t, -t[::-1])  # x*P(x^2)/Q(x^2) with a symmetric clamp
    s = _apply(A.SIGMOID, x, f32).astype(np.float64)
    assert np.abs(s + s[::-1] - 1).max() <= 2 * SIGMOID_MAX_ERR


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infinities_saturate_never_nan(dtype):
    big = np.finfo(dtype).max
    x = np.array([np.inf, -np.inf, big, -big, 0.0, -0.0], dtype)
    t = _apply(A.TANH, x, dtype)
    s = _apply(A.SIGMOID, x, dtype)
    np.testing.assert_array_equal(t, np.array([1, -1, 1, -1, 0, 0], dtype))
    np.testing.assert_array_equal(s, np.array([1, 0, 1, 0, 0.5, 0.5], dtype))
    assert not np.isnan(t).any() and not np.isnan(s).any()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=True), min_size=1, max_size=70))
def test_float32_random_floats_within_bounds(values):
    x = np.array(values, np.float32)
    xd = x.astype(np.float64)
    t = _apply(A.TANH, x, f32).astype(np.float64)
    s = _apply(A.SIGMOID, x, f32).astype(np.float64)
    assert np.abs(t - np.tanh(xd)).max() <= TANH_MAX_ERR
    assert np.abs(s - _sigmoid64(xd)).max() <= SIGMOID_MAX_ERR


def test_float64_is_libm():
    """float64 is the platform libm, bit for bit (as Python's math module)."""
    x = np.concatenate([np.linspace(-40, 40, 20_001), [np.inf, -np.inf, 1e-300, -750.0, 750.0]])
    assert list(_apply(A.TANH, x, np.float64)) == [math.tanh(v) for v in x]
    assert list(_apply(A.SIGMOID, x, np.float64)) == [
        1.0 / (1.0 + (math.exp(-v) if v > -709 else math.inf)) for v in x
    ]


def test_scalar_functions_match_the_loops():
    """The scalar tanh/sigmoid used in fused gate loops give the same numbers
    as apply(), in both precisions, called from Python or compiled code."""
    x32 = np.linspace(-10, 10, 1001).astype(np.float32)
    assert [A.tanh(v) for v in x32] == list(_apply(A.TANH, x32, f32))
    assert [A.sigmoid(v) for v in x32] == list(_apply(A.SIGMOID, x32, f32))
    x64 = x32.astype(np.float64)
    assert [A.tanh(v) for v in x64] == list(_apply(A.TANH, x64, np.float64))
    assert [A.sigmoid(v) for v in x64] == list(_apply(A.SIGMOID, x64, np.float64))


ALL = [
    ("identity", 0.0, 0.0), ("relu", 0.0, 0.0), ("tanh", 0.0, 0.0), ("sigmoid", 0.0, 0.0),
    ("hard_sigmoid", 0.2, 0.5), ("leaky_relu", 0.01, 0.0), ("elu", 1.0, 0.0), ("gelu", 0.0, 0.0),
    ("softmax", 0.0, 0.0), ("log_softmax", 0.0, 0.0),
]


@pytest.mark.parametrize("name,alpha,beta", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_code_against_the_reference(name, alpha, beta, dtype):
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.normal(scale=4, size=61), [0.0, -1.0, 1.0]]).astype(dtype)
    want = ref.activate(Activation(name, alpha, beta), x.astype(np.float64))
    got = _apply(A.CODES[name], x, dtype, alpha, beta)
    tol = 1e-13 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=0, atol=tol * max(1, np.abs(want).max()))


def test_apply_touches_only_its_slice():
    buf = np.arange(-5, 5, dtype=np.float32)
    before = buf.copy()
    A.apply(buf, 3, 7, A.TANH, f32(0), f32(0))
    np.testing.assert_array_equal(buf[:3], before[:3])
    np.testing.assert_array_equal(buf[7:], before[7:])
    assert np.abs(buf[3:7] - np.tanh(before[3:7])).max() <= TANH_MAX_ERR
    A.apply(buf, 4, 4, A.SIGMOID, f32(0), f32(0))  # empty range: no-op
    A.clip(buf, 0, 10, f32(0.5))
    assert buf.min() >= -0.5 and buf.max() <= 0.5
