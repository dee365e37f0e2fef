"""Canonical layers: validation, the importers' conventions, Model checks, astype."""

import numpy as np
import pytest

import reference as ref
import streamgru as sg
from randmodels import gru_arrays

I, H = 4, 5


def sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def zrh(a):
    """Torch gate blocks (r, z, n) -> ONNX / Keras order (z, r, h), written from
    the gate-order table of DESIGN.md."""
    r, z, n = np.split(np.asarray(a), 3, axis=0)
    return np.concatenate([z, r, n], axis=0)


def run(layer, X, h0, dtype=np.float64):
    s = sg.Model([layer], dtype=dtype).stream()
    s.set_state(h0)
    return s.process(X)


# ----------------------------------------------------------------------------
# shape and value errors

W = np.zeros((3 * H, I))
R = np.zeros((3 * H, H))

SHAPE_ERRORS = [
    (lambda: sg.GRU(np.zeros((14, I)), R), "weight_ih", "(15, 4)", "(14, 4)"),
    (lambda: sg.GRU(W, np.zeros((15, 6))), "weight_hh", "(15, 5)", "(15, 6)"),
    (lambda: sg.GRU(W, np.zeros((14, 5))), "weight_hh", "multiple of 3", "(14, 5)"),
    (lambda: sg.GRU(W, R, np.zeros(14)), "bias_ih", "(15,)", "(14,)"),
    (lambda: sg.GRU(W, R, None, np.zeros((15, 1))), "bias_hh", "(15,)", "(15, 1)"),
    (lambda: sg.GRU(np.zeros(15), R), "weight_ih", "2 dimensions", "(15,)"),
    (lambda: sg.GRU(np.zeros((15, 0)), R), "weight_ih", "empty", "(15, 0)"),
    (lambda: sg.GRU.from_torch(W, R, np.zeros(16)), "bias_ih", "(15,)", "(16,)"),
    (lambda: sg.GRU.from_onnx(np.zeros((1, 14, I)), R), "W", "(15, 4)", "(14, 4)"),
    (lambda: sg.GRU.from_onnx(W, np.zeros((1, 15, 6))), "R", "(15, 5)", "(15, 6)"),
    (lambda: sg.GRU.from_onnx(W, R, np.zeros(29)), "B", "(30,)", "(29,)"),
    (lambda: sg.GRU.from_onnx(W, R, np.zeros((1, 15))), "B", "(30,)", "(15,)"),
    (lambda: sg.GRU.from_onnx(np.zeros((2, 15, I)), R), "W", "num_directions", "2"),
    (lambda: sg.GRU.from_keras(np.zeros((I, 14)), R.T), "kernel", "(4, 15)", "(4, 14)"),
    (lambda: sg.GRU.from_keras(W.T, np.zeros((H, 14))), "recurrent_kernel", "(5, 15)", "(5, 14)"),
    (lambda: sg.GRU.from_keras(W.T, R.T, np.zeros(15), reset_after=True), "bias", "(2, 15)", "(15,)"),
    (lambda: sg.GRU.from_keras(W.T, R.T, np.zeros((2, 15)), reset_after=False), "bias", "(15,)", "(2, 15)"),
    (lambda: sg.Dense(np.zeros((3, 4)), np.zeros(4)), "bias", "(3,)", "(4,)"),
    (lambda: sg.Dense(np.zeros(3)), "weight", "2 dimensions", "(3,)"),
    (lambda: sg.Dense(np.zeros((0, 4))), "weight", "empty", "(0, 4)"),
]


@pytest.mark.parametrize("make, tensor, expected, actual", SHAPE_ERRORS)
def test_shape_error_names_tensor_expected_and_actual(make, tensor, expected, actual):
    with pytest.raises(sg.WeightsError) as info:
        make()
    msg = str(info.value)
    assert f"tensor {tensor}" in msg
    assert expected in msg and actual in msg, msg


