"""GRU kernel: one tile of T steps of one GRU layer.

Packed block (private to this file):
``W_ih^T`` (I, 3H) and ``W_hh^T`` (H, 3H) row-major, gate columns r, z, n (with
the reset before the product: ``W_h[rz]^T`` (H, 2H) here and ``W_hn^T`` (H, H)
last), so
each input or hidden element scales one contiguous row of 3H weights (an
axpy over a whole row, which vectorises and needs no horizontal sums); then
``bx`` (3H): the biases folded once in float64 (r, z: b_i + b_h; n: b_in, plus
b_hn when the reset comes before the recurrent product); then ``b_hn`` (H),
which the reset-after form must keep apart because r scales it.
"""

import numpy as np

from . import activations as act
from .config import jit_fast
from .layout import (
    F_CLIP, F_RESET_AFTER, H_SC_GH, H_SC_GX, H_SC_TMP, KIND_GRU, M_ACT0, M_ACT1,
    M_HID, M_IN, M_P, M_STATE, M_FLAGS, M_W0, M_W1, M_W2, M_W3, M_W4, P_ALPHA0,
    P_ALPHA1, P_BETA0, P_BETA1, P_CLIP,
)


def pack(layer, packer):
    """Append a GRU layer's packed arrays to ``packer``; return its meta row."""
    H = layer.hidden_size
    flags = (F_RESET_AFTER if layer.reset_after else 0) | (F_CLIP if layer.clip else 0)
    params = packer.params(
        {P_CLIP: layer.clip or 0.0,
         P_ALPHA0: layer.gate_activation.alpha, P_BETA0: layer.gate_activation.beta,
         P_ALPHA1: layer.activation.alpha, P_BETA1: layer.activation.beta}
    )
    b_i = np.asarray(layer.bias_ih, np.float64)
    b_h = np.asarray(layer.bias_hh, np.float64)
    bx = b_i.copy()
    bx[: 2 * H] += b_h[: 2 * H]
    if not layer.reset_after:
        bx[2 * H :] += b_h[2 * H :]
    return {
        "kind": KIND_GRU,
        "gates": 3 * H,
        "tmp": H,
        M_FLAGS: flags,
        M_ACT0: act.CODES[layer.gate_activation.name],
        M_ACT1: act.CODES[layer.activation.name],
        M_P: params,
        M_W0: packer.add(layer.weight_ih.T),
        # reset after: one pass over h for all three gates; reset before:
        # W_hn multiplies r * h, which exists only after r, so it is apart
        M_W1: packer.add(layer.weight_hh.T if layer.reset_after else layer.weight_hh[: 2 * H].T),
        M_W2: packer.add(bx),
        M_W3: packer.add(b_h[2 * H :]),
        M_W4: 0 if layer.reset_after else packer.add(layer.weight_hh[2 * H :].T),
    }


# Indexing convention of the hot loops: flat arrays, offsets computed as
# int64, converted to uint64 at the subscript. numba wraps negative signed
# indices (a select per element that stops LLVM from vectorising); unsigned
# ones skip that. Views (slices) would avoid it too but each costs an atomic
# reference count inc/dec pair, too dear inside a loop and at these sizes.
U = np.uint64


@jit_fast
def matvec_flat(acc, a0, v, v0, w, w0, nr, nc):
    """acc[a0 + k] += sum_j v[v0 + j] * w[w0 + j*nc + k] for k < nc, j < nr.

    ``w`` holds W^T row-major, so each ``v[j]`` scales one contiguous row (an
    axpy, no horizontal sums). Rows are taken four at a time: each pass over
    ``acc`` then does four FMAs per load and store of it, which runs near the
    L1/L2 bandwidth (about 2x the one-row loop).
    """
    j = 0
    while j + 4 <= nr:
        x0, x1, x2, x3 = v[U(v0 + j)], v[U(v0 + j + 1)], v[U(v0 + j + 2)], v[U(v0 + j + 3)]
        r0 = w0 + j * nc
        r1 = r0 + nc
        r2 = r1 + nc
        r3 = r2 + nc
        for k in range(nc):
            acc[U(a0 + k)] += (
                x0 * w[U(r0 + k)] + x1 * w[U(r1 + k)] + x2 * w[U(r2 + k)] + x3 * w[U(r3 + k)]
            )
        j += 4
    while j < nr:
        xj = v[U(v0 + j)]
        r0 = w0 + j * nc
        for k in range(nc):
            acc[U(a0 + k)] += xj * w[U(r0 + k)]
        j += 1


