"""LSTM kernel: one tile of T steps of one LSTM layer.

Packed block: ``W_ih^T`` (I, 4H) and ``W_hh^T`` (P, 4H) in ``simd`` panel
form (gate columns i, f, g, o, as in the canonical form; rows of gate
pre-activations padded to whole vectors), then ``b_ih + b_hh`` (4H, padded),
then the peepholes (3, H) rows p_i, p_f, p_o if present, then the projection
``W_hr^T`` (H, P) if present. The layer's state is h (P) then c (H).

The default cell (sigmoid gates, tanh cell and hidden activations, no clip,
peepholes or coupling) runs one fused loop per step; any option takes the
general path, which applies the activations gate block by gate block.
"""

import numpy as np
from numba import njit

from . import activations as act
from . import direct, simd
from .config import FAST_FLAGS, JIT_OPTIONS, jit_fast, variant
from .simd import U
from .layout import (
    F_CLIP, F_INPUT_FORGET, F_PEEPHOLE, F_PROJ, H_SC_GX, H_SC_TMP, KIND_LSTM,
    M_ACT0, M_ACT1, M_ACT2, M_FLAGS, M_HID, M_IN, M_OUT, M_P, M_STATE, M_W0, M_W1,
    M_W2, M_W3, M_W4, P_ALPHA0, P_ALPHA1, P_ALPHA2, P_BETA0, P_BETA1, P_BETA2, P_CLIP, WQ_FLOAT, WQ_TYPES,
)

# inlined into each weight type's kernels
_inline_fast = njit(inline="always", fastmath=FAST_FLAGS, **JIT_OPTIONS)


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
    G = packer.padded(4 * H)
    bias = np.zeros(G)
    bias[: 4 * H] = np.asarray(layer.bias_ih, np.float64) + np.asarray(layer.bias_hh, np.float64)
    return {
        "kind": packer.kind(KIND_LSTM, layer),
        "gates": G,
        "tmp": H,
        M_FLAGS: flags,
        M_ACT0: act.CODES[layer.gate_activation.name],
        M_ACT1: act.CODES[layer.cell_activation.name],
        M_ACT2: act.CODES[layer.hidden_activation.name],
        M_P: params,
        M_W0: packer.matrix(layer.weight_ih, G),
        M_W1: packer.matrix(layer.weight_hh),
        M_W2: packer.add(bias),
        M_W3: packer.add(layer.peepholes) if layer.peepholes is not None else 0,
        M_W4: packer.add(layer.weight_hr.T) if layer.weight_hr is not None else 0,
    }


@jit_fast
def finish(w, meta, r, st, h, sc, a, dst, o):
    """Complete one step of the LSTM layer at meta row ``r`` for one stream.

    ``sc[a : a + 4H]`` holds the gate pre-activations ``W x + b + R h``
    (gate order i, f, g, o); this adds the peepholes, clips, applies the
    activations, updates the state at ``st[h:]`` (h of size P, then c) in
    place and writes the new h to ``dst[o : o + P]``. Uses the plan's
    temporaries at H_SC_TMP.
    """
    H = meta[r + M_HID]
    P = meta[r + M_OUT]
    G = 4 * H
    H2, H3 = 2 * H, 3 * H
    flags = meta[r + M_FLAGS]
    gate_code = meta[r + M_ACT0]
    cell_code = meta[r + M_ACT1]
    hid_code = meta[r + M_ACT2]
    has_clip = (flags & F_CLIP) != 0
    peep = (flags & F_PEEPHOLE) != 0
    coupled = (flags & F_INPUT_FORGET) != 0
    c = h + P
    v = meta[H_SC_TMP]
    if (gate_code == act.SIGMOID and cell_code == act.TANH and hid_code == act.TANH
            and not (has_clip or peep or coupled)):
        # the usual cell in one fused loop: v = o * tanh(c'), c' = f * c + i * g
        for k in range(H):
            ck = (act.sigmoid(sc[U(a + H + k)]) * st[U(c + k)]
                  + act.sigmoid(sc[U(a + k)]) * act.tanh(sc[U(a + H2 + k)]))
            st[U(c + k)] = ck
            sc[U(v + k)] = act.sigmoid(sc[U(a + H3 + k)]) * act.tanh(ck)
    else:
        p = meta[r + M_P]
        pp = meta[r + M_W3]
        clip = w[p + P_CLIP]
        ga, gb = w[p + P_ALPHA0], w[p + P_BETA0]
        # i and f see the previous c through their peepholes
        if peep:
            for k in range(H):
                ck = st[U(c + k)]
                sc[U(a + k)] += w[U(pp + k)] * ck
                sc[U(a + H + k)] += w[U(pp + H + k)] * ck
        if has_clip:
            act.clip(sc, a, a + H3, clip)
        direct.activation(meta, sc, a, a + H2, gate_code, ga, gb)
        direct.activation(meta, sc, a + H2, a + H3, cell_code, w[p + P_ALPHA1], w[p + P_BETA1])
        if coupled:
            for k in range(H):
                sc[U(a + H + k)] = 1 - sc[U(a + k)]
        # c' = f * c + i * g; o sees the new c through its peephole
        for k in range(H):
            st[U(c + k)] = (sc[U(a + H + k)] * st[U(c + k)]
                            + sc[U(a + k)] * sc[U(a + H2 + k)])
        if peep:
            for k in range(H):
                sc[U(a + H3 + k)] += w[U(pp + H2 + k)] * st[U(c + k)]
        if has_clip:
            act.clip(sc, a + H3, a + G, clip)
        direct.activation(meta, sc, a + H3, a + G, gate_code, ga, gb)
        # v = o * act(c')
        for k in range(H):
            sc[U(v + k)] = st[U(c + k)]
        direct.activation(meta, sc, v, v + H, hid_code, w[p + P_ALPHA2], w[p + P_BETA2])
        for k in range(H):
            sc[U(v + k)] *= sc[U(a + H3 + k)]
    # h' = v, or W_hr v when projected
    if (flags & F_PROJ) != 0:
        for k in range(P):
            st[U(h + k)] = 0
        simd.matvec_flat(st, h, sc, v, w, meta[r + M_W4], H, P)
    else:
        for k in range(H):
            st[U(h + k)] = sc[U(v + k)]
    for k in range(P):
        dst[U(o + k)] = st[U(h + k)]


