"""Layer kinds as a compile-time mask: compile only the kernels a model uses.

An entry point runs a model's layers through ``seq`` (T steps of one
stream) or ``rows`` (one step of B streams), which call the kernel of each
layer's kind. Both take ``kinds``, a mask of KIND bits that must be a
compile-time constant (a literal int): while typing, the call for a kind
outside the mask becomes a no-op, so its kernels are never typed, optimised
or compiled. The entry points in network.py pass ALL; ``Stream.step``'s
fast path (fastcall.py) is compiled for the mask of the model's own kinds
(a GRU + Dense model compiles neither the LSTM nor the RNN kernels) unless
the variant for ALL is already compiled or cached (``streamgru warmup``).
Either variant runs the same layer kernels, so the numbers are identical.

Weight types. A layer whose weight matrices are stored in a reduced type
has the kind code ``KIND_x | q << WQ_SHIFT`` (layout.py) and its own bit:
the float kind's bit shifted by ``12 * q``. ALL holds the float bits only,
so float models (and ``streamgru warmup``) compile nothing for reduced
types; a quantized model's entry points are compiled for its own mask
(``network.entry``), on first use, and cached.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from . import conv, dense, elementwise, gru, lstm, norm, pool, rnn
from .config import JIT_OPTIONS
from .layout import (
    H_GRAPH, H_NLAYERS, HEADER, KIND_AVGPOOL, KIND_BATCHNORM, KIND_CONV, KIND_DENSE,
    KIND_ELEMENTWISE, KIND_GRU, KIND_LAYERNORM, KIND_LSTM, KIND_MASK, KIND_MAXPOOL, KIND_PRELU,
    KIND_RNN, M_KIND, ROW,
    WQ_SHIFT, WQ_TYPES,
)

# the three per-sample norm kinds share one kernel module, so one bit; so do the pools
BITS = {KIND_GRU: 1, KIND_LSTM: 2, KIND_RNN: 4, KIND_DENSE: 8, KIND_CONV: 16,
        KIND_BATCHNORM: 32, KIND_LAYERNORM: 32, KIND_PRELU: 32,
        KIND_MAXPOOL: 64, KIND_AVGPOOL: 64, KIND_ELEMENTWISE: 128}
GRAPH = 256  # the graph runner (graph.py): set for graph models only
ALL = 511  # every float kind, and the graph runner
_TYPE_BITS = 12  # bits per weight type in a mask (room for float kinds to come)


def bit(code: int) -> int:
    """The mask bit of a kind code (a float kind, or one with a weight type)."""
    return BITS[code & KIND_MASK] << (_TYPE_BITS * (code >> WQ_SHIFT))


_inline = njit(inline="always", **JIT_OPTIONS)


def mask_of(meta: np.ndarray) -> int:
    """The mask of the layer kinds in a plan's ``meta``."""
    rows = HEADER + ROW * np.arange(int(meta[H_NLAYERS]))
    mask = 0
    for k in set(meta[rows + M_KIND].tolist()):
        mask |= bit(int(k))
    return mask | (GRAPH if meta[H_GRAPH] else 0)


# Every layer call below has one form: (src, s0, ss, dst, d0, ds, n, w, meta,
# r, st, sb, sst, sc); n is T for a sequence, B for rows of streams, and
# ``sst`` (the stride between streams' states) is unused by a sequence.

