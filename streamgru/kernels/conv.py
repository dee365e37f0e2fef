"""Conv1d kernel: T steps of a causal dilated (grouped) convolution over a ring.

Packed block (private to this file): with groups == 1, one ``simd`` panel
block per tap (W_i^T, C_in x C_out) and the bias padded to whole vectors;
the products run in a padded row of scratch (H_SC_TMP). Grouped convs keep
the weights as (k, C_out, C_in/groups) (tap-major, so one tap's row for an
output channel is contiguous) and the bias (C_out,), as dot products. Meta row fields reused for this kind: M_FLAGS = groups,
M_ACT1 = k, M_ACT2 = dilation (M_ACT0 is the output activation).

The layer's state (layers/conv.py documents it) is the ring position p
followed by L = (k-1)*d slots of C_in inputs: before step t, slot
(p + L - lag) % L holds x_{t-lag} for 1 <= lag <= L. Tap k-1 (lag 0) reads
the current input directly; after the taps, x_t replaces the oldest slot
(p) and p advances. A delayed ("same" or unpadded) or strided conv has a
counter after the ring (rate.py): it computes an output only on the inputs
where the counter says it emits, writes those rows packed and reports their
number; the ring takes every input.
"""

import numpy as np
from numba import njit

from . import activations as act
from . import conv_tile, direct, rate, simd
from .config import FAST_FLAGS, JIT_OPTIONS, jit_fast
from .layout import (
    H_RATE, H_SC_TMP, KIND_CONV, M_ACT0, M_ACT1, M_ACT2, M_COUNT, M_DELAY, M_FLAGS, M_IN, M_KIND,
    M_OUT,
    M_P, M_STATE, M_STRIDE, M_W0, M_W1, P_ALPHA0, P_BETA0,
)

U = np.uint64
_inline_fast = njit(inline="always", fastmath=FAST_FLAGS, **JIT_OPTIONS)


def pack(layer, packer):
    """Append a Conv1d layer's packed arrays to ``packer``; return its meta row."""
    params = packer.params({P_ALPHA0: layer.activation.alpha, P_BETA0: layer.activation.beta})
    w = np.asarray(layer.weight, np.float64)
    O = layer.output_size
    row = {
        "kind": KIND_CONV,
        "gates": 0,
        "tmp": 0,
        M_FLAGS: layer.groups,
        M_ACT0: act.CODES[layer.activation.name],
        M_ACT1: layer.kernel_size,
        M_ACT2: layer.dilation,
        M_P: params,
        M_DELAY: layer.latency,
        M_STRIDE: layer.stride,
        M_COUNT: layer.counter_index,
        "rate": layer.counter_index >= 0,
    }
    if layer.groups == 1:
        # one panel block per tap, W_i^T (C_in, C_out): simd.gemv into a
        # padded row of scratch; blocks are whole vectors, so all aligned
        ncp = packer.padded(O)
        row["tmp"] = ncp
        row["gates"] = ncp  # conv_tile: a tile of padded output rows
        row[M_W0] = packer.panels(w[:, :, 0].T)
        for i in range(1, layer.kernel_size):
            packer.panels(w[:, :, i].T)
        bias = np.zeros(ncp)
        bias[:O] = layer.bias
        row[M_W1] = packer.add(bias)
    else:
        row[M_W0] = packer.add(np.ascontiguousarray(w.transpose(2, 0, 1)))
        row[M_W1] = packer.add(layer.bias)
    return row


@_inline_fast
def slot_of(pos, L, lag):
    """The ring slot of the input ``lag`` steps back (1 <= lag <= L)."""
    slot = pos + L - lag
    return slot - L if slot >= L else slot


@_inline_fast
def push(st, ring, pos, L, src, x0, C):
    """Write the input ``src[x0 : x0 + C]`` over the oldest slot ``pos`` of
    the ring of L slots at ``st[ring:]``; returns the next position."""
    at = ring + pos * C
    for j in range(C):
        st[U(at + j)] = src[U(x0 + j)]
    pos += 1
    return 0 if pos == L else pos


@_inline_fast
def position(st, base, L):
    """The ring position stored at ``st[base]`` (0 without a ring); a
    position set from outside (set_state) may be anything finite."""
    pos = 0
    if L > 0:
        pv = st[U(base)]
        if pv >= 0 and pv < L:
            pos = int(pv)
    return pos


