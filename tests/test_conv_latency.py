"""Padded ("same", "valid", symmetric, asymmetric) and strided convolutions and
pooling over time, streamed against the offline reference.

tests/reference.py computes each model over the whole padded sequence the
way PyTorch does (``run_padded``). The stream's contract: with total stride
1, step t gives the offline output at t - latency (zeros before); a
downsampling model produces the offline rows in order, the j-th of each
layer at its input ``latency + j * stride``. Every path (step, process,
uneven chunks, StreamBatch step and process; float32 and float64) is held
to it, and snapshots taken in the middle of a warm-up or a stride carry on
exactly.
"""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamgru as sg

import reference as ref
from test_cells import build as build_cells
from test_cells import make_dense, make_gru
from test_conv import make_layernorm

FAST = settings(max_examples=25, deadline=None)
ACTS = [None, "relu", "tanh"]


def make_conv(rng, I, spec):
    groups = I if spec["depthwise"] else 1
    O = groups * spec["per_group"]
    k, d, s = spec["k"], spec["d"], spec["stride"]
    L = (k - 1) * d
    pad = spec["padding"]
    if pad == "left":  # a (left, right) pair
        pad = (spec["left"] % (L + 1), spec["right"])
    elif pad == "int":
        pad = spec["left"] % (L // 2 + 1)
    elif pad == "same" and s > 1:
        pad = "valid"
    W = rng.normal(size=(O, I // groups, k)) / np.sqrt(k * I / groups)
    return sg.Conv1d(W, rng.normal(size=O) * 0.3, dilation=d, groups=groups,
                     activation=spec["act"], padding=pad, stride=s)


def make_pool(rng, I, spec):
    k, s = spec["k"], spec["stride"]
    if spec["max"]:
        L = (k - 1) * spec["d"]
        return sg.MaxPool1d(I, k, s, spec["left"] % (L + 1), spec["d"])
    return sg.AvgPool1d(I, k, s, spec["left"] % k, spec["include_pad"])


conv_specs = st.fixed_dictionaries({
    "k": st.integers(1, 4), "d": st.integers(1, 3), "stride": st.sampled_from([1, 1, 2, 3]),
    "depthwise": st.booleans(), "per_group": st.integers(1, 3), "act": st.sampled_from(ACTS),
    "padding": st.sampled_from(["causal", "same", "valid", "left", "int"]),
    "left": st.integers(0, 8), "right": st.integers(0, 3),
})
pool_specs = st.fixed_dictionaries({
    "max": st.booleans(), "k": st.integers(1, 4), "stride": st.integers(1, 3),
    "d": st.integers(1, 2), "left": st.integers(0, 4), "include_pad": st.booleans(),
})
MAKERS = {"conv": make_conv, "pool": make_pool, "gru": make_gru, "dense": make_dense,
          "layernorm": make_layernorm}
SPECS = {"conv": conv_specs, "pool": pool_specs,
         "gru": st.fixed_dictionaries({"H": st.integers(1, 4), "reset_after": st.booleans()}),
         "dense": st.fixed_dictionaries({"O": st.sampled_from([1, 3]), "act": st.sampled_from(ACTS)}),
         "layernorm": st.fixed_dictionaries({"eps": st.floats(1e-3, 0.1), "affine": st.booleans()})}
choice = st.sampled_from(["conv", "conv", "conv", "pool", "pool", "gru", "dense",
                          "layernorm"]).flatmap(lambda k: st.tuples(st.just(k), SPECS[k]))


def rows_after(model, T):
    """Rows a stream has produced after T inputs from the start: each layer
    emits its offline output j at its input latency + j * stride."""
    n = T
    for layer in model.layers:
        D, s = getattr(layer, "latency", 0), getattr(layer, "stride", 1)
        n = 0 if n <= D else 1 + (n - 1 - D) // s
    return n


def expected(model, X):
    """What a stream of ``model`` gives for X from its initial state."""
    off = ref.run_padded(model, X)
    T = len(X)
    if model.stride == 1:
        D = model.latency
        want = np.zeros((T, model.output_size))
        want[D:] = off[: max(0, T - D)]
        return want
    return off[: rows_after(model, T)]


def check_paths(model, T, seed, ref_tol, path_tol):
    rng = np.random.default_rng(seed + 1)
    n = 3
    X = rng.normal(size=(n, T, model.input_size)).astype(model.dtype)
    want = expected(model, X[0])
    s = model.stream()
    Y = s.process(X[0])
    assert Y.shape == want.shape
    np.testing.assert_allclose(Y, want, rtol=0, atol=ref_tol)
    after = s.get_state()
    s.reset()
    rows = [s.step(x) for x in X[0]]
    if model.stride == 1:
        assert all(r is not None for r in rows)
    Ys = np.array([r for r in rows if r is not None]).reshape(Y.shape)
    np.testing.assert_allclose(Ys, Y, rtol=0, atol=path_tol)
    np.testing.assert_allclose(s.get_state(), after, rtol=0, atol=path_tol)
    # uneven chunks cross tile boundaries mid warm-up and mid stride
    s.reset()
    cuts = np.sort(rng.integers(0, T + 1, size=3))
    chunks = np.split(X[0], cuts)
    counts = []
    parts = []
    for c in chunks:
        if model.stride > 1:
            counts.append(s.rows_for(len(c)))
        parts.append(s.process(c))
        if model.stride > 1:
            assert len(parts[-1]) == counts[-1]
    np.testing.assert_allclose(np.concatenate(parts), Y, rtol=0, atol=path_tol)
    b = model.streams(n)
    Yb = b.process(X)
    for i in range(n):
        np.testing.assert_allclose(Yb[i], expected(model, X[i]), rtol=0, atol=ref_tol)
    states = b.get_state()
    b.reset()
    steps = [b.step(X[:, t]) for t in range(T)]
    Ybs = np.stack([r for r in steps if r is not None], axis=1) if any(
        r is not None for r in steps) else np.zeros_like(Yb)
    np.testing.assert_allclose(Ybs, Yb, rtol=0, atol=path_tol)
    np.testing.assert_allclose(b.get_state(), states, rtol=0, atol=path_tol)


@pytest.mark.parametrize("dtype,ref_tol,path_tol", [(np.float64, 1e-10, 1e-12),
                                                     (np.float32, 2e-4, 2e-5)])
@FAST
@given(I=st.integers(1, 4), seed=st.integers(0, 2**31),
       parts=st.lists(choice, min_size=1, max_size=4), T=st.integers(1, 45))
def test_padded_strided_chains(dtype, ref_tol, path_tol, I, seed, parts, T):
    model = build_cells(I, seed, parts, dtype, MAKERS)
    check_paths(model, T, seed, ref_tol=ref_tol, path_tol=path_tol)


def cnn(dtype, stride):
    rng = np.random.default_rng(3)
    layers = [sg.Conv1d(rng.normal(size=(6, 3, 5)) * 0.4, rng.normal(size=6) * 0.2,
                        padding="same", activation="relu"),
              sg.Conv1d(rng.normal(size=(6, 1, 3)) * 0.5, dilation=2, groups=6, padding=(1, 3),
                        stride=stride)]
    if stride > 1:
        layers.append(sg.MaxPool1d(6, 2))
    layers += [make_gru(rng, 6, {"H": 5, "reset_after": True}), sg.Dense(rng.normal(size=(2, 5)))]
    return sg.Model(layers, dtype=dtype)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
@pytest.mark.parametrize("stride", [1, 2])
def test_cnn_gru_1000_steps(dtype, tol, stride):
    model = cnn(dtype, stride)
    assert (model.latency, model.stride) == ((2 + 3, 1) if stride == 1 else (2 + 3 + 2, 4))
    check_paths(model, 1000, 5, ref_tol=tol, path_tol=1e-12 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride,cut", [(1, 2), (1, 4), (2, 3), (2, 9)])
def test_snapshot_in_the_middle_of_the_warm_up(dtype, stride, cut):
    """The warm-up counter and the stride's phase are part of the state: a
    snapshot taken before the first output (or between two) carries on exactly
    in another stream, and reset() goes back to the start."""
    model = cnn(dtype, stride)
    X = np.random.default_rng(0).normal(size=(60, 3)).astype(dtype)
    s = model.stream()
    whole = s.process(X)
    s.reset()
    first = s.process(X[:cut])
    snap = s.get_state()
    assert snap.any()  # mid warm-up (cut <= latency) or mid stride
    rest = s.process(X[cut:])
    # float32 GRU sums depend on where the tiles start: within rounding
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(np.concatenate([first, rest]), whole, rtol=0, atol=tol)
    other = model.stream()
    other.set_state(snap)
    np.testing.assert_array_equal(other.process(X[cut:]), rest)
    s.set_state(snap)
    steps = [s.step(x) for x in X[cut:]]
    np.testing.assert_allclose(np.array([r for r in steps if r is not None]), rest, rtol=0, atol=tol)
    b = model.streams(2)
    b.set_state(np.stack([snap, snap]))
    np.testing.assert_array_equal(b.process(np.stack([X[cut:]] * 2))[1], rest)
    s.reset()
    np.testing.assert_array_equal(s.get_state(), model.initial_state)
    np.testing.assert_array_equal(s.process(X), whole)


def test_warm_up_outputs_are_zeros_and_then_the_delayed_output():
    """y_t = x_{t-1} + x_t + x_{t+1} centred: one step late, zeros first."""
    m = sg.Model([sg.Conv1d(np.ones((1, 1, 3)), [10.0], padding="same")], dtype=np.float64)
    s = m.stream()
    y = np.full(1, 7.0)
    assert s.step([1.0], out=y) is y and y[0] == 0.0
    np.testing.assert_array_equal(s.step([2.0]), [10.0 + 1 + 2])
    np.testing.assert_array_equal(s.step([4.0]), [10.0 + 1 + 2 + 4])
    assert m.latency == 1 and m.stride == 1


def test_downsampling_step_returns_none_and_leaves_out_alone():
    m = sg.Model([sg.Conv1d(np.ones((1, 1, 2)), stride=3)], dtype=np.float64)  # y_j = x_{3j-1} + x_{3j}
    s = m.stream()
    out = np.full(1, -5.0)
    got = [s.step([float(t)], out=out) for t in range(7)]
    assert [g is out for g in got] == [True, False, False, True, False, False, True]
    assert [g is None for g in got] == [False, True, True, False, True, True, False]
    np.testing.assert_array_equal(out, [5.0 + 6.0])
    assert s.rows_for(0) == 0 and s.rows_for(2) == 0 and s.rows_for(3) == 1 and s.rows_for(7) == 2
    with pytest.raises(sg.InputError, match=r"\(2, 1\)"):
        s.process(np.zeros((7, 1)), out=np.empty((7, 1)))  # 7 more inputs give 2 rows
    before = s.get_state()
    with pytest.raises(sg.InputError, match="finite"):
        s.step([np.nan])  # an input that would emit nothing is still checked
    X = np.zeros((9, 1))
    X[8] = np.inf
    with pytest.raises(sg.InputError, match="row 8"):
        s.process(X)
    np.testing.assert_array_equal(s.get_state(), before)


def test_batch_streams_must_share_the_phase():
    m = sg.Model([sg.AvgPool1d(2, 2)], dtype=np.float64)
    b = m.streams(3)
    assert b.step(np.ones((3, 2))) is None
    np.testing.assert_array_equal(b.step(np.full((3, 2), 3.0)), np.full((3, 2), 2.0))
    b.step(np.ones((3, 2)))
    b.reset(1)
    before = b.get_state()
    with pytest.raises(sg.InputError, match="different phases"):
        b.step(np.ones((3, 2)))
    with pytest.raises(sg.InputError, match="stream 0 would give 2 rows for 3 inputs, stream 1 1"):
        b.process(np.ones((3, 3, 2)))
    np.testing.assert_array_equal(b.get_state(), before)
    # 4 inputs give every stream 2 rows, each at its own phase
    Y = b.process(np.arange(24.0).reshape(3, 4, 2))
    np.testing.assert_array_equal(Y[0], [[0.5, 1.0], [3.0, 4.0]])  # (1 + x_0) / 2, (x_1 + x_2) / 2
    np.testing.assert_array_equal(Y[1], [[9.0, 10.0], [13.0, 14.0]])
    b.reset()
    assert b.process(np.ones((3, 5, 2))).shape == (3, 2, 2)


def test_latency_and_stride_of_a_model():
    rng = np.random.default_rng(1)
    layers = [sg.Conv1d(rng.normal(size=(2, 2, 5)), padding="same"),      # 2 ahead
              sg.Conv1d(rng.normal(size=(2, 2, 3)), stride=2, padding=0),  # 2 ahead
              sg.AvgPool1d(2, 3, padding=1),                              # 1 ahead, at rate 2
              sg.Conv1d(rng.normal(size=(2, 2, 2)), padding="valid")]     # 1 ahead, at rate 6
    m = sg.Model(layers)
    assert (m.stride, m.latency) == (6, 2 + 2 + 1 * 2 + 1 * 6)
    assert sg.Model(layers[:1]).latency == 2
    with pytest.raises(sg.WeightsError, match="input_skip.*latency of 2"):
        sg.Model(layers[:1], input_skip=0)


@pytest.mark.parametrize("make,match", [
    (lambda: sg.Conv1d(np.ones((1, 1, 3)), padding=3), "3 zeros on the left, more than"),
    (lambda: sg.Conv1d(np.ones((1, 1, 3)), padding=(0, -1)), "non-negative"),
    (lambda: sg.Conv1d(np.ones((1, 1, 3)), padding="full"), "padding='full'"),
    (lambda: sg.Conv1d(np.ones((1, 1, 3)), padding="same", stride=2), "stride 1"),
    (lambda: sg.Conv1d(np.ones((1, 1, 3)), stride=0), "stride"),
    (lambda: sg.MaxPool1d(2, 3, padding=3), "padding 3 is more than"),
    (lambda: sg.AvgPool1d(2, 0), "kernel_size"),
    (lambda: sg.AvgPool1d(2, 2, count_include_pad="yes"), "count_include_pad"),
])
def test_bad_settings_are_weights_errors(make, match):
    with pytest.raises(sg.WeightsError, match=match):
        make()


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_native_round_trip(tmp_path, suffix):
    for stride in (1, 2):
        for dtype in (np.float32, np.float64):
            m = sg.Model(list(cnn(np.float64, stride).layers) + [sg.AvgPool1d(2, 3, 1, 1, False)],
                         dtype=dtype)
            p = str(tmp_path / f"m{suffix}")
            sg.save(m, p)
            back = sg.load(p)
            assert back == m and back.dtype == m.dtype
            assert (back.latency, back.stride) == (m.latency, m.stride)
            X = np.random.default_rng(2).normal(size=(50, 3)).astype(dtype)
            np.testing.assert_array_equal(back.stream().process(X), m.stream().process(X))


def test_info_shows_latency_and_stride(tmp_path, capsys):
    from streamgru import cli

    p = str(tmp_path / "m.npz")
    sg.save(cnn(np.float32, 2), p)
    assert cli.main(["info", p]) == 0
    out = capsys.readouterr().out
    assert re.search(r"latency: +7 samples", out) and re.search(r"stride: +4 ", out)
    assert re.search(r"Conv1d .*padding \(2, 2\), delay 2", out)
    assert re.search(r"Conv1d .*padding \(1, 3\), delay 3, stride 2", out)
    assert re.search(r"MaxPool1d +6 -> 6 .*kernel 2, stride 2", out)


def test_kinds_sharing_a_kernel_each_run_their_own_layer():
    """BatchNorm and LayerNorm share one kernel (one C function, calls.py):
    each layer still computes its own kind."""
    norms = sg.Model([sg.BatchNorm([0.3, 0.2], [1.2, 1.0]), sg.LayerNorm(2)], dtype=np.float64)
    x = np.array([0.5, 0.1])
    y = np.full(2, 7.0)
    want = ref.layernorm(norms.layers[1], ref.batchnorm(norms.layers[0], x))
    np.testing.assert_allclose(norms.stream().step(x, out=y), want, rtol=0, atol=1e-12)


def test_cli_run_prints_only_the_rows_produced(tmp_path, monkeypatch, capsys):
    import io
    import sys

    from streamgru import cli

    m = sg.Model([sg.Conv1d(np.ones((1, 1, 2)), stride=3)], dtype=np.float64)  # y_j = x_{3j-1} + x_{3j}
    p = str(tmp_path / "down.npz")
    sg.save(m, p)
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"{t}\n" for t in range(8))))
    assert cli.main(["run", p]) == 0
    assert [float(v) for v in capsys.readouterr().out.split()] == [0.0, 5.0, 11.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_any_state_is_read_the_same_by_the_kernels_and_rows_for(dtype):
    """Counters, ring positions and sample counts from set_state may be any
    finite numbers: out of range they read as 0, and rows_for counts what the
    kernels then emit, in process, step and a batch."""
    model = sg.Model(list(cnn(np.float64, 2).layers[:3]) + [sg.AvgPool1d(6, 3, 2, 1, False)],
                     dtype=dtype)
    rng = np.random.default_rng(7)
    X = rng.normal(size=(40, 3)).astype(dtype)
    for trial in range(20):
        state = rng.normal(size=model.state_size) * 0.5
        off = 0
        for layer in model.layers:
            if layer.counter_index >= 0:
                c = layer.latency + layer.stride
                state[off + layer.counter_index] = rng.choice(
                    [rng.integers(c), -1.0, c, c + 0.5, rng.integers(c) + 0.25, 1e9])
            if layer.kind != "conv1d":  # a pool's position and count of samples
                state[off : off + 2] = rng.choice([-3.0, 0.5, 2.0, 7.0, 1e9], size=2)
            off += layer.state_size
        s = model.stream()
        s.set_state(state)
        n = s.rows_for(len(X))
        Y = s.process(X)
        assert Y.shape == (n, model.output_size)
        s.set_state(state)
        rows = [r for r in (s.step(x) for x in X) if r is not None]
        np.testing.assert_allclose(np.array(rows).reshape(Y.shape), Y, rtol=0,
                                   atol=1e-12 if dtype == np.float64 else 1e-5)
        b = model.streams(2)
        b.set_state(np.stack([state, state]))
        np.testing.assert_array_equal(b.process(np.stack([X, X]))[1], Y)