@jit_fast
def matmul4_flat(acc, a0, astride, v, v0, vstride, w, w0, nr, nc):
    """Four mat-vecs sharing one W: for b < 4, acc[a0 + b*astride + k] +=
    sum_j v[v0 + b*vstride + j] * w[w0 + j*nc + k].

    A 4x4 register block: four rows of W^T are each loaded once and used for
    four vectors, with the sixteen v values held in registers, so the loop
    does 16 FMAs per 8 loads and 4 stores: compute-bound instead of
    bandwidth-bound, and W streams from L2 once per four streams.
    """
    b1 = a0 + astride
    b2 = b1 + astride
    b3 = b2 + astride
    u1 = v0 + vstride
    u2 = u1 + vstride
    u3 = u2 + vstride
    j = 0
    while j + 4 <= nr:
        x00, x01, x02, x03 = v[U(v0 + j)], v[U(v0 + j + 1)], v[U(v0 + j + 2)], v[U(v0 + j + 3)]
        x10, x11, x12, x13 = v[U(u1 + j)], v[U(u1 + j + 1)], v[U(u1 + j + 2)], v[U(u1 + j + 3)]
        x20, x21, x22, x23 = v[U(u2 + j)], v[U(u2 + j + 1)], v[U(u2 + j + 2)], v[U(u2 + j + 3)]
        x30, x31, x32, x33 = v[U(u3 + j)], v[U(u3 + j + 1)], v[U(u3 + j + 2)], v[U(u3 + j + 3)]
        r0 = w0 + j * nc
        r1 = r0 + nc
        r2 = r1 + nc
        r3 = r2 + nc
        for k in range(nc):
            w0k, w1k, w2k, w3k = w[U(r0 + k)], w[U(r1 + k)], w[U(r2 + k)], w[U(r3 + k)]
            acc[U(a0 + k)] += x00 * w0k + x01 * w1k + x02 * w2k + x03 * w3k
            acc[U(b1 + k)] += x10 * w0k + x11 * w1k + x12 * w2k + x13 * w3k
            acc[U(b2 + k)] += x20 * w0k + x21 * w1k + x22 * w2k + x23 * w3k
            acc[U(b3 + k)] += x30 * w0k + x31 * w1k + x32 * w2k + x33 * w3k
        j += 4
    while j < nr:
        x0, x1, x2, x3 = v[U(v0 + j)], v[U(u1 + j)], v[U(u2 + j)], v[U(u3 + j)]
        r0 = w0 + j * nc
        for k in range(nc):
            wk = w[U(r0 + k)]
            acc[U(a0 + k)] += x0 * wk
            acc[U(b1 + k)] += x1 * wk
            acc[U(b2 + k)] += x2 * wk
            acc[U(b3 + k)] += x3 * wk
        j += 1


@jit_fast
def matmul_rows(acc, a0, astride, v, v0, vstride, w, w0, nr, nc, B):
    """B mat-vecs sharing one W (see matmul4_flat), four at a time."""
    b = 0
    while b + 4 <= B:
        matmul4_flat(acc, a0 + b * astride, astride, v, v0 + b * vstride, vstride, w, w0, nr, nc)
        b += 4
    while b < B:
        matvec_flat(acc, a0 + b * astride, v, v0 + b * vstride, w, w0, nr, nc)
        b += 1


@jit_fast
def input_projection(src, s0, ss, T, I, G, w, wx, bi, sc, gx):
    """sc[gx + t*G + k] = b[k] + sum_j src[s0 + t*ss + j] * W^T[j, k] for a tile."""
    for t in range(T):
        g = gx + t * G
        for k in range(G):
            sc[U(g + k)] = w[U(bi + k)]
    # rows are independent here: four at a time through the register block
    matmul_rows(sc, gx, G, src, s0, ss, w, wx, I, G, T)


