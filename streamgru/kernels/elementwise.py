"""Element-wise kernel of graph models: add, mul, slice (scale, activate), gate, blend.

Meta row fields reused for this kind: M_FLAGS = the op (OP_* below), M_ACT0 =
the (primary) activation, M_ACT1 = the gate's secondary activation, M_ACT2 =
the slice offset; the parameter block holds both activations' (alpha, beta)
and, at P_ALPHA2, the slice's scale. A binary op finds its second operand in
the graph's instruction table (layout.py: I_B, I_BS), always in the scratch.
The gate and blend compute their secondary half in the per-step temporary
(H_SC_TMP). Stateless: a sequence and rows of streams are the same n rows.
"""

import numpy as np

from . import activations as act
from .config import jit_fast
from .layout import (
    GI, G_HEAD, H_GRAPH, H_SC_TMP, HEADER, I_B, I_BS, KIND_ELEMENTWISE, M_ACT0, M_ACT1, M_ACT2,
    M_FLAGS, M_OUT, M_P, P_ALPHA0, P_ALPHA1, P_ALPHA2, P_BETA0, P_BETA1, ROW,
)

U = np.uint64
OP_ADD, OP_MUL, OP_SLICE, OP_GATE, OP_BLEND = 1, 2, 3, 4, 5
OPS = {"add": OP_ADD, "mul": OP_MUL, "slice": OP_SLICE, "gate": OP_GATE, "blend": OP_BLEND}


def pack(layer, packer):
    """The meta row of an Elementwise op (its only packed array: the parameters)."""
    a, b = layer.activation, layer.secondary
    params = packer.params({P_ALPHA0: a.alpha, P_BETA0: a.beta, P_ALPHA1: b.alpha,
                            P_BETA1: b.beta, P_ALPHA2: layer.scale})
    return {
        "kind": KIND_ELEMENTWISE,
        "gates": 0,
        "tmp": layer.output_size if layer.op in ("gate", "blend") else 0,
        M_FLAGS: OPS[layer.op],
        M_ACT0: act.CODES[a.name],
        M_ACT1: act.CODES[b.name],
        M_ACT2: layer.offset,
        M_P: params,
    }


@jit_fast
def seq(src, s0, ss, dst, d0, ds, n, w, meta, r, sc):
    """n rows of the op at meta row ``r``: operand rows ``src[s0 + t*ss:]``
    (and, for add/mul, the scratch rows the instruction table names), output
    rows ``dst[d0 + t*ds:]``. An add or mul may write over either operand
    (each element is read before it is written)."""
    op = meta[r + M_FLAGS]
    O = meta[r + M_OUT]
    code = meta[r + M_ACT0]
    p = meta[r + M_P]
    alpha, beta = w[p + P_ALPHA0], w[p + P_BETA0]
    b0 = 0
    bs = 0
    if op == OP_ADD or op == OP_MUL:
        q = meta[H_GRAPH] + G_HEAD + GI * ((r - HEADER) // ROW)
        b0 = meta[q + I_B]
        bs = meta[q + I_BS]
    tmp = meta[H_SC_TMP]
    for t in range(n):
        a = s0 + t * ss
        o = d0 + t * ds
        if op == OP_ADD:
            bt = b0 + t * bs
            for k in range(O):
                dst[U(o + k)] = src[U(a + k)] + sc[U(bt + k)]
        elif op == OP_MUL:
            bt = b0 + t * bs
            for k in range(O):
                dst[U(o + k)] = src[U(a + k)] * sc[U(bt + k)]
        elif op == OP_SLICE:
            a += meta[r + M_ACT2]
            scale = w[p + P_ALPHA2]
            for k in range(O):
                dst[U(o + k)] = scale * src[U(a + k)]
        else:  # gate, blend: the secondary half into the temporary first
            for k in range(O):
                sc[U(tmp + k)] = src[U(a + O + k)]
            act.apply(sc, tmp, tmp + O, meta[r + M_ACT1], w[p + P_ALPHA1], w[p + P_BETA1])
            for k in range(O):
                dst[U(o + k)] = src[U(a + k)]
        act.apply(dst, o, o + O, code, alpha, beta)
        if op == OP_GATE:
            for k in range(O):
                dst[U(o + k)] *= sc[U(tmp + k)]
        elif op == OP_BLEND:
            # s * f(x) + (1 - s) * x = x + s * (f(x) - x)
            for k in range(O):
                x = src[U(a + k)]
                dst[U(o + k)] = x + sc[U(tmp + k)] * (dst[U(o + k)] - x)
