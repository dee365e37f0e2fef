"""MaxPool1d / AvgPool1d kernel: a window over time, emitted every ``stride`` inputs.

Meta row fields for these kinds: M_FLAGS = count_include_pad (average),
M_ACT1 = kernel size k, M_ACT2 = dilation, and the rate fields (rate.py).
No packed weights. The state (layers/pool.py documents it) is the ring
position p, the number of samples seen n (up to L), the rate counter, then
L = (k-1)*dilation slots of C inputs; before step t, slot (p + L - lag) % L
holds x_{t-lag}, which is in the padding when lag > n.
"""

import numpy as np

from . import rate
from .conv import push, slot_of
from .config import jit_fast
from .layout import (
    H_RATE, KIND_AVGPOOL, KIND_MAXPOOL, M_ACT1, M_ACT2, M_COUNT, M_DELAY, M_FLAGS, M_IN, M_KIND, M_STATE,
    M_STRIDE,
)

U = np.uint64


def pack(layer, packer):
    """A pool's meta row (it packs no arrays)."""
    return {
        "kind": KIND_MAXPOOL if layer.kind == "maxpool1d" else KIND_AVGPOOL,
        "gates": 0,
        "tmp": 0,
        "rate": True,
        M_FLAGS: int(getattr(layer, "count_include_pad", False)),
        M_ACT1: layer.kernel_size,
        M_ACT2: layer.dilation,
        M_DELAY: layer.latency,
        M_STRIDE: layer.stride,
        M_COUNT: layer.counter_index,
    }


@jit_fast
def seq(src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, sc):
    """T inputs through the pool at meta row ``r``: inputs ``src[s0 + t*ss:]``,
    the rows it emits packed at ``dst[d0 + m*ds:]``, their number reported
    at ``sc[meta[H_RATE]]``."""
    C = meta[r + M_IN]
    k, dil = meta[r + M_ACT1], meta[r + M_ACT2]
    D, s = meta[r + M_DELAY], meta[r + M_STRIDE]
    is_max = meta[r + M_KIND] == KIND_MAXPOOL
    whole = meta[r + M_FLAGS] != 0
    L = (k - 1) * dil
    base = sb + meta[r + M_STATE]
    ring = base + 3
    pos = 0
    seen = 0
    if L > 0:
        # position and count set from outside (set_state) may be anything finite
        pv, nv = st[U(base)], st[U(base + 1)]
        if pv >= 0 and pv < L:
            pos = int(pv)
        if nv >= 0 and nv <= L:
            seen = int(nv)
    cnt = rate.counter(st, base + meta[r + M_COUNT], D, s)
    m = 0
    for t in range(T):
        x0 = s0 + t * ss
        if cnt == D:
            o = d0 + m * ds
            m += 1
            for ch in range(C):
                dst[U(o + ch)] = src[U(x0 + ch)]
            n = 1
            for i in range(k - 1):
                lag = (k - 1 - i) * dil
                if lag > seen:
                    continue  # the padding
                at = ring + slot_of(pos, L, lag) * C
                n += 1
                for ch in range(C):
                    v = st[U(at + ch)]
                    if is_max:
                        if v > dst[U(o + ch)]:
                            dst[U(o + ch)] = v
                    else:
                        dst[U(o + ch)] += v
            if not is_max:
                div = k if whole else n
                for ch in range(C):
                    dst[U(o + ch)] /= div
        cnt = rate.advance(cnt, D, s)
        if L > 0:
            pos = push(st, ring, pos, L, src, x0, C)
            if seen < L:
                seen += 1
    st[U(base)] = pos
    st[U(base + 1)] = seen
    st[U(base + 2)] = cnt
    sc[meta[H_RATE]] = m
