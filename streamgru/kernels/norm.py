"""BatchNorm, LayerNorm and PReLU kernels: stateless, per sample, T rows at a time.

Packed blocks (private to this file):
  BatchNorm: ``scale`` (C,) and ``shift`` (C,), folded once in float64 from
  (mean, var, eps, weight, bias), so ``y = x * scale + shift``;
  LayerNorm: ``weight`` (C,), ``bias`` (C,), eps in the parameter block;
  PReLU: one slope per channel (C,), a shared slope repeated.
"""

import numpy as np

from .config import jit_fast
from .layout import (
    KIND_BATCHNORM, KIND_LAYERNORM, KIND_PRELU, M_IN, M_KIND, M_P, M_W0, M_W1, P_ALPHA0,
)

U = np.uint64


def pack(layer, packer):
    """Append a BatchNorm / LayerNorm / PReLU layer's arrays; return its meta row."""
    C = layer.input_size
    row = {"gates": 0, "tmp": 0}
    if layer.kind == "batchnorm":
        scale, shift = layer.scale_shift()
        row.update({"kind": KIND_BATCHNORM, M_W0: packer.add(scale), M_W1: packer.add(shift)})
    elif layer.kind == "layernorm":
        row.update({"kind": KIND_LAYERNORM, M_P: packer.params({P_ALPHA0: layer.eps}),
                    M_W0: packer.add(layer.weight), M_W1: packer.add(layer.bias)})
    else:
        slopes = np.broadcast_to(np.asarray(layer.weight, np.float64), (C,))
        row.update({"kind": KIND_PRELU, M_W0: packer.add(slopes)})
    return row


@jit_fast
def seq(src, s0, ss, dst, d0, ds, T, w, meta, r):
    """T rows of the BatchNorm, LayerNorm or PReLU layer at meta row ``r``:
    ``src[s0 + t*ss : ... + C]`` to ``dst[d0 + t*ds : ... + C]``."""
    kind = meta[r + M_KIND]
    C = meta[r + M_IN]
    a = meta[r + M_W0]
    b = meta[r + M_W1]
    for t in range(T):
        x0 = s0 + t * ss
        o = d0 + t * ds
        if kind == KIND_BATCHNORM:
            for c in range(C):
                dst[U(o + c)] = src[U(x0 + c)] * w[U(a + c)] + w[U(b + c)]
        elif kind == KIND_PRELU:
            for c in range(C):
                v = src[U(x0 + c)]
                dst[U(o + c)] = v if v >= 0 else w[U(a + c)] * v
        elif kind == KIND_LAYERNORM:
            # mean and variance summed in float64: C values of either dtype
            mu = 0.0
            for c in range(C):
                mu += src[U(x0 + c)]
            mu /= C
            var = 0.0
            for c in range(C):
                e = src[U(x0 + c)] - mu
                var += e * e
            inv = 1.0 / np.sqrt(var / C + w[meta[r + M_P] + P_ALPHA0])
            for c in range(C):
                dst[U(o + c)] = (src[U(x0 + c)] - mu) * inv * w[U(a + c)] + w[U(b + c)]
