"""ONNX convolution chains exported by torch.onnx.export (TorchScript and
dynamo exporters), streamed step by step against ONNX Runtime over 1,200
steps (float32 within 1e-5), and hand-built graphs for every refusal and
malformed variant (WeightsError naming the file and the node)."""

import warnings

import numpy as np

import pytest
from onnx import TensorProto, helper, numpy_helper

import streamgru as sg

from onnx_models import err, ort_run, save
from test_conv_torch import randomise_batchnorm

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

T = 1200
TOL = 1e-5


def _bn(bn, gen):
    randomise_batchnorm(bn, gen)
    return bn


class CnnGru(nn.Module):
    """A sensor classifier, input (N, T, 3): left-padded causal convs (one
    under weight norm), BatchNorm (one fused by the exporter, one after a
    ReLU), per-channel PReLU, LayerNorm, GRU, Linear."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.conv1 = nn.Conv1d(3, 8, 5)
        self.bn1 = _bn(nn.BatchNorm1d(8), gen)
        self.conv2 = nn.utils.weight_norm(nn.Conv1d(8, 8, 3, dilation=2, groups=2))
        self.bn2 = _bn(nn.BatchNorm1d(8), gen)
        self.act = nn.PReLU(8)
        self.norm = nn.LayerNorm(8)
        self.gru = nn.GRU(8, 16, batch_first=True)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = x.transpose(1, 2)
        x = torch.relu(self.bn1(self.conv1(F.pad(x, (4, 0)))))
        x = self.act(self.bn2(F.relu(self.conv2(F.pad(x, (4, 0))))))
        x = self.norm(x.permute(0, 2, 1))
        y, _ = self.gru(x)
        return self.fc(y)


class Block(nn.Module):
    """A TCN block in the chomp form: padded both sides, then x[:, :, :-p]."""

    def __init__(self, c, d):
        super().__init__()
        self.conv = nn.utils.weight_norm(nn.Conv1d(c, c, 3, padding=2 * d, dilation=d))
        self.p = 2 * d
        self.act = nn.PReLU()

    def forward(self, x):
        return self.act(self.conv(x)[:, :, : -self.p])


class TCN(nn.Module):
    """Channels-first input (N, 2, T): dilated causal blocks, a depthwise
    conv, tanh, LayerNorm after a transpose, a Linear head."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Conv1d(2, 6, 3)
        self.blocks = nn.Sequential(*[Block(6, d) for d in (1, 2, 4, 8)])
        self.depthwise = nn.Conv1d(6, 6, 2, dilation=3, groups=6)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        x = self.blocks(self.inp(F.pad(x, (2, 0))))
        x = torch.tanh(self.depthwise(F.pad(x, (3, 0))))
        return self.head(self.norm(x.transpose(1, 2)))


def export(net, path, x, dynamo):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (x,), str(path), dynamo=dynamo, input_names=["x"],
                          verbose=False)
    return path


@pytest.fixture(scope="module", params=["ts", "dynamo"])
def files(request, tmp_path_factory):
    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp(f"conv_{request.param}")
    dynamo = request.param == "dynamo"
    return {
        "cnn_gru": export(CnnGru(), folder / "cnn_gru.onnx", torch.randn(1, T, 3), dynamo),
        "tcn": export(TCN(), folder / "tcn.onnx", torch.randn(1, 2, T), dynamo),
    }


def test_cnn_gru_streams_like_onnxruntime(files):
    path = files["cnn_gru"]
    m = sg.load(path)
    assert [type(l).__name__ for l in m.layers] == [
        "Conv1d", "Conv1d", "BatchNorm", "PReLU", "LayerNorm", "GRU", "Dense"]
    assert m.layers[0].activation.name == "relu" and m.layers[1].groups == 2
    X = np.random.default_rng(1).normal(size=(1, T, 3)).astype(np.float32)
    (want,) = ort_run(path, {"x": X})
    s = m.stream()
    y = np.empty(m.output_size, np.float32)
    got = np.array([s.step(x, out=y).copy() for x in X[0]])
    assert np.max(np.abs(got - want[0])) < TOL


