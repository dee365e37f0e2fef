"""Conv1d over a tile of T > 1 steps as small matrix products (groups == 1).

``conv.seq`` steps one sample at a time: per tap, one ``simd.gemv`` whose
chain of dependent FMAs sets the pace. Over a tile, every tap's inputs are
already known (the ring holds the L = (k-1)*d inputs before the tile, ``src``
the tile's own), so each tap is a ``simd.gemm`` over the tile's rows, four
rows sharing each weight load, and the ring is updated once at the end.

For tap i (lag = (k-1-i)*d), rows t < lag read x_{t-lag} from the ring
(consecutive rows are consecutive ring slots, in at most two runs where the
ring wraps) and rows t >= lag read row t - lag of ``src``. The products
accumulate in H_SC_GX (T rows of the padded output width), then the
activation and a copy into ``dst``. Same packed weights, state layout and
results (up to the order of float sums) as ``conv.seq``.
"""

import numpy as np

from . import direct, simd
from .config import jit_fast
from .layout import (
    H_SC_GX, M_ACT0, M_ACT1, M_ACT2, M_IN, M_OUT, M_P, M_STATE, M_W0, M_W1, P_ALPHA0, P_BETA0,
)

U = np.uint64


@jit_fast
def seq(src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, sc):
    """T steps of the (groups == 1) Conv1d layer at meta row ``r``; the
    arguments are ``conv.seq``'s."""
    I = meta[r + M_IN]
    O = meta[r + M_OUT]
    k = meta[r + M_ACT1]
    d = meta[r + M_ACT2]
    code = meta[r + M_ACT0]
    p = meta[r + M_P]
    wk = meta[r + M_W0]
    b = meta[r + M_W1]
    alpha, beta = w[p + P_ALPHA0], w[p + P_BETA0]
    L = (k - 1) * d
    base = sb + meta[r + M_STATE]
    ring = base + 1
    acc = meta[H_SC_GX]
    ncp = simd.width(O, w)
    pos = 0
    if L > 0:
        pv = st[U(base)]
        if pv >= 0 and pv < L:  # a position set from outside may be anything finite
            pos = int(pv)
    for t in range(T):
        for c in range(ncp):
            sc[U(acc + t * ncp + c)] = w[U(b + c)]
    for i in range(k):
        lag = (k - 1 - i) * d
        wi = wk + i * I * ncp
        nring = min(T, lag)
        t = 0
        while t < nring:
            # x_{t - lag} sits in slot (pos + L - lag + t) mod L
            slot = pos + L - lag + t
            if slot >= L:
                slot -= L
            run = min(nring - t, L - slot)
            simd.gemm(sc, acc + t * ncp, ncp, st, ring + slot * I, I, w, wi, I, ncp, run)
            t += run
        if T > nring:
            simd.gemm(sc, acc + nring * ncp, ncp, src, s0 + (nring - lag) * ss, ss, w, wi, I,
                      ncp, T - nring)
    # one activation call over the tile (the padding columns hold zeros' images)
    direct.activation(meta, sc, acc, acc + T * ncp, code, alpha, beta)
    for t in range(T):
        o = d0 + t * ds
        a = acc + t * ncp
        for c in range(O):
            dst[U(o + c)] = sc[U(a + c)]
    if L > 0:
        # x_t goes to slot (pos + t) mod L; only the last L inputs stay
        for t in range(max(0, T - L), T):
            slot = (pos + t) % L
            x0 = s0 + t * ss
            for j in range(I):
                st[U(ring + slot * I + j)] = src[U(x0 + j)]
        st[U(base)] = (pos + T) % L
