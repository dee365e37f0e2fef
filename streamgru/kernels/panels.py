"""Panel packing for the products in simd.py (host side, numpy only).

A weight matrix ``W^T`` (nr rows of inputs, nc output columns) is cut into
blocks of ``L`` columns (one 64-byte vector of the model's float: 16 float32
or 8 float64; nc padded with zero columns to a multiple of L) and the blocks
into groups of up to four, each group stored row after row. Float weights
are stored as the model's float; reduced-precision ones (int8, float16 and
bfloat16 bit patterns) keep their own type and the same L, as raw bytes
(``pack_stored``): float16 and bfloat16 in the same order, int8 with its
rows in pairs for integer dot products (qdot.py).
"""

import numpy as np

from .layout import WQ_FLOAT16

VECTOR_BYTES = 64
GROUP = 4  # blocks of L columns per panel group (four vector accumulators)


def lanes(dtype) -> int:
    """Vector length L for ``dtype``: 16 for float32, 8 for float64."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def padded(nc: int, dtype) -> int:
    """``nc`` rounded up to a multiple of the vector length."""
    L = lanes(dtype)
    return -(-nc // L) * L


def _panel_order(wt: np.ndarray, dtype) -> np.ndarray:
    """``wt`` (nr, nc) in panel order for a model of ``dtype``, keeping
    ``wt``'s own dtype; nc padded with zero columns to ``padded(nc)``."""
    nr, nc = wt.shape
    L = lanes(dtype)
    ncp = padded(nc, dtype)
    full = np.zeros((nr, ncp), wt.dtype)
    full[:, :nc] = wt
    parts = [full[:, c0 : c0 + GROUP * L].reshape(-1) for c0 in range(0, ncp, GROUP * L)]
    return np.concatenate(parts) if parts else np.zeros(0, wt.dtype)


def pack_panels(wt: np.ndarray, dtype) -> np.ndarray:
    """``wt`` (nr, nc), i.e. W^T, as flat panels (see the module docstring);
    nc padded with zero columns to ``padded(nc)``."""
    return _panel_order(np.asarray(wt, np.float64), dtype)


def _pair_order(wt: np.ndarray, dtype) -> np.ndarray:
    """int8 ``wt`` (nr, nc) in panel order with its rows in pairs (the
    layout of qdot.py's integer products): nr padded with a zero row to
    even; in each group, pair p holds per block its L columns' two rows
    interleaved, ``W[2p, c], W[2p + 1, c]``."""
    nr, nc = wt.shape
    L = lanes(dtype)
    even = np.zeros((nr + nr % 2, padded(nc, dtype)), wt.dtype)
    even[:nr, :nc] = wt
    parts = []
    for c0 in range(0, even.shape[1], GROUP * L):
        g = even[:, c0 : c0 + GROUP * L]
        nb = g.shape[1] // L
        parts.append(g.reshape(-1, 2, nb, L).transpose(0, 2, 3, 1).reshape(-1))
    return np.concatenate(parts) if parts else np.zeros(0, wt.dtype)


def pack_stored(wt: np.ndarray, dtype) -> np.ndarray:
    """Stored weight values ``wt`` (nr, nc; int8, or float16/bfloat16 bit
    patterns) in panel order (int8: rows in pairs), as raw bytes padded to
    whole vectors and viewed as ``dtype`` (to sit inside a plan's ``w``;
    never read as floats)."""
    wt = np.ascontiguousarray(wt)
    order = _pair_order(wt, dtype) if wt.dtype == np.int8 else _panel_order(wt, dtype)
    raw = order.view(np.uint8)
    out = np.zeros(-(-raw.size // VECTOR_BYTES) * VECTOR_BYTES, np.uint8)
    out[: raw.size] = raw
    return out.view(dtype)


def unpaired(w: np.ndarray, w0: int, nr: int, nc: int) -> np.ndarray:
    """The int8 values (nr, nc padded) stored by ``pack_stored`` from
    element ``w0`` of ``w``, in W^T's own order (the inverse of ``_pair_order``)."""
    L = lanes(w.dtype)
    even = nr + nr % 2
    raw = w.view(np.uint8)[w0 * w.itemsize :].view(np.int8)
    cols, at = [], 0
    for c0 in range(0, nc, GROUP * L):
        nb = min(GROUP * L, nc - c0) // L
        g = raw[at : at + even * nb * L].reshape(even // 2, nb, L, 2)
        cols.append(g.transpose(0, 3, 1, 2).reshape(even, nb * L)[:nr])
        at += even * nb * L
    return np.concatenate(cols, axis=1)


def unstored(q: int, w: np.ndarray, w0: int, n: int, dtype) -> np.ndarray:
    """The ``n`` weights of type ``q`` stored from element ``w0`` of ``w``,
    widened to ``dtype`` (the inverse of ``pack_stored``'s bytes for
    float16 and bfloat16; int8 panels: ``unpaired``)."""
    raw = w.view(np.uint8)[w0 * w.itemsize :]
    bits = raw[: 2 * n].view(np.uint16)
    if q == WQ_FLOAT16:
        return bits.view(np.float16).astype(dtype)
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(dtype)
