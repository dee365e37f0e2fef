"""GRU (+ Dense head) kernels against the float64 reference, and the four
kernel paths (Stream.step, Stream.process, StreamBatch.step, StreamBatch.process)
against each other."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
import streamgru as sg
from randmodels import random_model

# float64 paths differ only by summation order: agreement to 1e-12
F64_TOL = 1e-12
# float32 against the float64 reference after up to 200 steps; measured worst
# case with these weight scales is about 1e-6
F32_TOL = 1e-5


def run_all_paths(m, X, states):
    """Outputs and final states of X (n, T, I) from ``states`` (n, S) along all
    four kernel paths, plus the float64 reference."""
    n, T, _ = X.shape
    out = {}
    ys, fs = [], []
    for i in range(n):
        s = m.stream()
        s.set_state(states[i])
        ys.append(np.array([s.step(x) for x in X[i]]).reshape(T, m.output_size))
        fs.append(s.get_state())
    out["step"] = (np.array(ys), np.array(fs))
    ys, fs = [], []
    for i in range(n):
        s = m.stream()
        s.set_state(states[i])
        ys.append(s.process(X[i]))
        fs.append(s.get_state())
    out["process"] = (np.array(ys), np.array(fs))
    b = m.streams(n)
    b.set_state(states)
    y = np.stack([b.step(X[:, t]) for t in range(T)], axis=1) if T else np.zeros((n, 0, m.output_size))
    out["batch_step"] = (y, b.get_state())
    b = m.streams(n)
    b.set_state(states)
    out["batch_process"] = (b.process(X), b.get_state())
    ys, fs = [], []
    for i in range(n):
        y, f = ref.run_model(m, X[i], states[i])
        ys.append(y)
        fs.append(f)
    out["reference"] = (np.array(ys), np.array(fs))
    return out


cases = st.fixed_dictionaries(
    {
        "I": st.integers(1, 48),
        "H": st.integers(1, 96),
        "T": st.integers(1, 200),
        "n": st.integers(1, 8),
        "reset_after": st.booleans(),
        "head": st.booleans(),
        "dtype": st.sampled_from([np.float32, np.float64]),
        "seed": st.integers(0, 2**32 - 1),
    }
)


@settings(max_examples=35, deadline=None)
@given(cases)
def test_paths_agree_with_each_other_and_reference(c):
    rng = np.random.default_rng(c["seed"])
    m = random_model(rng, c["I"], c["H"], c["reset_after"], c["head"], c["dtype"])
    X = rng.normal(size=(c["n"], c["T"], c["I"])).astype(c["dtype"])
    states = rng.uniform(-1, 1, size=(c["n"], m.state_size))
    res = run_all_paths(m, X, states)
    y_ref, f_ref = res.pop("reference")
    y0, f0 = res["step"]
    assert y0.dtype == c["dtype"] and y0.shape == (c["n"], c["T"], m.output_size)
    for name, (y, f) in res.items():
        assert y.dtype == c["dtype"], name
        if c["dtype"] == np.float64:
            np.testing.assert_allclose(y, y0, rtol=0, atol=F64_TOL, err_msg=name)
            np.testing.assert_allclose(f, f0, rtol=0, atol=F64_TOL, err_msg=name)
            np.testing.assert_allclose(y, y_ref, rtol=0, atol=F64_TOL, err_msg=name)
            np.testing.assert_allclose(f, f_ref, rtol=0, atol=F64_TOL, err_msg=name)
        else:
            np.testing.assert_allclose(y, y_ref, rtol=0, atol=F32_TOL, err_msg=name)
            np.testing.assert_allclose(f, f_ref, rtol=0, atol=F32_TOL, err_msg=name)


@settings(max_examples=20, deadline=None)
@given(
    st.integers(1, 12), st.integers(1, 20), st.booleans(),
    st.sampled_from([None, 0.7, 2.5]), st.sampled_from(["sigmoid", "hard_sigmoid"]),
    st.integers(0, 2**32 - 1),
)
def test_clip_and_gate_activation_match_reference(I, H, reset_after, clip, gate, seed):
    """ONNX options: clip of every pre-activation and hard_sigmoid gates."""
    rng = np.random.default_rng(seed)
    m = random_model(rng, I, H, reset_after, True, np.float64, clip=clip, gate_activation=gate)
    X = rng.normal(size=(2, 40, I)) * 2
    states = rng.uniform(-1, 1, size=(2, m.state_size))
    res = run_all_paths(m, X, states)
    y_ref, f_ref = res.pop("reference")
    for name, (y, f) in res.items():
        np.testing.assert_allclose(y, y_ref, rtol=0, atol=F64_TOL, err_msg=name)
        np.testing.assert_allclose(f, f_ref, rtol=0, atol=F64_TOL, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset_after", [True, False])
def test_step_then_step_equals_process_of_both(dtype, reset_after):
    rng = np.random.default_rng(7)
    m = random_model(rng, 5, 11, reset_after, True, dtype)
    x, x2 = rng.normal(size=(2, 5))
    a = m.stream()
    y1, y2 = a.step(x).copy(), a.step(x2).copy()
    b = m.stream()
    Y = b.process([x, x2])
    tol = F64_TOL if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(Y, [y1, y2], rtol=0, atol=tol)
    np.testing.assert_allclose(a.get_state(), b.get_state(), rtol=0, atol=tol)


@pytest.mark.parametrize("split", [0, 1, 15, 16, 17, 33, 50])
def test_process_in_pieces_equals_process_at_once(split):
    """Tile boundaries (16 rows) and chunk boundaries do not change the numbers."""
    rng = np.random.default_rng(split)
    m = random_model(rng, 4, 9, True, True, np.float64)
    X = rng.normal(size=(50, 4))
    a = m.stream()
    whole = a.process(X)
    b = m.stream()
    parts = np.concatenate([b.process(X[:split]), b.process(X[split:])])
    np.testing.assert_allclose(parts, whole, rtol=0, atol=F64_TOL)
    np.testing.assert_allclose(b.get_state(), a.get_state(), rtol=0, atol=F64_TOL)


def test_two_gru_layers_and_heads_match_reference():
    """A deeper stack: GRU -> GRU (other variant) -> Dense(relu) -> Dense(sigmoid)."""
    rng = np.random.default_rng(3)
    from randmodels import random_dense, random_gru

    m = sg.Model(
        [
            random_gru(rng, 6, 20, True),
            random_gru(rng, 20, 7, False),
            random_dense(rng, 7, 5, "relu"),
            random_dense(rng, 5, 2, "sigmoid"),
        ],
        dtype=np.float64,
    )
    assert m.state_size == 27
    X = rng.normal(size=(3, 37, 6))
    states = rng.uniform(-1, 1, size=(3, 27))
    res = run_all_paths(m, X, states)
    y_ref, f_ref = res.pop("reference")
    for name, (y, f) in res.items():
        np.testing.assert_allclose(y, y_ref, rtol=0, atol=F64_TOL, err_msg=name)
        np.testing.assert_allclose(f, f_ref, rtol=0, atol=F64_TOL, err_msg=name)


def test_batch_of_n_equals_n_streams_float32_bitwise_close():
    rng = np.random.default_rng(11)
    m = random_model(rng, 8, 32, False, True, np.float32)
    X = rng.normal(size=(5, 64, 8)).astype(np.float32)
    b = m.streams(5)
    Yb = b.process(X)
    for i in range(5):
        s = m.stream()
        np.testing.assert_allclose(s.process(X[i]), Yb[i], rtol=0, atol=1e-6)
        np.testing.assert_allclose(s.get_state(), b.get_state()[i], rtol=0, atol=1e-6)


def test_known_values_single_unit():
    """A 1-unit GRU worked by hand: catches a wrong gate order or update form
    that the reference might share with the kernels."""
    # rows r, z, n; weights chosen so each gate has a distinct value
    w_ih = np.array([[0.5], [-1.0], [2.0]])
    w_hh = np.array([[0.25], [0.75], [-0.5]])
    b_ih = np.array([0.1, 0.2, 0.3])
    b_hh = np.array([-0.1, 0.4, 0.05])
    x, h = 0.8, 0.6

    def sig(a):
        return 1 / (1 + np.exp(-a))

    r = sig(0.5 * x + 0.1 + 0.25 * h - 0.1)
    z = sig(-1.0 * x + 0.2 + 0.75 * h + 0.4)
    n_after = np.tanh(2.0 * x + 0.3 + r * (-0.5 * h + 0.05))
    n_before = np.tanh(2.0 * x + 0.3 + -0.5 * (r * h) + 0.05)
    for reset_after, n in ((True, n_after), (False, n_before)):
        m = sg.Model([sg.GRU(w_ih, w_hh, b_ih, b_hh, reset_after=reset_after)], dtype=np.float64)
        s = m.stream()
        s.set_state([h])
        y = s.step([x])
        assert y[0] == pytest.approx((1 - z) * n + z * h, abs=1e-15)