NONFINITE = [
    (lambda b: sg.GRU(W, np.where(b, np.nan, R)), "weight_hh"),
    (lambda b: sg.GRU(np.where(b[:, :I], np.inf, W), R), "weight_ih"),
    (lambda b: sg.GRU(W, R, np.where(b[:, 1], -np.inf, 0.0)), "bias_ih"),
    (lambda b: sg.GRU.from_onnx(W, R, np.where(np.tile(b[:, 1], 2), np.nan, 0.0)), "B"),
    (lambda b: sg.GRU.from_keras(np.where(b[:, :I], np.nan, W).T, R.T), "kernel"),
    (lambda b: sg.Dense(np.where(b[:3, :I], np.inf, 0.0)), "weight"),
]


@pytest.mark.parametrize("make, tensor", NONFINITE)
def test_nonfinite_weights_are_refused(make, tensor):
    bad = np.zeros((3 * H, H), bool)
    bad[2, 1] = True
    with pytest.raises(sg.WeightsError, match=f"tensor {tensor}.*non-finite"):
        make(bad)


@pytest.mark.parametrize(
    "value", [np.array([["a"] * H] * 3 * H), np.full((3 * H, H), None, dtype=object), "weights"]
)
def test_non_numeric_weights_are_refused(value):
    with pytest.raises(sg.WeightsError, match="tensor weight_hh"):
        sg.GRU(W, value)


@pytest.mark.parametrize("clip", [0, -1.0, np.nan, np.inf])
def test_bad_clip_is_refused(clip):
    with pytest.raises(sg.WeightsError, match="clip"):
        sg.GRU(W, R, clip=clip)


def test_unknown_activation_is_refused():
    with pytest.raises(sg.WeightsError, match="unsupported activation 'swishy'"):
        sg.Dense(np.zeros((2, 2)), activation="swishy")
    with pytest.raises(sg.WeightsError, match="GRU candidate"):
        sg.GRU(W, R, activation="softmax")


def test_layers_hold_read_only_copies():
    w_ih, w_hh, b_ih, b_hh = gru_arrays(np.random.default_rng(0), I, H)
    g = sg.GRU.from_torch(w_ih, w_hh, b_ih, b_hh)
    kept = g.weight_hh.copy()
    w_hh[:] = 0.0  # the caller's array changing later must not change the layer
    np.testing.assert_array_equal(g.weight_hh, kept)
    for arr in g.arrays().values():
        assert not arr.flags.writeable
    assert (g.input_size, g.hidden_size, g.output_size, g.state_size) == (I, H, H, H)
    assert g.reset_after is True and g.clip is None


# ----------------------------------------------------------------------------
# importers of the same cell agree


@pytest.fixture
def cell():
    rng = np.random.default_rng(42)
    w_ih, w_hh, b_ih, b_hh = gru_arrays(rng, I, H)
    X = rng.normal(size=(30, I))
    h0 = rng.uniform(-1, 1, H)
    return w_ih, w_hh, b_ih, b_hh, X, h0


@pytest.mark.parametrize("num_directions_axis", [False, True])
@pytest.mark.parametrize("linear_before_reset", [0, 1])
@pytest.mark.parametrize("clip", [None, 0.8])
def test_from_onnx_equals_from_torch_layout(cell, num_directions_axis, linear_before_reset, clip):
    w_ih, w_hh, b_ih, b_hh, X, h0 = cell
    Wo, Ro, Bo = zrh(w_ih), zrh(w_hh), np.concatenate([zrh(b_ih), zrh(b_hh)])
    if num_directions_axis:
        Wo, Ro, Bo = Wo[None], Ro[None], Bo[None]
    g = sg.GRU.from_onnx(Wo, Ro, Bo, linear_before_reset=linear_before_reset, clip=clip)
    expect = sg.GRU(w_ih, w_hh, b_ih, b_hh, reset_after=bool(linear_before_reset), clip=clip)
    assert g == expect
    assert g.reset_after is bool(linear_before_reset) and g.clip == clip
    y_ref, _ = ref.run_model(sg.Model([expect], dtype=np.float64), X, h0)
    np.testing.assert_allclose(run(g, X, h0), y_ref, rtol=0, atol=1e-12)


