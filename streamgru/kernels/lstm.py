"""LSTM kernel: one tile of T steps of one LSTM layer.

Packed block: ``W_ih^T`` (I, 4H) and ``W_hh^T`` (P, 4H) row-major (gate
columns i, f, g, o, as in the canonical form), then ``b_ih + b_hh`` (4H,),
then the peepholes (3, H) rows p_i, p_f, p_o if present, then the projection
``W_hr^T`` (H, P) if present. The layer's state is h (P) then c (H).
"""

import numpy as np

from . import activations as act
from .config import jit
from .gru import input_projection
from .layout import (
    F_CLIP, F_INPUT_FORGET, F_PEEPHOLE, F_PROJ, H_SC_GH, H_SC_GX, H_SC_TMP, KIND_LSTM,
    M_ACT0, M_ACT1, M_ACT2, M_FLAGS, M_HID, M_IN, M_OUT, M_P, M_STATE, M_W0, M_W1,
    M_W2, M_W3, M_W4, P_ALPHA0, P_ALPHA1, P_ALPHA2, P_BETA0, P_BETA1, P_BETA2, P_CLIP,
)


def pack(layer, packer):
    """Append an LSTM layer's packed arrays to ``packer``; return its meta row."""
    H = layer.hidden_size
    flags = (
        (F_CLIP if layer.clip else 0)
        | (F_PEEPHOLE if layer.peepholes is not None else 0)
        | (F_PROJ if layer.weight_hr is not None else 0)
        | (F_INPUT_FORGET if layer.input_forget else 0)
    )
    params = packer.params(
        {P_CLIP: layer.clip or 0.0,
         P_ALPHA0: layer.gate_activation.alpha, P_BETA0: layer.gate_activation.beta,
         P_ALPHA1: layer.cell_activation.alpha, P_BETA1: layer.cell_activation.beta,
         P_ALPHA2: layer.hidden_activation.alpha, P_BETA2: layer.hidden_activation.beta}
    )
    # the two biases are always added together: fold them once, in float64
    bias = np.asarray(layer.bias_ih, np.float64) + np.asarray(layer.bias_hh, np.float64)
    return {
        "kind": KIND_LSTM,
        "gates": 4 * H,
        "tmp": H,
        M_FLAGS: flags,
        M_ACT0: act.CODES[layer.gate_activation.name],
        M_ACT1: act.CODES[layer.cell_activation.name],
        M_ACT2: act.CODES[layer.hidden_activation.name],
        M_P: params,
        M_W0: packer.add(layer.weight_ih.T),
        M_W1: packer.add(layer.weight_hh.T),
        M_W2: packer.add(bias),
        M_W3: packer.add(layer.peepholes) if layer.peepholes is not None else 0,
        M_W4: packer.add(layer.weight_hr.T) if layer.weight_hr is not None else 0,
    }


@jit
def seq(src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, sc):
    """Run T steps of the LSTM layer at meta row ``r``.

    Reads inputs ``src[s0 + t*ss : ... + I]``, updates the state
    ``st[sb + state offset : ...]`` (h of size P, then c of size H) in place
    and writes each step's h to ``dst[d0 + t*ds : ... + P]``.
    """
    I = meta[r + M_IN]
    H = meta[r + M_HID]
    P = meta[r + M_OUT]
    G = 4 * H
    flags = meta[r + M_FLAGS]
    gate_code = meta[r + M_ACT0]
    cell_code = meta[r + M_ACT1]
    hid_code = meta[r + M_ACT2]
    p = meta[r + M_P]
    wx = meta[r + M_W0]
    wh = meta[r + M_W1]
    b = meta[r + M_W2]
    pp = meta[r + M_W3]
    wr = meta[r + M_W4]
    h0 = sb + meta[r + M_STATE]
    c0 = h0 + P
    gx = meta[H_SC_GX]
    gh = meta[H_SC_GH]
    tmp = meta[H_SC_TMP]
    has_clip = (flags & F_CLIP) != 0
    peep = (flags & F_PEEPHOLE) != 0
    proj = (flags & F_PROJ) != 0
    coupled = (flags & F_INPUT_FORGET) != 0
    clip = w[p + P_CLIP]
    ga, gb = w[p + P_ALPHA0], w[p + P_BETA0]
    ca, cb = w[p + P_ALPHA1], w[p + P_BETA1]
    ha, hb = w[p + P_ALPHA2], w[p + P_BETA2]
    i0, f0, g0, o0 = gh, gh + H, gh + 2 * H, gh + 3 * H

    input_projection(src, s0, ss, T, I, G, w, wx, b, sc, gx)

    for t in range(T):
        g = gx + t * G
        # all four gate pre-activations: input part (with biases) + R h
        for k in range(G):
            sc[gh + k] = sc[g + k]
        for j in range(P):
            hj = st[h0 + j]
            row = wh + j * G
            for k in range(G):
                sc[gh + k] += hj * w[row + k]
        # i and f see the previous c through their peepholes
        if peep:
            for k in range(H):
                ck = st[c0 + k]
                sc[i0 + k] += w[pp + k] * ck
                sc[f0 + k] += w[pp + H + k] * ck
        if has_clip:
            act.clip(sc, gh, gh + 3 * H, clip)
        act.apply(sc, i0, g0, gate_code, ga, gb)
        act.apply(sc, g0, o0, cell_code, ca, cb)
        if coupled:
            for k in range(H):
                sc[f0 + k] = 1 - sc[i0 + k]
        # c' = f * c + i * g; o sees the new c through its peephole
        for k in range(H):
            st[c0 + k] = sc[f0 + k] * st[c0 + k] + sc[i0 + k] * sc[g0 + k]
        if peep:
            for k in range(H):
                sc[o0 + k] += w[pp + 2 * H + k] * st[c0 + k]
        if has_clip:
            act.clip(sc, o0, o0 + H, clip)
        act.apply(sc, o0, o0 + H, gate_code, ga, gb)
        # h' = o * act(c'), projected to P values by W_hr when present
        for k in range(H):
            sc[tmp + k] = st[c0 + k]
        act.apply(sc, tmp, tmp + H, hid_code, ha, hb)
        o = d0 + t * ds
        if proj:
            for k in range(H):
                sc[tmp + k] *= sc[o0 + k]
            for k in range(P):
                st[h0 + k] = 0
            for j in range(H):
                vj = sc[tmp + j]
                row = wr + j * P
                for k in range(P):
                    st[h0 + k] += vj * w[row + k]
            for k in range(P):
                dst[o + k] = st[h0 + k]
        else:
            for k in range(H):
                hn = sc[o0 + k] * sc[tmp + k]
                st[h0 + k] = hn
                dst[o + k] = hn
