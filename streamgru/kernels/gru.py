"""GRU kernel: one tile of T steps of one GRU layer.

Packed block (private to this file), products in ``simd`` panel form:
``W_ih^T`` (I, G) and ``W_hh^T`` (H, 3H), gate columns r, z, n (with the
reset before the product: ``W_h[rz]^T`` (H, 2H) here and ``W_hn^T`` (H, H)
last); then ``bx`` (G): the biases folded once in float64 (r, z: b_i + b_h;
n: b_in, plus b_hn when the reset comes before the recurrent product); then
``b_hn`` (H), which the reset-after form must keep apart because r scales
it. G (``row_width``) is the padded row of gate pre-activations in scratch.
"""

import numpy as np
from numba import njit

from ..layers.quant import QuantizedWeight
from . import activations as act
from . import direct, simd
from .config import FAST_FLAGS, JIT_OPTIONS, jit_fast, variant
from .layout import (
    F_CLIP, F_RESET_AFTER, H_SC_GH, H_SC_GX, H_SC_TMP, KIND_GRU, M_ACT0, M_ACT1, M_KIND,
    M_HID, M_IN, M_P, M_STATE, M_FLAGS, M_W0, M_W1, M_W2, M_W3, M_W4, P_ALPHA0,
    P_ALPHA1, P_BETA0, P_BETA1, P_CLIP, WQ_FLOAT, WQ_TYPES,
)


def pack(layer, packer):
    """Append a GRU layer's packed arrays to ``packer``; return its meta row."""
    H = layer.hidden_size
    G = packer.padded(2 * H + packer.padded(H))  # row_width, in Python
    flags = (F_RESET_AFTER if layer.reset_after else 0) | (F_CLIP if layer.clip else 0)
    params = packer.params(
        {P_CLIP: layer.clip or 0.0,
         P_ALPHA0: layer.gate_activation.alpha, P_BETA0: layer.gate_activation.beta,
         P_ALPHA1: layer.activation.alpha, P_BETA1: layer.activation.beta}
    )
    b_i = np.asarray(layer.bias_ih, np.float64)
    b_h = np.asarray(layer.bias_hh, np.float64)
    bx = np.zeros(G)
    bx[: 3 * H] = b_i
    bx[: 2 * H] += b_h[: 2 * H]
    if not layer.reset_after:
        bx[2 * H : 3 * H] += b_h[2 * H :]
    w_hh = layer.weight_hh
    if not isinstance(w_hh, QuantizedWeight):
        w_hh = np.asarray(w_hh, np.float64)
    return {
        "kind": packer.kind(KIND_GRU, layer),
        "gates": G,
        "tmp": H,
        M_FLAGS: flags,
        M_ACT0: act.CODES[layer.gate_activation.name],
        M_ACT1: act.CODES[layer.activation.name],
        M_P: params,
        # W_ih^T padded to the whole row, so the input projection fills rows of G
        M_W0: packer.matrix(layer.weight_ih, G),
        # reset after: one pass over h for all three gates; reset before:
        # W_hn multiplies r * h, which exists only after r, so it is apart
        M_W1: packer.matrix(w_hh if layer.reset_after else _row_block(w_hh, 0, 2 * H)),
        M_W2: packer.add(bx),
        M_W3: packer.add(b_h[2 * H :]),
        M_W4: 0 if layer.reset_after else packer.matrix(_row_block(w_hh, 2 * H, 3 * H)),
    }


def _row_block(w, a, b):
    """Rows a:b of a weight matrix, float or quantized (with their scales)."""
    return w.rows(a, b) if isinstance(w, QuantizedWeight) else w[a:b]


# Indexing convention of the hot loops: flat arrays, offsets computed as
# int64, converted to uint64 at the subscript. numba wraps negative signed
# indices (a select per element that stops LLVM from vectorising); unsigned
# ones skip that. Views (slices) would avoid it too but each costs an atomic
# reference count inc/dec pair, too dear inside a loop and at these sizes.
U = np.uint64

# inlined into seq and rows: no call boundary (and its refcounts) per step
_inline_fast = njit(inline="always", fastmath=FAST_FLAGS, **JIT_OPTIONS)


@jit_fast
def row_width(H, w):
    """Stride of a row of gate pre-activations: r, z, n at 0, H, 2H; the
    products write whole vectors, so the row is padded past 2H + width(H)
    (the reset-before form adds the n product at 2H)."""
    return simd.width(2 * H + simd.width(H, w), w)


@_inline_fast
def plain_update(sc, a, g, st, h, dst, o, H):
    """The usual cell's gates and new h in one fused loop (sigmoid gates,
    tanh candidate, reset after the product, no clip): ``sc[a:]`` holds
    [gx_r + W_hr h, gx_z + W_hz h, b_hn + W_hn h], ``sc[g + 2H:]`` gx_n;
    h' = (1 - z) n + z h goes to the state at ``st[h:]`` and to ``dst[o:]``."""
    H2 = 2 * H
    for k in range(H):
        rk = act.sigmoid(sc[U(a + k)])
        zk = act.sigmoid(sc[U(a + H + k)])
        n = act.tanh(sc[U(g + H2 + k)] + rk * sc[U(a + H2 + k)])
        hn = n + zk * (st[U(h + k)] - n)
        st[U(h + k)] = hn
        dst[U(o + k)] = hn