@_inline_fast
def _seq(q, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, sc):
    """Run T steps of the LSTM layer at meta row ``r``.

    Reads inputs ``src[s0 + t*ss : ... + I]``, updates the state
    ``st[sb + state offset : ...]`` (h of size P, then c of size H) in place
    and writes each step's h to ``dst[d0 + t*ds : ... + P]``.
    """
    I = meta[r + M_IN]
    G = simd.width(4 * meta[r + M_HID], w)
    P = meta[r + M_OUT]
    wh = meta[r + M_W1]
    h = sb + meta[r + M_STATE]
    gx = meta[H_SC_GX]

    simd.qproject(q, src, s0, ss, T, I, G, w, meta[r + M_W0], meta[r + M_W2], sc, gx)

    for t in range(T):
        # each row of input projections is used once: add R h to it in place
        g = gx + t * G
        simd.qgemv_step(q, sc, g, st, h, w, wh, P, G, t)
        finish(w, meta, r, st, h, sc, g, dst, d0 + t * ds)


@_inline_fast
def _rows(q, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc):
    """One step of B <= TILE independent streams of the LSTM layer at meta
    row ``r``: row b reads ``src[s0 + b*ss ...]``, updates the state at
    ``st[sb + b*sst + state offset ...]`` and writes ``dst[d0 + b*ds ...]``.

    Same arithmetic as ``seq`` with T=1 per stream, but the recurrent
    products of the B streams share each load of W_hh (simd.gemm).
    """
    I = meta[r + M_IN]
    G = simd.width(4 * meta[r + M_HID], w)
    P = meta[r + M_OUT]
    h = sb + meta[r + M_STATE]
    gx = meta[H_SC_GX]
    simd.qproject(q, src, s0, ss, B, I, G, w, meta[r + M_W0], meta[r + M_W2], sc, gx)
    simd.qgemm(q, sc, gx, G, st, h, sst, w, meta[r + M_W1], P, G, B)
    for b in range(B):
        finish(w, meta, r, st, h + b * sst, sc, gx + b * G, dst, d0 + b * ds)


def _seq_variant(q):
    def seq(src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, sc):
        _seq(q, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, sc)
    return jit_fast(variant(seq, q=q))


def _rows_variant(q):
    def rows(src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc):
        _rows(q, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
    return jit_fast(variant(rows, q=q))


# one kernel per stored weight type (layout.WQ_*), compiled on first use;
# closures over the type code alone, so each caches under its own key
SEQ = tuple(_seq_variant(q) for q in WQ_TYPES)
ROWS = tuple(_rows_variant(q) for q in WQ_TYPES)
seq, rows = SEQ[WQ_FLOAT], ROWS[WQ_FLOAT]
