"""Activation functions for the kernels, applied in place to a buffer slice.

Each activation has an integer code (the plan stores codes, not names).
``apply(buf, lo, hi, code, alpha, beta)`` runs one tight loop per code so the
common paths stay branch-free inside the loop.

Accuracy: float64 uses libm (``exp``, ``tanh``, ``erf``), correctly rounded to
within 1 ulp. float32 computes the same functions in float32 arithmetic.
"""

import math

import numpy as np

from .config import jit

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


@jit
def sigmoid(v):
    # exp(-v) overflows to inf for v < -88 (float32): 1 / inf = 0, the limit
    one = v - v + 1
    return one / (one + np.exp(-v))


@jit
def apply(buf, lo, hi, code, alpha, beta):
    """Apply activation ``code`` to ``buf[lo:hi]`` in place."""
    if code == IDENTITY:
        return
    if code == TANH:
        for k in range(lo, hi):
            buf[k] = np.tanh(buf[k])
    elif code == SIGMOID:
        for k in range(lo, hi):
            buf[k] = sigmoid(buf[k])
    elif code == RELU:
        for k in range(lo, hi):
            if buf[k] < 0:
                buf[k] = 0
    elif code == HARD_SIGMOID:
        for k in range(lo, hi):
            v = alpha * buf[k] + beta
            buf[k] = min(max(v, 0.0), 1.0)
    elif code == LEAKY_RELU:
        for k in range(lo, hi):
            if buf[k] < 0:
                buf[k] = alpha * buf[k]
    elif code == ELU:
        for k in range(lo, hi):
            if buf[k] < 0:
                buf[k] = alpha * (np.exp(buf[k]) - 1)
    elif code == GELU:
        for k in range(lo, hi):
            v = buf[k]
            buf[k] = 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))
    elif code == SOFTMAX or code == LOG_SOFTMAX:
        m = buf[lo]
        for k in range(lo + 1, hi):
            m = max(m, buf[k])
        s = buf[lo] - buf[lo]
        for k in range(lo, hi):
            s += np.exp(buf[k] - m)
        if code == SOFTMAX:
            for k in range(lo, hi):
                buf[k] = np.exp(buf[k] - m) / s
        else:
            ls = np.log(s)
            for k in range(lo, hi):
                buf[k] = buf[k] - m - ls


@jit
def clip(buf, lo, hi, c):
    """Clip ``buf[lo:hi]`` to ``[-c, c]`` in place."""
    for k in range(lo, hi):
        buf[k] = min(max(buf[k], -c), c)
