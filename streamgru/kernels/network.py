"""Entry points: run a whole model for one step, a chunk, or a batch of streams.

Every entry point first checks sizes and that its whole input is finite, and
returns a status without touching the state if not; only then does it run.
Status: 0 on success, -1 if an array's size does not match the plan (or
``buf`` is not a stream buffer), else 1 + the index of the first row (step:
1; batch: stream) holding NaN or inf.

Arguments are flat so one compiled version per dtype serves every model:
``w`` and ``meta`` are the plan (layout.py), ``states`` (n, state_size) a
batch's states and ``sc`` one scratch buffer. A single stream's ``step`` and
``process`` take only ``(x, y, buf)``: every array argument costs the
dispatcher ~45 ns (type check and unboxing), so ``buf`` (``stream_buffer``)
carries the plan's addresses in a header, then the stream's state, then its
scratch. ``prepare(dtype)`` compiles (or loads from the disk cache)
every entry point for one dtype, each into its own dispatcher closed to
other signatures: a call with any other array type (dtype, layout,
read-only, ndim) raises ``TypeError`` from numba's C dispatcher instead of
compiling a new version. That makes the dispatcher itself the fast type
check of ``Stream.step``. The module-level dispatchers (``step``, ...) stay
open; nothing ever toggles a dispatcher that callers share.

Inside, arrays are passed on as ``pointers.borrowed`` views (or rebuilt with
``pointers.array_at``): no reference counting per helper call.
"""

import threading

import numpy as np
from numba import njit, types

from . import graph, rate, skip
from .direct import call_layer, functions as _functions
from .config import JIT_OPTIONS, jit, locked
from .layout import (
    FN_APPLY, FN_ROWS as F_ROWS, FN_SEQ as F_SEQ, G_HEAD, GI, H_FNS, H_GAIN, H_GRAPH, H_INPUT,
    H_NLAYERS, H_OUTPUT, H_RATE, H_SC_SEQA, H_SCRATCH, H_SKIP, H_STATE, H_STRIDE, H_TILE, HEADER,
    I_FN, M_KIND, M_OUT, ROW,
)
from .pointers import address, array_at, borrowed

U = np.uint64  # unsigned subscripts: no negative-index wrap, loops vectorise
_inline = njit(inline="always", **JIT_OPTIONS)

# A stream buffer (``stream_buffer``): one 1-D array of the model's dtype,
# starting on a BUF_ALIGN-byte boundary.
#   bytes [0, BUF_HEADER_BYTES): header, int64 slots (a .view(np.int64) of the
#       first elements): address and length of the plan's w and meta, and a
#       check word (those four xor BUF_MAGIC) so a buffer that
#       ``stream_buffer`` did not write is refused (status -1) instead of
#       being followed to a wild address;
#   then the state (meta[H_STATE] elements), then the scratch (meta[H_SCRATCH]).
# The kernels trust the addresses: whoever holds the buffer must keep the
# plan's w and meta alive (Stream does).
BUF_HEADER_BYTES = 64  # header slots: 16 float32 or 8 float64; the state stays 64-byte aligned
BUF_ALIGN = 64
B_W, B_NW, B_META, B_NMETA, B_CHECK = 0, 1, 2, 3, 4
BUF_MAGIC = 0x5347525542554621  # "SGRUBUF!"


@_inline
def _all_finite(a, a0, n):
    """True if a[a0 : a0 + n] holds no NaN or inf (branch-free, vectorises)."""
    ok = True
    for j in range(n):
        ok &= np.isfinite(a[U(a0 + j)])
    return ok


@_inline
def _first_bad_row(a, rows, cols):
    """Index of the first row of the flat ``a`` holding NaN or inf, else -1."""
    for i in range(rows):
        if not _all_finite(a, i * cols, cols):
            return i
    return -1


