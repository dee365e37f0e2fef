"""Already-quantized models keep their int8 values and scales (or float16
values): PyTorch dynamic quantization (``quantize_dynamic``; live modules
through ``sg.from_torch`` and their ``torch.save``\\ d state dicts through
``sg.load``) and ONNX (ONNX Runtime's ``quantize_dynamic``: its
``DynamicQuantizeLSTM`` and ``MatMulInteger`` pattern; ``DequantizeLinear``
weights, QDQ).

Each model is made by the framework in the test and streamed over 1200 steps:

* against the framework's own float forward on the weights the file holds,
  dequantized by the framework (``qweight.dequantize()``, ONNX Runtime on
  the float model with the dequantized initializers), within 1e-5 for
  float16 and ``INT16_BOUND`` for int8, whose products round their inputs
  to int16 (kernels/qdot.py): far below any error a wrong row, gate or
  scale would make;
* against the framework's own quantized forward, within a measured bound:
  torch's and ONNX Runtime's int8 kernels quantize the activations per
  call to 8 bits over their run-time range (torch with ``reduce_range``, 7
  bits), streamgru to 16 (``ACTIVATION_BOUND`` below);
* the int8 values and scales streamgru holds equal the file's bit for bit.

Malformed and hostile variants raise WeightsError naming the file and tensor.
"""

import struct
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: E402

import streamgru as sg  # noqa: E402
from streamgru.layers.quant import QuantizedWeight  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from bench_sys import has_vnni  # noqa: E402  (the benchmark's own CPU check)

nn = torch.nn
I, H1, H2, O = 5, 16, 12, 3
STEPS = 1200
# Worst output difference from the frameworks' own int8 forward, which also
# rounds the activations to 8 bits per call (torch: 7 bits, reduce_range) over
# their run-time range: with inputs ~N(0, 1) (range about +-4, so a step of
# 8/127 ~ 0.06 and a rounding error up to 0.03 per input) and the weight
# rows' sums of |w| near 1, each layer's pre-activations move by ~0.01;
# measured on these models (tools/quant_import_diff.py): torch 2.0e-3 per
# tensor, 2.2e-3 per channel (GRU+LSTM+Linear); ONNX Runtime 2.7e-3 to 2.8e-3
# (LSTM+Linear), 3.8e-3 (GRU+Linear). The bound leaves 4x room; against the
# float model on the same dequantized weights the import is held to 1e-5
# (measured 6e-8 to 1.2e-7).
ACTIVATION_BOUND = 1.5e-2
# streamgru's int8 products round each input vector to int16 steps of its
# largest magnitude / 32767 (about 1.5e-5 of it, 3e-5 for inputs ~N(0, 1)
# up to 4): against the float model on the same dequantized weights,
# measured 1.2e-5 to 1.4e-5 over these 1200 steps (was 6e-8 to 1.2e-7 with
# float activations). The bound leaves about 7x room.
INT16_BOUND = 1e-4


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices
        return fn(*args, **kw)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(I, H1, batch_first=True)
        self.lstm = nn.LSTM(H1, H2, num_layers=2, batch_first=True)
        self.fc = nn.Linear(H2, O)

    def forward(self, x):
        y, _ = self.gru(x)
        y, _ = self.lstm(y)
        return self.fc(y)


def _inputs(seed=0, steps=STEPS, size=I):
    return np.random.default_rng(seed).normal(size=(steps, size)).astype(np.float32)


def _stream(model, x):
    """Step by step, as a stream runs."""
    s = model.stream()
    return np.stack([s.step(row) for row in x])


# ----------------------------------------------------------------------------
# PyTorch


