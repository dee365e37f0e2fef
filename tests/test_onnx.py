"""ONNX import: torch exports and hand-built single-node graphs for every RNN
attribute, streamed against ONNX Runtime's full-sequence outputs. The ops
around the recurrent nodes are in test_onnx_ops, broken files in
test_onnx_broken, hostile ones in test_onnx_hostile.

Every model here is float32 (one kernel compilation per entry point)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import streamgru as sg  # noqa: E402
from onnx_models import (TOL, H, I, O, T, Export, close, dense_graph, export, ort_run,  # noqa: E402
                         rnn_node_model, save)
from reference import run_model  # noqa: E402

# ----------------------------------------------------------------------------
# torch exports

EXPORTS = [
    Export("GRU", 2, True, "tanh", dynamic=True),
    Export("GRU", 1, False, "relu"),
    Export("GRU", 3, False, "", last=True, dynamic=True),
    Export("LSTM", 3, True, "sigmoid"),
    Export("LSTM", 1, False, "softmax", dynamic=True),
    Export("LSTM", 2, True, "", state_input=True),
    Export("RNN", 2, True, "leaky_relu", relu=True),
    Export("RNN", 1, False, "tanh", state_input=True, dynamic=True),
    Export("GRU", 2, False, "softmax", dynamic=True, opset=11),  # Squeeze axes, 2-D Softmax
    Export("LSTM", 1, True, "relu", last=True, dynamic=True, opset=9),  # Slice attributes
    Export("GRU", 1, True, "gelu", opset=17),  # GELU written with Erf
    Export("GRU", 2, True, "tanh", hn=True, dynamic=True),  # fc(h_n[-1])
    Export("LSTM", 3, False, "", hn=True),
    Export("GRU", 2, True, "tanh", dynamo=True),
    # the dynamic LSTM export must come first: after one LSTM export, torch.export
    # (torch 2.13) fixes the time axis of later LSTM exports in the same process
    Export("LSTM", 2, True, "", dynamo=True, dynamic=True, hn=True),
    Export("LSTM", 1, False, "sigmoid", dynamo=True),
    # (the dynamo exporter unrolls torch.nn.RNN into per-step MatMul/Tanh: no RNN node to map)
]


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """Exports each case once per session, on first use."""
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("onnx_exports")
    done: dict = {}

    def get(case: Export):
        if case.id not in done:
            path = folder / f"{case.id}.onnx"
            export(case, path)
            done[case.id] = path
        return done[case.id]

    return get


def _feeds(case: Export, X: np.ndarray) -> dict:
    """ORT inputs for a batch X of shape (n, T, I)."""
    x = X if case.batch_first else X.transpose(1, 0, 2)
    feeds = {"x": np.ascontiguousarray(x)}
    if case.state_input:
        zeros = np.zeros((case.num_layers, X.shape[0], H), np.float32)
        feeds["h0"] = zeros
        if case.kind == "LSTM":
            feeds["c0"] = zeros.copy()
    return feeds


def _per_stream(case: Export, y: np.ndarray) -> np.ndarray:
    """ORT output -> (n, T, O), or (n, O) for a many-to-one model."""
    if case.last or case.hn or case.batch_first:
        return y
    return y.transpose(1, 0, 2)


@pytest.mark.parametrize("case", EXPORTS, ids=lambda c: c.id)
def test_torch_export_streams_like_onnxruntime(exported, case):
    path = exported(case)
    m = sg.load(path)
    assert m.metadata["format"] == "onnx" and m.metadata["source"] == str(path)
    kinds = [layer.kind for layer in m.layers]
    assert kinds[: case.num_layers] == [case.kind.lower()] * case.num_layers
    assert kinds[case.num_layers:] == ["dense"]  # head, activation folded in
    assert m.input_size == I and m.output_size == O
    assert m.metadata["many_to_one"] == (case.last or case.hn)
    if case.state_input:
        assert m.metadata["state_inputs"] == (["c0", "h0"] if case.kind == "LSTM" else ["h0"])
    n = 2 if case.dynamic else 1  # static exports are fixed to batch 1
    rng = np.random.default_rng(7)
    X = rng.normal(size=(n, T, I)).astype(np.float32)
    ref = _per_stream(case, ort_run(path, _feeds(case, X))[0])
    if n == 1:
        Y = m.stream().process(X[0])[None]
    else:
        Y = m.streams(n).process(X)
    if case.last or case.hn:
        close(Y[:, -1], ref)
        # streamed, every step is the output for the sequence ending there
        for t in (1, 57, 150) if case.dynamic else ():
            prefix = _per_stream(case, ort_run(path, _feeds(case, X[:, :t]))[0])
            close(Y[:, t - 1], prefix)
    else:
        close(Y, ref)


def test_step_by_step_equals_process(exported):
    case = next(c for c in EXPORTS if c.kind == "LSTM" and c.num_layers == 3)
    m = sg.load(exported(case))
    X = np.random.default_rng(1).normal(size=(50, I)).astype(np.float32)
    s = m.stream()
    steps = np.array([s.step(x) for x in X])
    close(steps, m.stream().process(X), 1e-6)


def test_dynamo_file_gru_flag_is_what_the_file_says(exported):
    """Whatever linear_before_reset the exporter wrote is what is streamed."""
    path = exported(next(c for c in EXPORTS if c.kind == "GRU" and c.dynamo))
    graph = onnx.load(str(path)).graph
    flags = [next((a.i for a in n.attribute if a.name == "linear_before_reset"), 0)
             for n in graph.node if n.op_type == "GRU"]
    m = sg.load(path)
    assert [layer.reset_after for layer in m.layers if layer.kind == "gru"] == [bool(f) for f in flags]


# ----------------------------------------------------------------------------
# hand-built single RNN nodes


def _stream_vs_ort(tmp_path, model, name, layout=0, ort_model=None, tol=TOL):
    """Stream the loaded model over T steps; compare with ORT's Y on the same
    (or the twin ``ort_model``) graph. Returns the loaded model."""
    path = save(model, tmp_path / f"{name}.onnx")
    m = sg.load(path)
    X = np.random.default_rng(3).normal(size=(T, I)).astype(np.float32)
    Y = m.stream().process(X)
    if ort_model is None:
        ort_model, ort_path = model, path
    else:
        ort_path = save(ort_model, tmp_path / f"{name}_ort.onnx")
    ref = ort_run(ort_path, {"X": X[:, None]})[0][:, 0, 0]
    close(Y, ref, tol)
    return m


GRU_CASES = {
    "lbr0": {},
    "lbr1": {"linear_before_reset": 1},
    "clip": {"clip": 0.8, "linear_before_reset": 1},
    "hardsigmoid": {"activations": ["HardSigmoid", "Tanh"], "activation_alpha": [0.3],
                    "activation_beta": [0.45]},
    "relu_candidate": {"activations": ["Sigmoid", "Relu"]},
}


@pytest.mark.parametrize("name", list(GRU_CASES))
def test_gru_node(tmp_path, name):
    model, arrays = rnn_node_model("GRU", np.random.default_rng(len(name)), attrs=GRU_CASES[name],
                                   scale=0.9 if name == "clip" else 0.4)
    m = _stream_vs_ort(tmp_path, model, name)
    (gru,) = m.layers
    assert gru.reset_after == bool(GRU_CASES[name].get("linear_before_reset", 0))
    if name == "clip":
        assert gru.clip == pytest.approx(0.8)
    if name == "hardsigmoid":
        assert (gru.gate_activation.name, gru.gate_activation.alpha, gru.gate_activation.beta) == (
            "hard_sigmoid", pytest.approx(0.3), pytest.approx(0.45))


def test_gru_node_without_bias(tmp_path):
    model, _ = rnn_node_model("GRU", np.random.default_rng(0), bias=False)
    _stream_vs_ort(tmp_path, model, "nobias")


def test_initial_h_initializer_is_the_initial_state(tmp_path):
    model, arrays = rnn_node_model("GRU", np.random.default_rng(1), initial_h=True,
                                   attrs={"linear_before_reset": 1})
    m = _stream_vs_ort(tmp_path, model, "h0")
    close(m.initial_state, arrays["initial_h"][0, 0], 0)
    s = m.stream()
    s.step(np.ones(I, np.float32))
    s.reset()
    close(s.get_state(), arrays["initial_h"][0, 0], 0)


LSTM_CASES = {
    "plain": ({}, {}),
    "peepholes_input_forget": ({"input_forget": 1}, {"peepholes": True, "initial_h": True,
                                                     "initial_c": True}),
    "peepholes_clip": ({"clip": 0.9}, {"peepholes": True, "scale": 0.9}),
    "hardsigmoid": ({"activations": ["HardSigmoid", "Tanh", "Relu"], "activation_alpha": [0.25],
                     "activation_beta": [0.55]}, {}),
}


@pytest.mark.parametrize("name", list(LSTM_CASES))
def test_lstm_node(tmp_path, name):
    attrs, kw = LSTM_CASES[name]
    model, arrays = rnn_node_model("LSTM", np.random.default_rng(10 + len(name)), attrs=attrs, **kw)
    m = _stream_vs_ort(tmp_path, model, name)
    (lstm,) = m.layers
    assert lstm.input_forget == bool(attrs.get("input_forget", 0))
    assert (lstm.peepholes is not None) == kw.get("peepholes", False)
    if kw.get("initial_h"):
        close(m.initial_state, np.concatenate([arrays["initial_h"][0, 0], arrays["initial_c"][0, 0]]), 0)


@pytest.mark.parametrize("attrs", [{"activations": ["Relu"]}, {"clip": 0.5},
                                   {"activations": ["Tanh"]}], ids=["relu", "clip", "tanh"])
def test_rnn_node(tmp_path, attrs):
    model, _ = rnn_node_model("RNN", np.random.default_rng(20), attrs=attrs, initial_h=True,
                              scale=0.3)
    m = _stream_vs_ort(tmp_path, model, "rnn")
    assert m.layers[0].activation.name == attrs.get("activations", ["Tanh"])[0].lower()


_GATES = ["Sigmoid", "HardSigmoid"]
_CELLS = ["Tanh", "Relu", "Sigmoid", "HardSigmoid"]


@st.composite
def rnn_nodes(draw):
    """Any forward GRU/LSTM/RNN node: sizes, bias, clip, activations with
    alpha/beta, linear_before_reset, input_forget, peepholes, initial states."""
    op = draw(st.sampled_from(["GRU", "LSTM", "RNN"]))
    n_acts = {"GRU": 2, "LSTM": 3, "RNN": 1}[op]
    acts = [draw(st.sampled_from(_GATES))] if op != "RNN" else []
    acts += [draw(st.sampled_from(_CELLS)) for _ in range(n_acts - len(acts))]
    attrs: dict = {}
    if draw(st.booleans()):
        attrs["activations"] = acts
        n_alpha = sum(a == "HardSigmoid" for a in acts)
        alpha = draw(st.lists(st.floats(0.1, 0.5), min_size=n_alpha, max_size=n_alpha))
        beta = draw(st.lists(st.floats(0.3, 0.7), min_size=n_alpha, max_size=n_alpha))
        if alpha:
            attrs["activation_alpha"], attrs["activation_beta"] = alpha, beta
    if draw(st.booleans()):
        attrs["clip"] = draw(st.floats(0.3, 3.0))
    if op == "GRU":
        attrs["linear_before_reset"] = draw(st.integers(0, 1))
    if op == "LSTM" and draw(st.booleans()):
        attrs["input_forget"] = 1
    hidden = draw(st.integers(1, 24))
    kw = dict(
        hidden=hidden, inputs=draw(st.integers(1, 8)),
        # a contracting recurrence: float32 rounding differences then stay at
        # rounding size instead of being amplified step after step (ORT itself
        # drifts 2e-5 from float64 math on expanding ones)
        recurrent_scale=draw(st.floats(0.1, 0.9)) / np.sqrt(hidden),
        bias=draw(st.booleans()), initial_h=draw(st.booleans()),
        initial_c=op == "LSTM" and draw(st.booleans()),
        peepholes=op == "LSTM" and draw(st.booleans()),
        scale=draw(st.floats(0.1, 0.6)),
    )
    return op, attrs, kw, draw(st.integers(0, 2**16))


@settings(max_examples=30, deadline=None)
@given(spec=rnn_nodes())
def test_any_rnn_node_streams_like_onnxruntime(tmp_path_factory, spec):
    op, attrs, kw, seed = spec
    model, arrays = rnn_node_model(op, np.random.default_rng(seed), attrs=attrs, **kw)
    path = save(model, tmp_path_factory.mktemp("prop") / "node.onnx")
    X = np.random.default_rng(seed).normal(size=(40, kw["inputs"])).astype(np.float32)
    ref = ort_run(path, {"X": X[:, None]})[0][:, 0, 0]
    m = sg.load(path)
    np.testing.assert_allclose(m.stream().process(X), ref, rtol=1e-4, atol=TOL)


@pytest.mark.parametrize("op", ["GRU", "LSTM", "RNN"])
def test_layout_1(tmp_path, op):
    """layout=1 (batch first everywhere). ONNX Runtime refuses it, so the file
    is compared with its layout-0 twin (same weights) run by ORT, and with the
    reference math."""
    kw = dict(initial_h=True, initial_c=op == "LSTM", attrs={"linear_before_reset": 1} if op == "GRU" else {})
    model1, arrays = rnn_node_model(op, np.random.default_rng(30), layout=1, **kw)
    model0, _ = rnn_node_model(op, np.random.default_rng(30), layout=0, **kw)
    # the same initial state, in each layout's axis order
    for name in ("initial_h", "initial_c"):
        if name in arrays:
            for init in model0.graph.initializer:
                if init.name == name:
                    init.CopyFrom(numpy_helper.from_array(arrays[name].transpose(1, 0, 2), name))
    path1 = save(model1, tmp_path / "layout1.onnx")
    m = sg.load(path1)
    close(m.initial_state[:H], arrays["initial_h"][0, 0], 0)
    X = np.random.default_rng(4).normal(size=(T, I)).astype(np.float32)
    Y = m.stream().process(X)
    ref = ort_run(save(model0, tmp_path / "layout0.onnx"), {"X": X[:, None]})[0][:, 0, 0]
    close(Y, ref)
    close(Y, run_model(m, X)[0], 1e-5)


def test_y_h_output_is_many_to_one(tmp_path):
    model, _ = rnn_node_model("GRU", np.random.default_rng(5))
    model.graph.node[0].output.append("Y_h")
    model.graph.output.append(helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, 1, H]))
    path = save(model, tmp_path / "yh.onnx")
    X = np.random.default_rng(5).normal(size=(T, I)).astype(np.float32)
    y, y_h = ort_run(path, {"X": X[:, None]})
    m = sg.load(path, output="Y_h")
    assert m.metadata["many_to_one"] and m.metadata["output"] == "Y_h"
    Y = m.stream().process(X)
    close(Y[-1], y_h[0, 0])
    close(sg.load(path).stream().process(X), y[:, 0, 0])  # default: the first output


def test_shape_built_sequence_lens_and_tiled_zero_state(tmp_path):
    """The tf2onnx style: sequence_lens and a zero initial_h computed from the
    input's shape (symbolic batch); sequence_lens is ignored, h0 is zeros."""
    model, arrays = rnn_node_model("GRU", np.random.default_rng(9), attrs={"linear_before_reset": 1})
    gru = model.graph.node[0]
    del gru.input[4:]
    gru.input.extend(["seq_lens", "h0"])
    pre = [
        helper.make_node("Shape", ["X"], ["sh"], name="shape"),
        helper.make_node("Gather", ["sh", "zero"], ["t"], name="time", axis=0),
        helper.make_node("Gather", ["sh", "one"], ["n"], name="batch", axis=0),
        helper.make_node("Unsqueeze", ["t", "ax0"], ["t1"], name="t1"),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"], name="n1"),
        helper.make_node("Cast", ["t1"], ["t32"], name="cast", to=TensorProto.INT32),
        helper.make_node("Expand", ["t32", "n1"], ["seq_lens"], name="lens"),
        helper.make_node("Concat", ["ones1", "n1", "ones1"], ["reps"], name="reps", axis=0),
        helper.make_node("Tile", ["zeros", "reps"], ["h0"], name="tile"),
    ]
    inits = {"zero": np.array(0, np.int64), "one": np.array(1, np.int64),
             "ax0": np.array([0], np.int64), "ones1": np.array([1], np.int64),
             "zeros": np.zeros((1, 1, H), np.float32), **arrays}
    m = dense_graph(pre + [gru], inits, None)
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "N"
    path = save(m, tmp_path / "tf2onnx_like.onnx")
    X = np.random.default_rng(9).normal(size=(T, 2, I)).astype(np.float32)
    ref = ort_run(path, {"X": X})[0][:, 0]  # (T, batch, H)
    loaded = sg.load(path)
    assert not np.any(loaded.initial_state)
    close(loaded.streams(2).process(np.ascontiguousarray(X.transpose(1, 0, 2))), ref.transpose(1, 0, 2))


def test_float64_option(tmp_path):
    model, _ = rnn_node_model("GRU", np.random.default_rng(6))
    m = sg.load(save(model, tmp_path / "g.onnx"), dtype=np.float64)
    assert m.dtype == np.float64


def test_state_fed_from_graph_input_starts_at_zero(exported):
    case = next(c for c in EXPORTS if c.kind == "LSTM" and c.state_input)
    m = sg.load(exported(case))
    assert not np.any(m.initial_state)