def test_tcn_streams_like_onnxruntime(files):
    path = files["tcn"]
    m = sg.load(path)
    kinds = [type(l).__name__ for l in m.layers]
    assert kinds.count("Conv1d") == 6 and kinds.count("PReLU") == 4 and "LayerNorm" in kinds
    assert m.input_size == 2 and m.output_size == 3 and m.latency == 0
    X = np.random.default_rng(2).normal(size=(1, 2, T)).astype(np.float32)
    (want,) = ort_run(path, {"x": X})
    s = m.stream()
    got = np.array([s.step(x) for x in X[0].T])
    assert np.max(np.abs(got - want[0])) < TOL
    np.testing.assert_allclose(m.stream().process(X[0].T), got, rtol=0, atol=TOL)


@pytest.mark.parametrize("dynamo", [False, True], ids=["ts", "dynamo"])
def test_tcn_exported_with_dynamic_time_streams_like_onnxruntime(tmp_path, dynamo):
    torch.manual_seed(4)
    path = tmp_path / "tcn_dynamic.onnx"
    x = torch.randn(1, 2, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(TCN().eval(), (x,), str(path), dynamo=True, verbose=False,
                              dynamic_shapes=({2: torch.export.Dim("time")},))
        else:
            torch.onnx.export(TCN().eval(), (x,), str(path), dynamo=False, input_names=["x"],
                              dynamic_axes={"x": {2: "time"}})
    m = sg.load(path)
    X = np.random.default_rng(6).normal(size=(1, 2, 1000)).astype(np.float32)
    (want,) = ort_run(path, {m.metadata["input"]: X})
    assert np.max(np.abs(m.stream().process(X[0].T) - want[0])) < TOL


def test_a_float64_export_matches_torch_to_1e_9(tmp_path):
    # (ONNX Runtime has no float64 Conv; the reference is torch's own double forward)
    torch.manual_seed(5)
    net = TCN().eval().double()
    path = export(net, tmp_path / "tcn64.onnx", torch.randn(1, 2, T, dtype=torch.float64), False)
    m = sg.load(path, dtype=np.float64)
    X = np.random.default_rng(7).normal(size=(1, 2, T))
    with torch.no_grad():
        want = net(torch.from_numpy(X))[0].numpy()
    np.testing.assert_allclose(m.stream().process(X[0].T), want, rtol=0, atol=1e-9)


# ---------------------------------------------------------------------------
# hand-built graphs: a channels-first input (1, C, T) through ``nodes``

C = 3


def graph(nodes, inits, out_channels, opset=17, out_shape=None):
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, C, "T"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, out_shape or [1, out_channels, "T"])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def w(*shape, seed=0):
    return np.random.default_rng(seed).normal(0, 0.5, shape).astype(np.float32)


def conv(inp="X", out="Y", name="c", **attrs):
    return helper.make_node("Conv", [inp, "W", "B"], [out], name=name, **attrs)


CONV = {"W": w(4, C, 3), "B": w(4, seed=1)}


def _vs_ort(tmp_path, model, name, channels):
    path = save(model, tmp_path / f"{name}.onnx")
    X = np.random.default_rng(5).normal(size=(1, C, 1000)).astype(np.float32)
    (want,) = ort_run(path, {"X": X})
    got = sg.load(path).stream().process(np.ascontiguousarray(X[0].T))
    assert np.max(np.abs(got - want[0].T)) < TOL
    return path


def test_pad_node_with_axes_and_conv(tmp_path):
    nodes = [helper.make_node("Pad", ["X", "pads", "", "axes"], ["P"], name="pad"),
             conv("P", dilations=[2])]
    inits = {**CONV, "pads": np.array([4, 0], np.int64), "axes": np.array([2], np.int64)}
    _vs_ort(tmp_path, graph(nodes, inits, 4, opset=18), "pad_axes", 4)


