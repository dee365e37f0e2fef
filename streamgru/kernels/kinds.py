"""Which kernel runs each layer kind, and on which arguments.

Every layer call has one form, ``(src, s0, ss, dst, d0, ds, n, w, meta, r,
st, sb, sst, sc)``: n is T for a sequence (form ``seq``: T steps of one
stream) or B for rows of streams (form ``rows``: one step of B streams),
and ``sst`` is the stride between streams' states. Each kind's kernel takes
the part of it it needs, listed here by name. calls.py compiles each
(kernel, arguments) pair into a C function of the whole form, which the
entry points call through a table (so adding a kind is one entry here,
plus its kernel and plan packer).

Weight types. A layer whose weight matrices are stored in a reduced type
has the kind code ``KIND_x | q << WQ_SHIFT`` (layout.py) and a kernel of
its own, compiled only for models that have one.
"""

from . import conv, dense, elementwise, gru, lstm, norm, pool, residual, rnn
from .layout import (
    FN_SEQ, KIND_AVGPOOL, KIND_BATCHNORM, KIND_CONV, KIND_DENSE, KIND_ELEMENTWISE, KIND_GRU,
    KIND_LAYERNORM, KIND_LSTM, KIND_MAXPOOL, KIND_PRELU, KIND_RESIDUAL, KIND_RNN, WQ_SHIFT,
)

# every kind with float weights (what ``streamgru warmup`` compiles)
FLOAT_KINDS = (KIND_GRU, KIND_LSTM, KIND_RNN, KIND_DENSE, KIND_CONV, KIND_BATCHNORM,
               KIND_LAYERNORM, KIND_PRELU, KIND_MAXPOOL, KIND_AVGPOOL, KIND_ELEMENTWISE,
               KIND_RESIDUAL)

# The arguments of the two forms, by name; what each kernel takes, in its order
SEQ_FORM = ("src", "s0", "ss", "dst", "d0", "ds", "n", "w", "meta", "r", "st", "sb", "sc")
ROWS_FORM = SEQ_FORM[:-1] + ("sst", "sc")
PLAIN = SEQ_FORM[:10]           # stateless: Dense, the norms
WITH_SCRATCH = PLAIN + ("sc",)  # stored Dense, element-wise ops


def _table(seq: bool) -> dict:
    """kind code -> (kernel, its arguments) of every layer kernel of a form."""
    entries = {}
    for code, module in ((KIND_GRU, gru), (KIND_LSTM, lstm), (KIND_RNN, rnn)):
        for q, kernel in enumerate(module.SEQ if seq else module.ROWS):
            entries[code | q << WQ_SHIFT] = (kernel, SEQ_FORM if seq else ROWS_FORM)
    entries[KIND_DENSE] = (dense.seq, PLAIN)
    for q, kernel in dense.STORED.items():
        entries[KIND_DENSE | q << WQ_SHIFT] = (kernel, WITH_SCRATCH)
    entries[KIND_CONV] = (conv.seq, SEQ_FORM) if seq else (conv.rows, ROWS_FORM)
    for code in (KIND_BATCHNORM, KIND_LAYERNORM, KIND_PRELU):
        entries[code] = (norm.seq, PLAIN)
    if seq:  # a pool changes the row count: never run on rows of streams
        for code in (KIND_MAXPOOL, KIND_AVGPOOL):
            entries[code] = (pool.seq, SEQ_FORM)
    entries[KIND_ELEMENTWISE] = (elementwise.seq, WITH_SCRATCH)
    # fused runs of graph rows (fuse.py), not layer kinds
    # (the seq form's callers pass sst = 0: one kernel and C function for both forms)
    entries[KIND_RESIDUAL] = (residual.run, ROWS_FORM)
    return entries


_TABLES = {True: _table(True), False: _table(False)}


def kernel_of(code: int, form: int):
    """(kernel, the names of the arguments it takes) of kind ``code`` for
    ``form`` (layout.FN_SEQ or FN_ROWS); KeyError if it has none."""
    return _TABLES[form == FN_SEQ][code]


def has_rows(code: int) -> bool:
    """Whether kind ``code`` has a rows kernel (a pool changes the row count:
    a batch of a model with one runs stream by stream, through seq)."""
    return code in _TABLES[False]
