"""LSTM, Elman RNN, Dense activations and mixed stacks against the reference math.

Every kernel path (step, process, batch step, batch process; float32 and
float64) is held to tests/reference.py. Weights are random but contracting
(each recurrent gate block has spectral norm below one), so float32 rounding
errors do not grow over long runs and a 1e-4 bound over 300 steps is fair.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamgru as sg

import reference as ref

FAST = settings(max_examples=25, deadline=None)
LONG = settings(max_examples=6, deadline=None)


# ----------------------------------------------------------------------------
# random layers


def contracting(rng, gates, rows, cols, norm=0.9):
    """(gates*rows, cols) with every gate block of spectral norm ``norm``."""
    blocks = []
    for _ in range(gates):
        b = rng.normal(size=(rows, cols))
        blocks.append(b * (norm / max(np.linalg.norm(b, 2), 1e-12)))
    return np.concatenate(blocks)


def inputs(rng, I, fan_in):
    return rng.normal(size=(4 * I, I)) / np.sqrt(fan_in)


lstm_specs = st.fixed_dictionaries({
    # plain: the default cell (sigmoid, tanh, tanh, no options), which the
    # kernel runs on a separate fused path; half the examples take it
    "plain": st.booleans(),
    "H": st.integers(1, 6),
    "proj": st.booleans(),
    "peep": st.booleans(),
    "input_forget": st.booleans(),
    "clip": st.one_of(st.none(), st.floats(0.3, 3.0)),
    "gate": st.sampled_from(["sigmoid", "hard_sigmoid"]),
    "hs_alpha": st.floats(0.1, 0.5),
    "hs_beta": st.floats(0.3, 0.7),
    "cell": st.sampled_from(["tanh", "tanh", "sigmoid", "hard_sigmoid"]),
    "hidden": st.sampled_from(["tanh", "tanh", "sigmoid"]),
})

rnn_specs = st.fixed_dictionaries({
    "H": st.integers(1, 6),
    # torch and ONNX offer tanh and relu; the layer also takes the bounded others
    "act": st.sampled_from(["tanh", "relu", "tanh", "relu", "sigmoid",
                            ("hard_sigmoid", 0.3, 0.4), "identity"]),
    "clip": st.one_of(st.none(), st.floats(0.3, 3.0)),
})

gru_specs = st.fixed_dictionaries({
    "H": st.integers(1, 6),
    "reset_after": st.booleans(),
    "clip": st.one_of(st.none(), st.floats(0.3, 3.0)),
    "gate": st.sampled_from(["sigmoid", ("hard_sigmoid", 0.25, 0.45)]),
})

DENSE_ACTS = [
    None, "relu", "tanh", "sigmoid", ("hard_sigmoid", 0.2, 0.5), ("leaky_relu", 0.1),
    ("elu", 1.3), "gelu", "softmax", "log_softmax", "identity",
]
dense_specs = st.fixed_dictionaries({
    # both of the kernel's forms: narrow heads (dot products) and wide layers
    "O": st.sampled_from([1, 2, 3, 5, 16, 19]),
    "act": st.sampled_from(DENSE_ACTS),
})


def make_lstm(rng, I, spec):
    if spec.get("plain"):
        spec = dict(spec, peep=False, input_forget=False, clip=None, gate="sigmoid",
                    cell="tanh", hidden="tanh")
    H = spec["H"]
    P = int(rng.integers(1, H + 1)) if spec["proj"] else H
    gate = spec["gate"]
    if gate == "hard_sigmoid":
        gate = ("hard_sigmoid", spec["hs_alpha"], spec["hs_beta"])
    return sg.LSTM(
        rng.normal(size=(4 * H, I)) / np.sqrt(I),
        contracting(rng, 4, H, P),
        rng.normal(size=4 * H) * 0.5,
        rng.normal(size=4 * H) * 0.5,
        weight_hr=contracting(rng, 1, P, H) if spec["proj"] else None,
        peepholes=rng.normal(size=(3, H)) * 0.5 if spec["peep"] else None,
        input_forget=spec["input_forget"],
        clip=spec["clip"],
        gate_activation=gate,
        cell_activation=spec["cell"],
        hidden_activation=spec["hidden"],
    )


def make_rnn(rng, I, spec):
    H = spec["H"]
    return sg.RNN(
        rng.normal(size=(H, I)) / np.sqrt(I),
        contracting(rng, 1, H, H),
        rng.normal(size=H) * 0.5,
        rng.normal(size=H) * 0.5,
        activation=spec["act"],
        clip=spec["clip"],
    )


def make_gru(rng, I, spec):
    H = spec["H"]
    return sg.GRU(
        rng.normal(size=(3 * H, I)) / np.sqrt(I),
        contracting(rng, 3, H, H),
        rng.normal(size=3 * H) * 0.5,
        rng.normal(size=3 * H) * 0.5,
        reset_after=spec["reset_after"],
        clip=spec.get("clip"),
        gate_activation=spec.get("gate", "sigmoid"),
    )


def make_dense(rng, I, spec):
    O = spec["O"]
    return sg.Dense(rng.normal(size=(O, I)) / np.sqrt(I), rng.normal(size=O) * 0.5, spec["act"])


MAKERS = {"lstm": make_lstm, "rnn": make_rnn, "gru": make_gru, "dense": make_dense}
SPECS = {"lstm": lstm_specs, "rnn": rnn_specs, "gru": gru_specs, "dense": dense_specs}

# a stack: (input size, seed, [(kind, spec), ...])
layer_choice = st.sampled_from(sorted(MAKERS)).flatmap(
    lambda k: st.tuples(st.just(k), SPECS[k])
)


def build(I, seed, parts, dtype, makers=MAKERS):
    rng = np.random.default_rng(seed)
    layers = []
    for kind, spec in parts:
        layers.append(makers[kind](rng, I, spec))
        I = layers[-1].output_size
    return sg.Model(layers, dtype=dtype)


def random_state(model, rng):
    return (rng.normal(size=model.state_size) * 0.5).astype(model.dtype)


# ----------------------------------------------------------------------------
# the shared check: every path against every other and against the reference


def check_paths(model, T, seed, ref_tol, path_tol):
    """step = process = batch step = batch process = reference, outputs and states."""
    rng = np.random.default_rng(seed + 1)
    n = 3
    X = rng.normal(size=(n, T, model.input_size)).astype(model.dtype)
    S0 = np.stack([random_state(model, rng) for _ in range(n)])

    for i in range(n):
        want, want_state = ref.run_model(model, X[i], S0[i])

        s = model.stream()
        s.set_state(S0[i])
        Y_proc = s.process(X[i])
        np.testing.assert_allclose(Y_proc, want, rtol=0, atol=ref_tol)
        np.testing.assert_allclose(s.get_state(), want_state, rtol=0, atol=ref_tol)

        s.set_state(S0[i])
        Y_step = np.array([s.step(x) for x in X[i]])
        np.testing.assert_allclose(Y_step, Y_proc, rtol=0, atol=path_tol)
        np.testing.assert_allclose(s.get_state(), want_state, rtol=0, atol=ref_tol)

    b = model.streams(n)
    b.set_state(S0)
    Y_bproc = b.process(X)
    states_proc = b.get_state()
    b.set_state(S0)
    Y_bstep = np.stack([b.step(X[:, t]) for t in range(T)], axis=1)
    np.testing.assert_allclose(Y_bstep, Y_bproc, rtol=0, atol=path_tol)
    np.testing.assert_allclose(b.get_state(), states_proc, rtol=0, atol=path_tol)
    for i in range(n):
        s = model.stream()
        s.set_state(S0[i])
        np.testing.assert_allclose(Y_bproc[i], s.process(X[i]), rtol=0, atol=path_tol)
        np.testing.assert_allclose(states_proc[i], s.get_state(), rtol=0, atol=path_tol)


# ----------------------------------------------------------------------------
# single cells, float64: every option, paths equal to 1e-12, reference to 1e-10


@FAST
@given(spec=lstm_specs, I=st.integers(1, 5), seed=st.integers(0, 2**31), T=st.integers(1, 40))
def test_lstm_all_paths_match_reference_float64(spec, I, seed, T):
    model = build(I, seed, [("lstm", spec)], np.float64)
    check_paths(model, T, seed, ref_tol=1e-10, path_tol=1e-12)


@FAST
@given(spec=rnn_specs, I=st.integers(1, 5), seed=st.integers(0, 2**31), T=st.integers(1, 40))
def test_rnn_all_paths_match_reference_float64(spec, I, seed, T):
    model = build(I, seed, [("rnn", spec)], np.float64)
    check_paths(model, T, seed, ref_tol=1e-10, path_tol=1e-12)


@pytest.mark.parametrize("activation", DENSE_ACTS, ids=str)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_dense_activations_match_reference(activation, dtype, tol):
    rng = np.random.default_rng(7)
    gru = make_gru(rng, 3, {"H": 5, "reset_after": True})
    # inputs scaled so every activation sees both signs and its nonlinear range
    head = sg.Dense(rng.normal(size=(4, 5)) * 3, rng.normal(size=4), activation)
    model = sg.Model([gru, head], dtype=dtype)
    # outputs reach about 14 (log_softmax), where a float32 ulp is 1e-6:
    # step and process sum the same products in different orders (one
    # vector vs a tile), a few ulps apart
    check_paths(model, 20, 11, ref_tol=tol, path_tol=tol if dtype == np.float32 else tol * 1e-2)


@pytest.mark.parametrize("O", [3, 16, 19])
def test_dense_narrow_and_wide_forms_match_reference(O):
    """Fewer than 16 outputs: dot products; 16 or more: axpy rows (dense.py)."""
    rng = np.random.default_rng(O)
    gru = make_gru(rng, 3, {"H": 6, "reset_after": True})
    head = sg.Dense(rng.normal(size=(O, 6)), rng.normal(size=O), "tanh")
    check_paths(sg.Model([gru, head], dtype=np.float64), 12, O, ref_tol=1e-10, path_tol=1e-12)


def test_dense_activation_values_are_the_documented_functions():
    """The reference's activations are themselves checked against closed forms."""
    a = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    model = sg.Model([sg.Dense(np.eye(5), activation=("leaky_relu", 0.1))], dtype=np.float64)
    np.testing.assert_allclose(model.stream().step(a), [-0.2, -0.05, 0, 0.5, 2.0], atol=1e-15)
    model = sg.Model([sg.Dense(np.eye(5), activation="hard_sigmoid")], dtype=np.float64)
    np.testing.assert_allclose(model.stream().step(a), [0.1, 0.4, 0.5, 0.6, 0.9], atol=1e-15)
    model = sg.Model([sg.Dense(np.eye(5), activation="elu")], dtype=np.float64)
    np.testing.assert_allclose(model.stream().step(a), np.where(a >= 0, a, np.expm1(a)), atol=1e-15)
    model = sg.Model([sg.Dense(np.eye(5), activation="gelu")], dtype=np.float64)
    # gelu(x) = x * Phi(x); Phi(0.5) = 0.691462461274013, Phi(2) = 0.977249868051821
    np.testing.assert_allclose(
        model.stream().step(a),
        [-2 * (1 - 0.977249868051821), -0.5 * (1 - 0.691462461274013), 0,
         0.5 * 0.691462461274013, 2 * 0.977249868051821],
        atol=1e-14,
    )
    y = sg.Model([sg.Dense(np.eye(5), activation="softmax")], dtype=np.float64).stream().step(a)
    np.testing.assert_allclose(y, np.exp(a) / np.exp(a).sum(), atol=1e-15)
    y = sg.Model([sg.Dense(np.eye(5), activation="log_softmax")], dtype=np.float64).stream().step(a)
    np.testing.assert_allclose(y, a - np.log(np.exp(a).sum()), atol=1e-14)