def test_from_onnx_without_bias_means_zero_biases(cell):
    w_ih, w_hh, *_ = cell
    g = sg.GRU.from_onnx(zrh(w_ih), zrh(w_hh))
    assert g == sg.GRU(w_ih, w_hh, np.zeros(3 * H), np.zeros(3 * H), reset_after=False)


def test_from_torch_is_reset_after_and_matches_torch_formula(cell):
    w_ih, w_hh, b_ih, b_hh, X, h0 = cell
    g = sg.GRU.from_torch(w_ih, w_hh, b_ih, b_hh)
    assert g.reset_after
    # torch.nn.GRU's documented equations, rows r, z, n
    h, ys = h0.copy(), []
    for x in X:
        gi, gh = w_ih @ x + b_ih, w_hh @ h + b_hh
        r = sig(gi[:H] + gh[:H])
        z = sig(gi[H : 2 * H] + gh[H : 2 * H])
        n = np.tanh(gi[2 * H :] + r * gh[2 * H :])
        h = (1 - z) * n + z * h
        ys.append(h)
    np.testing.assert_allclose(run(g, X, h0), ys, rtol=0, atol=1e-12)


@pytest.mark.parametrize("reset_after", [True, False])
def test_from_keras_equals_from_torch_layout(cell, reset_after):
    w_ih, w_hh, b_ih, b_hh, X, h0 = cell
    kernel, recurrent = zrh(w_ih).T, zrh(w_hh).T  # Keras: (I, 3H), (H, 3H)
    if reset_after:
        bias = np.stack([zrh(b_ih), zrh(b_hh)])  # (2, 3H): input, recurrent
        expect = sg.GRU(w_ih, w_hh, b_ih, b_hh, reset_after=True)
    else:
        bias = zrh(b_ih)  # (3H,): one bias, on the input side
        expect = sg.GRU(w_ih, w_hh, b_ih, None, reset_after=False)
    g = sg.GRU.from_keras(kernel, recurrent, bias, reset_after=reset_after)
    assert g == expect
    y_ref, _ = ref.run_model(sg.Model([expect], dtype=np.float64), X, h0)
    np.testing.assert_allclose(run(g, X, h0), y_ref, rtol=0, atol=1e-12)


def test_all_importers_of_one_cell_give_the_same_numbers(cell):
    w_ih, w_hh, b_ih, b_hh, X, h0 = cell
    layers = [
        sg.GRU.from_torch(w_ih, w_hh, b_ih, b_hh),
        sg.GRU.from_onnx(zrh(w_ih), zrh(w_hh), np.concatenate([zrh(b_ih), zrh(b_hh)]), 1),
        sg.GRU.from_keras(zrh(w_ih).T, zrh(w_hh).T, np.stack([zrh(b_ih), zrh(b_hh)])),
    ]
    outs = [run(layer, X, h0) for layer in layers]
    for y in outs[1:]:
        np.testing.assert_array_equal(y, outs[0])


def test_other_update_convention_maps_by_negating_z(cell):
    """h' = (1 - z) h + z n with the reset applied before the candidate's
    product (the form of many textbooks) is streamgru's reset_after=False cell
    with the z rows of W_ih, W_hh and both z biases negated."""
    w_ih, w_hh, b_ih, b_hh, X, h0 = cell
    # the other form's own parameters, named by gate
    Wz, Wr, Wn = w_ih[:H], w_ih[H : 2 * H], w_ih[2 * H :]
    Uz, Ur, Un = w_hh[:H], w_hh[H : 2 * H], w_hh[2 * H :]
    bz, br, bn = b_ih[:H], b_ih[H : 2 * H], b_ih[2 * H :]
    cz, cr, cn = b_hh[:H], b_hh[H : 2 * H], b_hh[2 * H :]

    h, ys = h0.copy(), []
    for x in X:
        z = sig(Wz @ x + bz + Uz @ h + cz)
        r = sig(Wr @ x + br + Ur @ h + cr)
        n = np.tanh(Wn @ x + bn + Un @ (r * h) + cn)
        h = (1 - z) * h + z * n
        ys.append(h)

    # streamgru rows r, z, n with z negated
    g = sg.GRU(
        np.concatenate([Wr, -Wz, Wn]), np.concatenate([Ur, -Uz, Un]),
        np.concatenate([br, -bz, bn]), np.concatenate([cr, -cz, cn]),
        reset_after=False,
    )
    np.testing.assert_allclose(run(g, X, h0), ys, rtol=0, atol=1e-12)
    # the same through ONNX (rows z, r, h; linear_before_reset=0, the default)
    o = sg.GRU.from_onnx(
        np.concatenate([-Wz, Wr, Wn]), np.concatenate([-Uz, Ur, Un]),
        np.concatenate([-bz, br, bn, -cz, cr, cn]), linear_before_reset=0,
    )
    assert o == g
    # and without the negation the numbers are different (the test can fail)
    wrong = sg.GRU(
        np.concatenate([Wr, Wz, Wn]), np.concatenate([Ur, Uz, Un]),
        np.concatenate([br, bz, bn]), np.concatenate([cr, cz, cn]), reset_after=False,
    )
    assert np.abs(run(wrong, X, h0) - ys).max() > 1e-3