@pytest.fixture(scope="module")
def torch_models(tmp_path_factory):
    """kind -> (quantized module, its state dict's .pt path)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig

    torch.manual_seed(0)
    net = Net().eval()
    kinds = {
        "int8": {nn.GRU, nn.LSTM, nn.Linear},
        "int8-per-channel": dict.fromkeys((nn.GRU, nn.LSTM, nn.Linear), per_channel_dynamic_qconfig),
        "float16": {nn.GRU, nn.LSTM, nn.Linear},
    }
    out = {}
    folder = tmp_path_factory.mktemp("qtorch")
    for kind, spec in kinds.items():
        dtype = torch.float16 if kind == "float16" else torch.qint8
        q = _quiet(torch.ao.quantization.quantize_dynamic, net, spec, dtype=dtype)
        path = str(folder / f"{kind}.pt")
        torch.save(q.state_dict(), path)
        out[kind] = (q, path)
    return out


def _torch_weights(q):
    """(weight name, torch weight, bias) of every layer, in order."""
    rows = []
    for name in ("gru", "lstm"):
        mod = getattr(q, name)
        w, b = mod.get_weight(), mod.get_bias()
        for k in range(mod.num_layers):
            rows.append((f"{name}.l{k}", w[f"weight_ih_l{k}"], w[f"weight_hh_l{k}"],
                         b[f"bias_ih_l{k}"], b[f"bias_hh_l{k}"]))
    w, b = q.fc._weight_bias()
    rows.append(("fc", w, None, b, None))
    return rows


def _dequantized_net(q):
    """The float Net holding q's weights as torch dequantizes them."""
    net = Net().eval()
    mods = [(net.gru, 0), (net.lstm, 0), (net.lstm, 1)]
    with torch.no_grad():
        for (mod, k), (_, w_ih, w_hh, b_ih, b_hh) in zip(mods, _torch_weights(q)):
            for attr, t in (("weight_ih", w_ih), ("weight_hh", w_hh), ("bias_ih", b_ih),
                            ("bias_hh", b_hh)):
                getattr(mod, f"{attr}_l{k}").copy_(t.dequantize() if t.is_quantized else t)
        _, w, _, b, _ = _torch_weights(q)[-1]
        net.fc.weight.copy_(w.dequantize() if w.is_quantized else w)
        net.fc.bias.copy_(b)
    return net


def _forward(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x)[None])[0].numpy()


def _expected_bits(t):
    """streamgru's stored form of torch weight t: (values, scales) or float16 values."""
    if not t.is_quantized:
        return t.numpy().astype(np.float16), None
    if t.qscheme() == torch.per_tensor_affine:
        scale = np.full(t.shape[0], t.q_scale(), np.float32)
    else:
        scale = t.q_per_channel_scales().numpy().astype(np.float32)
    return t.int_repr().numpy(), scale


def _layer_weights(model):
    for layer in model.layers:
        if isinstance(layer, sg.Dense):
            yield layer.weight, None
        else:
            yield layer.weight_ih, layer.weight_hh


@pytest.mark.parametrize("kind", ["int8", "int8-per-channel", "float16"])
def test_torch_state_dict_keeps_the_files_values_bit_for_bit(torch_models, kind):
    q, path = torch_models[kind]
    model = sg.load(path)
    assert [type(l).__name__ for l in model.layers] == ["GRU", "LSTM", "LSTM", "Dense"]
    for (ih, hh), (name, w_ih, w_hh, _, _) in zip(_layer_weights(model), _torch_weights(q)):
        for got, t in ((ih, w_ih), (hh, w_hh)):
            if t is None:
                continue
            values, scale = _expected_bits(t)
            assert isinstance(got, QuantizedWeight), name
            assert got.kind == ("float16" if kind == "float16" else "int8")
            assert got.values.dtype == values.dtype and np.array_equal(got.values, values), name
            if scale is not None:
                # the very float32 bits torch uses (its scales are float32 values)
                assert np.array_equal(got.scale.view(np.uint32), scale.view(np.uint32)), name


@pytest.mark.parametrize("kind", ["int8", "int8-per-channel", "float16"])
def test_torch_state_dict_streams_exactly_the_dequantized_model(torch_models, kind):
    q, path = torch_models[kind]
    model = sg.load(path)
    x = _inputs()
    got = _stream(model, x)
    exact = _forward(_dequantized_net(q), x)
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-5 if kind == "float16" else INT16_BOUND)
    # torch's own quantized forward: float16 keeps float activations, int8 rounds them
    bound = 1e-5 if kind == "float16" else ACTIVATION_BOUND
    np.testing.assert_allclose(got, _forward(q, x), rtol=0, atol=bound)