@_inline_fast
def _seq(q, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, sc):
    """Run T steps of the GRU layer at meta row ``r``, weights of type ``q``.

    Reads inputs ``src[s0 + t*ss : ... + I]``, updates the hidden state
    ``st[sb + state offset : ... + H]`` in place and writes each step's h to
    ``dst[d0 + t*ds : ... + H]``.
    """
    I = meta[r + M_IN]
    H = meta[r + M_HID]
    G = row_width(H, w)
    H2 = 2 * H
    flags = meta[r + M_FLAGS]
    reset_after = (flags & F_RESET_AFTER) != 0
    has_clip = (flags & F_CLIP) != 0
    gate_code = meta[r + M_ACT0]
    cand_code = meta[r + M_ACT1]
    p = meta[r + M_P]
    wx = meta[r + M_W0]
    wh = meta[r + M_W1]
    bx = meta[r + M_W2]
    bhn = meta[r + M_W3]
    wn = meta[r + M_W4]
    h = sb + meta[r + M_STATE]
    gx = meta[H_SC_GX]
    a = meta[H_SC_GH]
    tmp = meta[H_SC_TMP]
    c = w[p + P_CLIP]
    ga, gb = w[p + P_ALPHA0], w[p + P_BETA0]
    ca, cb = w[p + P_ALPHA1], w[p + P_BETA1]
    # the usual cell (sigmoid gates, tanh candidate, no clip) runs one fused loop
    plain = gate_code == act.SIGMOID and cand_code == act.TANH and not has_clip

    simd.qproject(q, src, s0, ss, T, I, G, w, wx, bx, sc, gx)

    for t in range(T):
        g = gx + t * G
        o = d0 + t * ds
        if reset_after:
            # a = [gx_r + W_hr h, gx_z + W_hz h, b_hn + W_hn h], one pass over h
            for k in range(H2):
                sc[U(a + k)] = sc[U(g + k)]
            for k in range(H):
                sc[U(a + H2 + k)] = w[U(bhn + k)]
            simd.qgemv_step(q, sc, a, st, h, w, wh, H, simd.width(3 * H, w), t)
            if plain:
                plain_update(sc, a, g, st, h, dst, o, H)
                continue
            if has_clip:
                act.clip(sc, a, a + H2, c)
            direct.activation(meta, sc, a, a + H2, gate_code, ga, gb)
            for k in range(H):
                sc[U(a + H2 + k)] = sc[U(g + H2 + k)] + sc[U(a + k)] * sc[U(a + H2 + k)]
        else:
            # r, z first; then n from W_hn (r * h)
            for k in range(H2):
                sc[U(a + k)] = sc[U(g + k)]
            simd.qgemv(q, sc, a, st, h, w, wh, H, simd.width(H2, w))
            if has_clip:
                act.clip(sc, a, a + H2, c)
            direct.activation(meta, sc, a, a + H2, gate_code, ga, gb)
            for k in range(H):
                sc[U(tmp + k)] = sc[U(a + k)] * st[U(h + k)]
                sc[U(a + H2 + k)] = sc[U(g + H2 + k)]
            simd.qgemv(q, sc, a + H2, sc, tmp, w, wn, H, simd.width(H, w))
        if has_clip:
            act.clip(sc, a + H2, a + 3 * H, c)
        direct.activation(meta, sc, a + H2, a + 3 * H, cand_code, ca, cb)
        # h' = (1 - z) * n + z * h
        for k in range(H):
            n = sc[U(a + H2 + k)]
            hn = n + sc[U(a + H + k)] * (st[U(h + k)] - n)
            st[U(h + k)] = hn
            dst[U(o + k)] = hn


@_inline_fast
def _rows(q, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc):
    """One step of B independent streams of the GRU layer at meta row ``r``:
    row b reads ``src[s0 + b*ss ...]``, updates the state at
    ``st[sb + b*sst + state offset ...]`` and writes ``dst[d0 + b*ds ...]``.

    Same arithmetic as ``seq`` with T=1 per stream, but the recurrent
    products of four streams at a time share each load of W_hh (simd.gemm).
    Needs B <= the plan's tile; layers other than the plain reset-after cell
    go stream by stream through ``seq``.
    """
    H = meta[r + M_HID]
    flags = meta[r + M_FLAGS]
    plain = (
        (flags & F_RESET_AFTER) != 0 and (flags & F_CLIP) == 0
        and meta[r + M_ACT0] == act.SIGMOID and meta[r + M_ACT1] == act.TANH
    )
    if not plain:
        # stream by stream through this kind's seq C function (not linked here: compiled once)
        fn = direct.seq_function(meta, meta[r + M_KIND])
        for b in range(B):
            direct.call_layer(fn, src, s0 + b * ss, ss, dst, d0 + b * ds, ds, 1, w, meta, r, st,
                              sb + b * sst, 0, sc)
        return
    I = meta[r + M_IN]
    G = row_width(H, w)
    H2 = 2 * H
    wx = meta[r + M_W0]
    wh = meta[r + M_W1]
    bx = meta[r + M_W2]
    bhn = meta[r + M_W3]
    h = sb + meta[r + M_STATE]
    gx = meta[H_SC_GX]
    a = meta[H_SC_GH]
    simd.qproject(q, src, s0, ss, B, I, G, w, wx, bx, sc, gx)
    for b in range(B):
        ab = a + b * G
        g = gx + b * G
        for k in range(H2):
            sc[U(ab + k)] = sc[U(g + k)]
        for k in range(H):
            sc[U(ab + H2 + k)] = w[U(bhn + k)]
    simd.qgemm(q, sc, a, G, st, h, sst, w, wh, H, simd.width(3 * H, w), B)
    for b in range(B):
        ab = a + b * G
        g = gx + b * G
        plain_update(sc, ab, g, st, h + b * sst, dst, d0 + b * ds, H)


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