# ----------------------------------------------------------------------------
# Dense, Model, astype


@pytest.mark.parametrize(
    "activation, f",
    [
        (None, lambda a: a),
        ("relu", lambda a: np.maximum(a, 0)),
        ("tanh", np.tanh),
        ("sigmoid", sig),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_activations(activation, f, dtype):
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(6, 4)), rng.normal(size=6)
    m = sg.Model([sg.Dense(w, b, activation)], dtype=dtype)
    assert (m.input_size, m.output_size, m.state_size) == (4, 6, 0)
    X = rng.normal(size=(20, 4)) * 2
    # float32: the weights are rounded to float32 first, as the model holds them
    wm, bm = (m.layers[0].weight.astype(np.float64), m.layers[0].bias.astype(np.float64))
    want = np.array([f(wm @ x + bm) for x in X.astype(dtype)])
    tol = 1e-13 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(m.stream().process(X), want, rtol=0, atol=tol)
    s = m.stream()
    np.testing.assert_allclose([s.step(x) for x in X], want, rtol=0, atol=tol)
    assert np.any(want < 0) or activation in ("relu", "sigmoid")


def test_model_size_mismatch_names_both_layers_and_sizes():
    g = sg.GRU(W, R)  # outputs 5
    with pytest.raises(sg.WeightsError) as info:
        sg.Model([g, sg.Dense(np.zeros((2, 7)))])
    msg = str(info.value)
    assert "layer 0 (GRU) outputs 5" in msg and "layer 1 (Dense) takes 7" in msg
    with pytest.raises(sg.WeightsError, match=r"layer 1 \(Dense\) outputs 3 .* layer 2 \(GRU\) takes 4"):
        sg.Model([g, sg.Dense(np.zeros((3, 5))), sg.GRU(np.zeros((15, 4)), R)])


def test_model_refuses_empty_foreign_layers_and_bad_initial_state():
    with pytest.raises(sg.WeightsError, match="at least one layer"):
        sg.Model([])
    with pytest.raises(sg.WeightsError, match="layer 1 is a ndarray"):
        sg.Model([sg.GRU(W, R), np.zeros((2, 5))])
    with pytest.raises(sg.WeightsError, match="initial_state: expected 5"):
        sg.Model([sg.GRU(W, R)], initial_state=np.zeros(4))
    with pytest.raises(sg.WeightsError, match="initial_state: contains NaN"):
        sg.Model([sg.GRU(W, R)], initial_state=[0, 0, np.nan, 0, 0])
    with pytest.raises(sg.WeightsError, match="float32 or float64"):
        sg.Model([sg.GRU(W, R)], dtype=np.float16)


def test_model_shape_properties():
    m = sg.Model([sg.GRU(W, R), sg.GRU(np.zeros((9, 5)), np.zeros((9, 3))), sg.Dense(np.zeros((2, 3)))])
    assert (m.input_size, m.output_size, m.state_size) == (4, 2, 8)
    assert m.dtype == np.float32
    assert m.num_parameters == 15 * 4 + 15 * 5 + 30 + 9 * 5 + 9 * 3 + 18 + 2 * 3 + 2
    assert [type(layer).__name__ for layer in m.layers] == ["GRU", "GRU", "Dense"]
    assert all(layer.dtype == np.float32 for layer in m.layers)


def test_astype():
    rng = np.random.default_rng(5)
    w_ih, w_hh, b_ih, b_hh = gru_arrays(rng, I, H)
    init = rng.uniform(-1, 1, H)
    m32 = sg.Model(
        [sg.GRU(w_ih, w_hh, b_ih, b_hh, reset_after=False, clip=3.0), sg.Dense(rng.normal(size=(2, H)), None, "tanh")],
        initial_state=init, metadata={"source": "test"},
    )
    m64 = m32.astype(np.float64)
    assert m64 is not m32 and m64.dtype == np.float64 and m32.dtype == np.float32
    given = {"weight_ih": w_ih, "weight_hh": w_hh, "bias_ih": b_ih, "bias_hh": b_hh}
    for a, b in zip(m32.layers, m64.layers):
        assert a.config() == b.config()
        for name, arr in b.arrays().items():
            assert arr.dtype == np.float64
            # widened from the float64 arrays as given, not from m32's float32 rounding
            if a.kind == "gru":
                np.testing.assert_array_equal(arr, given[name])
            np.testing.assert_array_equal(arr.astype(np.float32), a.arrays()[name])
    np.testing.assert_array_equal(m64.initial_state, init)
    assert m64.metadata == {"source": "test"}
    X = rng.normal(size=(10, I))
    y64 = m64.stream().process(X)
    assert y64.dtype == np.float64
    np.testing.assert_allclose(y64, m32.stream().process(X), rtol=0, atol=1e-5)
    # and back: float32 of float64 rounds to the same float32 arrays
    assert m64.astype(np.float32) == m32
    with pytest.raises(sg.WeightsError, match="float32 or float64"):
        m32.astype(np.int32)
    with pytest.raises(sg.WeightsError, match="float32 or float64"):
        m32.layers[0].astype(np.float16)


# ----------------------------------------------------------------------------
# the pinned public names of DESIGN.md


def test_public_names_and_error_classes():
    import inspect

    assert set(sg.__all__) >= {
        "GRU", "LSTM", "RNN", "Dense", "Model", "Stream", "StreamBatch", "load", "save",
        "from_torch", "StreamGRUError", "WeightsError", "UnsafeWeightsError", "InputError",
    }
    assert issubclass(sg.WeightsError, sg.StreamGRUError) and issubclass(sg.WeightsError, ValueError)
    assert issubclass(sg.UnsafeWeightsError, sg.WeightsError)
    assert issubclass(sg.InputError, sg.StreamGRUError) and issubclass(sg.InputError, ValueError)
    assert not issubclass(sg.InputError, sg.WeightsError)

    def params(f):
        return list(inspect.signature(f).parameters)

    assert params(sg.GRU.from_torch)[:4] == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    assert params(sg.GRU.from_onnx)[:5] == ["W", "R", "B", "linear_before_reset", "clip"]
    assert params(sg.GRU.from_keras)[:4] == ["kernel", "recurrent_kernel", "bias", "reset_after"]
    assert params(sg.Dense)[:3] == ["weight", "bias", "activation"]
    m = sg.Model([sg.GRU(W, R), sg.Dense(np.zeros((2, H)))])
    for name in ("input_size", "output_size", "state_size", "dtype", "layers", "initial_state"):
        assert hasattr(m, name), name
    s, b = m.stream(), m.streams(2)
    assert isinstance(s, sg.Stream) and isinstance(b, sg.StreamBatch)
    for name in ("step", "process", "reset", "get_state", "set_state"):
        assert callable(getattr(s, name)) and callable(getattr(b, name)), name
    assert params(s.step) == ["x", "out"] and params(s.process) == ["X", "out"]
    assert params(b.reset) == ["i"]
