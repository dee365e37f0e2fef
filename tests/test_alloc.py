"""With ``out=`` given and input in the model's dtype, step/process allocate
nothing: numba's NRT allocation count per call equals that of a no-op kernel
called with the same arrays (what the call boundary itself registers), no
numpy function runs in the Python wrapper, and 20,000 steps under tracemalloc
show no growth.

NUMBA_NRT_STATS must be set before numba is imported, so the measurements run
in a subprocess that prints JSON.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    r"""
    import itertools, json, sys, tracemalloc
    import numpy as np
    from numba import njit
    from numba.core.runtime import rtsys
    import streamgru as sg
    from streamgru.kernels import config

    # one kernel call per method: a large StreamBatch call split across
    # threads makes one call per thread, each registering its own arguments
    config.THREADS = 1

    # big input and output vectors: a hidden copy of either would show in
    # tracemalloc's peak (numpy reports its data buffers to tracemalloc)
    I, H, O, T, N = 400, 16, 400, 32, 3
    rng = np.random.default_rng(0)
    if sys.argv[1] in ("gru", "int8"):  # int8: the same model's weights stored as int8
        m = sg.Model([
            sg.GRU.from_torch(rng.normal(size=(3 * H, I)) * 0.02, rng.normal(size=(3 * H, H)) * 0.1),
            sg.Dense(rng.normal(size=(O, H)) * 0.1, None, "tanh"),
        ])
        if sys.argv[1] == "int8":
            m = m.quantize("int8")
    elif sys.argv[1] == "skip":  # the model-level input skip and output gain post-op
        m = sg.Model([
            sg.GRU.from_torch(rng.normal(size=(3 * H, I)) * 0.02, rng.normal(size=(3 * H, H)) * 0.1),
            sg.Dense(rng.normal(size=(O, H)) * 0.1, None, "tanh"),
        ], input_skip=0, output_gain=0.5)
    elif sys.argv[1] == "conv":  # the Conv1d ring (grouped, dilated) and the norm kernels
        m = sg.Model([
            sg.Conv1d(rng.normal(size=(H, I // 4, 3)) * 0.05, rng.normal(size=H), dilation=5,
                      groups=4, activation="relu"),
            sg.BatchNorm(rng.normal(size=H), rng.random(H) + 0.5), sg.PReLU(rng.random(H)),
            sg.LayerNorm(H, rng.normal(size=H), rng.normal(size=H)),
            sg.Conv1d(rng.normal(size=(O, H, 2)) * 0.1, dilation=3),
        ])
    elif sys.argv[1] == "latency":  # a "same" conv and a stride-1 pool: a warm-up, then the delay
        m = sg.Model([
            sg.Conv1d(rng.normal(size=(H, I, 3)) * 0.05, padding="same", activation="relu"),
            sg.MaxPool1d(H, 3, 1, 1), sg.Dense(rng.normal(size=(O, H)) * 0.1),
        ])
    elif sys.argv[1] == "down":  # a strided conv and a pool: one row every 2 inputs
        m = sg.Model([
            sg.Conv1d(rng.normal(size=(H, I, 3)) * 0.05, stride=2, padding=1),
            sg.AvgPool1d(H, 2, 1), sg.Dense(rng.normal(size=(O, H)) * 0.1),
        ])
    elif sys.argv[1] == "graph":  # a graph: residual, gate, blend, mul, slice, skip sum
        x = sg.Input(I)
        h = sg.Conv1d(rng.normal(size=(H, I, 1)) * 0.05)(x)
        z = sg.Conv1d(rng.normal(size=(2 * H, H, 3)) * 0.1, dilation=4)(h)
        g = z.gate() + z.blend("relu")
        h2 = h + sg.Conv1d(rng.normal(size=(H, H, 1)) * 0.1)(g * z[:H])
        skip = g + h2.act("tanh") * 0.5
        m = sg.Model(sg.Dense(rng.normal(size=(O, H)) * 0.1, None, "tanh")(skip))
    else:  # the LSTM (projection, peepholes, clip) and relu RNN kernels, an LSTM last
        Hc, P = 6, 3
        m = sg.Model([
            sg.LSTM(rng.normal(size=(4 * Hc, I)) * 0.02, rng.normal(size=(4 * Hc, P)) * 0.3,
                    weight_hr=rng.normal(size=(P, Hc)) * 0.3,
                    peepholes=rng.normal(size=(3, Hc)), clip=2.0),
            sg.RNN(rng.normal(size=(5, P)), rng.normal(size=(5, 5)) * 0.3, activation="relu"),
            sg.LSTM(rng.normal(size=(4 * O, 5)) * 0.1, rng.normal(size=(4 * O, O)) * 0.02),
        ])
    f = m.dtype
    s = m.stream()
    b = m.streams(N)
    x, y = np.ones(I, f), np.empty(O, f)
    R = T // m.stride  # rows out per T inputs (whatever the phase, for a stride of 1 or 2)
    X, Y = np.ones((T, I), f), np.empty((R, O), f)
    XB, YB = np.ones((N, I), f), np.empty((N, O), f)
    XP, YP = np.ones((N, T, I), f), np.empty((N, R, O), f)

    def answered(f):
        # a downsampling model (stride 2) answers one input of two: two calls, the one that did
        if m.stride == 1:
            return f
        def g():
            a = f()
            b = f()
            return b if a is None else a
        return g

    @njit
    def noop3(a, b, c):
        return 0

    @njit
    def noop6(a, b, c, d, e, g):
        return 0

    cases = {
        # step's fast path is a builtin that bypasses numba's dispatcher:
        # its baseline is no registration at all
        "step": (answered(lambda: s.step(x, out=y)), lambda: None, y),
        "process": (lambda: s.process(X, out=Y), lambda: noop3(X, Y, s._buf), Y),
        "batch_step": (
            answered(lambda: b.step(XB, out=YB)),
            answered(lambda: noop6(XB, YB, b._w, b._meta, b._states, b._scratch)),
            YB,
        ),
        "batch_process": (
            lambda: b.process(XP, out=YP),
            lambda: noop6(XP, YP, b._w, b._meta, b._states, b._scratch),
            YP,
        ),
    }

    def nrt_per_call(fn, n=2000):
        a = rtsys.get_allocation_stats()
        for _ in range(n):
            fn()
        z = rtsys.get_allocation_stats()
        return {k: (getattr(z, k) - getattr(a, k)) / n for k in ("alloc", "free", "mi_alloc", "mi_free")}

    def numpy_calls(fn):
        calls = []
        def prof(frame, event, arg):
            if event == "c_call":
                calls.append(f"{getattr(arg, '__module__', None)}.{getattr(arg, '__qualname__', arg)}")
        sys.setprofile(prof)
        try:
            fn()
        finally:
            sys.setprofile(None)
        # the fast step builtin (kernels/fastcall.py) is the kernel itself
        return [c for c in calls if "setprofile" not in c and not c.startswith("streamgru.")]

    def traced(fn, n):
        fn()
        tracemalloc.start()
        fn()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in itertools.repeat(None, n):  # no int objects left alive by the loop
            fn()
        cur, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return {"growth": cur - base, "peak_over_base": peak - base}

    out = {"nbytes_in": int(x.nbytes), "nbytes_out": int(y.nbytes)}
    for name, (fn, noop, dst) in cases.items():
        fn(); noop()  # compile / load from cache first
        out[name] = {
            "returns_out": fn() is dst,
            "nrt": nrt_per_call(fn),
            "nrt_baseline": nrt_per_call(noop),
            "numpy_calls": numpy_calls(fn),
            "traced": traced(fn, {"process": 2000, "batch_process": 500}.get(name, 20000)),
        }
    # the probes can see an allocation when there is one
    out["control"] = {
        "numpy_calls": numpy_calls(answered(lambda: s.step(x))),
        "traced": traced(lambda: s.step(x.astype(np.float64)), 200),
    }

    @njit
    def noop1(a):
        return 0

    @njit
    def alloc_kernel(a):
        return np.empty(a.size).size

    alloc_kernel(x); noop1(x)
    out["control"]["nrt"] = nrt_per_call(lambda: alloc_kernel(x))
    out["control"]["nrt_baseline"] = nrt_per_call(lambda: noop1(x))
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module", params=["gru", "cells", "skip", "conv", "int8", "latency", "down", "graph"])
def probe(request):
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    res = subprocess.run(
        [sys.executable, "-c", PROBE, request.param],
        env=env, capture_output=True, text=True, timeout=1500,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_probes_detect_allocations(probe):
    """Without out= a fresh array is made: the probes must see it, else the
    zero results below would prove nothing."""
    c = probe["control"]
    assert any("empty" in call for call in c["numpy_calls"]), c["numpy_calls"]
    assert c["traced"]["peak_over_base"] >= probe["nbytes_in"]  # the float32 copy of x
    assert c["nrt"]["alloc"] > c["nrt_baseline"]["alloc"]
    assert c["nrt"]["mi_alloc"] > c["nrt_baseline"]["mi_alloc"]


@pytest.mark.parametrize("path", ["step", "process", "batch_step", "batch_process"])
def test_out_path_allocates_nothing(probe, path):
    r = probe[path]
    assert r["returns_out"]
    # numba: exactly the call boundary's own registrations, nothing more
    assert r["nrt"] == r["nrt_baseline"], (r["nrt"], r["nrt_baseline"])
    assert r["nrt"]["alloc"] == r["nrt"]["free"]
    # no numpy function is called in the Python wrapper
    assert r["numpy_calls"] == [], r["numpy_calls"]
    # no growth over 20,000 steps, and no transient buffer the size of x or y
    assert r["traced"]["growth"] == 0, r["traced"]
    assert r["traced"]["peak_over_base"] < min(probe["nbytes_in"], probe["nbytes_out"]), r["traced"]
