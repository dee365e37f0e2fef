"""Graph models as a flat instruction list over preallocated buffers.

A graph's layer rows in ``meta`` are in execution order, exactly like a
chain's; a graph adds a section (``meta[H_GRAPH]``, layout.py) saying, for
each row, where in the scratch its operand(s) and its output live. The
buffers are assigned once, when the plan is built (``attach``): each node's
value for a tile of rows gets a buffer of a tile's rows (GRAPH_TILE), a buffer is reused
once the last instruction reading its node has run, and an add or mul
writes over an operand that nothing reads later (a residual or skip sum
accumulates in place). So a step of a graph costs what its layers cost,
plus copying the input in and the output out.

``run`` (T steps of one stream) and ``run_rows`` (one step of B streams)
are inlined into network.py's entry points; like a chain, they call each
layer's kernel through the plan's table of C functions (calls.py).
"""

import numpy as np
from numba import njit

from .config import JIT_OPTIONS
from .direct import call_layer
from .layout import (
    FN_ROWS, FN_SEQ, FUSED_ROWS, G_HEAD, G_IN, G_INS, G_OUT, G_OUTS, GI, H_GRAPH, H_INPUT,
    H_NLAYERS, H_OUTPUT, H_SCRATCH, H_TILE, HEADER, I_A, I_AS, I_B, I_BS, I_D, I_DS, I_FN, I_SPAN,
    M_KIND, ROW,
)

U = np.uint64
_inline = njit(inline="always", **JIT_OPTIONS)


def attach(meta: np.ndarray, layers, edges, input_size: int) -> np.ndarray:
    """``meta`` of a chain plan with the graph section appended: buffers for
    every node (node 0 the input, j + 1 layer j's output) and one
    instruction per layer row; the scratch grows by the buffers."""
    sizes = [input_size] + [l.output_size for l in layers]
    n = len(layers)
    last = [0] * (n + 1)  # the last instruction reading each node (n: the copy out)
    for i, ins in enumerate(edges):
        for j in ins:
            last[j] = max(last[j], i)
    last[n] = n
    buffers: list[list[int]] = []  # [offset, row stride] of each buffer
    free: list[int] = []
    where = [0] * (n + 1)          # node -> buffer
    top = int(meta[H_SCRATCH])
    tile = int(meta[H_TILE])

    def new(size: int) -> int:
        nonlocal top
        # an exact fit keeps rows contiguous: element-wise ops then run as one loop
        fits = [b for b in free if buffers[b][1] == size]
        if fits:
            b = fits[0]
            free.remove(b)
            return b
        top = -(-top // 16) * 16  # rows start on whole 64-byte lines
        buffers.append([top, size])
        top += tile * size
        return len(buffers) - 1

    where[0] = new(sizes[0])
    for i, (layer, ins) in enumerate(zip(layers, edges)):
        out = None
        if getattr(layer, "op", None) in ("add", "mul"):
            # in place over an operand read by nothing after this op
            for j in ins:
                if last[j] == i and buffers[where[j]][1] == sizes[i + 1] and ins.count(j) == 1:
                    out = where[j]
                    break
        if out is None:
            out = new(sizes[i + 1])
        where[i + 1] = out
        for j in set(ins):
            if last[j] == i and where[j] != out:
                free.append(where[j])
    g = meta.size
    section = np.zeros(G_HEAD + GI * n, np.int64)
    section[G_IN], section[G_INS] = buffers[where[0]]
    section[G_OUT], section[G_OUTS] = buffers[where[n]]
    for i, ins in enumerate(edges):
        q = G_HEAD + GI * i
        section[q + I_A], section[q + I_AS] = buffers[where[ins[0]]]
        if len(ins) > 1:
            section[q + I_B], section[q + I_BS] = buffers[where[ins[1]]]
        section[q + I_D], section[q + I_DS] = buffers[where[i + 1]]
        section[q + I_FN] = meta[HEADER + ROW * i + M_KIND]
        section[q + I_SPAN] = 1
    out = np.concatenate([meta, section])
    out[H_GRAPH] = g
    out[H_SCRATCH] = top
    return out


@_inline
def _copy_rows(src, s0, ss, dst, d0, ds, R, n):
    for t in range(R):
        a = s0 + t * ss
        o = d0 + t * ds
        for k in range(n):
            dst[U(o + k)] = src[U(a + k)]


@_inline
def run(src, s0, ss, dst, d0, ds, T, w, meta, st, sb, sc, fns):
    """T steps of a graph model (network._run's arguments, and its table of
    layer C functions ``fns``). A fused run of rows (fuse.py) serves up to
    FUSED_ROWS rows; a longer tile runs its rows' own kernels."""
    g = meta[H_GRAPH]
    _copy_rows(src, s0, ss, sc, meta[g + G_IN], meta[g + G_INS], T, meta[H_INPUT])
    n = meta[H_NLAYERS]
    l = 0
    while l < n:
        r = HEADER + ROW * l
        q = g + G_HEAD + GI * l
        code, span = meta[q + I_FN], meta[q + I_SPAN]
        if span > 1 and T > FUSED_ROWS:
            code, span = meta[r + M_KIND], 1
        call_layer(fns[2 * code + FN_SEQ], sc, meta[q + I_A], meta[q + I_AS], sc,
                   meta[q + I_D], meta[q + I_DS], T, w, meta, r, st, sb, 0, sc)
        l += span
    _copy_rows(sc, meta[g + G_OUT], meta[g + G_OUTS], dst, d0, ds, T, meta[H_OUTPUT])


@_inline
def run_rows(src, s0, ss, dst, d0, ds, B, w, meta, st, sb, sst, sc, fns):
    """One step of B streams of a graph model (network._run_rows' arguments)."""
    g = meta[H_GRAPH]
    _copy_rows(src, s0, ss, sc, meta[g + G_IN], meta[g + G_INS], B, meta[H_INPUT])
    n = meta[H_NLAYERS]
    l = 0
    while l < n:
        q = g + G_HEAD + GI * l
        call_layer(fns[2 * meta[q + I_FN] + FN_ROWS], sc, meta[q + I_A], meta[q + I_AS], sc,
                   meta[q + I_D], meta[q + I_DS], B, w, meta, HEADER + ROW * l, st, sb, sst, sc)
        l += meta[q + I_SPAN]
    _copy_rows(sc, meta[g + G_OUT], meta[g + G_OUTS], dst, d0, ds, B, meta[H_OUTPUT])


def function_codes(meta: np.ndarray) -> set[int]:
    """The kind codes of the C functions a graph plan's instructions call
    (its rows' own kinds and any fused kind; fuse.py)."""
    g = int(meta[H_GRAPH])
    return {int(meta[g + G_HEAD + GI * l + I_FN]) for l in range(int(meta[H_NLAYERS]))}
