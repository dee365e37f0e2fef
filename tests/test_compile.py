"""Mixed use must not multiply compiled kernels: every input kind is
normalised before it reaches a kernel, so each entry point of
streamgru.kernels.network holds one signature per model dtype."""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

import numpy as np
from numba.core.registry import CPUDispatcher

import streamgru as sg
from streamgru.kernels import calls, fastcall, network

# Stream.step runs through fastcall's builtin, and its checked path too
# (the "step" entry point serves only where that is unavailable)
ENTRY_POINTS = ("process", "batch_step", "batch_process")

MIXED_USE = textwrap.dedent(
    r"""
    import json
    import numpy as np
    import streamgru as sg
    from streamgru.kernels import network

    rng = np.random.default_rng(0)
    base = sg.Model([
        sg.GRU.from_torch(rng.normal(size=(12, 3)), rng.normal(size=(12, 4))),
        sg.GRU(rng.normal(size=(6, 4)), rng.normal(size=(6, 2)), reset_after=False),
        sg.Dense(rng.normal(size=(2, 2)), None, "tanh"),
    ])
    X = rng.normal(size=(2, 5, 3))
    ro = X.copy(); ro.setflags(write=False)
    variants = [
        X, X.astype(np.float32), X.astype(np.float16), (X * 10).astype(np.int64),
        (X * 10).astype(np.int8), X.tolist(), ro, np.asfortranarray(X),
        np.repeat(X, 2, axis=2)[:, :, ::2], X.astype(">f8"),
    ]
    for dtype in (np.float32, np.float64):
        m = base.astype(dtype)
        s, b = m.stream(), m.streams(2)
        for V in variants:
            A = np.asarray(V)
            s.process(V[0])
            s.step(A[0, 0])
            s.step(list(A[0, 0]))
            s.process(A[0, ::2])
            b.step(A[:, 0])
            b.process(V)
            b.process(A[:, ::-1])
            y = np.empty(m.output_size, dtype)
            s.step(A[0, 0], out=y)
            s.set_state(s.get_state().astype(np.float16))
        s.reset(); b.reset(1)
    print(json.dumps({name: len(network.compiled(name)) for name in network.ENTRY_POINTS}))
    """
)


def test_entry_points_are_the_expected_dispatchers():
    for name in ENTRY_POINTS:
        assert isinstance(getattr(network, name), CPUDispatcher), name


