"""Elman RNN kernel: one tile of T steps of ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``.

Packed block: ``W_ih^T`` (I, H) and ``W_hh^T`` (H, H) row-major, then
``b_ih + b_hh`` (H,). The layer's state is h (H).
"""

import numpy as np

from . import activations as act
from .config import jit_fast
from .gru import input_projection, matvec_acc
from .layout import (
    F_CLIP, H_SC_GH, H_SC_GX, KIND_RNN, M_ACT0, M_FLAGS, M_HID, M_IN, M_P, M_STATE,
    M_W0, M_W1, M_W2, P_ALPHA0, P_BETA0, P_CLIP,
)


def pack(layer, packer):
    """Append an RNN layer's packed arrays to ``packer``; return its meta row."""
    params = packer.params(
        {P_CLIP: layer.clip or 0.0,
         P_ALPHA0: layer.activation.alpha, P_BETA0: layer.activation.beta}
    )
    # the two biases are always added together: fold them once, in float64
    bias = np.asarray(layer.bias_ih, np.float64) + np.asarray(layer.bias_hh, np.float64)
    return {
        "kind": KIND_RNN,
        "gates": layer.hidden_size,
        "tmp": 0,
        M_FLAGS: F_CLIP if layer.clip else 0,
        M_ACT0: act.CODES[layer.activation.name],
        M_P: params,
        M_W0: packer.add(layer.weight_ih.T),
        M_W1: packer.add(layer.weight_hh.T),
        M_W2: packer.add(bias),
    }


@jit_fast
def seq(src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, sc):
    """Run T steps of the RNN layer at meta row ``r``.

    Reads inputs ``src[s0 + t*ss : ... + I]``, updates the hidden state
    ``st[sb + state offset : ... + H]`` in place and writes each step's h to
    ``dst[d0 + t*ds : ... + H]``.
    """
    I = meta[r + M_IN]
    H = meta[r + M_HID]
    code = meta[r + M_ACT0]
    p = meta[r + M_P]
    has_clip = (meta[r + M_FLAGS] & F_CLIP) != 0
    clip = w[p + P_CLIP]
    alpha, beta = w[p + P_ALPHA0], w[p + P_BETA0]
    # views made once and indexed from 0, so the inner loops vectorise
    wh = meta[r + M_W1]
    Wh = w[wh : wh + H * H].reshape((H, H))
    h0 = sb + meta[r + M_STATE]
    h = st[h0 : h0 + H]
    gx = meta[H_SC_GX]
    # the new h is built in scratch: every element needs the whole old h
    a = sc[meta[H_SC_GH] : meta[H_SC_GH] + H]

    input_projection(src, s0, ss, T, I, H, w, meta[r + M_W0], meta[r + M_W2], sc, gx)

    for t in range(T):
        g = sc[gx + t * H : gx + (t + 1) * H]
        out = dst[d0 + t * ds : d0 + t * ds + H]
        for k in range(H):
            a[k] = g[k]
        matvec_acc(a, h, Wh)
        if has_clip:
            act.clip(a, 0, H, clip)
        act.apply(a, 0, H, code, alpha, beta)
        for k in range(H):
            h[k] = a[k]
            out[k] = a[k]
