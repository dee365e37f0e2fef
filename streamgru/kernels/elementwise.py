"""Element-wise kernel of graph models: add, mul, slice (scale, activate), gate, blend, concat.

Meta row fields reused for this kind: M_FLAGS = the op (OP_* below), M_ACT0 =
the (primary) activation, M_ACT1 = the gate's secondary activation, M_ACT2 =
the slice offset; the parameter block holds both activations' (alpha, beta)
and, at P_ALPHA2, the slice's scale. A binary op finds its second operand in
the graph's instruction table (layout.py: I_B, I_BS), always in the scratch.
The gate and blend compute their secondary halves in a tile of scratch
(H_SC_GX). Stateless: a sequence and rows of streams are the same n rows.
"""

import numpy as np
from numba import njit

from . import activations as act
from . import direct
from .config import FAST_FLAGS, JIT_OPTIONS, jit_fast
from .layout import (
    GI, G_HEAD, H_GRAPH, H_SC_GX, HEADER, I_B, I_BS, KIND_ELEMENTWISE, M_ACT0, M_ACT1, M_ACT2,
    M_FLAGS, M_IN, M_OUT, M_P, P_ALPHA0, P_ALPHA1, P_ALPHA2, P_BETA0, P_BETA1, ROW,
)

U = np.uint64
_inline_fast = njit(inline="always", fastmath=FAST_FLAGS, **JIT_OPTIONS)
OP_ADD, OP_MUL, OP_SLICE, OP_GATE, OP_BLEND, OP_CONCAT = 1, 2, 3, 4, 5, 6
OPS = {"add": OP_ADD, "mul": OP_MUL, "slice": OP_SLICE, "gate": OP_GATE, "blend": OP_BLEND,
       "concat": OP_CONCAT}


def pack(layer, packer):
    """The meta row of an Elementwise op (its only packed array: the parameters)."""
    a, b = layer.activation, layer.secondary
    params = packer.params({P_ALPHA0: a.alpha, P_BETA0: a.beta, P_ALPHA1: b.alpha,
                            P_BETA1: b.beta, P_ALPHA2: layer.scale})
    return {
        "kind": KIND_ELEMENTWISE,
        # gate, blend: a tile of the secondary halves (H_SC_GX)
        "gates": layer.output_size if layer.op in ("gate", "blend") else 0,
        "tmp": 0,
        M_FLAGS: OPS[layer.op],
        M_ACT0: act.CODES[a.name],
        M_ACT1: act.CODES[b.name],
        M_ACT2: layer.offset,
        M_P: params,
    }


@jit_fast
def seq(src, s0, ss, dst, d0, ds, n, w, meta, r, sc):
    """n rows of the op at meta row ``r``: operand rows ``src[s0 + t*ss:]``
    (and, for add/mul/concat, the scratch rows the instruction table names), output
    rows ``dst[d0 + t*ds:]``. An add or mul may write over either operand
    (each element is read before it is written). Rows stored back to back
    (stride = width, as graph.py assigns buffers) run as one loop, and each
    activation is applied once over the tile."""
    op = meta[r + M_FLAGS]
    O = meta[r + M_OUT]
    p = meta[r + M_P]
    if op == OP_ADD or op == OP_MUL:
        b0, bs = _second(meta, r)
        if ss == O and ds == O and bs == O:  # one run of n*O elements
            _binary(op, src, s0, sc, b0, dst, d0, n * O)
        else:
            for t in range(n):
                _binary(op, src, s0 + t * ss, sc, b0 + t * bs, dst, d0 + t * ds, O)
    elif op == OP_CONCAT:  # the first operand's M_IN channels, then the second's
        b0, bs = _second(meta, r)
        A = meta[r + M_IN]
        for t in range(n):
            a = s0 + t * ss
            b = b0 + t * bs
            o = d0 + t * ds
            for k in range(A):
                dst[U(o + k)] = src[U(a + k)]
            for k in range(O - A):
                dst[U(o + A + k)] = sc[U(b + k)]
    elif op == OP_SLICE:
        a0 = s0 + meta[r + M_ACT2]
        scale = w[p + P_ALPHA2]
        for t in range(n):
            a = a0 + t * ss
            o = d0 + t * ds
            for k in range(O):
                dst[U(o + k)] = scale * src[U(a + k)]
    else:  # gate, blend: first halves into dst, second halves into a tile of scratch
        tmp = meta[H_SC_GX]
        for t in range(n):
            a = s0 + t * ss
            o = d0 + t * ds
            g = tmp + t * O
            for k in range(O):
                dst[U(o + k)] = src[U(a + k)]
                sc[U(g + k)] = src[U(a + O + k)]
        direct.activation(meta, sc, tmp, tmp + n * O, meta[r + M_ACT1], w[p + P_ALPHA1], w[p + P_BETA1])
    code = meta[r + M_ACT0]
    alpha, beta = w[p + P_ALPHA0], w[p + P_BETA0]
    if ds == O:
        direct.activation(meta, dst, d0, d0 + n * O, code, alpha, beta)
    else:
        for t in range(n):
            direct.activation(meta, dst, d0 + t * ds, d0 + t * ds + O, code, alpha, beta)
    if op == OP_GATE:
        tmp = meta[H_SC_GX]
        for t in range(n):
            o = d0 + t * ds
            g = tmp + t * O
            for k in range(O):
                dst[U(o + k)] *= sc[U(g + k)]
    elif op == OP_BLEND:
        # s * f(x) + (1 - s) * x = x + s * (f(x) - x)
        tmp = meta[H_SC_GX]
        for t in range(n):
            a = s0 + t * ss
            o = d0 + t * ds
            g = tmp + t * O
            for k in range(O):
                x = src[U(a + k)]
                dst[U(o + k)] = x + sc[U(g + k)] * (dst[U(o + k)] - x)


@_inline_fast
def _second(meta, r):
    """(offset, row stride) in the scratch of the second operand of the
    binary op at meta row ``r``, from its graph instruction."""
    q = meta[H_GRAPH] + G_HEAD + GI * ((r - HEADER) // ROW)
    return meta[q + I_B], meta[q + I_BS]


@_inline_fast
def _binary(op, a, a0, b, b0, dst, d0, m):
    """dst[d0 + k] = a[a0 + k] (+ or *) b[b0 + k] for k < m."""
    if op == OP_ADD:
        for k in range(m):
            dst[U(d0 + k)] = a[U(a0 + k)] + b[U(b0 + k)]
    else:
        for k in range(m):
            dst[U(d0 + k)] = a[U(a0 + k)] * b[U(b0 + k)]