def test_mixed_use_compiles_one_signature_per_model_dtype():
    res = subprocess.run(
        [sys.executable, "-c", MIXED_USE], capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, res.stderr[-3000:]
    counts = json.loads(res.stdout.strip().splitlines()[-1])
    # no StreamBatch call here is big enough to split, so first_bad is unused
    assert counts == {**{name: 2 for name in ENTRY_POINTS}, "step": 0, "first_bad": 0}, counts


def test_this_test_session_stayed_within_one_signature_per_dtype():
    """Whatever the other tests in this process did (they use float32 and
    float64 models with all kinds of input), no entry point compiled more."""
    for name in ENTRY_POINTS:
        sigs = network.compiled(name)
        assert len(sigs) <= 2, (name, sigs)
        assert len({sig[0].dtype for sig in sigs}) == len(sigs), (name, sigs)


DENSE_ONLY = textwrap.dedent(
    r"""
    import glob, json, os, sys
    import numpy as np
    import streamgru as sg
    from streamgru.kernels import cache

    rng = np.random.default_rng(0)
    m = sg.Model([sg.Dense(rng.normal(size=(3, 4)), rng.normal(size=3), "tanh")])
    y = m.stream().step(np.ones(4, np.float32))
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(cache.folder(), "*.nbi")))
    print(json.dumps({"y": y.tolist(), "files": names}))
    """
)


def test_a_cold_start_compiles_only_the_kinds_the_model_uses(tmp_path):
    env = {**os.environ, "STREAMGRU_CACHE_DIR": str(tmp_path)}
    res = subprocess.run([sys.executable, "-c", DENSE_ONLY], capture_output=True, text=True,
                         timeout=900, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    files = " ".join(out["files"])
    # the fast step, and one layer C function (calls.py): Dense's seq, for float32
    assert "fastcall" in files and "kerneldense_seq_dtypefloat32" in files, files
    assert not re.search(r"kernel(gru|lstm|rnn|conv|pool|norm)|rows|float64", files), files
    assert all(abs(v) < 1 for v in out["y"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_plan_whose_kernels_are_not_in_the_table_is_refused(dtype):
    """The entry points jump to each layer's C function through the plan's
    table (calls.py); a table without the model's entries gives the size
    status (-1) and changes nothing, never a jump to address 0."""
    rng = np.random.default_rng(4)
    m = sg.Model([sg.GRU.from_torch(rng.normal(size=(12, 3)), rng.normal(size=(12, 4)))],
                 dtype=dtype)
    plan = m._plan()
    empty = np.zeros_like(calls.TABLE[np.dtype(dtype)])  # kept alive: meta points into it
    meta = refused_with_table(plan, dtype, empty)
    states = np.full((2, 4), 0.5, dtype)
    sc = np.zeros(plan.scratch_size, dtype)
    assert network.entry("batch_step", dtype)(np.ones((2, 3), dtype), np.zeros((2, 4), dtype),
                                              plan.w, meta, states, sc, 0, 2) == -1
    assert (states == 0.5).all()


def refused_with_table(plan, dtype, table):
    """``plan``'s meta pointed at ``table`` (which the caller keeps alive),
    after checking that step and process refuse it with the size status
    (-1) and change neither the state nor the output."""
    from streamgru.kernels.layout import H_FNS

    meta = plan.meta.copy()
    meta[H_FNS] = table.ctypes.data
    bad = type(plan)(**{**plan.__dict__, "meta": meta})
    buf, state = network.stream_buffer(bad)
    state[:] = 0.5
    x, y = np.ones(plan.input_size, dtype), np.full(plan.output_size, 7, dtype)
    assert network.entry("step", dtype)(x, y, buf) == -1
    assert network.entry("process", dtype)(x[None], y[None], buf) == -1
    assert (state == 0.5).all() and (y == 7).all()
    return meta


def test_kinds_running_one_kernel_share_its_c_function():
    """The norms share one kernel, so do the pools, and a stateless kind's
    rows are its seq: one C function each, compiled once."""
    from streamgru.kernels.layout import (
        FN_ROWS, FN_SEQ, KIND_AVGPOOL, KIND_BATCHNORM, KIND_DENSE, KIND_LAYERNORM, KIND_MAXPOOL,
        KIND_PRELU,
    )

    dt = np.float64
    norms = {calls.address(dt, k, f) for k in (KIND_BATCHNORM, KIND_LAYERNORM, KIND_PRELU)
             for f in (FN_SEQ, FN_ROWS)}
    assert len(norms) == 1
    assert calls.address(dt, KIND_MAXPOOL, FN_SEQ) == calls.address(dt, KIND_AVGPOOL, FN_SEQ)
    assert calls.address(dt, KIND_DENSE, FN_SEQ) == calls.address(dt, KIND_DENSE, FN_ROWS)


def test_every_kernel_variant_has_a_name_of_its_own():
    """Closures made once per weight type, dtype or kernel carry it in their
    name (config.variant): numba names compiled code after the qualified
    name and a per-process counter, so two variants compiled in different
    processes (one loaded from the disk cache) could otherwise share a symbol."""
    from streamgru.kernels import dense, gru, kinds, lstm, rnn

    for module in (gru, lstm, rnn):
        names = [k.py_func.__qualname__ for k in module.SEQ + module.ROWS]
        assert len(set(names)) == len(names), names
    names = [k.py_func.__qualname__ for k in dense.STORED.values()]
    assert len(set(names)) == len(names), names
    names = [fastcall._builtin_body(dt).__qualname__ for dt in (np.float32, np.float64)]
    assert len(set(names)) == len(names), names
    pairs = {pair for seq in (True, False) for pair in kinds._TABLES[seq].values()}
    names = [calls._body(kernel, args, el).__qualname__ for kernel, args in pairs
             for el in (np.float32, np.float64)]
    assert len(set(names)) == len(names), names


def test_a_plan_from_another_process_is_pointed_at_this_ones_table():
    """A pickled Model carries its packed plan, whose meta holds the address
    of the table of layer C functions of the process that built it; making
    a stream points it at this process's table before anything runs."""
    import pickle

    from streamgru.kernels.layout import H_FNS

    rng = np.random.default_rng(7)
    m = sg.Model([sg.GRU.from_torch(rng.normal(size=(12, 3)), rng.normal(size=(12, 4)))])
    x = np.ones(3, np.float32)
    want = m.stream().step(x)
    back = pickle.loads(pickle.dumps(m))
    back._plan().meta[H_FNS] = 8  # what another process's address would be here: garbage
    np.testing.assert_array_equal(back.stream().step(x), want)
    back._plan().meta[H_FNS] = 8
    np.testing.assert_array_equal(back.streams(2).step(np.stack([x, x]))[1], want)
