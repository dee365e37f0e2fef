"""Layers that change the row count: a warm-up delay and a stride.

A "same"-padded (or unpadded) Conv1d needs ``D`` future samples per output
(its latency, the right-hand padding); a strided Conv1d or a pool emits one
row every ``s`` inputs. Each such layer keeps a counter ``c`` in its state
(0 at the start) and, for every input row,

    emits a row      iff c == D
    then             c += 1, and c = D when it reaches D + s

so it swallows the first D inputs, then emits on every s-th. Its meta row
holds D, s and the counter's offset (layout.M_DELAY, M_STRIDE, M_COUNT); a
counter read from the state outside [0, D + s) (``set_state``) counts as 0.

The layer writes its rows packed from the first output row and reports how
many into the scratch slot ``meta[H_RATE]``; ``network._run`` then runs the
next layers over those rows only. A model whose total stride is 1 still
answers every input: ``align`` moves the rows a warm-up left to the end of
the tile and zeros the rows before them (the output before the delay is
over is zeros). A downsampling model's entry points return only the rows
produced (``rows_for`` counts them beforehand, from the counters).
"""

import numpy as np
from numba import njit

from .config import JIT_OPTIONS
from .layout import (
    H_NLAYERS, H_OUTPUT, HEADER, KIND_AVGPOOL, KIND_CONV, KIND_MAXPOOL, M_COUNT, M_DELAY, M_KIND,
    M_STATE, M_STRIDE, ROW,
)

U = np.uint64
_inline = njit(inline="always", **JIT_OPTIONS)


@_inline
def counter(st, at, D, s):
    """The counter stored at ``st[at]``, 0 if it is outside [0, D + s)."""
    v = st[U(at)]
    if v >= 0 and v < D + s:
        return int(v)
    return 0


@_inline
def advance(c, D, s):
    """The counter after one more input."""
    c += 1
    return D if c == D + s else c


@_inline
def emitted(n, c, D, s):
    """How many rows ``n`` inputs make a layer with counter ``c`` emit."""
    first = D - c if c <= D else D + s - c  # inputs before the next emission
    if n <= first:
        return 0
    return 1 + (n - 1 - first) // s


@_inline
def rows_for(meta, st, sb, T):
    """Rows a whole model writes for T more inputs, from the counters of the
    stream whose state is at ``st[sb:]``."""
    n = T
    for l in range(meta[H_NLAYERS]):
        r = HEADER + ROW * l
        kind = meta[r + M_KIND]
        if (kind == KIND_CONV or kind == KIND_MAXPOOL or kind == KIND_AVGPOOL) and meta[r + M_COUNT] >= 0:
            D, s = meta[r + M_DELAY], meta[r + M_STRIDE]
            n = emitted(n, counter(st, sb + meta[r + M_STATE] + meta[r + M_COUNT], D, s), D, s)
    return n


@_inline
def align(dst, d0, ds, T, n, meta):
    """Move the first ``n`` of T output rows to the end of the tile (rows
    ``T - n`` .. ``T - 1``) and zero the rows before them."""
    O = meta[H_OUTPUT]
    gap = T - n
    if gap == 0:
        return
    for t in range(n - 1, -1, -1):
        a = d0 + t * ds
        b = a + gap * ds
        for k in range(O):
            dst[U(b + k)] = dst[U(a + k)]
    for t in range(gap):
        a = d0 + t * ds
        for k in range(O):
            dst[U(a + k)] = 0.0
