"""GRU kernel: one tile of T steps of one GRU layer.

Packed block: ``W_ih^T`` (I, 3H) and ``W_hh^T`` (H, 3H) row-major, so each
input or hidden element scales one contiguous row of 3H weights (a loop that
vectorises), then ``b_ih`` and ``b_hh`` (3H each), gate columns r, z, n.
"""

import numpy as np

from . import activations as act
from .config import jit
from .layout import (
    F_CLIP, F_RESET_AFTER, H_SC_GH, H_SC_GX, H_SC_TMP, KIND_GRU, M_ACT0, M_ACT1,
    M_HID, M_IN, M_P, M_STATE, M_FLAGS, M_W0, M_W1, M_W2, M_W3, P_ALPHA0,
    P_ALPHA1, P_BETA0, P_BETA1, P_CLIP,
)


def pack(layer, packer):
    """Append a GRU layer's packed arrays to ``packer``; return its meta row."""
    flags = (F_RESET_AFTER if layer.reset_after else 0) | (F_CLIP if layer.clip else 0)
    params = packer.params(
        {P_CLIP: layer.clip or 0.0,
         P_ALPHA0: layer.gate_activation.alpha, P_BETA0: layer.gate_activation.beta,
         P_ALPHA1: layer.activation.alpha, P_BETA1: layer.activation.beta}
    )
    return {
        "kind": KIND_GRU,
        "gates": 3 * layer.hidden_size,
        "tmp": layer.hidden_size,
        M_FLAGS: flags,
        M_ACT0: act.CODES[layer.gate_activation.name],
        M_ACT1: act.CODES[layer.activation.name],
        M_P: params,
        M_W0: packer.add(layer.weight_ih.T),
        M_W1: packer.add(layer.weight_hh.T),
        M_W2: packer.add(layer.bias_ih),
        M_W3: packer.add(layer.bias_hh),
    }


@jit
def input_projection(src, s0, ss, T, I, G, w, wx, bi, sc, gx):
    """sc[gx + t*G + k] = b[k] + sum_j src[s0 + t*ss + j] * W^T[j, k] for a tile."""
    for t in range(T):
        g = gx + t * G
        for k in range(G):
            sc[g + k] = w[bi + k]
        for j in range(I):
            xj = src[s0 + t * ss + j]
            row = wx + j * G
            for k in range(G):
                sc[g + k] += xj * w[row + k]


@jit
def seq(src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, sc):
    """Run T steps of the GRU layer at meta row ``r``.

    Reads inputs ``src[s0 + t*ss : ... + I]``, updates the hidden state
    ``st[sb + state offset : ... + H]`` in place and writes each step's h to
    ``dst[d0 + t*ds : ... + H]``.
    """
    I = meta[r + M_IN]
    H = meta[r + M_HID]
    G = 3 * H
    flags = meta[r + M_FLAGS]
    gate_code = meta[r + M_ACT0]
    cand_code = meta[r + M_ACT1]
    p = meta[r + M_P]
    wx = meta[r + M_W0]
    wh = meta[r + M_W1]
    bi = meta[r + M_W2]
    bh = meta[r + M_W3]
    h0 = sb + meta[r + M_STATE]
    gx = meta[H_SC_GX]
    gh = meta[H_SC_GH]
    tmp = meta[H_SC_TMP]
    reset_after = (flags & F_RESET_AFTER) != 0
    has_clip = (flags & F_CLIP) != 0
    c = w[p + P_CLIP]
    ga, gb = w[p + P_ALPHA0], w[p + P_BETA0]
    ca, cb = w[p + P_ALPHA1], w[p + P_BETA1]

    input_projection(src, s0, ss, T, I, G, w, wx, bi, sc, gx)

    ncols = G if reset_after else 2 * H
    for t in range(T):
        g = gx + t * G
        # recurrent projection of r, z (and n when the reset comes after it)
        for k in range(ncols):
            sc[gh + k] = w[bh + k]
        for j in range(H):
            hj = st[h0 + j]
            row = wh + j * G
            for k in range(ncols):
                sc[gh + k] += hj * w[row + k]
        for k in range(2 * H):
            sc[gh + k] += sc[g + k]
        if has_clip:
            act.clip(sc, gh, gh + 2 * H, c)
        act.apply(sc, gh, gh + 2 * H, gate_code, ga, gb)
        # candidate pre-activation
        n0 = gh + 2 * H
        if reset_after:
            for k in range(H):
                sc[n0 + k] = sc[g + 2 * H + k] + sc[gh + k] * sc[n0 + k]
        else:
            for k in range(H):
                sc[tmp + k] = sc[gh + k] * st[h0 + k]
                sc[n0 + k] = w[bh + 2 * H + k] + sc[g + 2 * H + k]
            for j in range(H):
                rhj = sc[tmp + j]
                row = wh + j * G + 2 * H
                for k in range(H):
                    sc[n0 + k] += rhj * w[row + k]
        if has_clip:
            act.clip(sc, n0, n0 + H, c)
        act.apply(sc, n0, n0 + H, cand_code, ca, cb)
        # h' = (1 - z) * n + z * h
        z0 = gh + H
        o = d0 + t * ds
        for k in range(H):
            n = sc[n0 + k]
            hn = n + sc[z0 + k] * (st[h0 + k] - n)
            st[h0 + k] = hn
            dst[o + k] = hn
