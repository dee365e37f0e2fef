"""Mixed use must not multiply compiled kernels: every input kind is
normalised before it reaches a kernel, so each entry point of
streamgru.kernels.network holds one signature per model dtype."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import numpy as np
from numba.core.registry import CPUDispatcher

import streamgru as sg
from streamgru.kernels import fastcall, kinds, network

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
    modules = {name.split(".", 1)[0] for name in out["files"]}
    assert "dense" in modules and "fastcall" in modules
    assert not modules & {"gru", "lstm", "rnn"}, out["files"]
    assert all(abs(v) < 1 for v in out["y"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fast_step_for_some_kinds_matches_the_one_for_all(dtype):
    """A stream's fast path is compiled for the model's kinds or for all of
    them, whichever a cache holds: both must give identical numbers."""
    rng = np.random.default_rng(5)
    m = sg.Model([
        sg.GRU.from_torch(rng.normal(size=(12, 3)), rng.normal(size=(12, 4))),
        sg.Dense(rng.normal(size=(2, 4)), rng.normal(size=2), "tanh"),
    ], dtype=dtype)
    mask = kinds.mask_of(m._plan().meta)
    assert mask != kinds.ALL
    outs = []
    for k in (mask, kinds.ALL):
        s = m.stream()
        fn = fastcall._CFunc(dtype, k)
        fn.compile()
        mdef = fastcall._MethodDef(b"fast_step", fn.address, fastcall._METH_FASTCALL, None)
        table = np.zeros(fastcall.T_SIZE, np.int64)
        table[fastcall.T_NDARRAY], table[fastcall.T_DESCR] = id(np.ndarray), id(np.dtype(dtype))
        table[fastcall.T_BUF], table[fastcall.T_NBUF] = fastcall.address(s._buf), s._buf.size
        f = fastcall._new_builtin(fastcall.ctypes.addressof(mdef), table, "test")
        X = np.random.default_rng(1).normal(size=(1000, 3)).astype(dtype)
        Y = np.empty((1000, 2), dtype)
        y = np.empty(2, dtype)
        for t in range(1000):
            assert f(X[t], y) is y
            Y[t] = y
        outs.append((Y, s.get_state()))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])


def test_every_kernel_variant_has_a_name_of_its_own():
    """Closures made once per weight type or mask carry it in their name
    (config.variant): numba names compiled code after the qualified name and
    a per-process counter, so two variants compiled in different processes
    (one loaded from the disk cache) could otherwise share a symbol."""
    from streamgru.kernels import dense, gru, lstm, rnn

    for module in (gru, lstm, rnn):
        names = [k.py_func.__qualname__ for k in module.SEQ + module.ROWS]
        assert len(set(names)) == len(names), names
    names = [k.py_func.__qualname__ for k in dense.STORED.values()]
    assert len(set(names)) == len(names), names
    masks = (kinds.ALL, 9, 32769)
    names = [fastcall._builtin_body(dt, k).__qualname__ for dt in (np.float32, np.float64)
             for k in masks]
    assert len(set(names)) == len(names), names
    names = [network._masked(name, k).py_func.__qualname__ for name in ("step", "process")
             for k in (32769, 36864)]
    assert len(set(names)) == len(names), names
