"""ONNX "same"/padded and strided ``Conv``, ``MaxPool`` and ``AveragePool``
over time, streamed against ONNX Runtime on the same file over 1,200 steps
(float32 within 1e-5): hand-built graphs (onnx.helper) for every attribute
and a CNN-GRU with pools exported by torch.onnx.export. A conv with zeros on
the left short of its reach streams with a delay (step t is ONNX Runtime's
output at t - latency); a strided conv or a pool downsamples (the stream's
rows are ONNX Runtime's rows in order; step returns None between rows)."""

import warnings

import numpy as np
import pytest
from onnx import helper

import streamgru as sg

from onnx_models import err, ort_run, save
from test_conv_latency_torch import DownCnnGru
from test_onnx_conv import CONV, C, conv, graph, w

torch = pytest.importorskip("torch")

T = 1200
TOL = 1e-5


def check(model, X, want, tol=TOL):
    """Every way of streaming ``X`` (T, C) gives the framework's offline
    ``want`` (T', C') within ``tol``, aligned by the model's latency or stride."""
    s = model.stream()
    got = s.process(X)
    if model.stride == 1:
        # step t is the offline output t - D (zeros before); past the offline end, nothing to check
        D, n = model.latency, min(len(X), model.latency + len(want))
        aligned = np.zeros((n, want.shape[1]), want.dtype)
        aligned[D:] = want[: n - D]
        assert len(got) == len(X) and n > len(X) - 10
        want, X = aligned, X[:n]
        got = got[:n]
    else:
        # the rows whose window lies inside the signal; the stream never sees the end's padding
        assert 0 <= len(want) - len(got) <= 2 and len(got) > 50
        want = want[: len(got)]
    assert np.max(np.abs(got - want)) < tol
    s.reset()
    rows = [r for r in (s.step(x) for x in X) if r is not None]
    assert np.max(np.abs(np.array(rows) - want)) < tol
    s.reset()
    parts = [s.process(c) for c in np.split(X, [3, 40, 41, 500])]
    assert np.max(np.abs(np.concatenate(parts) - want)) < tol
    b = model.streams(2)
    Yb = b.process(np.stack([X, X]))
    assert np.max(np.abs(Yb[1] - want)) < tol


def vs_ort(tmp_path, model, name):
    path = save(model, tmp_path / f"{name}.onnx")
    X = np.random.default_rng(5).normal(size=(1, C, T)).astype(np.float32)
    (want,) = ort_run(path, {"X": X})
    m = sg.load(path)
    check(m, np.ascontiguousarray(X[0].T), want[0].T)
    return m


def relu(i, o):
    return helper.make_node("Relu", [i], [o])


CONV2 = {"W2": w(4, 4, 4, seed=2), "B2": w(4, seed=3)}


@pytest.mark.parametrize("attrs, latency", [
    ({"pads": [1, 1]}, 1),                     # torch's padding=1 / Keras "same", k=3
    ({"pads": [0, 0]}, 2),                     # "valid"
    ({"pads": [0, 3]}, 2),
    ({"auto_pad": "SAME_UPPER"}, 1),
    ({"auto_pad": "VALID"}, 2),
    ({"pads": [2, 2], "dilations": [2]}, 2),   # k=3, d=2: (k-1)d = 4
])
def test_padded_conv_streams_with_its_delay(tmp_path, attrs, latency):
    # then a k=4 conv whose SAME_LOWER puts the odd zero first: 2 left, 1 right, delay 1
    nodes = [conv("X", "c", **attrs), relu("c", "r"),
             helper.make_node("Conv", ["r", "W2", "B2"], ["Y"], name="c2", auto_pad="SAME_LOWER")]
    m = vs_ort(tmp_path, graph(nodes, {**CONV, **CONV2}, 4), "padded")
    assert m.latency == latency + 1 and m.stride == 1