def test_split_padding_batchnorm_alone_and_prelu_shared(tmp_path):
    bn = {"s": w(4, seed=2), "b": w(4, seed=3), "mu": w(4, seed=4),
          "var": np.abs(w(4, seed=5)) + 0.5, "slope": np.array([0.2], np.float32)}
    nodes = [helper.make_node("Pad", ["X", "pads"], ["P"], name="pad"),
             conv("P", "c", pads=[1, 0]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("BatchNormalization", ["r", "s", "b", "mu", "var"], ["n"],
                              epsilon=1e-3),
             helper.make_node("PRelu", ["n", "slope"], ["Y"])]
    inits = {**CONV, **bn, "pads": np.array([0, 0, 1, 0, 0, 0], np.int64)}
    path = _vs_ort(tmp_path, graph(nodes, inits, 4), "split", 4)
    assert [type(l).__name__ for l in sg.load(path).layers] == ["Conv1d", "BatchNorm", "PReLU"]


def test_batchnorm_right_after_a_conv_is_folded(tmp_path):
    bn = {"s": w(4, seed=2), "b": w(4, seed=3), "mu": w(4, seed=4), "var": np.abs(w(4, seed=5)) + 0.5}
    nodes = [conv("X", "c", pads=[2, 0]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "mu", "var"], ["Y"])]
    path = _vs_ort(tmp_path, graph(nodes, {**CONV, **bn}, 4), "fold", 4)
    assert [type(l).__name__ for l in sg.load(path).layers] == ["Conv1d"]


def _bad(tmp_path, nodes, inits, *words, opset=17, out=4):
    path = save(graph(nodes, {**CONV, **inits}, out, opset=opset), tmp_path / "bad.onnx")
    return err(path, *words)


