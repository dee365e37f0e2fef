"""ONNX graphs whose branches join again (formats/onnx/branches.py):
pytorch-tcn's TCN exported by both torch exporters and streamed against
ONNX Runtime, hand-built joins of every kind, and what stays refused."""

import time
import warnings

import numpy as np
import pytest
import torch
from onnx import helper
from pytorch_tcn import TCN

import streamgru as sg

from onnx_models import TOL, err, ort_run, save
from test_onnx_conv import C, graph, w  # hand-built graphs on a (1, C, T) input

T = 400


def tcn(seed: int, **options) -> TCN:
    torch.manual_seed(seed)
    net = TCN(C, [8, 8, 6], kernel_size=3, **options)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.4)
    return net.eval()


TCNS = {"plain": {}, "batch_norm": {"use_norm": "batch_norm"},
        "skips": {"use_skip_connections": True}, "gated": {"use_gate": True}}


@pytest.mark.parametrize("dynamo", [False, True], ids=["ts", "dynamo"])
@pytest.mark.parametrize("name", list(TCNS))
def test_pytorch_tcn_exported_streams_like_onnxruntime(tmp_path, name, dynamo):
    net = tcn(len(name), **TCNS[name])
    path = tmp_path / f"{name}.onnx"
    x = torch.randn(1, C, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(net, (x,), str(path), dynamo=True, verbose=False,
                              dynamic_shapes=({2: torch.export.Dim("time")},))
        else:
            torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["x"],
                              dynamic_axes={"x": {2: "time"}})
    m = sg.load(path)
    # the graph sg.from_torch builds: a Split's halves are slices, not products,
    # and tanh * sigmoid (or GLU's a * sigmoid(b)) of them one gate
    assert not any(type(layer).__name__ == "Dense" for layer in m.layers)
    if name == "gated":
        assert [getattr(layer, "op", "") for layer in m.layers].count("gate") == 3
    X = np.random.default_rng(1).normal(size=(1, C, T)).astype(np.float32)
    (want,) = ort_run(path, {m.metadata["input"]: X})
    tol = TOL * max(1.0, np.abs(want).max())
    assert np.max(np.abs(m.stream().process(X[0].T) - want[0].T)) < tol
    s = m.stream()
    assert np.max(np.abs(np.array([s.step(v) for v in X[0].T]) - want[0].T)) < tol
    # the same model as sg.from_torch reads it
    np.testing.assert_allclose(sg.from_torch(net).stream().process(X[0].T), want[0].T,
                               rtol=0, atol=tol)


# ---------------------------------------------------------------------------
# hand-built graphs on a (1, C, T) input


def conv(inp, out, weight, pads, **attrs):
    return helper.make_node("Conv", [inp, weight], [out], pads=pads, **attrs)


def node(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs, **attrs)


I64 = np.int64
# a 1x1 Conv first, for graphs with no other: it makes the input channels-first
ONE, ONE_W = conv("X", "x1", "I", [0, 0]), {"I": w(C, C, 1, seed=9)}
JOINS = {
    # y = relu(conv(x) + x): the residual sum, its activation folded into the join
    "residual": ([conv("X", "c", "W", [1, 0]), node("Add", ["c", "X"], ["s"]),
                  node("Relu", ["s"], ["Y"])], {"W": w(C, C, 2)}, C, 17),
    "sub": ([conv("X", "c", "W", [1, 0]), node("Sub", ["X", "c"], ["Y"])], {"W": w(C, C, 2)}, C, 17),
    "square": ([ONE, node("Mul", ["x1", "x1"], ["Y"])], ONE_W, C, 17),
    # tanh(a) * sigmoid(b) over the halves of one conv: Split by sizes (input, opset 13+)
    "gate_split_input": ([conv("X", "z", "W", [2, 0]), node("Split", ["z", "sz"], ["a", "b"], axis=1),
                          node("Tanh", ["a"], ["ta"]), node("Sigmoid", ["b"], ["sb"]),
                          node("Mul", ["ta", "sb"], ["Y"])],
                         {"W": w(8, C, 3), "sz": np.array([4, 4], I64)}, 4, 17),
    "gate_split_attribute": ([conv("X", "z", "W", [2, 0]), node("Split", ["z"], ["a", "b"], axis=1,
                                                               split=[4, 4]),
                              node("Tanh", ["a"], ["ta"]), node("Sigmoid", ["b"], ["sb"]),
                              node("Mul", ["ta", "sb"], ["Y"])], {"W": w(8, C, 3)}, 4, 11),
    "split_num_outputs": ([conv("X", "z", "W", [0, 0]), node("Split", ["z"], ["a", "b"], axis=1,
                                                             num_outputs=2),
                           node("Add", ["a", "b"], ["Y"])], {"W": w(6, C, 1)}, 3, 18),
    # torch.stack([a, b, x]).mean(0): Unsqueeze, Concat on the new axis, ReduceMean
    "stack_mean": ([conv("X", "a", "W", [1, 0]), conv("X", "b", "V", [2, 0], dilations=[2]),
                    node("Unsqueeze", ["a", "ax0"], ["ua"]), node("Unsqueeze", ["b", "ax0"], ["ub"]),
                    node("Unsqueeze", ["X", "ax0"], ["ux"]),
                    node("Concat", ["ua", "ub", "ux"], ["st"], axis=0),
                    node("ReduceMean", ["st"], ["Y"], axes=[0], keepdims=0)],
                   {"W": w(C, C, 2), "V": w(C, C, 2, seed=1), "ax0": np.array([0], I64)}, C, 17),
    # two branches and the input side by side over the channels, then a relu
    "concat": ([conv("X", "a", "W", [1, 0]), conv("X", "b", "V", [2, 0], dilations=[2]),
                node("Concat", ["a", "b", "X"], ["c"], axis=1), node("Relu", ["c"], ["Y"])],
               {"W": w(2, C, 2), "V": w(4, C, 2, seed=1)}, 2 + 4 + C, 17),
    "stack_sum": ([conv("X", "a", "W", [1, 0]), node("Unsqueeze", ["a", "ax0"], ["ua"]),
                   node("Unsqueeze", ["X", "ax0"], ["ux"]), node("Concat", ["ua", "ux"], ["st"], axis=0),
                   node("ReduceSum", ["st", "ax0"], ["Y"], keepdims=0)],
                  {"W": w(C, C, 2), "ax0": np.array([0], I64)}, C, 17),
}


