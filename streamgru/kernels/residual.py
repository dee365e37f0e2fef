"""Fused residual block: three to seven rows of a graph run as one call.

A WaveNet layer (NAM's ``_Layer``; fuse.py finds them) is up to seven
graph rows::

    zc = conv_k,d(h)            Conv1d, groups 1, identity, with its ring
    zm = mixer(x)               Conv1d k=1, groups 1, identity (x: the condition)
    p  = act(zc + zm)           an add with the activation, or an identity add
                                and a row of its own for the activation (R_ACT_ROW)
    u  = conv1x1(p)             Conv1d k=1, groups 1, identity  } R_RESIDUAL; NAM's
    h' = h + u                  residual sum                    } last layer has none
    s' = s + p                  skip sum (R_SKIP; the first layer starts it with p)

Called row by row, each costs a C function call and its own reading of
the plan: at one sample per call (``Stream.step``) most of the time. This
kernel runs one sample of the whole block with its intermediates in three
scratch vectors and writes only what the graph reads later: p, h' and s'.
The arithmetic is the row kernels', in their order, so a step gives the
same bits as the rows called one by one.

The rows keep their own meta rows, weights and state (the first conv's ring), so a
fused plan has the state layout of an unfused one. fuse.py has put, in the
block's instructions, h as the residual sum's first operand and s as the
skip sum's, and at the first row's instruction the kind (KIND_RESIDUAL),
the span, the form (I_FORM: which optional rows there are) and the offset
of the temporaries (I_TMP). Per row of n, written before the next is read:
rows of one stream share the state (``sst`` = 0), rows of a batch have
their own.
"""

import numpy as np
from numba import njit

from . import conv, direct, simd
from .config import FAST_FLAGS, JIT_OPTIONS, jit_fast
from .layout import (
    G_HEAD, GI, H_GRAPH, HEADER, I_A, I_AS, I_D, I_DS, I_FORM, I_SPAN, I_TMP, M_ACT0, M_ACT1,
    M_ACT2, M_IN, M_OUT, M_P, M_STATE, M_W0, M_W1, P_ALPHA0, P_BETA0, ROW,
)

U = np.uint64
# the optional rows a block has (layout.I_FORM; fuse.py)
R_ACT_ROW = 1   # the activation is a row of its own after an identity add (``(a + b).act(f)``)
R_RESIDUAL = 2  # a 1x1 conv of p and the residual sum h + u
R_SKIP = 4      # the skip sum s + p
_inline_fast = njit(inline="always", fastmath=FAST_FLAGS, **JIT_OPTIONS)


@_inline_fast
def _conv(acc, a0, src, x0, w, meta, r, st, base):
    """A groups-1 Conv1d row's bias + taps into ``acc[a0:]``, then its ring
    takes the input; returns nothing (the ring position is stored back)."""
    I = meta[r + M_IN]
    k = meta[r + M_ACT1]
    d = meta[r + M_ACT2]
    L = (k - 1) * d
    pos = conv.position(st, base, L)
    conv.taps(acc, a0, src, x0, w, meta[r + M_W0], meta[r + M_W1], I, meta[r + M_OUT], k, d,
              st, base + 1, pos, L)
    if L > 0:
        st[U(base)] = conv.push(st, base + 1, pos, L, src, x0, I)


@_inline_fast
def _pointwise(acc, a0, src, x0, w, meta, r):
    """A 1x1 Conv1d row (no ring: fuse.py checks k = 1): bias + product into
    ``acc[a0:]``, as ``conv.taps`` computes it for k = 1 (half the code to
    compile of a general conv)."""
    ncp = simd.width(meta[r + M_OUT], w)
    b = meta[r + M_W1]
    for c in range(ncp):
        acc[U(a0 + c)] = w[U(b + c)]
    simd.gemv(acc, a0, src, x0, w, meta[r + M_W0], meta[r + M_IN], ncp)


@_inline_fast
def _block(n, w, meta, r, st, sb, sst, sc):
    """n rows of the block at meta row ``r``; row i's state at ``st[sb + i*sst:]``."""
    q = meta[H_GRAPH] + G_HEAD + GI * ((r - HEADER) // ROW)
    form = meta[q + I_FORM]
    a = 3 if form & R_ACT_ROW else 2   # the row that activates: p's
    j = a + 1                          # the 1x1, then the residual sum
    ks = meta[q + I_SPAN] - 1          # the skip sum
    M = meta[r + M_OUT]
    C = meta[r + M_IN]
    z = meta[q + I_TMP]       # z, then p
    zm = z + simd.width(M, w)      # the mixer's output
    u = zm + simd.width(M, w)      # the 1x1's output
    pa = meta[r + a * ROW + M_P]
    code, alpha, beta = meta[r + a * ROW + M_ACT0], w[pa + P_ALPHA0], w[pa + P_BETA0]
    for i in range(n):
        sbi = sb + i * sst
        h = meta[q + I_A] + i * meta[q + I_AS]
        _conv(sc, z, sc, h, w, meta, r, st, sbi + meta[r + M_STATE])
        _pointwise(sc, zm, sc, meta[q + GI + I_A] + i * meta[q + GI + I_AS], w, meta, r + ROW)
        for c in range(M):
            sc[U(z + c)] = sc[U(z + c)] + sc[U(zm + c)]
        direct.activation(meta, sc, z, z + M, code, alpha, beta)
        if form & R_RESIDUAL:
            _pointwise(sc, u, sc, z, w, meta, r + j * ROW)
        # outputs in the rows' order: a buffer the graph reuses for a later
        # row's output ends with that row's value, as unfused
        p = meta[q + a * GI + I_D] + i * meta[q + a * GI + I_DS]
        for c in range(M):
            sc[U(p + c)] = sc[U(z + c)]
        if form & R_RESIDUAL:
            qr = q + (j + 1) * GI
            hd = meta[qr + I_D] + i * meta[qr + I_DS]
            for c in range(C):
                sc[U(hd + c)] = sc[U(h + c)] + sc[U(u + c)]
        if form & R_SKIP:
            s = meta[q + ks * GI + I_A] + i * meta[q + ks * GI + I_AS]
            sd = meta[q + ks * GI + I_D] + i * meta[q + ks * GI + I_DS]
            for c in range(M):
                sc[U(sd + c)] = sc[U(s + c)] + sc[U(z + c)]


@jit_fast
def run(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
    """n rows of the block at meta row ``r`` (its operands and outputs are in
    the scratch, where the instructions say): n steps of one stream (the
    seq form, ``sst`` = 0: the runner passes 0) or one step of n streams
    (the rows form, stream b's state at ``st[sb + b*sst:]``). One kernel
    for both forms: one C function to compile."""
    _block(n, w, meta, r, st, sb, sst, sc)
