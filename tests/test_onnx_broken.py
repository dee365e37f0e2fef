"""ONNX import: what cannot stream and broken files, each refused with a
WeightsError naming the file and the node or tensor."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import streamgru as sg  # noqa: E402
from onnx_models import H, I, T, close, err, gru_then, ort_run, rnn_node_model, save  # noqa: E402


# ----------------------------------------------------------------------------
# what cannot stream, and broken files



@pytest.mark.parametrize("direction", ["reverse", "bidirectional"])
def test_reverse_and_bidirectional_refused(tmp_path, direction):
    model, _ = rnn_node_model("GRU", np.random.default_rng(0), direction=direction)
    err(save(model, tmp_path / "dir.onnx"), direction, "future", "the_gru")


def test_unsupported_op_names_op_node_and_supported_list(tmp_path):
    model = gru_then([helper.make_node("Sin", ["h"], ["Y"], name="my_sine")], {}, None)
    msg = err(save(model, tmp_path / "sin.onnx"), "'Sin'", "my_sine", "supported", "Gemm", "GRU")
    assert "MatMul" in msg


def test_unsupported_op_on_an_unused_output_is_harmless(tmp_path):
    nodes = [helper.make_node("Identity", ["h"], ["Y"], name="id"),
             helper.make_node("Cos", ["h"], ["unused"], name="cos")]
    model = gru_then(nodes, {}, None)
    model.graph.output.append(helper.make_tensor_value_info("unused", TensorProto.FLOAT, None))
    path = save(model, tmp_path / "two_outputs.onnx")
    assert sg.load(path).output_size == H
    err(path, "'Cos'", "cos", output="unused")


def test_erf_outside_gelu_refused(tmp_path):
    nodes = [helper.make_node("Erf", ["h"], ["e"], name="lone_erf"),
             helper.make_node("Add", ["e", "one"], ["Y"], name="plus1")]
    model = gru_then(nodes, {"one": np.float32(1.0)}, None)
    err(save(model, tmp_path / "erf.onnx"), "lone_erf", "GELU")
    # (h + 1) * (1 + erf(h / 3)) is not proportional to a GELU of one stream
    nodes = [helper.make_node("Div", ["h", "three"], ["e"], name="div3"),
             helper.make_node("Erf", ["e"], ["erf"], name="erf"),
             helper.make_node("Add", ["erf", "one"], ["p"], name="plus1"),
             helper.make_node("Add", ["h", "one"], ["h1"], name="shift"),
             helper.make_node("Mul", ["h1", "p"], ["Y"], name="not_gelu")]
    model = gru_then(nodes, {"one": np.float32(1.0), "three": np.float32(3.0)}, None)
    err(save(model, tmp_path / "erf3.onnx"), "not_gelu", "GELU")


def test_huge_constant_refused(tmp_path):
    nodes = [helper.make_node("ConstantOfShape", ["big"], ["zeros"]),
             helper.make_node("Add", ["h", "zeros"], ["Y"], name="add")]
    model = gru_then(nodes, {"big": np.array([100000, 100000], np.int64)}, None)
    err(save(model, tmp_path / "big.onnx"), "#2 (unnamed)", "ConstantOfShape", "refused")


def test_malformed_node_is_a_weights_error(tmp_path):
    model, _ = rnn_node_model("GRU", np.random.default_rng(0))
    del model.graph.node[0].input[1:]
    err(save(model, tmp_path / "short_node.onnx"), "the_gru", "malformed")


def test_stream_combined_with_itself_streams_as_a_graph(tmp_path):
    # (refused while a Model was a chain; tests/test_onnx_branches.py has the rest)
    model = gru_then([helper.make_node("Mul", ["h", "h"], ["Y"], name="square")], {}, None)
    path = save(model, tmp_path / "sq.onnx")
    m = sg.load(path)
    X = np.random.default_rng(0).normal(size=(50, 1, m.input_size)).astype(np.float32)
    (want,) = ort_run(path, {m.metadata["input"]: X})
    np.testing.assert_allclose(m.stream().process(X[:, 0]), want[:, 0], rtol=0, atol=1e-5)


def test_unsupported_gate_activation(tmp_path):
    model, _ = rnn_node_model("GRU", np.random.default_rng(0), attrs={"activations": ["Softsign", "Tanh"]})
    err(save(model, tmp_path / "act.onnx"), "Softsign", "the_gru")


def test_middle_time_step_refused(tmp_path):
    nodes = [helper.make_node("Gather", ["h", "three"], ["Y"], name="step3", axis=0)]
    model = gru_then(nodes, {"three": np.array(3, np.int64)}, None)
    err(save(model, tmp_path / "mid.onnx"), "step3", "last time step")


def test_initial_h_differing_per_batch_entry_refused(tmp_path):
    model, arrays = rnn_node_model("GRU", np.random.default_rng(0), initial_h=True)
    h = np.stack([arrays["initial_h"][0, 0], arrays["initial_h"][0, 0] + 1])[None]
    for t in model.graph.initializer:
        if t.name == "initial_h":
            t.CopyFrom(numpy_helper.from_array(h.astype(np.float32), "initial_h"))
    err(save(model, tmp_path / "h0.onnx"), "initial_h", "one initial state")


def test_non_finite_initial_h_refused(tmp_path):
    model, arrays = rnn_node_model("GRU", np.random.default_rng(0), initial_h=True)
    h = arrays["initial_h"].copy()
    h[0, 0, 3] = np.nan
    for t in model.graph.initializer:
        if t.name == "initial_h":
            t.CopyFrom(numpy_helper.from_array(h, "initial_h"))
    err(save(model, tmp_path / "nan.onnx"), "initial_h", "NaN", "the_gru")


def test_hidden_size_attribute_must_match_r(tmp_path):
    model, _ = rnn_node_model("LSTM", np.random.default_rng(0))
    for a in model.graph.node[0].attribute:
        if a.name == "hidden_size":
            a.i = H + 1
    err(save(model, tmp_path / "hs.onnx"), "hidden_size", "the_lstm")


def test_cell_state_output_is_not_a_stream(tmp_path):
    model, _ = rnn_node_model("LSTM", np.random.default_rng(0))
    model.graph.node[0].output.extend(["Y_h", "Y_c"])
    model.graph.output.append(helper.make_tensor_value_info("Y_c", TensorProto.FLOAT, None))
    err(save(model, tmp_path / "yc.onnx"), "Y_c", output="Y_c")


def test_malformed_protobuf(tmp_path):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\xff\xfe\x00 this is not a protobuf" * 7)
    err(bad, "not a valid ONNX file")
    model, _ = rnn_node_model("GRU", np.random.default_rng(0))
    raw = model.SerializeToString()
    cut = tmp_path / "truncated.onnx"
    cut.write_bytes(raw[: len(raw) // 2])
    err(cut)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    err(empty, "no graph")


_VALID = rnn_node_model("LSTM", np.random.default_rng(0), peepholes=True, initial_h=True)[0]


@settings(max_examples=60, deadline=None)
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                      min_size=1, max_size=4))
def test_corrupted_bytes_give_a_model_or_a_weights_error(tmp_path_factory, edits):
    raw = bytearray(_VALID.SerializeToString())
    for where, value in edits:
        raw[int(where * len(raw))] = value
    path = tmp_path_factory.mktemp("fuzz") / "corrupt.onnx"
    path.write_bytes(bytes(raw))
    try:
        m = sg.load(path)
    except sg.WeightsError as exc:
        assert str(path) in str(exc)
    else:
        assert isinstance(m, sg.Model)


def test_missing_initializer(tmp_path):
    model, _ = rnn_node_model("GRU", np.random.default_rng(0))
    keep = [t for t in model.graph.initializer if t.name != "R"]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    err(save(model, tmp_path / "missing.onnx"), "'R'", "not defined", "the_gru")


def test_tensor_size_does_not_match_shape(tmp_path):
    model, _ = rnn_node_model("GRU", np.random.default_rng(0))
    w = next(t for t in model.graph.initializer if t.name == "W")
    w.raw_data = w.raw_data[:-8]
    err(save(model, tmp_path / "short.onnx"), "'W'", "bytes")
    model, _ = rnn_node_model("GRU", np.random.default_rng(0))
    b = next(t for t in model.graph.initializer if t.name == "B")
    b.ClearField("raw_data")
    b.float_data.extend([0.5] * 7)
    err(save(model, tmp_path / "few_floats.onnx"), "'B'", "7 values")


def _external_model(tmp_path, location):
    """A GRU file whose W lives in external data at ``location``."""
    model, arrays = rnn_node_model("GRU", np.random.default_rng(0))
    w = next(t for t in model.graph.initializer if t.name == "W")
    data = w.raw_data
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(len(data)))):
        e = w.external_data.add()
        e.key, e.value = k, v
    return model, data


def test_external_data_inside_the_folder_loads(tmp_path):
    model, data = _external_model(tmp_path, "weights.bin")
    (tmp_path / "weights.bin").write_bytes(data)
    path = save(model, tmp_path / "ext.onnx")
    X = np.random.default_rng(0).normal(size=(T, I)).astype(np.float32)
    close(sg.load(path).stream().process(X), ort_run(path, {"X": X[:, None]})[0][:, 0, 0])


def test_external_data_outside_the_folder_refused(tmp_path):
    inner = tmp_path / "model"
    inner.mkdir()
    model, data = _external_model(inner, "../secret.bin")
    (tmp_path / "secret.bin").write_bytes(data)
    err(save(model, inner / "ext.onnx"), "'W'", "outside")
    model, data = _external_model(inner, "/etc/passwd")
    err(save(model, inner / "abs.onnx"), "'W'", "outside")
    model, data = _external_model(inner, "w\x00.bin")
    err(save(model, inner / "nul.onnx"), "'W'", "outside")
    (inner / "link.bin").symlink_to(tmp_path / "secret.bin")
    model, data = _external_model(inner, "link.bin")
    err(save(model, inner / "link.onnx"), "'W'", "outside")


def test_external_data_truncated(tmp_path):
    model, data = _external_model(tmp_path, "w.bin")
    (tmp_path / "w.bin").write_bytes(data[:10])
    err(save(model, tmp_path / "ext.onnx"), "'W'", "truncated")


def test_missing_onnx_package_gives_the_pip_command(tmp_path, monkeypatch):
    model, _ = rnn_node_model("GRU", np.random.default_rng(0))
    path = save(model, tmp_path / "g.onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(sg.WeightsError, match=r'pip install "streamgru\[onnx\]"'):
        sg.load(path)
