"""simd.py's products as numpy code, for ``NUMBA_DISABLE_JIT=1`` (where
numba's intrinsics cannot run): the same panels read back into W^T, and
int8 products with their inputs rounded as qdot.py rounds them."""

import numpy as np

from .layout import WQ_FLOAT, WQ_INT8
from .panels import GROUP, lanes, unpaired, unstored
from .qdot import CHUNK, QMAX


def rounded(v: np.ndarray) -> np.ndarray:
    """``v`` as qdot.py's integer products see it: each chunk of CHUNK
    values rounded to int16 steps of its largest magnitude / 32767."""
    out = np.empty_like(v)
    for j in range(0, len(v), CHUNK):
        x = v[j : j + CHUNK]
        top = np.abs(x).max()
        inv = v.dtype.type(QMAX) / top if top > 0 else v.dtype.type(0)
        s = top / v.dtype.type(QMAX) + np.sum(x * 0)
        out[j : j + CHUNK] = np.rint(x * inv) * s
    return out


def _unpack(q, w, w0, nr, nc):
    """W^T (nr, nc) from its panels at ``w[w0:]`` (int8: scaled)."""
    if q == WQ_INT8:
        return unpaired(w, w0, nr, nc) * w[w0 - nc : w0]
    L = lanes(w.dtype)
    flat = w[w0 : w0 + nr * nc] if q == WQ_FLOAT else unstored(q, w, w0, nr * nc, w.dtype)
    cols = []
    for c0 in range(0, nc, GROUP * L):
        width = min(GROUP * L, nc - c0)
        cols.append(flat[c0 * nr : (c0 + width) * nr].reshape(nr, width))
    return np.concatenate(cols, axis=1)


def _operand(q, v):
    return rounded(v) if q == WQ_INT8 else v


def qgemv(q, acc, a0, v, v0, w, w0, nr, nc):
    acc[a0 : a0 + nc] += _operand(q, v[v0 : v0 + nr]) @ _unpack(q, w, w0, nr, nc)


qgemv_backward = qgemv


def qgemv_step(q, acc, a0, v, v0, w, w0, nr, nc, t):
    qgemv(q, acc, a0, v, v0, w, w0, nr, nc)


def qgemm(q, acc, a0, astride, v, v0, vstride, w, w0, nr, nc, R):
    wt = _unpack(q, w, w0, nr, nc)
    for r in range(R):
        o = a0 + r * astride
        s = v0 + r * vstride
        acc[o : o + nc] += _operand(q, v[s : s + nr]) @ wt


def qproject(q, src, s0, ss, T, I, G, w, wx, bias, acc, a0):
    for t in range(T):
        acc[a0 + t * G : a0 + (t + 1) * G] = w[bias : bias + G]
    qgemm(q, acc, a0, G, src, s0, ss, w, wx, I, G, T)


def gemv(acc, a0, v, v0, w, w0, nr, nc):
    qgemv(WQ_FLOAT, acc, a0, v, v0, w, w0, nr, nc)


gemv_backward = gemv


def gemv_step(acc, a0, v, v0, w, w0, nr, nc, t):
    qgemv(WQ_FLOAT, acc, a0, v, v0, w, w0, nr, nc)


def gemm(acc, a0, astride, v, v0, vstride, w, w0, nr, nc, R):
    qgemm(WQ_FLOAT, acc, a0, astride, v, v0, vstride, w, w0, nr, nc, R)