@_inline
def _plan_of(buf):
    """The plan (w, meta) whose addresses ``buf``'s header holds, as
    ``array_at`` views; meta is empty if ``buf`` has no valid header."""
    if buf.size * buf.itemsize < BUF_HEADER_BYTES:
        return array_at(0, 0, buf.dtype), array_at(0, 0, np.int64)
    h = array_at(address(buf), BUF_HEADER_BYTES // 8, np.int64)  # buf[:hb].view(np.int64)
    if h[B_CHECK] != h[B_W] ^ h[B_NW] ^ h[B_META] ^ h[B_NMETA] ^ BUF_MAGIC or h[B_NMETA] < HEADER:
        return array_at(0, 0, buf.dtype), array_at(0, 0, np.int64)
    return array_at(h[B_W], h[B_NW], buf.dtype), array_at(h[B_META], h[B_NMETA], np.int64)


@_inline
def _ready(meta, form):
    """Whether every layer's C function of ``form`` is in the table (calls.prepare):
    a plan whose kernels were not prepared is refused, never jumped into."""
    if meta[H_FNS] == 0:
        return False
    fns = _functions(meta)
    if fns[FN_APPLY] == 0:  # the activations' C function, which every kernel calls
        return False
    g = meta[H_GRAPH]
    for l in range(meta[H_NLAYERS]):
        if fns[2 * meta[HEADER + ROW * l + M_KIND] + form] == 0:
            return False
        # a graph's instruction may call a fused kernel (fuse.py)
        if g and fns[2 * meta[g + G_HEAD + GI * l + I_FN] + form] == 0:
            return False
    return True


@_inline
def _layer_output(l, nl, r, meta, dst, d0, ds, sc):
    """Where layer ``l`` of ``nl`` (meta row ``r``) writes its rows: the
    last into ``dst``, the others alternately into the two scratch tiles."""
    if l == nl - 1:
        return dst, d0, ds
    return sc, meta[H_SC_SEQA + (l & 1)], meta[r + M_OUT]


@_inline
def _run(src, s0, ss, dst, d0, ds, T, w, meta, st, sb, sc):
    """T steps of the whole model: rows of ``src`` in, rows of ``dst`` out,
    layer by layer over the tile, state at ``st[sb:]``, each layer's kernel
    called through the plan's table (calls.py). Returns the rows written:
    T, unless the model downsamples (rate.py)."""
    fns = _functions(meta)
    if meta[H_GRAPH]:  # a graph model: its instruction list (graph.py); never downsamples
        graph.run(src, s0, ss, dst, d0, ds, T, w, meta, st, sb, sc, fns)
        return T
    nl = meta[H_NLAYERS]
    rep = meta[H_RATE]  # >= 0: a layer may write fewer rows than it reads
    n = T
    cur, c0, cs = src, s0, ss
    for l in range(nl):
        r = HEADER + ROW * l
        out, o0, os = _layer_output(l, nl, r, meta, dst, d0, ds, sc)
        if n > 0:
            if rep >= 0:
                sc[rep] = n
            call_layer(fns[2 * meta[r + M_KIND] + F_SEQ], cur, c0, cs, out, o0, os, n, w, meta, r,
                       st, sb, 0, sc)
            if rep >= 0:
                n = int(sc[rep])
        cur, c0, cs = out, o0, os
    if rep >= 0 and meta[H_STRIDE] == 1:
        rate.align(dst, d0, ds, T, n, meta)  # a warm-up's rows are zeros
        n = T
    if meta[H_SKIP] >= 0 or meta[H_GAIN] >= 0:
        skip.apply(src, s0, ss, dst, d0, ds, n, w, meta)
    return n


@_inline
def _rows_out(meta, st, sb, T):
    """Rows the model writes for T more inputs of the stream at ``st[sb:]``."""
    if meta[H_STRIDE] == 1:
        return T
    return rate.rows_for(meta, st, sb, T)


@_inline
def _run_rows(src, s0, ss, dst, d0, ds, B, w, meta, st, sb, sst, sc):
    """One step of B <= TILE independent streams through the whole model: row
    b of ``src`` in, row b of ``dst`` out, stream b's state at ``st[sb + b*sst:]``.
    Recurrent layers run the rows together (shared weight loads); Dense
    layers are stateless, so all rows at once."""
    fns = _functions(meta)
    if meta[H_GRAPH]:
        graph.run_rows(src, s0, ss, dst, d0, ds, B, w, meta, st, sb, sst, sc, fns)
        return
    nl = meta[H_NLAYERS]
    cur, c0, cs = src, s0, ss
    for l in range(nl):
        r = HEADER + ROW * l
        out, o0, os = _layer_output(l, nl, r, meta, dst, d0, ds, sc)
        call_layer(fns[2 * meta[r + M_KIND] + F_ROWS], cur, c0, cs, out, o0, os, B, w, meta, r,
                   st, sb, sst, sc)
        cur, c0, cs = out, o0, os
    if meta[H_SKIP] >= 0 or meta[H_GAIN] >= 0:
        skip.apply(src, s0, ss, dst, d0, ds, B, w, meta)


@_inline
def step_body(x, y, buf):
    """``step``'s body, inlined there and in ``fastcall``'s builtin."""
    bx, by, bb = borrowed(x), borrowed(y), borrowed(buf)
    w, meta = _plan_of(bb)
    hb = BUF_HEADER_BYTES // buf.itemsize
    if (meta.size == 0 or x.size != meta[H_INPUT] or y.size != meta[H_OUTPUT]
            or buf.size < hb + meta[H_STATE] + meta[H_SCRATCH] or not _ready(meta, F_SEQ)):
        return -1
    if not _all_finite(bx, 0, x.size):
        return 1
    # int64 zeros and one, not literals: a literal argument would compile
    # a second specialisation of every layer kernel
    zero, one = np.int64(0), np.int64(1)
    _run(bx, zero, zero, by, zero, zero, one, w, meta, bb, hb, bb[hb + meta[H_STATE]:])
    return 0


@jit
def step(x, y, buf):
    """One step of one stream: x (I,) -> y (O,); buf = plan header + state +
    scratch (``stream_buffer``)."""
    return step_body(x, y, buf)


@jit
def process(X, Y, buf):
    """T steps of one stream: X (T, I) -> Y (T, O), tile by tile; buf as for ``step``."""
    return process_body(X, Y, buf)


@_inline
def process_body(X, Y, buf):
    """``process``'s body."""
    bb = borrowed(buf)
    w, meta = _plan_of(bb)
    hb = BUF_HEADER_BYTES // buf.itemsize
    T, I = X.shape
    if meta.size == 0:
        return -1
    O = meta[H_OUTPUT]
    if (I != meta[H_INPUT] or Y.shape[1] != O
            or buf.size < hb + meta[H_STATE] + meta[H_SCRATCH]
            or Y.shape[0] != _rows_out(meta, bb, hb, T) or not _ready(meta, F_SEQ)):
        return -1
    xf = borrowed(X).reshape(X.size)
    bad = _first_bad_row(xf, T, I)
    if bad >= 0:
        return bad + 1
    yf = borrowed(Y).reshape(Y.size)
    sc = bb[hb + meta[H_STATE]:]
    tile = meta[H_TILE]
    yo = 0  # rows written (fewer than T when the model downsamples)
    for t0 in range(0, T, tile):
        tt = min(tile, T - t0)
        yo += _run(xf, t0 * I, I, yf, yo * O, O, tt, w, meta, bb, hb, sc)
    return 0


@jit
def batch_step(X, Y, w, meta, states, sc, i0, i1):
    """One step of streams i0 <= i < i1: X (n, I) -> Y (n, O), states (n, S).

    The range lets threads share a batch (each with its own ``sc``); the
    scratch is per call, not per stream, so memory does not grow with n."""
    n, I = X.shape
    O = meta[H_OUTPUT]
    S = meta[H_STATE]
    form = F_SEQ if meta[H_RATE] >= 0 else F_ROWS
    if (I != meta[H_INPUT] or Y.shape[0] != n or Y.shape[1] != O or states.shape[0] != n
            or states.shape[1] != S or not 0 <= i0 <= i1 <= n or not _ready(meta, form)):
        return -1
    xf = borrowed(X).reshape(X.size)
    bad = _first_bad_row(xf[i0 * I : i1 * I], i1 - i0, I)
    if bad >= 0:
        return i0 + bad + 1
    yf = borrowed(Y).reshape(Y.size)
    stf = borrowed(states).reshape(states.size)
    w, meta, sc = borrowed(w), borrowed(meta), borrowed(sc)
    if meta[H_RATE] >= 0:
        # streams may be at different points of a warm-up or stride: one at a time
        for i in range(i0, i1):
            _run(xf, i * I, I, yf, i * O, O, 1, w, meta, stf, i * S, sc)
        return 0
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
    R = Y.shape[1]  # rows per stream: T, or fewer when the model downsamples
    if (I != meta[H_INPUT] or Y.shape[0] != n or Y.shape[2] != O
            or states.shape[0] != n or states.shape[1] != S or not 0 <= i0 <= i1 <= n
            or not _ready(meta, F_SEQ)):
        return -1
    stf = borrowed(states).reshape(states.size)
    for i in range(i0, i1):
        if R != _rows_out(meta, stf, i * S, T):
            return -1
    xf = borrowed(X).reshape(X.size)
    bad = _first_bad_row(xf[i0 * T * I : i1 * T * I], i1 - i0, T * I)
    if bad >= 0:
        return i0 + bad + 1
    yf = borrowed(Y).reshape(Y.size)
    w, meta, sc = borrowed(w), borrowed(meta), borrowed(sc)
    tile = meta[H_TILE]
    for i in range(i0, i1):
        yo = i * R
        for t0 in range(0, T, tile):
            tt = min(tile, T - t0)
            yo += _run(xf, (i * T + t0) * I, I, yf, yo * O, O, tt, w, meta, stf, i * S, sc)
    return 0


@jit
def first_bad(X):
    """Index of the first row of X (rows, cols) holding NaN or inf, else -1."""
    return _first_bad_row(X.reshape(X.size), X.shape[0], X.shape[1])


ENTRY_POINTS = {"first_bad": first_bad, "step": step, "process": process, "batch_step": batch_step,
                "batch_process": batch_process}


def stream_buffer(plan) -> tuple[np.ndarray, np.ndarray]:
    """A new zeroed buffer for ``step``/``process`` with ``plan`` (header,
    state, scratch; see BUF_HEADER_BYTES), and the view of its state slots.

    The header holds ``plan.w``'s and ``plan.meta``'s addresses: the caller
    must keep both arrays alive for as long as the buffer is used.
    """
    dt, w, meta = plan.w.dtype, plan.w, plan.meta
    if not (w.ndim == 1 and w.flags.c_contiguous and dt in (np.float32, np.float64)
            and meta.ndim == 1 and meta.flags.c_contiguous and meta.dtype == np.int64):
        raise ValueError("stream_buffer: the plan's w and meta must be 1-D C-contiguous "
                         "float32/float64 and int64 arrays")
    hb = BUF_HEADER_BYTES // dt.itemsize
    n = hb + plan.state_size + plan.scratch_size
    raw = np.zeros(n + BUF_ALIGN // dt.itemsize, dt)
    lead = (-address(raw) % BUF_ALIGN) // dt.itemsize
    buf = raw[lead : lead + n]
    h = buf[:hb].view(np.int64)
    h[B_W], h[B_NW] = address(w), w.size
    h[B_META], h[B_NMETA] = address(meta), meta.size
    h[B_CHECK] = h[B_W] ^ h[B_NW] ^ h[B_META] ^ h[B_NMETA] ^ BUF_MAGIC
    return buf, buf[hb : hb + plan.state_size]


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
        "step": (v, v, v),
        "process": (m, m, v),
        "batch_step": (m, m, v, meta, m, v, i, i),
        "batch_process": (t, t, v, meta, m, v, i, i),
    }


_lock = threading.Lock()
_locked: dict = {}  # (name, dtype) -> a dispatcher closed to every other signature


def _entry_point(name: str, dt: np.dtype):
    """The closed dispatcher of entry point ``name`` for ``dt``, made once."""
    key = (name, dt)
    fn = _locked.get(key)
    if fn is None:
        with _lock:  # threads making their first call at once compile it once
            fn = _locked.get(key)
            if fn is None:
                fn = _locked[key] = locked(ENTRY_POINTS[name], signatures(dt)[name])
    return fn


def compiled(name: str) -> list:
    """Every signature compiled for entry point ``name`` in this process:
    the closed dispatchers' (one per dtype prepared) and any the open
    module-level dispatcher was called with directly."""
    sigs = [sig for (n, _), fn in list(_locked.items()) if n == name for sig in fn.signatures]
    return sigs + list(ENTRY_POINTS[name].signatures)


def prepare(dtype, names=None) -> bool:
    """Compile, or load from the disk cache, the entry points ``names`` (all
    by default) for ``dtype``, each into a dispatcher that compiles for no
    other argument types (see ``entry``). Safe from any number of threads.
    The layer kernels they call are prepared per plan (calls.prepare).

    Returns False when the JIT is disabled (``NUMBA_DISABLE_JIT=1``): the
    entry points are then plain Python and callers must check types first.
    """
    if not hasattr(step, "disable_compile"):
        return False
    dt = np.dtype(dtype)
    for name in ENTRY_POINTS if names is None else names:
        _entry_point(name, dt)
    return True


def entry(name: str, dtype):
    """The callable for entry point ``name`` with arrays of float ``dtype``.

    With the JIT on: a dispatcher compiled (or loaded from the disk cache)
    for this one signature and closed, so arguments of any other type raise
    ``TypeError`` from numba's C dispatcher instead of compiling a new
    version; only this entry point is loaded, which keeps a cold start
    short. With the JIT disabled: a Python wrapper that refuses the same
    arguments the same way, so callers behave identically in both modes.
    """
    dt = np.dtype(dtype)
    if prepare(dt, (name,)):
        return _locked[name, dt]
    fn = ENTRY_POINTS[name]
    sigs = signatures(dt)[name]

    def strict(*args):
        for a, t in zip(args, sigs):
            if isinstance(t, types.Array) and not (
                type(a) is np.ndarray and a.ndim == t.ndim and a.dtype == np.dtype(str(t.dtype))
                and a.flags.c_contiguous and a.flags.writeable
            ):
                raise TypeError(f"{name}: argument is not a writeable C-contiguous {t}")
        return fn(*args)

    return strict
