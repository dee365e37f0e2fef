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
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from . import conv, dense, elementwise, gru, lstm, norm, rnn
from .config import JIT_OPTIONS
from .layout import (
    H_GRAPH, H_NLAYERS, HEADER, KIND_BATCHNORM, KIND_CONV, KIND_DENSE, KIND_ELEMENTWISE, KIND_GRU,
    KIND_LAYERNORM, KIND_LSTM, KIND_PRELU, KIND_RNN, M_KIND, ROW,
)

# the three per-sample norm kinds share one kernel module, so one bit
BITS = {KIND_GRU: 1, KIND_LSTM: 2, KIND_RNN: 4, KIND_DENSE: 8, KIND_CONV: 16,
        KIND_BATCHNORM: 32, KIND_LAYERNORM: 32, KIND_PRELU: 32, KIND_ELEMENTWISE: 64}
GRAPH = 128  # the graph runner (graph.py): set for graph models only
ALL = 255

_inline = njit(inline="always", **JIT_OPTIONS)


def mask_of(meta: np.ndarray) -> int:
    """The mask of the layer kinds in a plan's ``meta``."""
    rows = HEADER + ROW * np.arange(int(meta[H_NLAYERS]))
    mask = sum(set(BITS[int(k)] for k in meta[rows + M_KIND].tolist()))
    return mask | (GRAPH if meta[H_GRAPH] else 0)


# Every layer call below has one form: (src, s0, ss, dst, d0, ds, n, w, meta,
# r, st, sb, sst, sc); n is T for a sequence, B for rows of streams, and
# ``sst`` (the stride between streams' states) is unused by a sequence.

@_inline
def _gru_seq(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
    gru.seq(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sc)


@_inline
def _lstm_seq(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
    lstm.seq(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sc)


@_inline
def _rnn_seq(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
    rnn.seq(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sc)


@_inline
def _conv_seq(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
    conv.seq(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sc)


@_inline
def _dense(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
    # stateless: a sequence and rows of streams are the same n rows
    dense.seq(src, s0, ss, dst, d0, ds, n, w, meta, r)


@_inline
def _norm(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
    # stateless per-sample kinds (BatchNorm, LayerNorm, PReLU), like Dense
    norm.seq(src, s0, ss, dst, d0, ds, n, w, meta, r)


@_inline
def _elementwise(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
    # graph ops: stateless, their second operand in the scratch
    elementwise.seq(src, s0, ss, dst, d0, ds, n, w, meta, r, sc)


def _when(code, kernel):
    """A call ``(kinds, kind, *layer args)`` that runs ``kernel`` if
    ``kind == code``, typed as a no-op when the literal mask ``kinds``
    lacks ``code``'s bit."""

    def call(kinds, kind, src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
        raise NotImplementedError("compiled code only")

    @overload(call, inline="always", prefer_literal=True)
    def _typed(kinds, kind, src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
        if not isinstance(kinds, types.IntegerLiteral):
            return None
        if kinds.literal_value & BITS[code]:
            def run(kinds, kind, src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
                if kind == code:
                    kernel(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc)
            return run

        def skip(kinds, kind, src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
            pass
        return skip

    return call


_NORMS = (KIND_BATCHNORM, KIND_LAYERNORM, KIND_PRELU)
_SEQ = ([_when(KIND_GRU, _gru_seq), _when(KIND_LSTM, _lstm_seq), _when(KIND_RNN, _rnn_seq),
         _when(KIND_DENSE, _dense), _when(KIND_CONV, _conv_seq)]
        + [_when(k, _norm) for k in _NORMS] + [_when(KIND_ELEMENTWISE, _elementwise)])
_ROWS = ([_when(KIND_GRU, gru.rows), _when(KIND_LSTM, lstm.rows), _when(KIND_RNN, rnn.rows),
          _when(KIND_DENSE, _dense), _when(KIND_CONV, conv.rows)]
         + [_when(k, _norm) for k in _NORMS] + [_when(KIND_ELEMENTWISE, _elementwise)])
_s_gru, _s_lstm, _s_rnn, _s_dense, _s_conv, _s_bn, _s_ln, _s_prelu, _s_ew = _SEQ
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
    _s_ew(kinds, kind, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, 0, sc)


@_inline
def rows(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc):
    """One step of B streams through the layer at meta row ``r`` (of ``kind``)."""
    _r_gru(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
    _r_lstm(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
    _r_rnn(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
    _r_dense(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
    _r_conv(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
    _r_bn(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
    _r_ln(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
    _r_prelu(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
    _r_ew(kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc)
