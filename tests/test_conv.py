"""Conv1d, BatchNorm, LayerNorm and PReLU streamed against the offline reference.

tests/reference.py computes each chain over the whole sequence at once (the
convolution as a sum over taps of the zero-padded sequence); every path here
(step, process, process in uneven chunks, batch step, batch process; float32
and float64) must give the same numbers, from random states too (the ring's
contents and position are part of the state).
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

FAST = settings(max_examples=30, deadline=None)
ACTS = [None, "relu", "tanh", ("leaky_relu", 0.1), "elu"]

conv_specs = st.fixed_dictionaries({
    "k": st.integers(1, 4),
    "d": st.integers(1, 5),
    "groups": st.sampled_from(["one", "some", "depthwise"]),
    "per_group": st.integers(1, 3),  # output channels per group
    "act": st.sampled_from(ACTS),
})
norm_specs = st.fixed_dictionaries({
    "eps": st.floats(1e-3, 0.1),
    "affine": st.booleans(),
    "shared": st.booleans(),  # PReLU: one slope for all channels
})


def make_conv(rng, I, spec):
    groups = {"one": 1, "depthwise": I}.get(spec["groups"])
    if groups is None:
        groups = max(g for g in (1, 2, 3) if I % g == 0)
    O = groups * spec["per_group"]
    k = spec["k"]
    W = rng.normal(size=(O, I // groups, k)) / np.sqrt(k * I / groups)
    return sg.Conv1d(W, rng.normal(size=O) * 0.3, dilation=spec["d"], groups=groups,
                     activation=spec["act"])


def make_batchnorm(rng, I, spec):
    return sg.BatchNorm(rng.normal(size=I), rng.random(I) + 0.2,
                        rng.normal(size=I) if spec["affine"] else None,
                        rng.normal(size=I) if spec["affine"] else None, eps=spec["eps"])


def make_layernorm(rng, I, spec):
    if spec["affine"]:
        return sg.LayerNorm(I, rng.normal(size=I), rng.normal(size=I), eps=spec["eps"])
    return sg.LayerNorm(I, eps=spec["eps"])


def make_prelu(rng, I, spec):
    return sg.PReLU(rng.random(1 if spec["shared"] else I), size=I)


MAKERS = {"conv": make_conv, "batchnorm": make_batchnorm, "layernorm": make_layernorm,
          "prelu": make_prelu, "gru": make_gru, "dense": make_dense}
SPECS = {"conv": conv_specs, "batchnorm": norm_specs, "layernorm": norm_specs,
         "prelu": norm_specs,
         "gru": st.fixed_dictionaries({"H": st.integers(1, 5), "reset_after": st.booleans()}),
         "dense": st.fixed_dictionaries({"O": st.sampled_from([1, 3, 17]), "act": st.sampled_from(ACTS)})}
choice = st.sampled_from(["conv", "conv", "conv", "batchnorm", "layernorm", "prelu", "gru",
                          "dense"]).flatmap(lambda k: st.tuples(st.just(k), SPECS[k]))


def build(I, seed, parts, dtype):
    return build_cells(I, seed, parts, dtype, MAKERS)


def random_state(model, rng):
    """Random values everywhere; each ring position a random slot (or, now
    and then, a value outside the ring, which the kernels read as 0)."""
    state = rng.normal(size=model.state_size) * 0.5
    off = 0
    for layer in model.layers:
        if layer.kind == "conv1d" and layer.state_size:
            state[off] = rng.choice([rng.integers(layer.history), -2.0, layer.history + 0.5])
        off += layer.state_size
    return state.astype(model.dtype)


def check_paths(model, T, seed, ref_tol, path_tol):
    rng = np.random.default_rng(seed + 1)
    n = 3
    X = rng.normal(size=(n, T, model.input_size)).astype(model.dtype)
    S0 = np.stack([random_state(model, rng) for _ in range(n)])
    S0[0] = 0  # the model's initial state: the offline zero padding
    for i in range(n):
        want, want_state = ref.run_offline(model, X[i], S0[i])
        s = model.stream()
        s.set_state(S0[i])
        Y = s.process(X[i])
        np.testing.assert_allclose(Y, want, rtol=0, atol=ref_tol)
        np.testing.assert_allclose(s.get_state(), want_state, rtol=0, atol=ref_tol)
        s.set_state(S0[i])
        Ys = np.array([s.step(x) for x in X[i]]).reshape(Y.shape)
        np.testing.assert_allclose(Ys, Y, rtol=0, atol=path_tol)
        np.testing.assert_allclose(s.get_state(), want_state, rtol=0, atol=ref_tol)
        # uneven chunks cross tile boundaries mid receptive field
        s.set_state(S0[i])
        cuts = np.sort(rng.integers(0, T + 1, size=3))
        Yc = np.concatenate([s.process(c) for c in np.split(X[i], cuts)])
        np.testing.assert_allclose(Yc, Y, rtol=0, atol=path_tol)
    b = model.streams(n)
    b.set_state(S0)
    Yb = b.process(X)
    after = b.get_state()
    b.set_state(S0)
    Ybs = np.stack([b.step(X[:, t]) for t in range(T)], axis=1)
    np.testing.assert_allclose(Ybs, Yb, rtol=0, atol=path_tol)
    np.testing.assert_allclose(b.get_state(), after, rtol=0, atol=path_tol)
    for i in range(n):
        want, want_state = ref.run_offline(model, X[i], S0[i])
        np.testing.assert_allclose(Yb[i], want, rtol=0, atol=ref_tol)
        np.testing.assert_allclose(after[i], want_state, rtol=0, atol=ref_tol)


@pytest.mark.parametrize("dtype,ref_tol,path_tol", [(np.float64, 1e-10, 1e-12),
                                                     (np.float32, 2e-4, 2e-5)])
@FAST
@given(I=st.integers(1, 6), seed=st.integers(0, 2**31),
       parts=st.lists(choice, min_size=1, max_size=4), T=st.integers(1, 45))
def test_conv_chains(dtype, ref_tol, path_tol, I, seed, parts, T):
    check_paths(build(I, seed, parts, dtype), T, seed, ref_tol=ref_tol, path_tol=path_tol)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_tcn_chain_1000_steps(dtype, tol):
    """Dilations 1..16 with PReLU and LayerNorm between, a GRU and a head."""
    rng = np.random.default_rng(4)
    layers, I = [], 3
    for d in (1, 2, 4, 8, 16):
        layers.append(make_conv(rng, I, {"k": 3, "d": d, "groups": "one", "per_group": 6,
                                         "act": None}))
        layers += [sg.PReLU(rng.random(6)), sg.LayerNorm(6, rng.normal(size=6), rng.normal(size=6))]
        I = 6
    layers += [make_gru(rng, 6, {"H": 5, "reset_after": True}), sg.Dense(rng.normal(size=(2, 5)))]
    check_paths(sg.Model(layers, dtype=dtype), 1000, 4, ref_tol=tol,
                path_tol=1e-12 if dtype == np.float64 else 1e-5)


def test_conv_taps_are_the_documented_lags():
    """y_t = sum_i W[0, 0, i] x_{t - (k-1-i) d}: a unit impulse comes out at
    the lags of the taps, weighted by them."""
    w = np.array([[[3.0, 5.0, 7.0]]])
    s = sg.Model([sg.Conv1d(w, dilation=4)], dtype=np.float64).stream()
    x = np.zeros((12, 1))
    x[0] = 1.0
    y = s.process(x)[:, 0]
    want = np.zeros(12)
    want[0], want[4], want[8] = 7.0, 5.0, 3.0
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_snapshot_in_the_middle_of_the_receptive_field(dtype):
    model = build(4, 3, [("conv", {"k": 3, "d": 7, "groups": "some", "per_group": 2, "act": "relu"}),
                         ("conv", {"k": 2, "d": 5, "groups": "depthwise", "per_group": 1, "act": None}),
                         ("gru", {"H": 3, "reset_after": True})], dtype)
    X = np.random.default_rng(0).normal(size=(60, 4)).astype(dtype)
    s = model.stream()
    whole = s.process(X)
    s.reset()
    s.process(X[:9])  # 9 < receptive field 15 + 5: the rings are partly filled
    snap = s.get_state()
    rest = s.process(X[9:])
    # the GRU's float32 sums depend on where tiles start: within rounding
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(rest, whole[9:], rtol=0, atol=tol)
    s.set_state(snap)
    np.testing.assert_allclose(np.array([s.step(x) for x in X[9:]]), rest, rtol=0, atol=tol)
    copy = model.stream()
    copy.set_state(snap)
    np.testing.assert_array_equal(copy.process(X[9:]), rest)
    s.reset()
    np.testing.assert_array_equal(s.get_state(), np.zeros(model.state_size))
    np.testing.assert_array_equal(s.process(X), whole)


def test_bad_input_leaves_the_ring_unchanged():
    model = build(3, 5, [("conv", {"k": 4, "d": 3, "groups": "one", "per_group": 4, "act": None}),
                         ("layernorm", {"eps": 1e-3, "affine": True, "shared": False})], np.float64)
    s = model.stream()
    s.process(np.ones((5, 3)))
    before = s.get_state()
    with pytest.raises(sg.InputError, match="finite"):
        s.step([0.0, np.nan, 1.0])
    np.testing.assert_array_equal(s.get_state(), before)
    X = np.ones((40, 3))
    X[33, 2] = np.inf
    with pytest.raises(sg.InputError, match="row 33"):
        s.process(X)
    np.testing.assert_array_equal(s.get_state(), before)
    b = model.streams(2)
    b.process(np.ones((2, 4, 3)))
    before = b.get_state()
    Xb = np.ones((2, 3))
    Xb[1, 0] = np.nan
    with pytest.raises(sg.InputError, match="stream 1"):
        b.step(Xb)
    np.testing.assert_array_equal(b.get_state(), before)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_native_round_trip_is_bit_exact(tmp_path, suffix):
    rng = np.random.default_rng(8)
    layers = [sg.Conv1d(rng.normal(size=(6, 1, 3)), rng.normal(size=6), dilation=3, groups=2,
                        activation=("leaky_relu", 0.2)),
              sg.BatchNorm(rng.normal(size=6), rng.random(6) + 0.1, rng.normal(size=6), None, eps=1e-3),
              sg.PReLU([0.3], size=6), sg.LayerNorm(6, eps=1e-4), sg.PReLU(rng.random(6)),
              sg.LayerNorm(6, rng.normal(size=6), rng.normal(size=6)),
              sg.Conv1d(rng.normal(size=(2, 6, 1)))]
    for dtype in (np.float32, np.float64):
        m = sg.Model(layers, dtype=dtype)
        p = str(tmp_path / f"m{suffix}")
        sg.save(m, p)
        back = sg.load(p)
        assert back == m and back.dtype == m.dtype
        assert [type(l) for l in back.layers] == [type(l) for l in m.layers]
        assert back.layers[3].affine is False and back.layers[5].affine is True
        X = rng.normal(size=(50, 2)).astype(dtype)
        np.testing.assert_array_equal(back.stream().process(X), m.stream().process(X))


@pytest.mark.parametrize("make,match", [
    (lambda: sg.Conv1d(np.ones((3, 1, 2)), groups=2), "divisible by groups"),
    (lambda: sg.Conv1d(np.ones((2, 1, 2)), dilation=0), "dilation"),
    (lambda: sg.Conv1d(np.ones((2, 2)),), "tensor weight"),
    (lambda: sg.Conv1d(np.ones((2, 1, 2)), np.ones(3)), "tensor bias"),
    (lambda: sg.Conv1d(np.ones((2, 1, 2)), activation="softmax"), "softmax"),
    (lambda: sg.BatchNorm(np.zeros(2), [1.0, -1.0]), "running_var"),
    (lambda: sg.BatchNorm(np.zeros(2), np.ones(3)), "running_var"),
    (lambda: sg.LayerNorm(3, np.ones(2)), "tensor weight"),
    (lambda: sg.LayerNorm(2, eps=float("nan")), "eps"),
    (lambda: sg.PReLU(np.ones(3), size=4), "3 slopes for 4 channels"),
    (lambda: sg.PReLU([np.nan, 1.0]), "non-finite"),
])
def test_bad_layers_are_weights_errors(make, match):
    with pytest.raises(sg.WeightsError, match=match):
        make()


def test_conv_input_size_mismatch_names_the_layers():
    conv = sg.Conv1d(np.ones((4, 1, 3)), groups=2)  # 2 inputs
    with pytest.raises(sg.WeightsError, match="takes 2"):
        sg.Model([sg.Dense(np.ones((3, 1))), conv])


def test_batch_split_across_threads_keeps_each_ring(monkeypatch):
    """Threads sharing a StreamBatch call each use their own scratch (the
    conv products run there) and their own streams' rings."""
    from streamgru.kernels import config

    monkeypatch.setattr(config, "THREADS", 3)
    monkeypatch.setattr(config, "PARALLEL_MIN_WORK", 1)  # split every call
    model = build(4, 6, [("conv", {"k": 3, "d": 2, "groups": "one", "per_group": 5, "act": "relu"}),
                         ("conv", {"k": 2, "d": 3, "groups": "some", "per_group": 2, "act": None}),
                         ("layernorm", {"eps": 1e-3, "affine": True, "shared": False})], np.float64)
    rng = np.random.default_rng(6)
    n, T = 7, 30
    X = rng.normal(size=(n, T, 4))
    b = model.streams(n)
    Y = b.process(X)
    Y1 = b.step(X[:, 0])
    for i in range(n):
        s = model.stream()
        np.testing.assert_allclose(Y[i], s.process(X[i]), rtol=0, atol=1e-12)
        np.testing.assert_allclose(Y1[i], s.step(X[i, 0]), rtol=0, atol=1e-12)
        np.testing.assert_allclose(b.get_state()[i], s.get_state(), rtol=0, atol=1e-12)


def test_info_lists_the_conv_settings(tmp_path, capsys):
    from streamgru import cli

    rng = np.random.default_rng(9)
    m = sg.Model([sg.Conv1d(rng.normal(size=(4, 2, 3)), dilation=2, activation="relu"),
                  sg.BatchNorm(np.zeros(4), np.ones(4)), sg.PReLU([0.1], size=4), sg.LayerNorm(4)])
    p = str(tmp_path / "conv.npz")
    sg.save(m, p)
    assert cli.main(["info", p]) == 0
    out = capsys.readouterr().out
    assert re.search(r"Conv1d +2 -> 4 .*state 9, causal, kernel 3, dilation 2, groups 1, "
                     r"receptive field 5, activation relu", out)
    assert re.search(r"BatchNorm +4 -> 4 .*eps 1e-05", out)
    assert "one shared slope" in out and re.search(r"LayerNorm +4 -> 4", out)