@_inline_fast
def taps(acc, a0, src, x0, w, wk, b, I, O, k, d, st, ring, pos, L):
    """acc[a0 : a0 + O padded] = bias + sum of the k taps of a groups == 1
    conv (panels at ``w[wk:]``, padded bias at ``w[b:]``) for the current
    input ``src[x0 : x0 + I]`` and the ring at ``st[ring:]`` (position pos,
    L slots); the ring is not advanced."""
    ncp = simd.width(O, w)
    for c in range(ncp):
        acc[U(a0 + c)] = w[U(b + c)]
    for i in range(k - 1):
        slot = slot_of(pos, L, (k - 1 - i) * d)
        simd.gemv(acc, a0, st, ring + slot * I, w, wk + i * I * ncp, I, ncp)
    simd.gemv(acc, a0, src, x0, w, wk + (k - 1) * I * ncp, I, ncp)


@_inline_fast
def _tap(dst, o, O, og, ig, w, wi, v, v0):
    """dst[o + c] += sum_j W_i[c, j] * v[v0 + g*ig + j], g = c // og, for c < O."""
    for c in range(O):
        row = wi + c * ig
        x0 = v0 + (c // og) * ig
        acc = w[U(row)] * v[U(x0)]
        for j in range(1, ig):
            acc += w[U(row + j)] * v[U(x0 + j)]
        dst[U(o + c)] += acc


@jit_fast
def seq(src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, sc):
    """Run T steps of the Conv1d layer at meta row ``r``: inputs
    ``src[s0 + t*ss : ... + C_in]``, outputs ``dst[d0 + t*ds : ... + C_out]``,
    the ring at ``st[sb + state offset:]`` updated in place, ``sc`` the scratch."""
    G = meta[r + M_FLAGS]
    # a tile: each tap one matrix product (conv_tile.py); a delayed or strided
    # conv (a counter in its state, rate.py) keeps the row-by-row loop below
    if G == 1 and T > 1 and meta[r + M_COUNT] < 0:
        conv_tile.seq(src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, sc)
        return
    I = meta[r + M_IN]
    O = meta[r + M_OUT]
    k = meta[r + M_ACT1]
    d = meta[r + M_ACT2]
    code = meta[r + M_ACT0]
    p = meta[r + M_P]
    wk = meta[r + M_W0]
    b = meta[r + M_W1]
    alpha, beta = w[p + P_ALPHA0], w[p + P_BETA0]
    ig = I // G
    og = O // G
    L = (k - 1) * d
    base = sb + meta[r + M_STATE]
    ring = base + 1
    acc = meta[H_SC_TMP]
    pos = position(st, base, L)
    D, s = meta[r + M_DELAY], meta[r + M_STRIDE]
    cat = base + meta[r + M_COUNT]
    counted = meta[r + M_COUNT] >= 0
    cnt = rate.counter(st, cat, D, s) if counted else D
    m = 0  # rows written
    for t in range(T):
        x0 = s0 + t * ss
        o = d0 + m * ds
        emit = cnt == D
        if counted:
            cnt = rate.advance(cnt, D, s)
        if not emit:
            pass
        elif G == 1:
            taps(sc, acc, src, x0, w, wk, b, I, O, k, d, st, ring, pos, L)
            for c in range(O):
                dst[U(o + c)] = sc[U(acc + c)]
        else:
            for c in range(O):
                dst[U(o + c)] = w[U(b + c)]
            for i in range(k - 1):
                slot = slot_of(pos, L, (k - 1 - i) * d)
                _tap(dst, o, O, og, ig, w, wk + i * O * ig, st, ring + slot * I)
            _tap(dst, o, O, og, ig, w, wk + (k - 1) * O * ig, src, x0)
        if emit:
            direct.activation(meta, dst, o, o + O, code, alpha, beta)
            m += 1
        if L > 0:
            pos = push(st, ring, pos, L, src, x0, I)
    if L > 0:
        st[U(base)] = pos
    if counted:
        st[U(cat)] = cnt
        sc[meta[H_RATE]] = m


@jit_fast
def rows(src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc):
    """One step of B independent streams (row b: input ``src[s0 + b*ss:]``,
    state at ``st[sb + b*sst + state offset:]``, output ``dst[d0 + b*ds:]``)."""
    # through the seq C function (calls.py): not linked here, compiled once
    fn = direct.seq_function(meta, meta[r + M_KIND])
    for bi in range(B):
        direct.call_layer(fn, src, s0 + bi * ss, ss, dst, d0 + bi * ds, ds, 1, w, meta, r, st,
                          sb + bi * sst, 0, sc)
