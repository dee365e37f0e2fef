"""Find the runs of graph rows that one fused kernel runs at once.

Today one pattern: the residual block of WaveNet-style models (residual.py
gives its math), consecutive rows of a graph plan in execution order::

    Conv1d on h         groups 1, identity activation, no delay or stride
    Conv1d k=1 on x     groups 1, identity, no delay or stride (x any earlier node)
    add                 of the two, with any activation (NAM's reader), or
    add, then .act(f)   an identity add, then a whole-channel activation (the graph API)
    Conv1d k=1 on p     groups 1, identity, no delay or stride (p: the activated sum)
    add(h, u)           identity (u: the 1x1's output)
    add(s, p)           identity, s an earlier node

where the 1x1 and its residual sum may be absent (NAM's last layer has
none), and so may the skip sum (the first layer starts the sum with p);
and only where nothing else reads the block's intermediates (the two
convs' outputs, the bare sum, the 1x1's output: the kernel keeps them in
scratch) and none is the graph's output. The plan's rows stay as they are
(weights, state layout); the block's first instruction gets the fused
kind, its span, its form (which optional rows it has: residual.R_*) and
its temporaries, and the runner skips the rest. ``ENABLED`` is a switch
for tests and benchmarks that compare a fused plan with an unfused one.
"""

from __future__ import annotations

import numpy as np

from .activations import IDENTITY
from .elementwise import OP_ADD, OP_SLICE
from .layout import (
    G_HEAD, GI, H_GRAPH, H_SCRATCH, HEADER, I_A, I_AS, I_B, I_BS, I_FN, I_FORM, I_SPAN, I_TMP,
    KIND_CONV, KIND_ELEMENTWISE, KIND_RESIDUAL, M_ACT0, M_ACT1, M_ACT2, M_COUNT, M_FLAGS, M_IN,
    M_KIND, M_OUT, M_P, P_ALPHA2, ROW,
)
from .residual import R_ACT_ROW, R_RESIDUAL, R_SKIP

ENABLED = True


def _row(meta, i):
    return HEADER + ROW * i


def _plain_conv(meta, i, k1: bool) -> bool:
    """Row i is a groups-1, identity, undelayed Conv1d (of kernel size 1 if ``k1``)."""
    r = _row(meta, i)
    return (meta[r + M_KIND] == KIND_CONV and meta[r + M_FLAGS] == 1
            and meta[r + M_ACT0] == IDENTITY and meta[r + M_COUNT] < 0
            and (not k1 or meta[r + M_ACT1] == 1))


def _elementwise(meta, i, op: int, identity: bool) -> bool:
    r = _row(meta, i)
    return (meta[r + M_KIND] == KIND_ELEMENTWISE and meta[r + M_FLAGS] == op
            and (not identity or meta[r + M_ACT0] == IDENTITY))


def _whole_act(meta, i, w) -> bool:
    """Row i is ``node.act(f)``: a slice of all channels, scale 1."""
    r = _row(meta, i)
    return (_elementwise(meta, i, OP_SLICE, False) and meta[r + M_ACT2] == 0
            and meta[r + M_OUT] == meta[r + M_IN] and w[meta[r + M_P] + P_ALPHA2] == 1.0)


def _match(meta, w, edges, readers, n, i) -> tuple[int, int]:
    """(span, R_* form) of a residual block starting at row i, or (0, 0)."""
    if i + 3 > n:
        return 0, 0
    # node j + 1 is row j's output; node 0 the graph's input
    zc, zm = i + 1, i + 2
    M = meta[_row(meta, i) + M_OUT]
    C = meta[_row(meta, i) + M_IN]
    if not (_plain_conv(meta, i, False) and _plain_conv(meta, i + 1, True)
            and _elementwise(meta, i + 2, OP_ADD, False) and meta[_row(meta, i + 1) + M_OUT] == M
            and sorted(edges[i + 2]) == [zc, zm]
            and readers[zc] == {i + 2} and readers[zm] == {i + 2} and n not in (zc, zm)):
        return 0, 0
    form, j = 0, i + 3  # j: the next row to match
    if (j < n and meta[_row(meta, i + 2) + M_ACT0] == IDENTITY and _whole_act(meta, j, w)
            and tuple(edges[j]) == (j,) and readers[j] == {j} and j != n):
        form, j = form | R_ACT_ROW, j + 1  # (zc + zm).act(f): the add, then the activation
    p = j  # node of p: the output of row j - 1
    h = edges[i][0]
    if (j + 2 <= n and _plain_conv(meta, j, True) and _elementwise(meta, j + 1, OP_ADD, True)
            and tuple(edges[j]) == (p,) and sorted(edges[j + 1]) == sorted([h, j + 1])
            and h != j + 1 and meta[_row(meta, j) + M_OUT] == C
            and readers[j + 1] == {j + 1} and j + 1 != n):
        form, j = form | R_RESIDUAL, j + 2
    if j < n and _elementwise(meta, j, OP_ADD, True):
        s = [a for a in edges[j] if a != p]
        if sorted(edges[j]) == sorted([p] + s) and len(s) == 1 and s[0] <= i:
            form, j = form | R_SKIP, j + 1
    return j - i, form


def _first_operand(meta, q, node, ins) -> None:
    """Make ``node`` the first operand of the add at instruction ``q`` (an
    add is commutative bit for bit, so the row kernel gives the same)."""
    if ins[0] != node:
        a = (meta[q + I_A], meta[q + I_AS])
        meta[q + I_A], meta[q + I_AS] = meta[q + I_B], meta[q + I_BS]
        meta[q + I_B], meta[q + I_BS] = a


def blocks(meta: np.ndarray, w: np.ndarray, edges) -> np.ndarray:
    """``meta`` of a graph plan (graph.attach; ``w`` its packed weights) with
    its residual blocks fused, and the scratch grown by their temporaries;
    unchanged without blocks."""
    if not ENABLED:
        return meta
    n = len(edges)
    readers: list[set[int]] = [set() for _ in range(n + 1)]
    for i, ins in enumerate(edges):
        for j in ins:
            readers[j].add(i)
    g = int(meta[H_GRAPH])
    found = []
    i = 0
    while i < n:
        span, form = _match(meta, w, edges, readers, n, i)
        if span:
            found.append((i, span, form))
            i += span
        else:
            i += 1
    if not found:
        return meta
    meta = meta.copy()
    # three vectors of scratch shared by every block (they run one at a time)
    pad = lambda c: -(-int(c) // 16) * 16  # noqa: E731 - whole vectors of either dtype
    top = pad(meta[H_SCRATCH])
    size = max(2 * pad(meta[_row(meta, i) + M_OUT]) + pad(meta[_row(meta, i) + M_IN])
               for i, _, _ in found)
    for i, span, form in found:
        q = g + G_HEAD + GI * i
        p = i + (4 if form & R_ACT_ROW else 3)  # node of p, as _match found it
        if form & R_RESIDUAL:
            _first_operand(meta, q + (p - i + 1) * GI, edges[i][0], edges[p + 1])
        if form & R_SKIP:
            j = i + span - 1
            _first_operand(meta, q + (span - 1) * GI, next(a for a in edges[j] if a != p),
                           edges[j])
        meta[q + I_FN] = KIND_RESIDUAL
        meta[q + I_SPAN] = span
        meta[q + I_FORM] = form
        meta[q + I_TMP] = top
    meta[H_SCRATCH] = top + size
    return meta