BAD = {
    "chomp_missing": ([conv("X", "Y", pads=[2, 2])], {}, ["output 'Y' comes from node 'c'",
                                                          "causal conv idiom"]),
    "chomp_wrong": ([conv("X", "c", pads=[2, 2]),
                     helper.make_node("Slice", ["c", "s0", "e1", "ax"], ["Y"], name="sl")],
                    {"s0": np.array([0], np.int64), "e1": np.array([-1], np.int64),
                     "ax": np.array([2], np.int64)},
                    ["node 'sl' (Slice)", "only dropping the last 2 time steps"]),
    "chomp_then_relu": ([conv("X", "c", pads=[2, 2]), helper.make_node("Relu", ["c"], ["Y"],
                                                                      name="r")], {},
                        ["node 'r' (Relu)", "takes the output of Conv 'c'", "pads 2 on both"]),
    "pad_then_relu": ([helper.make_node("Pad", ["X", "pads"], ["P"], name="pad"),
                       helper.make_node("Relu", ["P"], ["Y"], name="r")],
                      {"pads": np.array([0, 0, 2, 0, 0, 0], np.int64)},
                      ["node 'r' (Relu)", "takes the output of Pad 'pad'", "must feed a Conv"]),
    "pad_right": ([helper.make_node("Pad", ["X", "pads"], ["P"], name="pad"), conv("P")],
                  {"pads": np.array([0, 0, 2, 0, 0, 1], np.int64)},
                  ["node 'pad' (Pad)", "padding on the right"]),
    "pad_reflect": ([helper.make_node("Pad", ["X", "pads"], ["P"], name="pad", mode="reflect"),
                     conv("P")], {"pads": np.array([0, 0, 2, 0, 0, 0], np.int64)},
                    ["node 'pad' (Pad)", "mode='reflect'"]),
    "pad_value": ([helper.make_node("Pad", ["X", "pads", "v"], ["P"], name="pad"), conv("P")],
                  {"pads": np.array([0, 0, 2, 0, 0, 0], np.int64), "v": np.array(1.0, np.float32)},
                  ["node 'pad' (Pad)", "only zeros stream"]),
    "conv2d": ([helper.make_node("Conv", ["X", "W4", "B"], ["Y"], name="c")],
               {"W4": w(4, C, 1, 1)}, ["node 'c' (Conv)", "only 1-D convolutions"]),
    "channels": ([conv(pads=[2, 0])], {"W": w(4, 2, 3)}, ["node 'c' (Conv)", "takes 2 channels"]),
    "groups": ([conv(pads=[2, 0], group=2)], {"W": w(4, 1, 3)}, ["node 'c' (Conv)"]),
    "weight_nan": ([conv(pads=[2, 0])], {"W": np.full((4, C, 3), np.nan, np.float32)},
                   ["node 'c' (Conv)", "non-finite"]),
    "weight_from_data": ([helper.make_node("Conv", ["X", "X", "B"], ["Y"], name="c")], {},
                         ["node 'c' (Conv)", "Conv W must be a constant"]),
    "huge_dilation": ([conv(pads=[2 << 22, 0], dilations=[1 << 22])], {},
                      ["node 'c' (Conv)", "a ring of 8388608 past inputs", "budget"]),
    "bn_training": ([helper.make_node("BatchNormalization", ["X", "s", "b", "m", "v"], ["Y"],
                                      name="n", training_mode=1)],
                    {k: np.ones(C, np.float32) for k in "sbmv"}, ["node 'n'", "training_mode=1"]),
    "bn_negative": ([helper.make_node("BatchNormalization", ["X", "s", "b", "m", "v"], ["Y"],
                                      name="n")],
                    {"s": np.ones(C, np.float32), "b": np.ones(C, np.float32),
                     "m": np.ones(C, np.float32), "v": -np.ones(C, np.float32)},
                    ["node 'n' (BatchNormalization)", "negative variance"]),
    "bn_channels": ([helper.make_node("BatchNormalization", ["X", "s", "s", "s", "s"], ["Y"],
                                      name="n")], {"s": np.ones(2, np.float32)},
                    ["node 'n' (BatchNormalization)", "2 channels, the stream has 3"]),
    "layernorm_time": ([conv("X", "c", pads=[2, 0]),
                        helper.make_node("LayerNormalization", ["c", "g"], ["Y"], name="ln",
                                         axis=1)], {"g": np.ones((4, 1), np.float32)},
                       ["node 'ln' (LayerNormalization)", "only the features"]),
    "prelu_time": ([helper.make_node("PRelu", ["X", "sl"], ["Y"], name="p")],
                   {"sl": w(1, 1, 7)}, ["node 'p' (PRelu)"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_refused_and_malformed(tmp_path, name):
    nodes, inits, words = BAD[name]
    out = C if name.startswith(("bn", "prelu", "pad_then")) else 4
    _bad(tmp_path, nodes, inits, *words, out=out)


def test_conv_over_the_features_is_refused(tmp_path):
    # (N, T, C) input straight into a Conv: it would convolve over the features
    g = helper.make_graph(
        [helper.make_node("Conv", ["X", "W", "B"], ["Y"], name="c", pads=[2, 0])], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, "T", C])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 4, C])],
        [numpy_helper.from_array(v, k) for k, v in {"W": w(4, 5, 3), "B": w(4)}.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = save(model, tmp_path / "features.onnx")
    err(path, "node 'c' (Conv)")


def test_bidirectional_is_still_refused_after_a_conv(tmp_path):
    class Bi(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(2, 4, 1)
            self.gru = nn.GRU(4, 3, batch_first=True, bidirectional=True)

        def forward(self, x):
            return self.gru(self.conv(x).transpose(1, 2))[0]

    path = export(Bi(), tmp_path / "bi.onnx", torch.randn(1, 2, 30), dynamo=False)
    err(path, "direction='bidirectional'", "needs the future")



