"""ONNX graphs as published model collections write them: a symbolic
(named) feature axis on the graph input, opset-12 shape arithmetic folded
with the opset-12 ops, and ``If`` on a constant condition. Each is streamed
against ONNX Runtime over 1000 steps (float32 within 1e-5)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

import streamgru as sg  # noqa: E402
from onnx_models import H, I, gru_then, ort_run, rng_mat, save  # noqa: E402

STEPS = 1000
TOL = 1e-5


def dims(model, name):
    vi = next(v for v in model.graph.input if v.name == name)
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


def _net(front: str):
    """front: "gru" / "lstm" (the recurrent node reads the input) or
    "linear" (a Linear before the GRU: a MatMul fixes the feature size)."""
    import torch

    torch.manual_seed(len(front))

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pre = torch.nn.Linear(I, 8) if front == "linear" else None
            n_in = 8 if front == "linear" else I
            self.rnn = (torch.nn.LSTM if front == "lstm" else torch.nn.GRU)(
                n_in, H, num_layers=2, batch_first=True)
            self.fc = torch.nn.Linear(H, 3)

        def forward(self, x):
            if self.pre is not None:
                x = torch.tanh(self.pre(x))
            return self.fc(self.rnn(x)[0])

    return Net().eval()


def _stream_vs_ort(path, input_name):
    m = sg.load(path)
    assert m.input_size == I
    X = np.random.default_rng(5).normal(size=(1, STEPS, I)).astype(np.float32)
    ref = ort_run(path, {input_name: X})[0][0]
    Y = m.stream().process(X[0])
    np.testing.assert_allclose(Y, ref, rtol=0, atol=TOL)
    return m


@pytest.mark.parametrize("front", ["gru", "lstm", "linear"])
def test_torchscript_export_with_a_symbolic_feature_axis(tmp_path, front):
    """dynamic_axes on every axis, as whole model collections are exported:
    the feature size comes from the first recurrent node's W (or the
    MatMul weight of a Linear in front)."""
    import torch

    path = tmp_path / f"{front}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_net(front), (torch.randn(2, 16, I),), str(path), dynamo=False,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch", 1: "time", 2: "features"},
                                        "output": {0: "batch", 1: "time"}})
    assert dims(onnx.load(str(path)), "input") == ["batch", "time", "features"]
    m = _stream_vs_ort(path, "input")
    assert [layer.kind for layer in m.layers][-3:] == [front if front != "linear" else "gru"] * 2 + ["dense"]


def test_dynamo_export_with_a_symbolic_feature_axis(tmp_path):
    """torch.export fixes a feature axis that a weight constrains (it refuses
    Dim.DYNAMIC there), so the dynamo export gets dynamic_shapes for batch
    and time and its feature axis is renamed with onnx's own
    update_model_dims, the tool model collections use for this."""
    import torch
    from onnx.tools import update_model_dims

    path = tmp_path / "dynamo.onnx"
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_net("gru"), (torch.randn(2, 16, I),), str(path), dynamo=True,
                          verbose=False, dynamic_shapes=({0: batch, 1: time},))
    model = onnx.load(str(path))
    name, out = model.graph.input[0].name, model.graph.output[0].name
    model = update_model_dims.update_inputs_outputs_dims(
        model, {name: ["batch", "time", "features"]}, {out: ["batch", "time", 3]})
    assert dims(model, name) == ["batch", "time", "features"]
    _stream_vs_ort(save(model, tmp_path / "dynamo_symbolic.onnx"), name)


def test_symbolic_feature_axis_that_nothing_fixes_is_refused(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", 1, "F"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", 1, "F"])])
    path = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                tmp_path / "free.onnx")
    with pytest.raises(sg.WeightsError, match="no fixed feature size") as info:
        sg.load(path)
    assert str(path) in str(info.value) and "'x'" in str(info.value)


def test_opset12_unsqueeze_axes_attribute_is_folded(tmp_path):
    """Opset 12: Unsqueeze takes ``axes`` as an attribute. The Reshape
    target [0, -1, H] is built from constants by Unsqueeze + Concat and must
    be folded with Unsqueeze-11, not the newest version."""
    nodes = [
        helper.make_node("Constant", [], ["hs"], name="h_size", value=helper.make_tensor(
            "hs", TensorProto.INT64, [], [H])),
        helper.make_node("Unsqueeze", ["hs"], ["hs1"], name="unsq_h", axes=[0]),
        helper.make_node("Concat", ["head", "hs1"], ["shape"], name="cat", axis=0),
        helper.make_node("Reshape", ["h", "shape"], ["r"], name="reshape"),
        helper.make_node("MatMul", ["r", "w"], ["Y"], name="mm"),
    ]
    model = gru_then(nodes, {"head": np.array([0, -1], np.int64), "w": rng_mat(H, 3)}, None,
                     opset=12)
    path = save(model, tmp_path / "opset12.onnx")
    m = sg.load(path)
    assert m.metadata["opset"] == 12
    X = np.random.default_rng(2).normal(size=(STEPS, I)).astype(np.float32)
    ref = ort_run(path, {"X": X[:, None]})[0].reshape(STEPS, -1)
    np.testing.assert_allclose(m.stream().process(X), ref, rtol=0, atol=TOL)


def _branch(name, nodes, out):
    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)])


def _if(name, cond, out, then_nodes, then_out, else_nodes, else_out):
    return helper.make_node("If", [cond], [out], name=name,
                            then_branch=_branch("then", then_nodes, then_out),
                            else_branch=_branch("else", else_nodes, else_out))


def _if_model(cond, then_nodes, then_out, else_nodes, else_out, inits=None):
    nodes = [_if("choose", "cond", "Y", then_nodes, then_out, else_nodes, else_out)]
    return gru_then(nodes, {"cond": np.array(cond), **(inits or {})}, None)


def _stream_matches_ort(path):
    m = sg.load(path)
    X = np.random.default_rng(4).normal(size=(STEPS, I)).astype(np.float32)
    ref = ort_run(path, {"X": X[:, None]})[0].reshape(STEPS, -1)
    np.testing.assert_allclose(m.stream().process(X), ref, rtol=0, atol=TOL)
    return m


@pytest.mark.parametrize("cond", [True, False])
def test_if_on_a_constant_is_folded_to_its_branch(tmp_path, cond):
    """The branch taken carries the stream (its nodes read the outer 'h');
    the other branch holds an op that cannot stream and is never walked."""
    taken = [helper.make_node("MatMul", ["h", "w"], ["m"], name="mm"),
             helper.make_node("Tanh", ["m"], ["t"], name="tanh")]
    other = [helper.make_node("Sin", ["h"], ["s"], name="sine")]
    model = (_if_model(True, taken, "t", other, "s", {"w": rng_mat(H, 3)}) if cond
             else _if_model(False, other, "s", taken, "t", {"w": rng_mat(H, 3)}))
    m = _stream_matches_ort(save(model, tmp_path / f"if_{cond}.onnx"))
    assert [layer.kind for layer in m.layers] == ["gru", "dense"]
    assert m.layers[1].activation.name == "tanh"


def test_if_on_a_constant_choosing_a_weight(tmp_path):
    """A branch that only picks a constant (a weight) folds to it."""
    nodes = [_if("pick_weight", "cond", "w", [helper.make_node("Identity", ["w_a"], ["wa"])], "wa",
                 [helper.make_node("Identity", ["w_b"], ["wb"])], "wb"),
             helper.make_node("MatMul", ["h", "w"], ["Y"], name="mm")]
    model = gru_then(nodes, {"cond": np.array(False), "w_a": rng_mat(H, 3, seed=1),
                             "w_b": rng_mat(H, 3, seed=2)}, None)
    m = _stream_matches_ort(save(model, tmp_path / "if_weight.onnx"))
    np.testing.assert_array_equal(m.layers[1].weight, rng_mat(H, 3, seed=2).T)


def test_if_on_a_condition_fed_from_outside_is_refused_naming_the_node(tmp_path):
    nodes = [_if("data_if", "flag", "Y", [helper.make_node("Identity", ["h"], ["a"])], "a",
                 [helper.make_node("Neg", ["h"], ["b"])], "b")]
    model = gru_then(nodes, {}, None)
    model.graph.input.append(helper.make_tensor_value_info("flag", TensorProto.BOOL, []))
    path = save(model, tmp_path / "if_input.onnx")
    with pytest.raises(sg.WeightsError) as info:
        sg.load(path)
    msg = str(info.value)
    assert str(path) in msg and "'data_if' (If)" in msg and "not a constant" in msg, msg