# ----------------------------------------------------------------------------
# mixed stacks, and the long runs the tolerances are stated for


@FAST
@given(
    I=st.integers(1, 4),
    seed=st.integers(0, 2**31),
    parts=st.lists(layer_choice, min_size=1, max_size=4),
    T=st.integers(1, 35),
)
def test_mixed_stacks_float64(I, seed, parts, T):
    model = build(I, seed, parts, np.float64)
    assert model.state_size == sum(layer.state_size for layer in model.layers)
    check_paths(model, T, seed, ref_tol=1e-10, path_tol=1e-12)


@LONG
@given(
    I=st.integers(1, 4),
    seed=st.integers(0, 2**31),
    parts=st.lists(layer_choice, min_size=1, max_size=4),
    dtype_tol=st.sampled_from([(np.float64, 1e-10), (np.float32, 1e-4)]),
)
def test_mixed_stacks_300_steps(I, seed, parts, dtype_tol):
    dtype, tol = dtype_tol
    model = build(I, seed, parts, dtype)
    check_paths(model, 300, seed, ref_tol=tol, path_tol=1e-12 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_every_lstm_option_at_once_300_steps(dtype, tol):
    spec = {"H": 6, "proj": True, "peep": True, "input_forget": False, "clip": 1.5,
            "gate": "hard_sigmoid", "hs_alpha": 0.2, "hs_beta": 0.5,
            "cell": "tanh", "hidden": "tanh"}
    coupled = dict(spec, proj=False, input_forget=True, gate="sigmoid")
    model = build(3, 5, [("lstm", spec), ("lstm", coupled), ("rnn", {"H": 4, "act": "relu", "clip": 2.0})], dtype)
    check_paths(model, 300, 5, ref_tol=tol, path_tol=1e-12 if dtype == np.float64 else 1e-5)


# ----------------------------------------------------------------------------
# state layout: GRU/RNN h; LSTM h then c, layer by layer


def test_state_layout_is_h_then_c_layer_by_layer():
    rng = np.random.default_rng(3)
    gru = make_gru(rng, 2, {"H": 3, "reset_after": True})
    lstm = sg.LSTM(
        rng.normal(size=(20, 3)), contracting(rng, 4, 5, 2), weight_hr=contracting(rng, 1, 2, 5)
    )
    rnn = make_rnn(rng, 2, {"H": 4, "act": "tanh", "clip": None})
    model = sg.Model([gru, lstm, rnn], dtype=np.float64)
    assert model.state_size == 3 + (2 + 5) + 4
    s = model.stream()
    x = rng.normal(size=2)
    y = s.step(x)
    state = s.get_state()
    h_gru = ref.gru_step(gru, x, np.zeros(3))
    h_lstm, hc = ref.lstm_step(lstm, h_gru, np.zeros(7))
    c_lstm = hc[2:]
    h_rnn, _ = ref.rnn_step(rnn, h_lstm, np.zeros(4))
    np.testing.assert_allclose(state[:3], h_gru, atol=1e-12)
    np.testing.assert_allclose(state[3:5], h_lstm, atol=1e-12)
    np.testing.assert_allclose(state[5:10], c_lstm, atol=1e-12)
    np.testing.assert_allclose(state[10:], h_rnn, atol=1e-12)
    np.testing.assert_allclose(y, h_rnn, atol=1e-12)
    # c really is the cell: with f = 1, i = 0 (huge biases) it is carried unchanged
    big = np.zeros(8)
    big[:2], big[2:4] = -50, 50
    keep = sg.LSTM(np.zeros((8, 1)), np.zeros((8, 2)), big, None)
    s = sg.Model([keep], dtype=np.float64).stream()
    s.set_state([0.0, 0.0, 0.25, -0.75])
    s.step([1.0])
    np.testing.assert_allclose(s.get_state()[2:], [0.25, -0.75], atol=1e-15)
    np.testing.assert_allclose(s.get_state()[:2], 0.5 * np.tanh([0.25, -0.75]), atol=1e-15)


# ----------------------------------------------------------------------------
# the three constructors describe the same cell


def torch_lstm_arrays(rng, I, H):
    return (rng.normal(size=(4 * H, I)), rng.normal(size=(4 * H, H)) / np.sqrt(H),
            rng.normal(size=4 * H), rng.normal(size=4 * H))


def blocks(a, n):
    return np.split(np.asarray(a), n, axis=0)


def test_lstm_from_torch_onnx_keras_agree():
    rng = np.random.default_rng(21)
    I, H = 3, 4
    W, R, b_ih, b_hh = torch_lstm_arrays(rng, I, H)
    t = sg.LSTM.from_torch(W, R, b_ih, b_hh)
    # ONNX rows i, o, f, c; torch i, f, g, o
    iofc = lambda a: np.concatenate([blocks(a, 4)[k] for k in (0, 3, 1, 2)])
    o = sg.LSTM.from_onnx(
        iofc(W)[None], iofc(R)[None], np.concatenate([iofc(b_ih), iofc(b_hh)])[None]
    )
    assert o == t
    # Keras: kernel (I, 4H) transposed, columns i, f, c, o (torch's order), one bias
    k = sg.LSTM.from_keras(W.T, R.T, b_ih + b_hh)
    X = rng.normal(size=(50, I))
    ys = [sg.Model([layer], dtype=np.float64).stream().process(X) for layer in (t, o, k)]
    np.testing.assert_allclose(ys[1], ys[0], atol=1e-14)
    np.testing.assert_allclose(ys[2], ys[0], atol=1e-12)


def test_lstm_onnx_peepholes_are_ordered_i_o_f():
    rng = np.random.default_rng(22)
    I, H = 2, 3
    W, R, b_ih, b_hh = torch_lstm_arrays(rng, I, H)
    p_i, p_f, p_o = rng.normal(size=(3, H))
    iofc = lambda a: np.concatenate([blocks(a, 4)[k] for k in (0, 3, 1, 2)])
    o = sg.LSTM.from_onnx(
        iofc(W), iofc(R), np.concatenate([iofc(b_ih), iofc(b_hh)]),
        P=np.concatenate([p_i, p_o, p_f]), input_forget=1, clip=2.0,
    )
    np.testing.assert_array_equal(o.peepholes, np.stack([p_i, p_f, p_o]))
    assert o.input_forget and o.clip == 2.0
    canonical = sg.LSTM(W, R, b_ih, b_hh, peepholes=np.stack([p_i, p_f, p_o]),
                        input_forget=True, clip=2.0)
    assert o == canonical


def test_rnn_from_torch_onnx_agree():
    rng = np.random.default_rng(23)
    I, H = 3, 5
    W, R = rng.normal(size=(H, I)), rng.normal(size=(H, H)) / np.sqrt(H)
    b_ih, b_hh = rng.normal(size=H), rng.normal(size=H)
    for torch_name, onnx_name in (("tanh", "Tanh"), ("relu", "Relu")):
        t = sg.RNN.from_torch(W, R, b_ih, b_hh, nonlinearity=torch_name)
        o = sg.RNN.from_onnx(W[None], R[None], np.concatenate([b_ih, b_hh])[None],
                             activation=onnx_name)
        assert o == t
        assert t.activation.name == torch_name
    c = sg.RNN.from_onnx(W, R, activation="Tanh", clip=0.5)
    assert c.clip == 0.5


# ----------------------------------------------------------------------------
# parity with the frameworks' own cells (the reference could share a mistake
# with the kernels; torch and onnxruntime cannot)


def test_lstm_projection_matches_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.LSTM(3, 6, proj_size=2, batch_first=True).double()
    layer = sg.LSTM.from_torch(
        *(getattr(net, n).detach().numpy() for n in
          ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0"))
    )
    X = np.random.default_rng(1).normal(size=(1, 40, 3))
    with torch.no_grad():
        want, (h, c) = net(torch.from_numpy(X))
    s = sg.Model([layer], dtype=np.float64).stream()
    np.testing.assert_allclose(s.process(X[0]), want[0].numpy(), atol=1e-12)
    np.testing.assert_allclose(s.get_state(), np.concatenate([h[0, 0], c[0, 0]]), atol=1e-12)


def test_relu_rnn_matches_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.RNN(3, 5, nonlinearity="relu", batch_first=True).double()
    layer = sg.RNN.from_torch(
        *(getattr(net, n).detach().numpy() for n in
          ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")),
        nonlinearity="relu",
    )
    X = np.random.default_rng(2).normal(size=(1, 40, 3))
    with torch.no_grad():
        want, _ = net(torch.from_numpy(X))
    s = sg.Model([layer], dtype=np.float64).stream()
    np.testing.assert_allclose(s.process(X[0]), want[0].numpy(), atol=1e-12)


def onnx_node_run(op, weights, X, **attrs):
    """Run one ONNX recurrent node ``op`` in onnxruntime (float32).

    ``weights`` lists the node's inputs after X in order, as (name, array)
    or None for an absent optional input. Returns Y (T, H).
    """
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    names, inits = ["X"], []
    for item in weights:
        if item is None:
            names.append("")
        else:
            names.append(item[0])
            inits.append(numpy_helper.from_array(np.asarray(item[1], np.float32), item[0]))
    H = np.shape(dict(i for i in weights if i)["R"])[-1]
    node = helper.make_node(op, names, ["Y"], hidden_size=H, **attrs)
    graph = helper.make_graph(
        [node], op.lower(),
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [X.shape[0], 1, X.shape[1]])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (Y,) = sess.run(None, {"X": X[:, None, :].astype(np.float32)})
    return Y[:, 0, 0, :]


def onnx_lstm_run(W, R, B, P, X, **attrs):
    """One ONNX LSTM node with peepholes in onnxruntime; returns Y (T, H)."""
    return onnx_node_run("LSTM", [("W", W), ("R", R), ("B", B), None, None, None, ("P", P)],
                         X, **attrs)


@pytest.mark.parametrize("attrs", [
    {},
    {"input_forget": 1},
    {"clip": 0.7},
    {"activations": ["HardSigmoid", "Tanh", "Tanh"], "activation_alpha": [0.3],
     "activation_beta": [0.4]},
], ids=["peepholes", "input_forget", "clip", "hard_sigmoid"])
def test_lstm_onnx_options_match_onnxruntime(attrs):
    rng = np.random.default_rng(31)
    I, H = 3, 4
    W = rng.normal(size=(1, 4 * H, I)) * 0.7
    R = rng.normal(size=(1, 4 * H, H)) * 0.5
    B = rng.normal(size=(1, 8 * H)) * 0.5
    P = rng.normal(size=(1, 3 * H))
    X = rng.normal(size=(30, I)).astype(np.float32)
    want = onnx_lstm_run(W, R, B, P, X, **attrs)
    layer = sg.LSTM.from_onnx(W, R, B, P, **attrs)
    got = sg.Model([layer], dtype=np.float32).stream().process(X)
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("attrs", [
    {"activations": ["Relu"]},
    {"activations": ["Tanh"], "clip": 0.6},
    {"activations": ["Relu"], "clip": 0.8},
], ids=["relu", "tanh-clip", "relu-clip"])
def test_rnn_onnx_options_match_onnxruntime(attrs):
    rng = np.random.default_rng(32)
    I, H = 3, 5
    W = rng.normal(size=(1, H, I)) * 0.7
    R = contracting(rng, 1, H, H)[None]
    B = rng.normal(size=(1, 2 * H)) * 0.5
    X = rng.normal(size=(30, I)).astype(np.float32)
    want = onnx_node_run("RNN", [("W", W), ("R", R), ("B", B)], X, **attrs)
    layer = sg.RNN.from_onnx(W, R, B, activation=attrs["activations"][0], clip=attrs.get("clip"))
    got = sg.Model([layer], dtype=np.float32).stream().process(X)
    np.testing.assert_allclose(got, want, atol=1e-5)


# ----------------------------------------------------------------------------
# unsupported activations are refused by name


@pytest.mark.parametrize("make,name", [
    (lambda: sg.LSTM(np.ones((4, 1)), np.ones((4, 1)), gate_activation="tanh"), "tanh"),
    (lambda: sg.LSTM(np.ones((4, 1)), np.ones((4, 1)), cell_activation="softmax"), "softmax"),
    (lambda: sg.GRU(np.ones((3, 1)), np.ones((3, 1)), gate_activation="relu"), "relu"),
    (lambda: sg.RNN(np.ones((1, 1)), np.ones((1, 1)), activation="swish"), "swish"),
    (lambda: sg.RNN.from_torch(np.ones((1, 1)), np.ones((1, 1)), nonlinearity="sigmoid"), "sigmoid"),
    (lambda: sg.LSTM.from_onnx(np.ones((4, 1)), np.ones((4, 1)),
                               activations=["Sigmoid", "Softsign", "Tanh"]), "Softsign"),
    (lambda: sg.RNN.from_onnx(np.ones((1, 1)), np.ones((1, 1)), activation="ScaledTanh"),
     "ScaledTanh"),
    (lambda: sg.Dense(np.ones((1, 1)), activation="mish"), "mish"),
])
def test_unsupported_activation_is_a_weights_error_naming_it(make, name):
    with pytest.raises(sg.WeightsError, match=name):
        make()


def test_lstm_shape_errors_name_the_tensor():
    with pytest.raises(sg.WeightsError, match="weight_hh"):
        sg.LSTM(np.ones((8, 3)), np.ones((8, 3)))  # H = 2, so (8, 2) expected
    with pytest.raises(sg.WeightsError, match="peepholes"):
        sg.LSTM(np.ones((8, 3)), np.ones((8, 2)), peepholes=np.ones((2, 2)))
    with pytest.raises(sg.WeightsError, match="weight_hr"):
        sg.LSTM(np.ones((8, 3)), np.ones((8, 1)), weight_hr=np.ones((1, 3)))
    with pytest.raises(sg.WeightsError, match="tensor P"):
        sg.LSTM.from_onnx(np.ones((8, 3)), np.ones((8, 2)), P=np.ones(4))
    with pytest.raises(sg.WeightsError, match="tensor B"):
        sg.RNN.from_onnx(np.ones((2, 3)), np.ones((2, 2)), B=np.ones(2))


# ----------------------------------------------------------------------------
# bad input on an LSTM stack: InputError, nothing applied


@pytest.fixture(scope="module")
def lstm_stack():
    rng = np.random.default_rng(41)
    spec = {"H": 4, "proj": True, "peep": True, "input_forget": False, "clip": None,
            "gate": "sigmoid", "hs_alpha": 0.2, "hs_beta": 0.5, "cell": "tanh", "hidden": "tanh"}
    layers = [make_lstm(rng, 3, spec)]
    layers.append(make_lstm(rng, layers[0].output_size, dict(spec, proj=False)))
    layers.append(sg.Dense(rng.normal(size=(2, 4))))
    return sg.Model(layers, dtype=np.float64)


def test_lstm_stack_bad_step_input_changes_nothing(lstm_stack):
    s = lstm_stack.stream()
    s.process(np.ones((5, 3)))
    before = s.get_state()
    for bad in ([np.nan, 0, 0], [0, np.inf, 0], [0, 0, -np.inf]):
        with pytest.raises(sg.InputError, match="finite"):
            s.step(np.array(bad))
        np.testing.assert_array_equal(s.get_state(), before)
    with pytest.raises(sg.InputError, match=r"shape \(3,\)"):
        s.step(np.ones(4))
    np.testing.assert_array_equal(s.get_state(), before)


def test_lstm_stack_bad_process_input_applies_no_row(lstm_stack):
    s = lstm_stack.stream()
    s.step(np.ones(3))
    before = s.get_state()
    X = np.ones((40, 3))
    X[37, 1] = np.nan  # in the third tile: the first tiles must not run either
    with pytest.raises(sg.InputError, match="row 37"):
        s.process(X)
    np.testing.assert_array_equal(s.get_state(), before)
    b = lstm_stack.streams(2)
    b.step(np.ones((2, 3)))
    before = b.get_state()
    Xb = np.ones((2, 10, 3))
    Xb[1, 9, 0] = np.inf
    with pytest.raises(sg.InputError, match="stream 1"):
        b.process(Xb)
    np.testing.assert_array_equal(b.get_state(), before)
    with pytest.raises(sg.InputError):
        b.set_state(np.full(before.shape, np.nan))
    np.testing.assert_array_equal(b.get_state(), before)


def test_lstm_stack_out_is_filled_in_place(lstm_stack):
    s = lstm_stack.stream()
    X = np.random.default_rng(5).normal(size=(20, 3))
    out = np.empty((20, 2))
    assert s.process(X, out=out) is out
    s.reset()
    want, _ = ref.run_model(lstm_stack, X)
    np.testing.assert_allclose(out, want, atol=1e-10)
    y = np.empty(2)
    assert s.step(X[0], out=y) is y
    np.testing.assert_allclose(y, want[0], atol=1e-10)


# ----------------------------------------------------------------------------
def test_lstm_rnn_batch_split_across_threads_equals_single_streams(monkeypatch):
    """A large StreamBatch call is shared between threads, each with its own
    scratch; the cells' kernels must keep to the scratch they are given."""
    from streamgru.kernels import config

    monkeypatch.setattr(config, "THREADS", 3)
    monkeypatch.setattr(config, "PARALLEL_MIN_WORK", 1)  # split every call
    spec = {"H": 5, "proj": True, "peep": True, "input_forget": False, "clip": 2.0,
            "gate": "sigmoid", "hs_alpha": 0.2, "hs_beta": 0.5, "cell": "tanh", "hidden": "tanh"}
    model = build(3, 9, [("lstm", spec), ("rnn", {"H": 4, "act": "relu", "clip": None}),
                         ("lstm", dict(spec, plain=True)), ("dense", {"O": 2, "act": "softmax"})],
                  np.float64)
    rng = np.random.default_rng(10)
    n, T = 7, 40
    X = rng.normal(size=(n, T, 3))
    S0 = np.stack([random_state(model, rng) for _ in range(n)])
    b = model.streams(n)
    b.set_state(S0)
    Y = b.process(X)
    Y1 = b.step(X[:, 0])
    for i in range(n):
        s = model.stream()
        s.set_state(S0[i])
        np.testing.assert_allclose(Y[i], s.process(X[i]), rtol=0, atol=1e-12)
        np.testing.assert_allclose(Y1[i], s.step(X[i, 0]), rtol=0, atol=1e-12)
        np.testing.assert_allclose(b.get_state()[i], s.get_state(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_batch_step_of_many_streams_equals_single_streams(dtype, tol):
    """n = 19: the batched kernels take streams four at a time through one
    load of the weights, then the remainder, over more than one tile."""
    spec = {"H": 6, "proj": False, "peep": True, "input_forget": True, "clip": 1.5,
            "gate": "hard_sigmoid", "hs_alpha": 0.3, "hs_beta": 0.45,
            "cell": "tanh", "hidden": "sigmoid"}
    model = build(3, 12, [("lstm", spec), ("lstm", dict(spec, plain=True, proj=True)),
                          ("rnn", {"H": 5, "act": "relu", "clip": 2.5}),
                          ("gru", {"H": 4, "reset_after": True, "clip": None, "gate": "sigmoid"}),
                          ("dense", {"O": 3, "act": "log_softmax"})], dtype)
    rng = np.random.default_rng(13)
    n, T = 19, 6
    X = rng.normal(size=(n, T, 3)).astype(dtype)
    S0 = np.stack([random_state(model, rng) for _ in range(n)])
    b = model.streams(n)
    b.set_state(S0)
    Y = np.stack([b.step(X[:, t]) for t in range(T)], axis=1)
    for i in range(n):
        s = model.stream()
        s.set_state(S0[i])
        np.testing.assert_allclose(Y[i], s.process(X[i]), rtol=0, atol=tol)
        np.testing.assert_allclose(b.get_state()[i], s.get_state(), rtol=0, atol=tol)
    if dtype == np.float64:
        want, _ = ref.run_model(model, X[7], S0[7])
        np.testing.assert_allclose(Y[7], want, rtol=0, atol=1e-10)