@pytest.mark.parametrize("pool", [
    helper.make_node("MaxPool", ["r"], ["Y"], kernel_shape=[3], strides=[2], pads=[1, 1]),
    helper.make_node("MaxPool", ["r"], ["Y"], kernel_shape=[3], dilations=[2], pads=[2, 0]),
    helper.make_node("MaxPool", ["r"], ["Y"], kernel_shape=[2], strides=[2]),
    helper.make_node("AveragePool", ["r"], ["Y"], kernel_shape=[3], strides=[3], pads=[1, 1]),
    helper.make_node("AveragePool", ["r"], ["Y"], kernel_shape=[4], strides=[2], pads=[2, 1],
                     count_include_pad=1),
    helper.make_node("AveragePool", ["r"], ["Y"], kernel_shape=[3], auto_pad="SAME_UPPER"),
], ids=["max_s2_pad", "max_dilated", "max_k2", "avg_s3_pad", "avg_include_pad", "avg_same"])
@pytest.mark.parametrize("stride", [1, 2])
def test_pools_after_a_strided_conv_match_onnxruntime(tmp_path, pool, stride):
    nodes = [conv("X", "c", pads=[1, 1], strides=[stride]), relu("c", "r"), pool]
    m = vs_ort(tmp_path, graph(nodes, CONV, 4, opset=19), "pool")
    assert [type(l).__name__ for l in m.layers] == ["Conv1d", pool.op_type.replace(
        "AveragePool", "AvgPool1d").replace("MaxPool", "MaxPool1d")]


@pytest.mark.parametrize("dynamo", [False, True], ids=["ts", "dynamo"])
def test_a_downsampling_cnn_gru_exported_by_torch_matches_onnxruntime(tmp_path, dynamo):
    torch.manual_seed(0)
    net = DownCnnGru().eval()
    path = tmp_path / "down.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, T, 3),), str(path), dynamo=dynamo,
                          input_names=["x"], verbose=False)
    m = sg.load(path)
    assert [type(l).__name__ for l in m.layers] == [
        "Conv1d", "MaxPool1d", "Conv1d", "AvgPool1d", "GRU", "Dense"]
    assert m.stride == 12
    X = np.random.default_rng(2).normal(size=(1, T, 3)).astype(np.float32)
    (want,) = ort_run(path, {m.metadata.get("input", "x"): X})
    check(m, X[0], want[0])


BAD = {
    "same_strided": ([conv(auto_pad="SAME_UPPER", strides=[2])], ["node 'c' (Conv)",
                                                                  "depends on the sequence"]),
    "left_beyond_reach": ([conv(pads=[3, 0])], ["node 'c' (Conv)", "pads [3, 0]",
                                                "more than (kernel_size - 1) * dilation = 2"]),
    "ceil_mode": ([conv("X", "c", pads=[2, 0]),
                   helper.make_node("MaxPool", ["c"], ["Y"], name="p", kernel_shape=[2],
                                    ceil_mode=1)], ["node 'p' (MaxPool)", "ceil_mode=1"]),
    "indices": ([conv("X", "c", pads=[2, 0]),
                 helper.make_node("MaxPool", ["c"], ["Y", "I"], name="p", kernel_shape=[2])],
                ["node 'p' (MaxPool)", "Indices"]),
    "pool_2d": ([conv("X", "c", pads=[2, 0]),
                 helper.make_node("MaxPool", ["c"], ["Y"], name="p", kernel_shape=[2, 2])],
                ["node 'p' (MaxPool)", "kernel_shape [2, 2]"]),
    "pool_pad": ([conv("X", "c", pads=[2, 0]),
                  helper.make_node("AveragePool", ["c"], ["Y"], name="p", kernel_shape=[2],
                                   pads=[2, 0])], ["node 'p' (AveragePool)", "padding 2"]),
    "avg_dilated": ([conv("X", "c", pads=[2, 0]),
                     helper.make_node("AveragePool", ["c"], ["Y"], name="p", kernel_shape=[2],
                                      dilations=[2])], ["node 'p' (AveragePool)", "dilated"]),
    "pool_strided_same": ([conv("X", "c", pads=[2, 0]),
                           helper.make_node("MaxPool", ["c"], ["Y"], name="p", kernel_shape=[3],
                                            strides=[2], auto_pad="SAME_UPPER")],
                          ["node 'p' (MaxPool)", "depends on the sequence"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_refused_naming_the_node(tmp_path, name):
    nodes, words = BAD[name]
    path = save(graph(nodes, CONV, 4, opset=19), tmp_path / "bad.onnx")
    err(path, *words)