@pytest.mark.parametrize("kind", ["int8", "int8-per-channel", "float16"])
def test_from_torch_of_the_live_module_equals_its_state_dict(torch_models, kind):
    q, path = torch_models[kind]
    live, saved = sg.from_torch(q), sg.load(path)
    assert live.layers == saved.layers  # the same stored values, scales and biases
    assert live.weights_dtype == saved.weights_dtype
    x = _inputs(1, 64)
    np.testing.assert_array_equal(live.stream().process(x), saved.stream().process(x))


def test_from_torch_of_quantized_modules_on_their_own(torch_models):
    q, _ = torch_models["int8"]
    exact = _dequantized_net(q)
    for mod, ref in ((q.gru, exact.gru), (q.lstm, exact.lstm)):
        x = _inputs(2, 1000, mod.input_size)
        got = sg.from_torch(mod).stream().process(x)
        with torch.no_grad():
            want = ref(torch.from_numpy(x)[None])[0][0].numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=INT16_BOUND)
    fc = sg.from_torch(q.fc)
    assert fc.weights_dtype == np.int8
    x = _inputs(2, 1000, H2)
    with torch.no_grad():
        want = exact.fc(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(fc.stream().process(x), want, rtol=0, atol=INT16_BOUND)


# ----------------------------------------------------------------------------
# malformed PyTorch files: the real file with one thing changed in data.pkl


def _rewrite(src, dst, change):
    """Copy the torch.save archive ``src`` to ``dst`` with data.pkl replaced by change(data.pkl)."""
    with zipfile.ZipFile(src) as z:
        members = [(info.filename, z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(name, change(data) if name.endswith("/data.pkl") else data)


def _scale_record(q):
    """data.pkl's bytes for the fc weight's per-tensor (scale, zero point 0)."""
    return b"G" + struct.pack(">d", q.fc.weight().q_scale()) + b"K\x00"


def _binfloat(v):
    return b"G" + struct.pack(">d", v)


@pytest.mark.parametrize("new, needle", [
    (_binfloat(0.0) + b"K\x00", "scale 0.0 is not positive and finite"),
    (_binfloat(-0.01) + b"K\x00", "is not positive and finite"),
    (_binfloat(float("nan")) + b"K\x00", "is not positive and finite"),
    (_binfloat(0.1) + b"K\x00", "is not a float32 value"),
    (None, "beyond int8"),                       # zero point -100: q + 100 leaves int8
    (None, "outside the qint8"),                 # zero point 300
])
def test_malformed_torch_quantizer_records(torch_models, tmp_path, new, needle):
    q, path = torch_models["int8"]
    old = _scale_record(q)
    if new is None:
        zero = -100 if "beyond" in needle else 300
        new = old[:-2] + b"J" + struct.pack("<i", zero)
        needle = needle.replace("qint8", "int8")
    bad = str(tmp_path / "bad.pt")
    _rewrite(path, bad, lambda pkl: _replace_once(pkl, old, new))
    with pytest.raises(sg.WeightsError) as info:
        sg.load(bad)
    msg = str(info.value)
    assert bad in msg and "fc._packed_params._packed_params" in msg and needle in msg, msg


def _replace_once(data, old, new):
    assert data.count(old) == 1
    return data.replace(old, new)


@pytest.mark.parametrize("old, new, needle", [
    # a quantized tensor over a storage of another type
    (b"torch\nQInt8Storage\n", b"torch\nQInt32Storage\n", "QInt32Storage"),
    # a TorchScript class whose state streamgru does not read
    (b"rnn.CellParamsBase", b"rnn.CellParamsBasX", "CellParamsBasX"),
    # the cell's kind
    (b"quantized_dynamic", b"quantized_dynamiX", "quantized_dynamiX"),
    # a qscheme streamgru does not read
    (b"torch\nper_tensor_affine\n", b"torch\nper_tensor_symmetric\n", "per_tensor_symmetric"),
])
def test_malformed_torch_quantized_structures(torch_models, tmp_path, old, new, needle):
    _, path = torch_models["int8"]
    bad = str(tmp_path / "bad.pt")
    _rewrite(path, bad, lambda pkl: pkl.replace(old, new))
    with pytest.raises(sg.WeightsError) as info:
        sg.load(bad)
    msg = str(info.value)
    assert bad in msg and needle in msg, msg


def test_per_channel_scales_must_match_the_rows(tmp_path):
    from torch_fixtures import _Call, _Global, _Storage, dumps, float_storage, tensor, write_archive

    scales, data = float_storage(np.array([0.5, 0.25], np.float32), "2")  # 2 scales, 3 rows
    zeros = _Storage("LongStorage", "3", 2)
    data["3"] = np.zeros(2, "<i8").tobytes()
    data["0"] = np.arange(18, dtype=np.int8).tobytes()
    bias, more = float_storage(np.zeros(3, np.float32), "1")
    data.update(more)
    qt = _Call("torch._utils", "_rebuild_qtensor", _Storage("QInt8Storage", "0", 18), 0, (3, 6),
               (6, 1), (_Global("torch", "per_channel_affine"), tensor(scales, 0, (2,), (1,)),
                        tensor(zeros, 0, (2,), (1,)), 0), False, None)
    obj = {"fc._packed_params.dtype": _Global("torch", "qint8"),
           "fc._packed_params._packed_params": (qt, tensor(bias, 0, (3,), (1,)))}
    path = str(tmp_path / "linear.pt")
    write_archive(path, dumps(obj), data)
    with pytest.raises(sg.WeightsError) as info:
        sg.load(path)
    msg = str(info.value)
    assert path in msg and "fc._packed_params._packed_params" in msg and "got 2" in msg, msg


def test_quantized_storage_outside_a_quantized_tensor(tmp_path):
    from torch_fixtures import _Storage, dumps, tensor, write_archive

    obj = {"fc.weight": tensor(_Storage("QInt8Storage", "0", 6), 0, (2, 3), (3, 1))}
    path = str(tmp_path / "plain.pt")
    write_archive(path, dumps(obj), {"0": bytes(6)})
    with pytest.raises(sg.WeightsError) as info:
        sg.load(path)
    assert path in str(info.value) and "fc.weight" in str(info.value)
    assert "outside a quantized tensor" in str(info.value)


# ----------------------------------------------------------------------------
# ONNX


class _OnnxNet(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(I, H1, batch_first=True)
        self.fc = nn.Linear(H1, O)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y)


# 7-bit int8 weights on a CPU without VNNI, as ONNX Runtime advises: there its
# uint8 x int8 kernels (vpmaddubsw) saturate pairs of products in int16, and
# its own forward then strays by 0.1 (measured on an AVX2 Zen 3), which says
# nothing about the import
REDUCE_RANGE = not has_vnni()


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    """name -> (float .onnx, ONNX Runtime quantize_dynamic of it): an LSTM and
    a GRU model, int8 weights per tensor (the default) and per channel, and
    uint8 weights (asymmetric)."""
    folder = tmp_path_factory.mktemp("qonnx")
    out = {}
    for name, cell in (("LSTM", nn.LSTM), ("GRU", nn.GRU)):
        torch.manual_seed(1)
        net = _OnnxNet(cell).eval()
        fp = str(folder / f"{name}.onnx")
        _quiet(torch.onnx.export, net, (torch.zeros(1, 7, I),), fp, dynamo=False,
               input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N", 1: "T"}})
        for suffix, options in (("", {"reduce_range": REDUCE_RANGE}),
                                ("-per-channel", {"per_channel": True, "reduce_range": REDUCE_RANGE}),
                                ("-uint8", {"weight_type": QuantType.QUInt8})):
            qp = str(folder / f"{name}{suffix}_q.onnx")
            _quiet(quantize_dynamic, fp, qp, **{"weight_type": QuantType.QInt8, **options})
            out[name + suffix] = (fp, qp)
    return out


def _initializers(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


def _dequantized_onnx(fp, qp, dst):
    """The float model ``fp`` with each weight quantize_dynamic quantized in
    ``qp`` replaced by its dequantized value (``(q - zero_point) * scale`` in
    float32, as the runtimes compute it)."""
    qi = _initializers(qp)
    model = onnx.load(fp)
    lstm_weights = {n.input[k] for n in model.graph.node if n.op_type == "LSTM" for k in (1, 2)}
    for t in model.graph.initializer:
        if t.name + "_quantized" not in qi:
            continue
        q = qi[t.name + "_quantized"].astype(np.float32)
        zero = qi[t.name + "_zero_point"].astype(np.float32)
        scale = qi[t.name + "_scale"].astype(np.float32)
        w = (q - zero) * scale
        if t.name in lstm_weights:  # DynamicQuantizeLSTM holds W, R transposed
            w = w.transpose(0, 2, 1)
        t.CopyFrom(numpy_helper.from_array(w.astype(np.float32), t.name))
    onnx.save(model, dst)
    return dst


def _ort(path, x):
    return ort.InferenceSession(path).run(None, {"x": x[None]})[0][0]


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "LSTM-per-channel", "GRU-per-channel"])
def test_ort_dynamic_quantization_streams_exactly(onnx_models, tmp_path, cell):
    fp, qp = onnx_models[cell]
    cell = cell.split("-")[0]
    ops = [n.op_type for n in onnx.load(qp).graph.node]
    assert "MatMulInteger" in ops and (cell == "GRU" or "DynamicQuantizeLSTM" in ops)
    model = sg.load(qp)
    layers = model.layers
    assert isinstance(layers[-1].weight, QuantizedWeight)
    # ONNX Runtime quantizes LSTM (DynamicQuantizeLSTM) and MatMul, not GRU
    assert isinstance(layers[0].weight_ih, QuantizedWeight) == (cell == "LSTM")
    x = _inputs(3)
    got = _stream(model, x)
    exact = _ort(_dequantized_onnx(fp, qp, str(tmp_path / "dq.onnx")), x)
    np.testing.assert_allclose(got, exact, rtol=0, atol=INT16_BOUND)
    np.testing.assert_allclose(got, _ort(qp, x), rtol=0, atol=ACTIVATION_BOUND)


def test_ort_dynamic_quantization_keeps_the_files_values(onnx_models):
    _, qp = onnx_models["LSTM"]
    qi = _initializers(qp)
    lstm, dense = sg.load(qp).layers
    name = next(k[: -len("_quantized")] for k in qi if k.startswith("onnx::MatMul") and
                k.endswith("_quantized"))
    w = dense.weight
    assert np.array_equal(w.values, qi[name + "_quantized"].T)  # MatMul's (in, out) is Dense's (out, in)
    assert np.array_equal(w.scale, np.full(O, qi[name + "_scale"], np.float32))
    # the LSTM's rows went from ONNX's i, o, f, c to torch's i, f, g, o with their scales
    node = next(n for n in onnx.load(qp).graph.node if n.op_type == "DynamicQuantizeLSTM")
    W = qi[node.input[1]][0].T  # (4H, I) in i, o, f, c
    zp = int(qi[node.input[9]].reshape(-1)[0])
    blocks = np.split(W.astype(np.int16) - zp, 4)
    want = np.concatenate([blocks[0], blocks[2], blocks[3], blocks[1]])
    assert np.array_equal(lstm.weight_ih.values, want)
    assert np.all(lstm.weight_ih.scale == np.float32(qi[node.input[8]].reshape(-1)[0]))


def _qdq_model(path, w_zero=128, w_axis=1, r_scale=None, mm_scale=None):
    """A hand-built GRU -> MatMul model whose weights are DequantizeLinear of
    constants: W int8 with a scale per output row (axis 1 of (1, 3H, I)),
    R int8 per tensor, the MatMul weight uint8 with zero point ``w_zero``."""
    rng = np.random.default_rng(4)
    H = H1
    wq = rng.integers(-127, 128, (1, 3 * H, I)).astype(np.int8)
    w_scale = (rng.uniform(0.5, 1.5, 3 * H) / 127 / np.sqrt(I)).astype(np.float32)
    rq = rng.integers(-127, 128, (1, 3 * H, H)).astype(np.int8)
    r_scale = np.float32(1 / 127 / np.sqrt(H)) if r_scale is None else r_scale
    mq = rng.integers(0, 256, (H, O)).astype(np.uint8)
    mm_scale = np.float32(0.01) if mm_scale is None else mm_scale
    b = rng.normal(size=(1, 6 * H)).astype(np.float32) * 0.1
    inits = [
        numpy_helper.from_array(wq, "Wq"), numpy_helper.from_array(w_scale, "Ws"),
        numpy_helper.from_array(np.zeros(3 * H, np.int8), "Wz"),
        numpy_helper.from_array(rq, "Rq"), numpy_helper.from_array(np.asarray(r_scale), "Rs"),
        numpy_helper.from_array(mq, "Mq"), numpy_helper.from_array(np.asarray(mm_scale), "Ms"),
        numpy_helper.from_array(np.asarray(np.uint8(w_zero)), "Mz"),
        numpy_helper.from_array(b, "B"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["Wq", "Ws", "Wz"], ["W"], axis=w_axis),
        helper.make_node("DequantizeLinear", ["Rq", "Rs"], ["R"]),
        helper.make_node("DequantizeLinear", ["Mq", "Ms", "Mz"], ["M"]),
        helper.make_node("GRU", ["x", "W", "R", "B"], ["Y", "Yh"], hidden_size=H,
                         linear_before_reset=1),
        helper.make_node("Squeeze", ["Y", "axes"], ["Ys"]),
        helper.make_node("MatMul", ["Ys", "M"], ["y"]),
    ]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axes"))
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", 1, I])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", 1, O])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.save(model, path)
    return path, {"Wq": wq, "Ws": w_scale, "Mq": mq, "Ms": mm_scale}


def test_qdq_weights_stream_exactly_against_onnx_runtime(tmp_path):
    path, arrays = _qdq_model(str(tmp_path / "qdq.onnx"))
    gru, dense = sg.load(path).layers
    # int8 W per output row, gates z, r, h -> r, z, n with their scales
    H = H1
    order = np.r_[H:2 * H, 0:H, 2 * H:3 * H]
    assert np.array_equal(gru.weight_ih.values, arrays["Wq"][0][order])
    assert np.array_equal(gru.weight_ih.scale, arrays["Ws"][order])
    # uint8 with zero point 128: shifted into int8, the scale unchanged
    assert np.array_equal(dense.weight.values, (arrays["Mq"].astype(np.int16) - 128).T.astype(np.int8))
    assert np.all(dense.weight.scale == arrays["Ms"])
    x = _inputs(5)
    got = _stream(sg.load(path), x)

    def run(level):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        return ort.InferenceSession(path, options).run(None, {"x": x[:, None]})[0][:, 0]

    # the graph as the spec defines it: DequantizeLinear, then float MatMul and GRU
    np.testing.assert_allclose(got, run(ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
                               rtol=0, atol=INT16_BOUND)
    # ONNX Runtime's optimizer fuses DequantizeLinear + MatMul into an int8
    # kernel that also quantizes the activations: the GRU's outputs in [-1, 1]
    # to 8 bits (error up to 1/255) times this MatMul's rows' sums of |w|
    # (about 16 * 0.64 = 10) bounds it by 0.04; measured 1.5e-2
    np.testing.assert_allclose(got, run(ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                               rtol=0, atol=5e-2)


@pytest.mark.parametrize("changes, tensor, needle", [
    ({"w_zero": 0}, "'M'", "beyond int8"),                    # uint8 0..255 does not fit int8
    ({"w_axis": 2}, "W", "not the output rows"),              # scales per input column
    ({"r_scale": np.float32(0)}, "R", "not positive and finite"),
    ({"r_scale": np.float32(-1)}, "R", "not positive and finite"),
    ({"r_scale": np.float32("nan")}, "R", "not positive and finite"),
    ({"mm_scale": np.full(2, 0.01, np.float32)}, "'Mq'", "got 2"),  # 2 scales for 3 rows
])
def test_malformed_qdq_weights(tmp_path, changes, tensor, needle):
    path = str(tmp_path / "bad.onnx")
    if "w_axis" in changes:
        # a scale per input column needs I scales along axis 2
        path, _ = _qdq_model(path)
        model = onnx.load(path)
        for t in model.graph.initializer:
            if t.name == "Ws":
                t.CopyFrom(numpy_helper.from_array(np.full(I, 0.01, np.float32), "Ws"))
            if t.name == "Wz":
                t.CopyFrom(numpy_helper.from_array(np.zeros(I, np.int8), "Wz"))
        for n in model.graph.node:
            if n.output[0] == "W":
                n.attribute[0].i = 2
        onnx.save(model, path)
    elif "mm_scale" in changes:
        path, _ = _qdq_model(path)
        _set_initializers(path, {"Ms": changes["mm_scale"], "Mz": np.full(2, 128, np.uint8)},
                          dq_axis={"M": 1})
    else:
        _qdq_model(path, **changes)
    with pytest.raises(sg.WeightsError) as info:
        sg.load(path)
    msg = str(info.value)
    assert path in msg and f"tensor {tensor}" in msg and needle in msg, msg


def _set_initializers(path, arrays, dq_axis=None):
    model = onnx.load(path)
    for t in model.graph.initializer:
        if t.name in arrays:
            t.CopyFrom(numpy_helper.from_array(np.asarray(arrays[t.name]), t.name))
    for n in model.graph.node:
        if dq_axis and n.output[0] in dq_axis:
            n.attribute.append(helper.make_attribute("axis", dq_axis[n.output[0]]))
    onnx.save(model, path)


@pytest.mark.parametrize("which, value, needle", [
    ("_scale", np.float32(0), "not positive and finite"),
    ("_scale", np.float32("nan"), "not positive and finite"),
    ("_scale", np.full(2, 0.01, np.float32), "got 2"),
    ("_zero_point", np.int8(-100), "beyond int8"),
    ("_scale", np.int32(1), "must be floating point"),
])
def test_malformed_ort_dynamic_files(onnx_models, tmp_path, which, value, needle):
    _, qp = onnx_models["LSTM"]
    names = {k for k in _initializers(qp)}
    # the LSTM's W and the MatMul weight, each broken in turn
    for base in sorted(n[: -len("_quantized")] for n in names if n.endswith("_quantized")):
        bad = str(tmp_path / "bad.onnx")
        model = onnx.load(qp)
        for t in model.graph.initializer:
            if t.name == base + which:
                arr = np.asarray(value).reshape(np.asarray(value).shape if np.ndim(value) else
                                                tuple(t.dims))
                t.CopyFrom(numpy_helper.from_array(arr, t.name))
        onnx.save(model, bad)
        with pytest.raises(sg.WeightsError) as info:
            sg.load(bad)
        msg = str(info.value)
        assert bad in msg and needle in msg, msg
        assert base in msg, msg


def test_ort_uint8_weights_shift_exactly_or_are_refused(onnx_models, tmp_path):
    # QuantType.QUInt8 picks a zero point per tensor from the weights' range.
    # The GRU model's MatMul gets 128, so every value minus it fits int8:
    # shifted, the scale kept, exact. The LSTM model's gets 127 with a value
    # of 255: refused, not rounded.
    fp, qp = onnx_models["GRU-uint8"]
    qi = _initializers(qp)
    name = next(k[: -len("_quantized")] for k in qi if k.startswith("onnx::MatMul") and
                k.endswith("_quantized"))
    assert qi[name + "_quantized"].dtype == np.uint8
    dense = sg.load(qp).layers[-1]
    shifted = qi[name + "_quantized"].astype(np.int16) - qi[name + "_zero_point"]
    assert np.array_equal(dense.weight.values, shifted.T)
    x = _inputs(6)
    exact = _ort(_dequantized_onnx(fp, qp, str(tmp_path / "dq.onnx")), x)
    np.testing.assert_allclose(_stream(sg.load(qp), x), exact, rtol=0, atol=INT16_BOUND)

    _, qp = onnx_models["LSTM-uint8"]
    with pytest.raises(sg.WeightsError) as info:
        sg.load(qp)
    msg = str(info.value)
    assert qp in msg and "MatMul" in msg and "_quantized" in msg and "beyond int8" in msg, msg
    assert "QuantType.QInt8" in msg, msg


def _strip_activation_qdq(src, dst):
    """``src`` without its QuantizeLinear -> DequantizeLinear pairs on computed
    tensors (the activations): each DequantizeLinear's output is renamed to the
    QuantizeLinear's input. Weight DequantizeLinear nodes stay."""
    model = onnx.load(src)
    inits = {t.name for t in model.graph.initializer}
    quantized = {n.output[0]: n.input[0] for n in model.graph.node
                 if n.op_type == "QuantizeLinear" and n.input[0] not in inits}
    rename = {n.output[0]: quantized[n.input[0]] for n in model.graph.node
              if n.op_type == "DequantizeLinear" and n.input[0] in quantized}
    keep = [n for n in model.graph.node
            if not (n.output[0] in quantized or n.output[0] in rename)]
    for n in keep:
        n.input[:] = [rename.get(i, i) for i in n.input]
    for o in model.graph.output:  # the model's output was a DequantizeLinear
        if o.name in rename:
            for n in keep:
                n.output[:] = [o.name if out == rename[o.name] else out for out in n.output]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    onnx.save(model, dst)
    return dst


def test_ort_static_qdq_needs_the_float_activations_opt_in(onnx_models, tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Calibration(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{"x": _inputs(k, 40)[None]} for k in range(3)])

        def get_next(self):
            return next(self.feeds, None)

    fp, _ = onnx_models["GRU"]
    qp = str(tmp_path / "static.onnx")
    _quiet(quantize_static, fp, qp, Calibration(), quant_format=QuantFormat.QDQ,
           weight_type=QuantType.QInt8)
    with pytest.raises(sg.WeightsError) as info:
        sg.load(qp)
    assert qp in str(info.value) and "static_activations='float'" in str(info.value)
    model = sg.load(qp, static_activations="float")
    assert "QuantizeLinear -> DequantizeLinear" in model.metadata["static_activations"]
    qi = _initializers(qp)
    name = next(k[: -len("_quantized")] for k in qi if k.startswith("onnx::MatMul") and
                k.endswith("_quantized"))
    assert np.array_equal(model.layers[-1].weight.values, qi[name + "_quantized"].T)
    # exactly the file with its activation pairs taken out (ONNX Runtime, unfused)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    stripped = _strip_activation_qdq(qp, str(tmp_path / "stripped.onnx"))
    x = _inputs(7)
    want = ort.InferenceSession(stripped, options).run(None, {"x": x[None]})[0][0]
    np.testing.assert_allclose(_stream(model, x), want, rtol=0, atol=INT16_BOUND)


def test_bidirectional_quantized_state_dict_is_refused(tmp_path):
    torch.manual_seed(2)
    net = nn.Sequential(nn.GRU(I, 8, num_layers=2, bidirectional=True))
    q = _quiet(torch.ao.quantization.quantize_dynamic, net, {nn.GRU}, dtype=torch.qint8)
    path = str(tmp_path / "bi.pt")
    torch.save(q.state_dict(), path)
    with pytest.raises(sg.WeightsError) as info:
        sg.load(path)
    msg = str(info.value)
    assert path in msg and "_all_weight_values." in msg and "bidirectional" in msg, msg
    with pytest.raises(sg.WeightsError, match="bidirectional"):
        sg.from_torch(q)
