"""Dense kernel: y = act(W x + b) for a tile of T rows.

Packed block: the weights, then ``b`` (out,). A narrow layer (fewer than
NARROW outputs: a classifier or regression head) keeps ``W`` (out, in)
row-major and computes each output as one dot product, summed in
registers; a wider one keeps ``W^T`` (in, out) and adds each input's row of
weights to all outputs at once (an axpy per input).

Weights stored in a reduced type (``STORED``) are ``simd`` panels instead
(``W^T``, widened in registers), with ``b`` padded to the panel's width G:
the T rows are computed into the scratch's input-projection tile, then
copied out (the products write whole vectors, more than the output holds).
"""

import numpy as np

from . import activations as act
from . import direct, simd
from .config import jit_fast, variant
from .layout import (
    H_SC_GX, KIND_DENSE, M_ACT0, M_IN, M_OUT, M_P, M_W0, M_W1, P_ALPHA0, P_BETA0, WQ_BFLOAT16,
    WQ_FLOAT, WQ_FLOAT16, WQ_INT8,
)
from .simd import U

NARROW = 16


def pack(layer, packer):
    """Append a Dense layer's packed arrays to ``packer``; return its meta row."""
    params = packer.params({P_ALPHA0: layer.activation.alpha, P_BETA0: layer.activation.beta})
    if packer.weight_type(layer) != WQ_FLOAT:
        G = packer.padded(layer.output_size)
        bias = np.zeros(G)
        bias[: layer.output_size] = layer.bias
        return {
            "kind": packer.kind(KIND_DENSE, layer),
            "gates": G,
            "tmp": 0,
            M_ACT0: act.CODES[layer.activation.name],
            M_P: params,
            M_W0: packer.matrix(layer.weight, G),
            M_W1: packer.add(bias),
        }
    return {
        "kind": KIND_DENSE,
        "gates": 0,
        "tmp": 0,
        M_ACT0: act.CODES[layer.activation.name],
        M_P: params,
        M_W0: packer.add(layer.weight if layer.output_size < NARROW else layer.weight.T),
        M_W1: packer.add(layer.bias),
    }


@jit_fast
def seq(src, s0, ss, dst, d0, ds, T, w, meta, r):
    """y_t = act(W x_t + b) for T rows of ``src`` into T rows of ``dst``."""
    I = meta[r + M_IN]
    O = meta[r + M_OUT]
    code = meta[r + M_ACT0]
    p = meta[r + M_P]
    wt = meta[r + M_W0]
    b = meta[r + M_W1]
    alpha, beta = w[p + P_ALPHA0], w[p + P_BETA0]
    for t in range(T):
        o = d0 + t * ds
        x0 = s0 + t * ss
        if O < NARROW:
            for k in range(O):
                row = wt + k * I
                acc = w[U(b + k)]
                for j in range(I):
                    acc += w[U(row + j)] * src[U(x0 + j)]
                dst[U(o + k)] = acc
        else:
            for k in range(O):
                dst[U(o + k)] = w[U(b + k)]
            for j in range(I):
                xj = src[U(x0 + j)]
                row = wt + j * O
                for k in range(O):
                    dst[U(o + k)] += xj * w[U(row + k)]
        direct.activation(meta, dst, o, o + O, code, alpha, beta)


def _stored_variant(q):
    def seq_stored(src, s0, ss, dst, d0, ds, T, w, meta, r, sc):
        """y_t = act(W x_t + b) for T <= TILE rows, W stored as type ``q``."""
        I = meta[r + M_IN]
        O = meta[r + M_OUT]
        G = simd.width(O, w)
        p = meta[r + M_P]
        a = meta[H_SC_GX]
        simd.qproject(q, src, s0, ss, T, I, G, w, meta[r + M_W0], meta[r + M_W1], sc, a)
        for t in range(T):
            o = d0 + t * ds
            row = a + t * G
            for k in range(O):
                dst[U(o + k)] = sc[U(row + k)]
            direct.activation(meta, dst, o, o + O, meta[r + M_ACT0], w[p + P_ALPHA0], w[p + P_BETA0])
    return jit_fast(variant(seq_stored, q=q))


# the kernel of each reduced weight type (closures over the type code alone)
STORED = {q: _stored_variant(q) for q in (WQ_INT8, WQ_FLOAT16, WQ_BFLOAT16)}
