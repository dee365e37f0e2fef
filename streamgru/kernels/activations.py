"""Activation functions for the kernels.

Each activation has an integer code (the plan stores codes, not names).
``apply(buf, lo, hi, code, alpha, beta)`` applies one to ``buf[lo:hi]`` in
place, one tight loop per code so each loop stays branch-free and vectorises.
``tanh(v)`` and ``sigmoid(v)`` are scalar functions for fused loops.

Accuracy
--------
float64 uses libm (``exp``, ``tanh``, ``erf``): within 1 ulp of the exact
value, which the float64 reference tests (1e-10) rely on.

float32 ``tanh`` and ``sigmoid`` use a rational approximation instead of a
libm call per element, so loops over them compile to SIMD code:
``tanh(x) ~ x P(x^2) / Q(x^2)`` with ``x`` clamped to [-9, 9] (beyond 9,
float32 tanh rounds to +-1 anyway) and the result to [-1, 1], P and Q of
degree 4, coefficients fitted for this project by an iteratively reweighted
least-squares (Lawson) minimax fit of the absolute error on [0, 9]. Maximum
absolute error against float64 math, measured over every float32 in
[-20, 20] (beyond it both functions are saturated to within 1e-8):

    tanh     3.4e-7   (the fit itself: 1.9e-8; the rest is float32 rounding)
    sigmoid  2.0e-7   (computed as 0.5 + 0.5 tanh(x / 2))

+-inf saturate to +-1 (tanh) and 0 or 1 (sigmoid), never NaN. Other float32
functions (exp-based ELU, GELU, softmax) compute in float32 through libm.
"""

import math

import numpy as np
from numba import types
from numba.extending import overload

from .config import jit, jit_fast

IDENTITY = 0
RELU = 1
TANH = 2
SIGMOID = 3
HARD_SIGMOID = 4
LEAKY_RELU = 5
ELU = 6
GELU = 7
SOFTMAX = 8
LOG_SOFTMAX = 9

CODES = {
    "identity": IDENTITY,
    "relu": RELU,
    "tanh": TANH,
    "sigmoid": SIGMOID,
    "hard_sigmoid": HARD_SIGMOID,
    "leaky_relu": LEAKY_RELU,
    "elu": ELU,
    "gelu": GELU,
    "softmax": SOFTMAX,
    "log_softmax": LOG_SOFTMAX,
}

# float32 constants: a plain Python float literal would promote float32 math
# to float64 inside numba, so every constant of the float32 path is typed.
_F = np.float32
_CLAMP = _F(9.0)
_P0, _P1, _P2, _P3, _P4 = _F(0.9999999064), _F(0.1337318973), _F(0.00348657235), _F(2.04716715e-05), _F(1.318400271e-08)
_Q0, _Q1, _Q2, _Q3, _Q4 = _F(1.0), _F(0.467064866), _F(0.02584194309), _F(0.0003271369675), _F(7.702572983e-07)
_HALF = _F(0.5)
_ONE = _F(1.0)
_ONE64 = 1.0


@jit_fast
def tanh_f32(x):
    """float32 tanh by the rational approximation (max abs error 3.4e-7)."""
    # min/max first: +-inf clamp to +-9, where the approximation is +-1
    x = min(max(x, -_CLAMP), _CLAMP)
    s = x * x
    # Estrin's scheme: three dependent steps after s instead of Horner's four
    # (a recurrent step waits on this latency twice: reset gate, candidate)
    s2 = s * s
    p = (_P1 * s + _P0) + s2 * ((_P3 * s + _P2) + s2 * _P4)
    q = (_Q1 * s + _Q0) + s2 * ((_Q3 * s + _Q2) + s2 * _Q4)
    # near 9 the rounded quotient can exceed 1 by an ulp: keep |tanh| <= 1;
    # from 9 on (and for +-inf) float32 tanh is +-1 exactly
    r = min(max(x * p / q, -_ONE), _ONE)
    return r if abs(x) < _CLAMP else min(max(x, -_ONE), _ONE)


@jit_fast
def sigmoid_f32(x):
    """float32 sigmoid as 0.5 + 0.5 tanh(x/2) (max abs error 2.0e-7)."""
    return _HALF + _HALF * tanh_f32(_HALF * x)


@jit
def tanh_f64(x):
    """float64 tanh through libm."""
    return math.tanh(x)


@jit
def sigmoid_f64(x):
    """float64 sigmoid through libm exp; exp(-x) = inf for x < -709 gives 0."""
    return _ONE64 / (_ONE64 + math.exp(-x))


def tanh(x):
    """tanh in the precision of ``x``: the float32 approximation or libm."""
    if isinstance(x, np.float32):
        return tanh_f32(x)
    return tanh_f64(x)


def sigmoid(x):
    """sigmoid in the precision of ``x``: the float32 approximation or libm."""
    if isinstance(x, np.float32):
        return sigmoid_f32(x)
    return sigmoid_f64(x)


# inside compiled code the precision is chosen at compile time, by the type
@overload(tanh, jit_options={"inline": "always"})
def _tanh_typed(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: tanh_f32(x)
    return lambda x: tanh_f64(x)


@overload(sigmoid, jit_options={"inline": "always"})
def _sigmoid_typed(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: sigmoid_f32(x)
    return lambda x: sigmoid_f64(x)


# Subscripts are converted to uint64: numba wraps negative signed indices (a
# select per element that stops vectorisation); unsigned ones skip that.
U = np.uint64


@jit_fast
def apply(buf, lo, hi, code, alpha, beta):
    """Apply activation ``code`` to ``buf[lo:hi]`` in place."""
    n = hi - lo
    if code == IDENTITY or n <= 0:
        return
    if code == TANH:
        for k in range(n):
            buf[U(lo + k)] = tanh(buf[U(lo + k)])
    elif code == SIGMOID:
        for k in range(n):
            buf[U(lo + k)] = sigmoid(buf[U(lo + k)])
    elif code == RELU:
        for k in range(n):
            if buf[U(lo + k)] < 0:
                buf[U(lo + k)] = 0
    elif code == HARD_SIGMOID:
        for k in range(n):
            u = alpha * buf[U(lo + k)] + beta
            buf[U(lo + k)] = min(max(u, 0.0), 1.0)
    elif code == LEAKY_RELU:
        for k in range(n):
            if buf[U(lo + k)] < 0:
                buf[U(lo + k)] = alpha * buf[U(lo + k)]
    elif code == ELU:
        for k in range(n):
            if buf[U(lo + k)] < 0:
                buf[U(lo + k)] = alpha * (np.exp(buf[U(lo + k)]) - 1)
    elif code == GELU:
        for k in range(n):
            u = buf[U(lo + k)]
            buf[U(lo + k)] = 0.5 * u * (1.0 + math.erf(u / math.sqrt(2.0)))
    elif code == SOFTMAX or code == LOG_SOFTMAX:
        m = buf[U(lo)]
        for k in range(1, n):
            m = max(m, buf[U(lo + k)])
        s = buf[U(lo)] - buf[U(lo)]
        for k in range(n):
            s += np.exp(buf[U(lo + k)] - m)
        if code == SOFTMAX:
            for k in range(n):
                buf[U(lo + k)] = np.exp(buf[U(lo + k)] - m) / s
        else:
            ls = np.log(s)
            for k in range(n):
                buf[U(lo + k)] = buf[U(lo + k)] - m - ls


@jit_fast
def clip(buf, lo, hi, c):
    """Clip ``buf[lo:hi]`` to ``[-c, c]`` in place."""
    for k in range(hi - lo):
        buf[U(lo + k)] = min(max(buf[U(lo + k)], -c), c)
