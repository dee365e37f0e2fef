"""Elman RNN kernel: one tile of T steps of ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``.

Packed block: ``W_ih^T`` (I, H) and ``W_hh^T`` (H, H) in ``simd`` panel form
(rows of pre-activations padded to whole vectors), then ``b_ih + b_hh`` (H,
padded). The layer's state is h (H).
"""

import numpy as np
from numba import njit

from . import activations as act
from . import direct, simd
from .config import FAST_FLAGS, JIT_OPTIONS, jit_fast, variant
from .simd import U
from .layout import (
    F_CLIP, H_SC_GX, KIND_RNN, M_ACT0, M_FLAGS, M_HID, M_IN, M_P, M_STATE,
    M_W0, M_W1, M_W2, P_ALPHA0, P_BETA0, P_CLIP, WQ_FLOAT, WQ_TYPES,
)

# inlined into each weight type's kernels
_inline_fast = njit(inline="always", fastmath=FAST_FLAGS, **JIT_OPTIONS)


def pack(layer, packer):
    """Append an RNN layer's packed arrays to ``packer``; return its meta row."""
    params = packer.params(
        {P_CLIP: layer.clip or 0.0,
         P_ALPHA0: layer.activation.alpha, P_BETA0: layer.activation.beta}
    )
    # the two biases are always added together: fold them once, in float64
    G = packer.padded(layer.hidden_size)
    bias = np.zeros(G)
    bias[: layer.hidden_size] = (np.asarray(layer.bias_ih, np.float64)
                                 + np.asarray(layer.bias_hh, np.float64))
    return {
        "kind": packer.kind(KIND_RNN, layer),
        "gates": G,
        "tmp": 0,
        M_FLAGS: F_CLIP if layer.clip else 0,
        M_ACT0: act.CODES[layer.activation.name],
        M_P: params,
        M_W0: packer.matrix(layer.weight_ih, G),
        M_W1: packer.matrix(layer.weight_hh),
        M_W2: packer.add(bias),
    }


@jit_fast
def finish(w, meta, r, st, h, sc, a, dst, o):
    """Complete one step of the RNN layer at meta row ``r`` for one stream:
    ``sc[a : a + H]`` holds ``W x + b + R h``; clip, activate, and store the
    new h in the state at ``st[h:]`` and in ``dst[o:]``."""
    H = meta[r + M_HID]
    p = meta[r + M_P]
    if (meta[r + M_FLAGS] & F_CLIP) != 0:
        act.clip(sc, a, a + H, w[p + P_CLIP])
    direct.activation(meta, sc, a, a + H, meta[r + M_ACT0], w[p + P_ALPHA0], w[p + P_BETA0])
    for k in range(H):
        st[U(h + k)] = sc[U(a + k)]
        dst[U(o + k)] = sc[U(a + k)]


@_inline_fast
def _seq(q, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, sc):
    """Run T steps of the RNN layer at meta row ``r``.

    Reads inputs ``src[s0 + t*ss : ... + I]``, updates the hidden state
    ``st[sb + state offset : ... + H]`` in place and writes each step's h to
    ``dst[d0 + t*ds : ... + H]``.
    """
    I = meta[r + M_IN]
    H = meta[r + M_HID]
    wh = meta[r + M_W1]
    h = sb + meta[r + M_STATE]
    gx = meta[H_SC_GX]

    G = simd.width(H, w)
    simd.qproject(q, src, s0, ss, T, I, G, w, meta[r + M_W0], meta[r + M_W2], sc, gx)

    for t in range(T):
        # the new h is built in the step's row of input projections (used
        # once), never in the state: every element needs the whole old h
        g = gx + t * G
        simd.qgemv_step(q, sc, g, st, h, w, wh, H, G, t)
        finish(w, meta, r, st, h, sc, g, dst, d0 + t * ds)


@_inline_fast
def _rows(q, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc):
    """One step of B <= TILE independent streams of the RNN layer at meta
    row ``r``: row b reads ``src[s0 + b*ss ...]``, updates the state at
    ``st[sb + b*sst + state offset ...]`` and writes ``dst[d0 + b*ds ...]``.
    The recurrent products share each load of W_hh (simd.gemm)."""
    I = meta[r + M_IN]
    H = meta[r + M_HID]
    h = sb + meta[r + M_STATE]
    gx = meta[H_SC_GX]
    G = simd.width(H, w)
    simd.qproject(q, src, s0, ss, B, I, G, w, meta[r + M_W0], meta[r + M_W2], sc, gx)
    simd.qgemm(q, sc, gx, G, st, h, sst, w, meta[r + M_W1], H, G, B)
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
