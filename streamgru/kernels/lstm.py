"""LSTM kernel: one tile of T steps of one LSTM layer.

Packed block: ``W_ih^T`` (I, 4H) and ``W_hh^T`` (P, 4H) row-major (gate
columns i, f, g, o, as in the canonical form), then ``b_ih + b_hh`` (4H,),
then the peepholes (3, H) rows p_i, p_f, p_o if present, then the projection
``W_hr^T`` (H, P) if present. The layer's state is h (P) then c (H).
"""

import numpy as np

from . import activations as act
from .config import jit_fast
from .gru import input_projection, matvec_acc
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


@jit_fast
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
    H2, H3 = 2 * H, 3 * H
    flags = meta[r + M_FLAGS]
    gate_code = meta[r + M_ACT0]
    cell_code = meta[r + M_ACT1]
    hid_code = meta[r + M_ACT2]
    p = meta[r + M_P]
    has_clip = (flags & F_CLIP) != 0
    peep = (flags & F_PEEPHOLE) != 0
    proj = (flags & F_PROJ) != 0
    coupled = (flags & F_INPUT_FORGET) != 0
    clip = w[p + P_CLIP]
    ga, gb = w[p + P_ALPHA0], w[p + P_BETA0]
    ca, cb = w[p + P_ALPHA1], w[p + P_BETA1]
    ha, hb = w[p + P_ALPHA2], w[p + P_BETA2]
    # views made once and indexed from 0, so the inner loops vectorise
    wh = meta[r + M_W1]
    Wh = w[wh : wh + P * G].reshape((P, G))
    pp = meta[r + M_W3]
    Pp = w[pp : pp + (H3 if peep else 0)]
    wr = meta[r + M_W4]
    Wr = w[wr : wr + (H * P if proj else 0)].reshape((H if proj else 0, P))
    h0 = sb + meta[r + M_STATE]
    h = st[h0 : h0 + P]
    c = st[h0 + P : h0 + P + H]
    gx = meta[H_SC_GX]
    a = sc[meta[H_SC_GH] : meta[H_SC_GH] + G]
    v = sc[meta[H_SC_TMP] : meta[H_SC_TMP] + H]
    # the usual cell (sigmoid gates, tanh cell and hidden, no options) runs one fused loop
    plain = (
        gate_code == act.SIGMOID and cell_code == act.TANH and hid_code == act.TANH
        and not (has_clip or peep or coupled)
    )

    input_projection(src, s0, ss, T, I, G, w, meta[r + M_W0], meta[r + M_W2], sc, gx)

    for t in range(T):
        g = sc[gx + t * G : gx + (t + 1) * G]
        out = dst[d0 + t * ds : d0 + t * ds + P]
        # all four gate pre-activations: input part (with biases) + R h
        for k in range(G):
            a[k] = g[k]
        matvec_acc(a, h, Wh)
        if plain:
            for k in range(H):
                ck = act.sigmoid(a[H + k]) * c[k] + act.sigmoid(a[k]) * act.tanh(a[H2 + k])
                c[k] = ck
                v[k] = act.sigmoid(a[H3 + k]) * act.tanh(ck)
        else:
            # i and f see the previous c through their peepholes
            if peep:
                for k in range(H):
                    a[k] += Pp[k] * c[k]
                    a[H + k] += Pp[H + k] * c[k]
            if has_clip:
                act.clip(a, 0, H3, clip)
            act.apply(a, 0, H2, gate_code, ga, gb)
            act.apply(a, H2, H3, cell_code, ca, cb)
            if coupled:
                for k in range(H):
                    a[H + k] = 1 - a[k]
            # c' = f * c + i * g; o sees the new c through its peephole
            for k in range(H):
                c[k] = a[H + k] * c[k] + a[k] * a[H2 + k]
            if peep:
                for k in range(H):
                    a[H3 + k] += Pp[H2 + k] * c[k]
            if has_clip:
                act.clip(a, H3, G, clip)
            act.apply(a, H3, G, gate_code, ga, gb)
            # v = o * act(c')
            for k in range(H):
                v[k] = c[k]
            act.apply(v, 0, H, hid_code, ha, hb)
            for k in range(H):
                v[k] *= a[H3 + k]
        # h' = v, or W_hr v when projected
        if proj:
            for k in range(P):
                h[k] = 0
            matvec_acc(h, v, Wr)
        else:
            for k in range(H):
                h[k] = v[k]
        for k in range(P):
            out[k] = h[k]
