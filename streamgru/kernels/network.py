"""Entry points: run a whole model for one step, a chunk, or a batch of streams.

Every entry point first checks sizes and that its whole input is finite, and
returns a status without touching the state if not; only then does it run.
Status: 0 on success, -1 if an array's size does not match the plan, else
1 + the index of the first row (step: 1; batch: stream) holding NaN or inf.

Arguments are flat so one compiled version per dtype serves every model:
``w`` and ``meta`` are the plan (layout.py), ``buf`` a stream's state followed
by its scratch, ``states`` (n, state_size) a batch's states and ``sc`` one
scratch buffer. ``prepare(dtype)`` compiles (or loads from the disk cache)
every entry point for one dtype and then locks the dispatchers: a call with
any other array type (dtype, layout, read-only, ndim) raises ``TypeError``
from numba's C dispatcher instead of compiling a new version. That makes the
dispatcher itself the fast type check of ``Stream.step``.
"""

import numpy as np
from numba import types

from . import dense, gru, lstm, rnn
from .config import jit
from .layout import (
    H_INPUT, H_NLAYERS, H_OUTPUT, H_SC_SEQA, H_STATE, H_TILE, HEADER,
    KIND_DENSE, KIND_GRU, KIND_LSTM, KIND_RNN, M_KIND, M_OUT, ROW,
)

U = np.uint64  # unsigned subscripts: no negative-index wrap, loops vectorise


@jit
def _all_finite(a, a0, n):
    """True if a[a0 : a0 + n] holds no NaN or inf (branch-free, vectorises)."""
    ok = True
    for j in range(n):
        ok &= np.isfinite(a[U(a0 + j)])
    return ok


@jit
def _first_bad_row(a, rows, cols):
    """Index of the first row of the flat ``a`` holding NaN or inf, else -1."""
    for i in range(rows):
        if not _all_finite(a, i * cols, cols):
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
def _run_rows(src, s0, ss, dst, d0, ds, B, w, meta, st, sb, sst, sc):
    """One step of B <= TILE independent streams through the whole model: row
    b of ``src`` in, row b of ``dst`` out, stream b's state at ``st[sb + b*sst:]``.
    Recurrent layers run the rows together (shared weight loads); Dense
    layers are stateless, so all rows at once."""
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
            gru.rows(cur, c0, cs, out, o0, os, B, w, meta, r, st, sb, sst, sc)
        elif kind == KIND_LSTM:
            lstm.rows(cur, c0, cs, out, o0, os, B, w, meta, r, st, sb, sst, sc)
        elif kind == KIND_RNN:
            rnn.rows(cur, c0, cs, out, o0, os, B, w, meta, r, st, sb, sst, sc)
        elif kind == KIND_DENSE:
            dense.seq(cur, c0, cs, out, o0, os, B, w, meta, r)
        cur, c0, cs = out, o0, os


@jit
def step(x, y, w, meta, buf):
    """One step of one stream: x (I,) -> y (O,); buf = state + scratch."""
    if x.size != meta[H_INPUT] or y.size != meta[H_OUTPUT] or buf.size < meta[H_STATE]:
        return -1
    if not _all_finite(x, 0, x.size):
        return 1
    S = meta[H_STATE]
    _run(x, 0, 0, y, 0, 0, 1, w, meta, buf, 0, buf[S:])
    return 0


@jit
def process(X, Y, w, meta, buf):
    """T steps of one stream: X (T, I) -> Y (T, O), tile by tile."""
    T, I = X.shape
    O = meta[H_OUTPUT]
    if I != meta[H_INPUT] or Y.shape[0] != T or Y.shape[1] != O or buf.size < meta[H_STATE]:
        return -1
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
def batch_step(X, Y, w, meta, states, sc, i0, i1):
    """One step of streams i0 <= i < i1: X (n, I) -> Y (n, O), states (n, S).

    The range lets threads share a batch (each with its own ``sc``); the
    scratch is per call, not per stream, so memory does not grow with n."""
    n, I = X.shape
    O = meta[H_OUTPUT]
    S = meta[H_STATE]
    if (I != meta[H_INPUT] or Y.shape[0] != n or Y.shape[1] != O or states.shape[0] != n
            or states.shape[1] != S or not 0 <= i0 <= i1 <= n):
        return -1
    xf = X.reshape(X.size)
    bad = _first_bad_row(xf[i0 * I : i1 * I], i1 - i0, I)
    if bad >= 0:
        return i0 + bad + 1
    yf = Y.reshape(Y.size)
    stf = states.reshape(states.size)
    # tiles of streams: scratch holds one tile, whatever n is
    tile = meta[H_TILE]
    for i in range(i0, i1, tile):
        B = min(tile, i1 - i)
        _run_rows(xf, i * I, I, yf, i * O, O, B, w, meta, stf, i * S, S, sc)
    return 0


