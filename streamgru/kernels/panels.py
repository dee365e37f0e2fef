"""Panel packing for the products in simd.py (host side, numpy only).

A weight matrix ``W^T`` (nr rows of inputs, nc output columns) is cut into
blocks of ``L`` columns (one 64-byte vector of the model's float: 16 float32
or 8 float64; nc padded with zero columns to a multiple of L) and the blocks
into groups of up to four, each group stored row after row. Float weights
are stored as the model's float; reduced-precision ones (int8, float16 and
bfloat16 bit patterns) keep their own type in the same order and the same
L, as raw bytes (``pack_stored``).
"""

import numpy as np

from .layout import WQ_FLOAT16, WQ_INT8

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


def pack_stored(wt: np.ndarray, dtype) -> np.ndarray:
    """Stored weight values ``wt`` (nr, nc; int8, or float16/bfloat16 bit
    patterns) in panel order, as raw bytes padded to whole vectors and
    viewed as ``dtype`` (to sit inside a plan's ``w``; never read as floats)."""
    raw = _panel_order(np.ascontiguousarray(wt), dtype).view(np.uint8)
    out = np.zeros(-(-raw.size // VECTOR_BYTES) * VECTOR_BYTES, np.uint8)
    out[: raw.size] = raw
    return out.view(dtype)


def unstored(q: int, w: np.ndarray, w0: int, n: int, dtype) -> np.ndarray:
    """The ``n`` weights of type ``q`` stored from element ``w0`` of ``w``,
    widened to ``dtype`` (the inverse of ``pack_stored``'s bytes; int8 unscaled)."""
    raw = w.view(np.uint8)[w0 * w.itemsize :]
    if q == WQ_INT8:
        return raw[:n].view(np.int8).astype(dtype)
    bits = raw[: 2 * n].view(np.uint16)
    if q == WQ_FLOAT16:
        return bits.view(np.float16).astype(dtype)
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(dtype)
