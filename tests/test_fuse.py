"""Fused residual blocks (kernels/fuse.py, kernels/residual.py).

A WaveNet layer is three to seven graph rows; a fused plan runs each as one
call. The fused plan must give the unfused plan's bits for a step and a
batch step (the arithmetic is the row kernels', in their order), keep its
state layout, fuse only where no other node reads the block's
intermediates, and be refused (never jumped into) without its kernel.
The paths against the offline reference: tests/test_graph.py's random
graphs and WaveNet blocks, which these plans now run fused.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamgru as sg
from streamgru.graph import Node
from streamgru.kernels import calls, fuse
from streamgru.kernels.layout import G_HEAD, GI, H_GRAPH, H_NLAYERS, I_FN, I_FORM, I_SPAN
from streamgru.kernels.layout import KIND_RESIDUAL
from streamgru.kernels.residual import R_ACT_ROW, R_RESIDUAL, R_SKIP
from streamgru.layers.elementwise import Elementwise

import reference as ref
from test_compile import refused_with_table
from test_conv import check_paths


def nam_like(dtype, seed=0, C=6, layers=(1, 2, 4), act="tanh", k=3, outside=False):
    """NAM's reader's graph form: the add carries the activation; the last
    layer has no 1x1 (its h is never read); ``outside`` also feeds one
    block's conv output to the head, which must keep that block unfused."""
    rng = np.random.default_rng(seed)
    x = sg.Input(1)
    h = sg.Conv1d(rng.normal(size=(C, 1, 1)))(x)
    head, extra = None, []
    for i, d in enumerate(layers):
        # weights scaled by fan-in, as in test_graph: values stay O(1) at any C and k
        zc = sg.Conv1d(rng.normal(size=(C, C, k)) / np.sqrt(C * k), rng.normal(size=C) * 0.2,
                       dilation=d)(h)
        zm = sg.Conv1d(rng.normal(size=(C, 1, 1)))(x)
        if outside and i == 1:
            extra.append(zc)
        p = Node(Elementwise("add", C, activation=act), (zc, zm), C)
        if i < len(layers) - 1:
            h = h + sg.Conv1d(rng.normal(size=(C, C, 1)) / np.sqrt(C), rng.normal(size=C) * 0.2)(p)
        head = p if head is None else head + p
    out = sum(extra, head)
    return sg.Model(sg.Conv1d(rng.normal(size=(1, C, 1)) / np.sqrt(C))(out) * 0.5, dtype=dtype)


def api_like(dtype, seed=0, C=4):
    """The graph API's form, ``(zc + zm).act("tanh")``: an identity add and an
    activation row; the skip sum added as ``p + skip`` (operands swapped)."""
    rng = np.random.default_rng(seed)
    x = sg.Input(2)
    h = sg.Conv1d(rng.normal(size=(C, 2, 1)))(x)
    skip = None
    for d in (1, 3, 2):
        z = (sg.Conv1d(rng.normal(size=(C, C, 2)) * 0.5, dilation=d)(h)
             + sg.Conv1d(rng.normal(size=(C, 2, 1)))(x)).act("relu")
        h = sg.Conv1d(rng.normal(size=(C, C, 1)) * 0.5, rng.normal(size=C))(z) + h
        skip = z if skip is None else z + skip
    return sg.Model(sg.Dense(rng.normal(size=(2, C)))(skip), dtype=dtype)


def blocks(model):
    """(first row, span, form) of every fused block of the model's plan."""
    meta = model._plan().meta
    g = meta[H_GRAPH]
    out, l = [], 0
    while l < meta[H_NLAYERS]:
        q = g + G_HEAD + GI * l
        if meta[q + I_FN] == KIND_RESIDUAL:
            out.append((l, int(meta[q + I_SPAN]), int(meta[q + I_FORM])))
        l += int(meta[q + I_SPAN])
    return out


def unfused(make, *args, **kw):
    """The model ``make(*args)`` with its plan built unfused."""
    old = fuse.ENABLED
    fuse.ENABLED = False
    try:
        m = make(*args, **kw)
        m._plan()
    finally:
        fuse.ENABLED = old
    return m


def test_nam_and_api_blocks_are_found():
    f = nam_like(np.float32)
    assert [(s, form) for _, s, form in blocks(f)] == [
        (5, R_RESIDUAL), (6, R_RESIDUAL | R_SKIP), (4, R_SKIP)]
    a = api_like(np.float64)
    assert [(s, form) for _, s, form in blocks(a)] == [
        (6, R_ACT_ROW | R_RESIDUAL), (7, R_ACT_ROW | R_RESIDUAL | R_SKIP),
        (5, R_ACT_ROW | R_SKIP)]  # the last h is never read: the graph drops its rows
    assert blocks(unfused(nam_like, np.float32)) == []


def test_a_block_whose_intermediate_is_read_elsewhere_stays_unfused():
    m = nam_like(np.float64, outside=True)
    first = [l for l, _, _ in blocks(m)]
    assert first == [1, 12]  # block 1 (rows 6 to 11) keeps its rows
    check_paths(m, 40, 1, ref_tol=1e-10, path_tol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [nam_like, api_like])
def test_fused_steps_give_the_unfused_bits(make, dtype):
    fused, plain = make(dtype), unfused(make, dtype)
    assert blocks(fused) and not blocks(plain)
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, fused.input_size)).astype(dtype)
    a, b = fused.stream(), plain.stream()
    Ya = np.array([a.step(x) for x in X])
    Yb = np.array([b.step(x) for x in X])
    assert np.array_equal(Ya, Yb) and np.array_equal(a.get_state(), b.get_state())
    # the same state layout: a snapshot of one continues in the other
    a.set_state(b.get_state())
    assert np.array_equal(np.array([a.step(x) for x in X[:50]]),
                          np.array([b.step(x) for x in X[:50]]))
    # a batch step: each stream its own state
    n = 5
    XB = rng.normal(size=(60, n, fused.input_size)).astype(dtype)
    ba, bb = fused.streams(n), plain.streams(n)
    for t in range(60):
        assert np.array_equal(ba.step(XB[t]), bb.step(XB[t]))
    assert np.array_equal(ba.get_state(), bb.get_state())


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), C=st.integers(1, 20), k=st.integers(1, 4),
       layers=st.lists(st.integers(1, 9), min_size=1, max_size=4),
       act=st.sampled_from(["tanh", "relu", "sigmoid", "identity"]),
       dtype=st.sampled_from([np.float32, np.float64]), T=st.integers(1, 70))
def test_random_blocks_stream_as_the_reference(seed, C, k, layers, act, dtype, T):
    m = nam_like(dtype, seed, C, layers, act, k)
    assert len(blocks(m)) == len(layers)
    tol = 1e-10 if dtype == np.float64 else 2e-4
    check_paths(m, T, seed, ref_tol=tol, path_tol=tol / 10)
    # and one stream, step by step, against the offline forward
    X = np.random.default_rng(seed).normal(size=(T, 1)).astype(dtype)
    want, _ = ref.run_offline(m, X, np.zeros(m.state_size, dtype))
    s = m.stream()
    np.testing.assert_allclose(np.array([s.step(x) for x in X]), want, rtol=0, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_fused_plan_without_its_kernel_is_refused(dtype):
    """The entry points check the fused kind's table slot too (network._ready)."""
    m = nam_like(dtype)
    m.stream()  # fills the table for this plan
    table = calls.TABLE[np.dtype(dtype)].copy()
    for form in (0, 1):
        table[2 * KIND_RESIDUAL + form] = 0
    refused_with_table(m._plan(), dtype, table)
