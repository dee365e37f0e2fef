"""Entry points: run a whole model for one step, a chunk, or a batch of streams.

Every entry point first checks that its whole input is finite and returns a
non-zero status without touching the state if not; only then does it run.
Status: 0 on success, else 1 + the index of the first bad row (step: 1).

Arguments are flat so one compiled version serves every model: ``w`` and
``meta`` are the plan (layout.py), ``buf`` a stream's state followed by its
scratch, ``states`` (n, state_size) a batch's states and ``sc`` its scratch.
"""

import numpy as np

from . import dense, gru, lstm, rnn
from .config import jit
from .layout import (
    H_NLAYERS, H_OUTPUT, H_SC_SEQA, H_SC_SEQB, H_STATE, H_TILE, HEADER,
    KIND_DENSE, KIND_GRU, KIND_LSTM, KIND_RNN, M_KIND, M_OUT, ROW,
)


@jit
def _first_bad_row(a, rows, cols):
    """Index of the first row of the flat ``a`` holding NaN or inf, else -1."""
    for i in range(rows):
        o = i * cols
        for j in range(cols):
            if not np.isfinite(a[o + j]):
                return i
    return -1


@jit
def _run(src, s0, ss, dst, d0, ds, T, w, meta, st, sb, sc):
    """T steps of the whole model: rows of ``src`` in, rows of ``dst`` out,
    layer by layer over the tile, state at ``st[sb:]``."""
    nl = meta[H_NLAYERS]
    cur, c0, cs = src, s0, ss
    for l in range(nl):
        r = HEADER + ROW * l
        kind = meta[r + M_KIND]
        if l == nl - 1:
            out, o0, os = dst, d0, ds
        else:
            out, o0, os = sc, meta[H_SC_SEQA + (l & 1)], meta[r + M_OUT]
        if kind == KIND_GRU:
            gru.seq(cur, c0, cs, out, o0, os, T, w, meta, r, st, sb, sc)
        elif kind == KIND_LSTM:
            lstm.seq(cur, c0, cs, out, o0, os, T, w, meta, r, st, sb, sc)
        elif kind == KIND_RNN:
            rnn.seq(cur, c0, cs, out, o0, os, T, w, meta, r, st, sb, sc)
        elif kind == KIND_DENSE:
            dense.seq(cur, c0, cs, out, o0, os, T, w, meta, r)
        cur, c0, cs = out, o0, os


@jit
def step(x, y, w, meta, buf):
    """One step of one stream: x (I,) -> y (O,); buf = state + scratch."""
    if _first_bad_row(x, 1, x.size) >= 0:
        return 1
    S = meta[H_STATE]
    _run(x, 0, 0, y, 0, 0, 1, w, meta, buf, 0, buf[S:])
    return 0


@jit
def process(X, Y, w, meta, buf):
    """T steps of one stream: X (T, I) -> Y (T, O), tile by tile."""
    T, I = X.shape
    O = meta[H_OUTPUT]
    xf = X.reshape(X.size)
    bad = _first_bad_row(xf, T, I)
    if bad >= 0:
        return bad + 1
    yf = Y.reshape(Y.size)
    S = meta[H_STATE]
    sc = buf[S:]
    tile = meta[H_TILE]
    for t0 in range(0, T, tile):
        tt = min(tile, T - t0)
        _run(xf, t0 * I, I, yf, t0 * O, O, tt, w, meta, buf, 0, sc)
    return 0


@jit
def batch_step(X, Y, w, meta, states, sc):
    """One step of n streams: X (n, I) -> Y (n, O), states (n, S)."""
    n, I = X.shape
    O = meta[H_OUTPUT]
    S = meta[H_STATE]
    xf = X.reshape(X.size)
    bad = _first_bad_row(xf, n, I)
    if bad >= 0:
        return bad + 1
    yf = Y.reshape(Y.size)
    stf = states.reshape(states.size)
    for i in range(n):
        _run(xf, i * I, I, yf, i * O, O, 1, w, meta, stf, i * S, sc)
    return 0


@jit
def batch_process(X, Y, w, meta, states, sc):
    """T steps of n streams: X (n, T, I) -> Y (n, T, O), states (n, S).
    Status: 1 + the index of the first stream whose input is not finite."""
    n, T, I = X.shape
    O = meta[H_OUTPUT]
    S = meta[H_STATE]
    xf = X.reshape(X.size)
    bad = _first_bad_row(xf, n, T * I)
    if bad >= 0:
        return bad + 1
    yf = Y.reshape(Y.size)
    stf = states.reshape(states.size)
    tile = meta[H_TILE]
    for i in range(n):
        for t0 in range(0, T, tile):
            tt = min(tile, T - t0)
            _run(xf, (i * T + t0) * I, I, yf, (i * T + t0) * O, O, tt, w, meta, stf, i * S, sc)
    return 0
