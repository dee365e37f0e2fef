"""Dense kernel: y = act(W x + b) for a tile of T rows.

Packed block: ``W^T`` (in, out) row-major, then ``b`` (out,).
"""

from . import activations as act
from .config import jit
from .layout import KIND_DENSE, M_ACT0, M_IN, M_OUT, M_P, M_W0, M_W1, P_ALPHA0, P_BETA0


def pack(layer, packer):
    """Append a Dense layer's packed arrays to ``packer``; return its meta row."""
    params = packer.params({P_ALPHA0: layer.activation.alpha, P_BETA0: layer.activation.beta})
    return {
        "kind": KIND_DENSE,
        "gates": 0,
        "tmp": 0,
        M_ACT0: act.CODES[layer.activation.name],
        M_P: params,
        M_W0: packer.add(layer.weight.T),
        M_W1: packer.add(layer.bias),
    }


@jit
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
        for k in range(O):
            dst[o + k] = w[b + k]
        for j in range(I):
            xj = src[s0 + t * ss + j]
            row = wt + j * O
            for k in range(O):
                dst[o + k] += xj * w[row + k]
        act.apply(dst, o, o + O, code, alpha, beta)