@pytest.mark.parametrize("name", list(JOINS))
def test_joined_branches_stream_like_onnxruntime(tmp_path, name):
    nodes, inits, out, opset = JOINS[name]
    path = save(graph(nodes, inits, out, opset), tmp_path / f"{name}.onnx")
    X = np.random.default_rng(2).normal(size=(1, C, T)).astype(np.float32)
    (want,) = ort_run(path, {"X": X})
    m = sg.load(path)
    assert m.output_size == out
    if name.startswith("gate_"):
        assert [getattr(layer, "op", "") for layer in m.layers] == ["", "gate"]
    got = m.stream().process(np.ascontiguousarray(X[0].T))
    assert np.max(np.abs(got - want[0].T)) < TOL



REFUSED = {
    "divide": ([ONE, node("Div", ["x1", "x1"], ["Y"], name="d")], ONE_W, C,
               ["node 'd' (Div)", "divides the stream by the stream"]),
    "shapes": ([conv("X", "c", "W", [2, 0]), node("Add", ["c", "X"], ["Y"], name="a")],
               {"W": w(4, C, 3)}, 4, ["node 'a' (Add)", "4 features", "3 features",
                                      "branches join element-wise only"]),
    "sum_over_time": ([ONE, node("ReduceSum", ["x1", "ax2"], ["Y"], name="r", keepdims=1)],
                      {**ONE_W, "ax2": np.array([2], I64)}, C,
                      ["node 'r' (ReduceSum)", "does not stream"]),
    "stack_sum_wrong_axis": ([ONE, node("Unsqueeze", ["x1", "ax0"], ["u"]),
                              node("Concat", ["u", "u"], ["st"], axis=0),
                              node("ReduceSum", ["st", "ax1"], ["Y"], name="r", keepdims=0)],
                             {**ONE_W, "ax0": np.array([0], I64), "ax1": np.array([1], I64)}, C,
                             ["node 'r' (ReduceSum)", "only the stacked axis"]),
    "split_time": ([ONE, node("Split", ["x1"], ["Y", "Z"], name="s", axis=2, num_outputs=2)],
                   ONE_W, C, ["node 's' (Split)", "only the features split"]),
    "split_sizes": ([ONE, node("Split", ["x1", "sz"], ["Y", "Z"], name="s", axis=1)],
                    {**ONE_W, "sz": np.array([1, 1], I64)}, C,
                    ["node 's' (Split)", "Split sizes [1, 1]"]),
    "concat_time": ([ONE, node("Concat", ["x1", "x1"], ["Y"], name="cat", axis=2)], ONE_W,
                    C, ["node 'cat' (Concat)", "over an axis other than the features"]),
    # a branch that looks ahead: a graph's branches are causal
    "same_padding": ([conv("X", "c", "W", [1, 1]), node("Add", ["c", "X"], ["Y"])],
                     {"W": w(C, C, 3)}, C, ["Conv1d has a latency of 1 samples",
                                            "a graph's branches must all be causal"]),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_what_does_not_join_is_refused(tmp_path, name):
    nodes, inits, out, words = REFUSED[name]
    opset = 18 if name == "split_time" else 17
    err(save(graph(nodes, inits, out, opset), tmp_path / "bad.onnx"), *words)


def test_thousands_of_joins_load_in_seconds(tmp_path):
    # y_k = y_{k-1} + y_{k-2}: each join's other branch is the whole chain before it
    n = 3000
    nodes = [conv("X", "y1", "I", [0, 0])] + [
        node("Add", [f"y{k - 1}", f"y{k - 2}" if k > 2 else "X"], [f"y{k}"]) for k in range(2, n)]
    nodes.append(node("Identity", [f"y{n - 1}"], ["Y"]))
    path = save(graph(nodes, ONE_W, C), tmp_path / "fib.onnx")
    t0 = time.perf_counter()
    try:
        m = sg.load(path)
    except sg.WeightsError as exc:  # refused by the load's work budget is fine too
        assert "budget" in str(exc)
    else:
        assert m.output_size == C
    assert time.perf_counter() - t0 < 30


def test_a_recurrent_branch_keeps_the_files_initial_state(tmp_path):
    from onnx_models import dense_graph, rnn_node_model

    model, arrays = rnn_node_model("GRU", np.random.default_rng(0), initial_h=True,
                                   attrs={"linear_before_reset": 1})
    gru = model.graph.node[0]
    gru.output[0] = "Yg"
    nodes = [gru, node("Squeeze", ["Yg", "dir"], ["h"]), node("Mul", ["h", "h"], ["Y"])]
    path = save(dense_graph(nodes, {"dir": np.array([1], I64), **arrays}, None), tmp_path / "h0.onnx")
    m = sg.load(path)
    np.testing.assert_array_equal(m.initial_state, arrays["initial_h"].reshape(-1))
    X = np.random.default_rng(0).normal(size=(60, 1, m.input_size)).astype(np.float32)
    (want,) = ort_run(path, {m.metadata["input"]: X})
    assert np.max(np.abs(m.stream().process(X[:, 0]) - want[:, 0])) < TOL
