"""Mixed use must not multiply compiled kernels: every input kind is
normalised before it reaches a kernel, so each entry point of
streamgru.kernels.network holds one signature per model dtype."""

import json
import subprocess
import sys
import textwrap

from numba.core.registry import CPUDispatcher

from streamgru.kernels import network

ENTRY_POINTS = ("step", "process", "batch_step", "batch_process")

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
    print(json.dumps({name: len(getattr(network, name).signatures)
                      for name in %r}))
    """
    % (ENTRY_POINTS,)
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
    assert counts == {name: 2 for name in ENTRY_POINTS}, counts


def test_this_test_session_stayed_within_one_signature_per_dtype():
    """Whatever the other tests in this process did (they use float32 and
    float64 models with all kinds of input), no entry point compiled more."""
    for name in ENTRY_POINTS:
        sigs = getattr(network, name).signatures
        assert len(sigs) <= 2, (name, sigs)
        assert len({sig[0].dtype for sig in sigs}) == len(sigs), (name, sigs)