@jit
def batch_process(X, Y, w, meta, states, sc, i0, i1):
    """T steps of streams i0 <= i < i1: X (n, T, I) -> Y (n, T, O), states (n, S).
    Status: 1 + the index of the first stream whose input is not finite."""
    n, T, I = X.shape
    O = meta[H_OUTPUT]
    S = meta[H_STATE]
    if (I != meta[H_INPUT] or Y.shape[0] != n or Y.shape[1] != T or Y.shape[2] != O
            or states.shape[0] != n or states.shape[1] != S or not 0 <= i0 <= i1 <= n):
        return -1
    xf = X.reshape(X.size)
    bad = _first_bad_row(xf[i0 * T * I : i1 * T * I], i1 - i0, T * I)
    if bad >= 0:
        return i0 + bad + 1
    yf = Y.reshape(Y.size)
    stf = states.reshape(states.size)
    tile = meta[H_TILE]
    for i in range(i0, i1):
        for t0 in range(0, T, tile):
            tt = min(tile, T - t0)
            _run(xf, (i * T + t0) * I, I, yf, (i * T + t0) * O, O, tt, w, meta, stf, i * S, sc)
    return 0


@jit
def first_bad(X):
    """Index of the first row of X (rows, cols) holding NaN or inf, else -1."""
    return _first_bad_row(X.reshape(X.size), X.shape[0], X.shape[1])


ENTRY_POINTS = {"first_bad": first_bad, "step": step, "process": process, "batch_step": batch_step,
                "batch_process": batch_process}


def signatures(dtype) -> dict:
    """The one numba signature of each entry point for float ``dtype``."""
    f = types.float32 if np.dtype(dtype) == np.float32 else types.float64
    v = types.Array(f, 1, "C")
    m = types.Array(f, 2, "C")
    t = types.Array(f, 3, "C")
    meta = types.Array(types.int64, 1, "C")
    i = types.int64
    return {
        "first_bad": (m,),
        "step": (v, v, v, meta, v),
        "process": (m, m, v, meta, v),
        "batch_step": (m, m, v, meta, m, v, i, i),
        "batch_process": (t, t, v, meta, m, v, i, i),
    }


def prepare(dtype, names=None) -> bool:
    """Compile, or load from the disk cache, the entry points ``names`` (all
    by default) for ``dtype``, then lock their dispatchers against compiling
    for other argument types.

    Returns False when the JIT is disabled (``NUMBA_DISABLE_JIT=1``): the
    entry points are then plain Python and callers must check types first.
    """
    if not hasattr(step, "disable_compile"):
        return False
    sigs = signatures(dtype)
    for name in ENTRY_POINTS if names is None else names:
        fn, sig = ENTRY_POINTS[name], sigs[name]
        if sig not in fn.overloads:
            fn.disable_compile(False)
            try:
                fn.compile(sig)
            finally:
                fn.disable_compile(True)
        else:
            fn.disable_compile(True)
    return True


def entry(name: str, dtype):
    """The callable for entry point ``name`` with arrays of float ``dtype``.

    With the JIT on: the compiled dispatcher, prepared and locked (see
    ``prepare``; only this entry point is loaded, which keeps a cold start
    short), so arguments of any other type raise ``TypeError``. With the JIT
    disabled: a Python wrapper that refuses the same arguments the same way,
    so callers behave identically in both modes.
    """
    dt = np.dtype(dtype)
    fn = ENTRY_POINTS[name]
    if prepare(dt, (name,)):
        return fn
    kinds = signatures(dt)[name]

    def strict(*args):
        for a, t in zip(args, kinds):
            if isinstance(t, types.Array) and not (
                type(a) is np.ndarray and a.ndim == t.ndim and a.dtype == np.dtype(str(t.dtype))
                and a.flags.c_contiguous and a.flags.writeable
            ):
                raise TypeError(f"{name}: argument is not a writeable C-contiguous {t}")
        return fn(*args)

    return strict


def warmup(dtypes=(np.float32, np.float64)) -> dict:
    """Compile, or load from numba's disk cache, every entry point for each
    float dtype in ``dtypes``; return the seconds each dtype took.

    The first call after installing (or editing a kernel) compiles; later
    processes load the cache in a fraction of a second. Run it once at
    install or deploy time (``streamgru warmup``) so no user request pays for
    the compile.
    """
    import time

    took = {}
    for dtype in dtypes:
        dt = np.dtype(dtype)
        t0 = time.perf_counter()
        prepare(dt)
        took[dt.name] = time.perf_counter() - t0
    return took
