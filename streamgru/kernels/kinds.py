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
from numba import types
from numba.extending import intrinsic

from . import conv, dense, direct, elementwise, gru, lstm, norm, pool, rnn
from .layout import (
    H_GRAPH, H_NLAYERS, HEADER, KIND_AVGPOOL, KIND_BATCHNORM, KIND_CONV, KIND_DENSE,
    KIND_ELEMENTWISE, KIND_GRU, KIND_LAYERNORM, KIND_LSTM, KIND_MASK, KIND_MAXPOOL, KIND_PRELU,
    KIND_RNN, M_KIND, ROW, WQ_SHIFT,
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


def mask_of(meta: np.ndarray) -> int:
    """The mask of the layer kinds in a plan's ``meta``."""
    rows = HEADER + ROW * np.arange(int(meta[H_NLAYERS]))
    mask = 0
    for k in set(meta[rows + M_KIND].tolist()):
        mask |= bit(int(k))
    return mask | (GRAPH if meta[H_GRAPH] else 0)


# The two call forms, by argument name: n is T for a sequence, B for rows of
# streams; ``sst`` (the stride between streams' states) only rows have.
SEQ_FORM = ("src", "s0", "ss", "dst", "d0", "ds", "n", "w", "meta", "r", "st", "sb", "sc")
ROWS_FORM = SEQ_FORM[:-1] + ("sst", "sc")
# what each kernel takes, in its order
_RECURRENT = SEQ_FORM           # a kind's seq (and conv's, pool's)
_PLAIN = SEQ_FORM[:10]          # stateless: Dense, the norms
_WITH_SCRATCH = _PLAIN + ("sc",)  # stored Dense, element-wise ops


def _table(form):
    """(kind code, kernel, its arguments) of every layer kernel of ``form``."""
    seq = form is SEQ_FORM
    entries = []
    for code, module in ((KIND_GRU, gru), (KIND_LSTM, lstm), (KIND_RNN, rnn)):
        for q, kernel in enumerate(module.SEQ if seq else module.ROWS):
            entries.append((code | q << WQ_SHIFT, kernel, _RECURRENT if seq else ROWS_FORM))
    entries.append((KIND_DENSE, dense.seq, _PLAIN))
    entries += [(KIND_DENSE | q << WQ_SHIFT, k, _WITH_SCRATCH) for q, k in dense.STORED.items()]
    entries.append((KIND_CONV, conv.seq, _RECURRENT) if seq else (KIND_CONV, conv.rows, ROWS_FORM))
    entries += [(k, norm.seq, _PLAIN) for k in (KIND_BATCHNORM, KIND_LAYERNORM, KIND_PRELU)]
    if seq:  # a pool changes the row count: never run on rows of streams
        entries += [(k, pool.seq, _RECURRENT) for k in (KIND_MAXPOOL, KIND_AVGPOOL)]
    entries.append((KIND_ELEMENTWISE, elementwise.seq, _WITH_SCRATCH))
    return entries


def _typer(form):
    """The typing of a call ``(kinds, kind, *form)`` that runs the kernel of
    ``kind`` (a run-time code) among the kernels whose bits the literal mask
    ``kinds`` has: a chain of ``if kind == code`` and direct calls.

    An intrinsic (direct.py), so the choice costs no compile time."""
    table = _table(form)

    def typer(typingctx, kinds, kind, args):
        mask = direct.literal(kinds)
        if mask is None:
            return None
        given = dict(zip(form, args))
        calls = [(code, *direct.resolve(typingctx, kernel, [given[a] for a in names]),
                  [form.index(a) for a in names])
                 for code, kernel, names in table if mask & bit(code)]

        def codegen(context, builder, signature, llargs):
            kind_v = context.cast(builder, llargs[1], signature.args[1], types.int64)
            for code, fnty, sig, where in calls:
                is_it = builder.icmp_signed("==", kind_v, context.get_constant(types.int64, code))
                with builder.if_then(is_it):
                    direct.call(context, builder, fnty, sig, [llargs[2 + i] for i in where],
                                [args[i] for i in where])
            return context.get_dummy_value()

        return types.none(kinds, kind, *args), codegen

    return typer


_seq_typer, _rows_typer = _typer(SEQ_FORM), _typer(ROWS_FORM)


@intrinsic(prefer_literal=True)
def seq(typingctx, kinds, kind, src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, sc):
    """T steps of one stream through the layer at meta row ``r`` (of ``kind``)."""
    return _seq_typer(typingctx, kinds, kind, (src, s0, ss, dst, d0, ds, T, w, meta, r, st, sb, sc))


@intrinsic(prefer_literal=True)
def rows(typingctx, kinds, kind, src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc):
    """One step of B streams through the layer at meta row ``r`` (of ``kind``).
    Not for the kinds that change the row count (pools, a delayed or
    strided conv): a model with one runs each stream through ``seq``."""
    return _rows_typer(typingctx, kinds, kind,
                       (src, s0, ss, dst, d0, ds, B, w, meta, r, st, sb, sst, sc))