def _sequence(kernel):
    """The layer call form of a kind's ``seq`` kernel (which takes no ``sst``)."""
    @_inline
    def call(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
        kernel(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sc)
    return call


def _stored_dense(kernel):
    """The layer call form of Dense with reduced-precision weights."""
    @_inline
    def call(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
        kernel(src, s0, ss, dst, d0, ds, n, w, meta, r, sc)
    return call


@_inline
def _noop(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
    pass


_conv_seq = _sequence(conv.seq)
_pool_seq = _sequence(pool.seq)


@_inline
def _elementwise(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
    # graph ops: stateless, their second operand in the scratch
    elementwise.seq(src, s0, ss, dst, d0, ds, n, w, meta, r, sc)


@_inline
def _dense(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
    # stateless: a sequence and rows of streams are the same n rows
    dense.seq(src, s0, ss, dst, d0, ds, n, w, meta, r)


@_inline
def _norm(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
    # stateless per-sample kinds (BatchNorm, LayerNorm, PReLU), like Dense
    norm.seq(src, s0, ss, dst, d0, ds, n, w, meta, r)


def _when(code, kernels):
    """A call ``(kinds, kind, *layer args)`` that runs ``kernels[q]`` if
    ``kind == code | q << WQ_SHIFT``, for each weight type ``q`` whose bit
    the literal mask ``kinds`` has; typed as a no-op when it has none.
    ``kernels`` maps weight types to layer calls (or is one, for q = 0)."""
    if not isinstance(kernels, dict):
        kernels = {0: kernels}

    def call(kinds, kind, src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
        raise NotImplementedError("compiled code only")

    @overload(call, inline="always", prefer_literal=True)
    def _typed(kinds, kind, src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
        if not isinstance(kinds, types.IntegerLiteral):
            return None
        on = [q for q in kernels if kinds.literal_value & bit(code | q << WQ_SHIFT)]
        if len(on) == 1:
            c0, k0 = code | on[0] << WQ_SHIFT, kernels[on[0]]

            def run(kinds, kind, src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
                if kind == c0:
                    k0(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc)
            return run
        if on:
            # several weight types of this kind in one model: up to four
            # branches, the unused ones never taken (code -1) and no-ops
            pad = len(WQ_TYPES) - len(on)
            c0, c1, c2, c3 = [code | q << WQ_SHIFT for q in on] + [-1] * pad
            k0, k1, k2, k3 = [kernels[q] for q in on] + [_noop] * pad

            def run_any(kinds, kind, src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
                if kind == c0:
                    k0(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc)
                elif kind == c1:
                    k1(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc)
                elif kind == c2:
                    k2(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc)
                elif kind == c3:
                    k3(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc)
            return run_any

        def skip(kinds, kind, src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
            pass
        return skip

    return call


_NORMS = (KIND_BATCHNORM, KIND_LAYERNORM, KIND_PRELU)
_DENSE = {0: _dense, **{q: _stored_dense(k) for q, k in dense.STORED.items()}}
_SEQ = ([_when(KIND_GRU, dict(enumerate(map(_sequence, gru.SEQ)))),
         _when(KIND_LSTM, dict(enumerate(map(_sequence, lstm.SEQ)))),
         _when(KIND_RNN, dict(enumerate(map(_sequence, rnn.SEQ)))),
         _when(KIND_DENSE, _DENSE), _when(KIND_CONV, _conv_seq)]
        + [_when(k, _norm) for k in _NORMS]
        + [_when(KIND_MAXPOOL, _pool_seq), _when(KIND_AVGPOOL, _pool_seq),
           _when(KIND_ELEMENTWISE, _elementwise)])
_ROWS = ([_when(KIND_GRU, dict(enumerate(gru.ROWS))), _when(KIND_LSTM, dict(enumerate(lstm.ROWS))),
          _when(KIND_RNN, dict(enumerate(rnn.ROWS))),
          _when(KIND_DENSE, _DENSE), _when(KIND_CONV, conv.rows)]
         + [_when(k, _norm) for k in _NORMS] + [_when(KIND_ELEMENTWISE, _elementwise)])
_s_gru, _s_lstm, _s_rnn, _s_dense, _s_conv, _s_bn, _s_ln, _s_prelu, _s_max, _s_avg, _s_ew = _SEQ
_r_gru, _r_lstm, _r_rnn, _r_dense, _r_conv, _r_bn, _r_ln, _r_prelu, _r_ew = _ROWS


@_inline
def seq(kinds, kind, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, sc):
    """T steps of one stream through the layer at meta row ``r`` (of ``kind``)."""
    _s_gru(kinds, kind, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, 0, sc)
    _s_lstm(kinds, kind, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, 0, sc)
    _s_rnn(kinds, kind, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, 0, sc)
    _s_dense(kinds, kind, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, 0, sc)
    _s_conv(kinds, kind, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, 0, sc)
    _s_bn(kinds, kind, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, 0, sc)
    _s_ln(kinds, kind, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, 0, sc)
    _s_prelu(kinds, kind, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, 0, sc)
    _s_max(kinds, kind, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, 0, sc)
    _s_avg(kinds, kind, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, 0, sc)
    _s_ew(kinds, kind, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, 0, sc)


@_inline
def rows(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc):
    """One step of B streams through the layer at meta row ``r`` (of ``kind``).
    Not for the kinds that change the row count (pools, a delayed or
    strided conv): a model with one runs each stream through ``seq``."""
    _r_gru(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
    _r_lstm(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
    _r_rnn(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
    _r_dense(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
    _r_conv(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
    _r_bn(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
    _r_ln(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
    _r_prelu(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
    _r_ew(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