@jit_fast
def seq(src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, sc):
    """Run T steps of the GRU layer at meta row ``r``.

    Reads inputs ``src[s0 + t*ss : ... + I]``, updates the hidden state
    ``st[sb + state offset : ... + H]`` in place and writes each step's h to
    ``dst[d0 + t*ds : ... + H]``.
    """
    I = meta[r + M_IN]
    H = meta[r + M_HID]
    G = 3 * H
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

    input_projection(src, s0, ss, T, I, G, w, wx, bx, sc, gx)

    for t in range(T):
        g = gx + t * G
        o = d0 + t * ds
        if reset_after:
            # a = [gx_r + W_hr h, gx_z + W_hz h, b_hn + W_hn h], one pass over h
            for k in range(H2):
                sc[U(a + k)] = sc[U(g + k)]
            for k in range(H):
                sc[U(a + H2 + k)] = w[U(bhn + k)]
            matvec_flat(sc, a, st, h, w, wh, H, G)
            if plain:
                for k in range(H):
                    rk = act.sigmoid(sc[U(a + k)])
                    zk = act.sigmoid(sc[U(a + H + k)])
                    n = act.tanh(sc[U(g + H2 + k)] + rk * sc[U(a + H2 + k)])
                    hn = n + zk * (st[U(h + k)] - n)
                    st[U(h + k)] = hn
                    dst[U(o + k)] = hn
                continue
            if has_clip:
                act.clip(sc, a, a + H2, c)
            act.apply(sc, a, a + H2, gate_code, ga, gb)
            for k in range(H):
                sc[U(a + H2 + k)] = sc[U(g + H2 + k)] + sc[U(a + k)] * sc[U(a + H2 + k)]
        else:
            # r, z first; then n from W_hn (r * h)
            for k in range(H2):
                sc[U(a + k)] = sc[U(g + k)]
            matvec_flat(sc, a, st, h, w, wh, H, H2)
            if has_clip:
                act.clip(sc, a, a + H2, c)
            act.apply(sc, a, a + H2, gate_code, ga, gb)
            for k in range(H):
                sc[U(tmp + k)] = sc[U(a + k)] * st[U(h + k)]
                sc[U(a + H2 + k)] = sc[U(g + H2 + k)]
            matvec_flat(sc, a + H2, sc, tmp, w, wn, H, H)
        if has_clip:
            act.clip(sc, a + H2, a + G, c)
        act.apply(sc, a + H2, a + G, cand_code, ca, cb)
        # h' = (1 - z) * n + z * h
        for k in range(H):
            n = sc[U(a + H2 + k)]
            hn = n + sc[U(a + H + k)] * (st[U(h + k)] - n)
            st[U(h + k)] = hn
            dst[U(o + k)] = hn


@jit_fast
def rows(src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc):
    """One step of B independent streams of the GRU layer at meta row ``r``:
    row b reads ``src[s0 + b*ss ...]``, updates the state at
    ``st[sb + b*sst + state offset ...]`` and writes ``dst[d0 + b*ds ...]``.

    Same arithmetic as ``seq`` with T=1 per stream, but the recurrent
    products of four streams at a time share each load of W_hh (matmul4_flat).
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
        for b in range(B):
            seq(src, s0 + b * ss, ss, dst, d0 + b * ds, ds, 1, w, meta, r, st, sb + b * sst, sc)
        return
    I = meta[r + M_IN]
    G = 3 * H
    H2 = 2 * H
    wx = meta[r + M_W0]
    wh = meta[r + M_W1]
    bx = meta[r + M_W2]
    bhn = meta[r + M_W3]
    h = sb + meta[r + M_STATE]
    gx = meta[H_SC_GX]
    a = meta[H_SC_GH]
    input_projection(src, s0, ss, B, I, G, w, wx, bx, sc, gx)
    for b in range(B):
        ab = a + b * G
        g = gx + b * G
        for k in range(H2):
            sc[U(ab + k)] = sc[U(g + k)]
        for k in range(H):
            sc[U(ab + H2 + k)] = w[U(bhn + k)]
    matmul_rows(sc, a, G, st, h, sst, w, wh, H, G, B)
    for b in range(B):
        ab = a + b * G
        g = gx + b * G
        hb = h + b * sst
        o = d0 + b * ds
        for k in range(H):
            rk = act.sigmoid(sc[U(ab + k)])
            zk = act.sigmoid(sc[U(ab + H + k)])
            n = act.tanh(sc[U(g + H2 + k)] + rk * sc[U(ab + H2 + k)])
            hn = n + zk * (st[U(hb + k)] - n)
            st[U(hb + k)] = hn
            dst[U(o + k)] = hn
