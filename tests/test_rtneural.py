"""RTNeural / AIDA-X / GuitarML JSON model files.

Each file is written in the layout its project's exporter writes, from a real
framework model, and streamed against that framework's forward:

- RTNeural: its Keras exporter (``python/model_utils.py`` ``save_model_json``:
  ``in_shape`` = ``model.input_shape``, per layer type / activation / shape =
  ``layer.output.shape`` / ``layer.get_weights()``), transcribed below for
  Keras 3 (the original imports TensorFlow), on Keras 3 models with the torch
  backend; reference: the Keras model's own forward.
- AIDA-X: its trainer's exporter layout (Automated-GuitarAmpModelling
  ``aidax_export.py``: a torch LSTM/GRU + Linear as Keras arrays, ``in_skip``)
  plus the ``in_gain`` / ``out_gain`` the AIDA-X plugin reads; reference:
  torch's forward inside AIDA-X's formula ``out_gain * (net(in_gain * x0, p)
  + in_gain * x0)`` (the plugin is C++).
- GuitarML: ``SimpleRNN.save_model`` (``model_data`` and ``state_dict`` as
  lists); reference: torch's ``lin(rec(x)) + x[..., 0:skip]``.
"""

import json
import os

import numpy as np
import pytest

import streamgru as sg

os.environ.setdefault("KERAS_BACKEND", "torch")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

T = 1500


def signal(T, channels, seed=0):
    """Guitar-like audio in channel 0, slow parameter ramps in the others."""
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 48000.0
    x = np.empty((T, channels))
    x[:, 0] = 0.6 * np.sin(2 * np.pi * 196.0 * t) * np.exp(-20 * t) + 0.05 * rng.normal(size=T)
    for c in range(1, channels):
        x[:, c] = np.linspace(0.1 * c, 0.9, T)
    return x


# ---------------------------------------------------------------------------
# RTNeural's Keras exporter, for Keras 3


class _Arrays(json.JSONEncoder):
    def default(self, obj):
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        return super().default(obj)


def _rtneural_type(layer):
    L = keras.layers
    if isinstance(layer, L.TimeDistributed):
        return "time-distributed-dense"
    for cls, name in ((L.GRU, "gru"), (L.LSTM, "lstm"), (L.Dense, "dense"),
                      (L.Conv1D, "conv1d"), (L.PReLU, "prelu"), (L.Activation, "activation")):
        if isinstance(layer, cls):
            return name
    return "unknown"


def _rtneural_activation(layer):
    if isinstance(layer, keras.layers.TimeDistributed):
        return _rtneural_activation(layer.layer)
    if not hasattr(layer, "activation"):
        return ""
    a = keras.activations
    for fn, name in ((a.tanh, "tanh"), (a.relu, "relu"), (a.sigmoid, "sigmoid"),
                     (a.softmax, "softmax"), (a.elu, "elu")):
        if layer.activation == fn:
            return name
    return ""


def rtneural_export(model, path, **extra):
    """What RTNeural's save_model writes for ``model`` (``extra``: AIDA-X keys)."""
    doc = {"in_shape": model.input_shape, **extra, "layers": [
        {"type": _rtneural_type(l), "activation": _rtneural_activation(l),
         "shape": tuple(l.output.shape), "weights": l.get_weights()}
        for l in model.layers if not isinstance(l, keras.layers.InputLayer)]}
    with open(path, "w") as f:
        json.dump(doc, f, cls=_Arrays, indent=4)


def _keras_models():
    L = keras.layers
    return {
        "gru_dense": (2, lambda dt: [L.GRU(8, return_sequences=True, dtype=dt),
                                     L.Dense(4, activation="tanh", dtype=dt), L.Dense(1, dtype=dt)]),
        "lstm_td_act": (1, lambda dt: [L.LSTM(6, return_sequences=True, dtype=dt),
                                       L.TimeDistributed(L.Dense(3, activation="relu", dtype=dt), dtype=dt),
                                       L.Activation("sigmoid", dtype=dt), L.Dense(2, dtype=dt)]),
        "stacked_act": (3, lambda dt: [L.GRU(5, return_sequences=True, dtype=dt),
                                       L.Activation("elu", dtype=dt),
                                       L.LSTM(4, return_sequences=True, dtype=dt),
                                       L.Dense(3, activation="softmax", dtype=dt)]),
        "recurrent_only": (2, lambda dt: [L.LSTM(7, return_sequences=True, dtype=dt),
                                          L.GRU(3, return_sequences=True, dtype=dt)]),
    }


def _keras_tolerance(dtype, model):
    """float32: 1e-5. float64: 1e-9, except that Keras 3's torch backend computes
    a float64 Dense's matmul with float32 rounding (measured ~1.6e-7 on a lone
    Dense against numpy), so a float64 model with a Dense layer matches it
    only to 1e-6; its GRU and LSTM layers are float64-exact."""
    if dtype == np.float32:
        return 1e-5
    dense = any(isinstance(l, (keras.layers.Dense, keras.layers.TimeDistributed)) for l in model.layers)
    return 1e-6 if dense else 1e-9


def _build(inputs, make, dtype, seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((None, inputs), dtype=dtype)] + make(dtype))
    rng = np.random.default_rng(seed)
    # biases away from zero so every bias term matters
    model.set_weights([w + (0.3 * rng.normal(size=w.shape) if w.ndim < 2 or w.shape[0] == 2 else 0)
                       for w in model.get_weights()])
    return model


def _keras_forward(model, X, dtype):
    return np.asarray(keras.ops.convert_to_numpy(model(X[None].astype(dtype))))[0]


@pytest.fixture(scope="module", params=list(_keras_models()))
def keras_file(request, tmp_path_factory):
    inputs, make = _keras_models()[request.param]
    m32 = _build(inputs, make, "float32", 1)
    path = tmp_path_factory.mktemp("rtneural") / f"{request.param}.json"
    rtneural_export(m32, path)
    m64 = _build(inputs, make, "float64", 1)
    m64.set_weights([w.astype(np.float64) for w in m32.get_weights()])
    return path, inputs, {np.float32: m32, np.float64: m64}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rtneural_keras_export_streams_like_keras(keras_file, dtype):
    path, inputs, models = keras_file
    tol = _keras_tolerance(dtype, models[dtype])
    X = signal(T, inputs)
    want = _keras_forward(models[dtype], X, dtype)
    m = sg.load(path, dtype=dtype)
    s = m.stream()
    y = np.empty(m.output_size, dtype)
    got = np.array([s.step(x.astype(dtype), out=y).copy() for x in X])
    err = float(np.max(np.abs(got - want)))
    assert err < tol, err
    assert m.metadata["format"] == "rtneural" and "many_to_one" not in m.metadata


def test_a_keras_lstm_without_sequences_is_many_to_one(tmp_path):
    L = keras.layers
    model = _build(2, lambda dt: [L.LSTM(6, dtype=dt), L.Dense(1, dtype=dt)], "float32", 2)
    rtneural_export(model, tmp_path / "m2o.json")
    m = sg.load(tmp_path / "m2o.json")
    assert m.metadata["many_to_one"] is True
    X = signal(300, 2)
    want = _keras_forward(model, X, np.float32)  # one answer, at the end
    assert abs(m.stream().process(X.astype(np.float32))[-1, 0] - want[0]) < 1e-5


# ---------------------------------------------------------------------------
# AIDA-X: a torch-trained SimpleRNN exported as RTNeural JSON with in_skip


def _torch_rnn(unit, inputs, hidden, outputs, seed, layers=1, bias=True):
    torch.manual_seed(seed)
    rec = getattr(torch.nn, unit)(inputs, hidden, layers)  # (time, batch, features), as the trainer
    lin = torch.nn.Linear(hidden, outputs, bias=bias)
    with torch.no_grad():
        for p in list(rec.parameters()) + list(lin.parameters()):
            p.mul_(2.0)
    return rec, lin


def _torch_forward(rec, lin, X, dtype, skip=0):
    rec, lin = (rec.double(), lin.double()) if dtype == np.float64 else (rec.float(), lin.float())
    with torch.no_grad():
        x = torch.from_numpy(X.astype(dtype))[:, None, :]
        y = lin(rec(x)[0])
        if skip:
            y = y + x[:, :, 0:skip]
    return y[:, 0, :].numpy()


def _zrh(a, H):
    """torch gate blocks r, z, n -> Keras z, r, h along the last axis."""
    return np.concatenate([a[..., H:2 * H], a[..., :H], a[..., 2 * H:]], axis=-1)


def aidax_export(rec, lin, unit, path, in_skip=0, **gains):
    """The layout aidax_export.py writes (Keras arrays from torch's)."""
    W, U = rec.weight_ih_l0.detach().numpy(), rec.weight_hh_l0.detach().numpy()
    b_ih, b_hh = rec.bias_ih_l0.detach().numpy(), rec.bias_hh_l0.detach().numpy()
    H, O = rec.hidden_size, lin.out_features
    if unit == "LSTM":  # same gate order i, f, g(c), o; transposed; biases summed
        weights = [W.T, U.T, b_ih + b_hh]
    else:  # GRU: r, z, n -> z, r, n; bias rows (input, recurrent)
        weights = [_zrh(W.T, H), _zrh(U.T, H), np.stack([_zrh(b_ih, H), _zrh(b_hh, H)])]
    layers = [{"type": unit.lower(), "activation": "", "shape": [None, None, H], "weights": weights},
              {"type": "dense", "activation": "", "shape": [None, None, O],
               "weights": [lin.weight.detach().numpy().reshape(H, O), lin.bias.detach().numpy()]}]
    doc = {"in_shape": [None, None, rec.input_size]}
    if in_skip:
        doc["in_skip"] = in_skip
    doc.update(gains, layers=layers, metadata={"name": "test amp", "samplerate": "48000"})
    with open(path, "w") as f:
        json.dump(doc, f, cls=_Arrays, indent=4)


AIDAX = {  # unit, inputs (audio + parameters), in_skip, in_gain dB, out_gain dB
    "lstm_skip_gains": ("LSTM", 2, 1, 3.0, -4.5),
    "gru_out_gain": ("GRU", 1, 0, None, 6.0),
    "lstm_skip": ("LSTM", 1, 1, None, None),
    "gru_in_gain": ("GRU", 3, 0, -2.0, None),
}


def _db(g):
    return 1.0 if g is None else 10.0 ** (g / 20.0)


@pytest.mark.parametrize("case", list(AIDAX))
@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-9)])
def test_aidax_streams_like_the_plugin_formula(tmp_path, case, dtype, tol):
    unit, inputs, skip, in_db, out_db = AIDAX[case]
    rec, lin = _torch_rnn(unit, inputs, 8, 1, seed=3)
    if unit == "LSTM":  # the exporter sums the two biases in float32: the file's model is this
        with torch.no_grad():
            rec.bias_ih_l0 += rec.bias_hh_l0
            rec.bias_hh_l0.zero_()
    gains = {k: v for k, v in (("in_gain", in_db), ("out_gain", out_db)) if v is not None}
    path = tmp_path / f"{case}.aidax"
    aidax_export(rec, lin, unit, path, skip, **gains)
    X = signal(T, inputs)
    Xg = X.copy()
    Xg[:, 0] *= _db(in_db)  # AIDA-X scales the audio input, not the parameters
    want = _db(out_db) * (_torch_forward(rec, lin, Xg, dtype) + (Xg[:, :1] if skip else 0))
    m = sg.load(path, dtype=dtype)
    assert m.input_skip == (0 if skip else None)
    s = m.stream()
    y = np.empty(1, dtype)
    got = np.array([s.step(x.astype(dtype), out=y).copy() for x in X])
    err = float(np.max(np.abs(got - want)))
    assert err < tol * max(1.0, float(np.max(np.abs(want)))), err
    assert m.metadata["format"] == "aidax" and m.metadata["file_metadata"]["name"] == "test amp"


def test_a_silenced_input_gain_drops_the_skip(tmp_path):
    rec, lin = _torch_rnn("LSTM", 1, 4, 1, seed=4)
    aidax_export(rec, lin, "LSTM", tmp_path / "mute.json", 1, in_gain=-120.0)
    m = sg.load(tmp_path / "mute.json", dtype=np.float64)
    assert m.input_skip is None
    want = _torch_forward(rec, lin, np.zeros((50, 1)), np.float64)
    np.testing.assert_allclose(m.stream().process(signal(50, 1)), want, atol=1e-12)


# ---------------------------------------------------------------------------
# GuitarML: SimpleRNN.save_model


def guitarml_export(rec, lin, unit, path, skip, bias_fl=True):
    sd = {f"rec.{k}": v.detach().numpy().tolist() for k, v in rec.state_dict().items()}
    sd.update({f"lin.{k}": v.detach().numpy().tolist() for k, v in lin.state_dict().items()})
    doc = {"model_data": {"model": "SimpleRNN", "input_size": rec.input_size, "skip": skip,
                          "output_size": lin.out_features, "unit_type": unit,
                          "num_layers": rec.num_layers, "hidden_size": rec.hidden_size,
                          "bias_fl": bias_fl},
           "state_dict": sd}
    with open(path, "w") as f:
        json.dump(doc, f)


GUITARML = {  # unit, inputs, hidden, outputs, layers, skip, bias
    "lstm_skip": ("LSTM", 1, 12, 1, 1, 1, True),
    "gru_2layers": ("GRU", 2, 6, 1, 2, 0, True),
    "rnn_nobias_skip2": ("RNN", 3, 5, 2, 1, 2, False),
}


@pytest.mark.parametrize("case", list(GUITARML))
@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-9)])
def test_guitarml_streams_like_torch(tmp_path, case, dtype, tol):
    unit, inputs, hidden, outputs, layers, skip, bias = GUITARML[case]
    rec, lin = _torch_rnn(unit, inputs, hidden, outputs, seed=5, layers=layers, bias=bias)
    path = tmp_path / f"{case}.json"
    guitarml_export(rec, lin, unit, path, skip, bias)
    X = signal(T, inputs)
    want = _torch_forward(rec, lin, X, dtype, skip)
    m = sg.load(path, dtype=dtype)
    s = m.stream()
    y = np.empty(outputs, dtype)
    got = np.array([s.step(x.astype(dtype), out=y).copy() for x in X])
    err = float(np.max(np.abs(got - want)))
    assert err < tol, err
    assert m.metadata["format"] == "guitarml" and m.input_skip == (0 if skip else None)
    b = m.streams(2)
    np.testing.assert_allclose(b.process(np.stack([X, X]).astype(dtype))[1], want, atol=tol, rtol=0)


# ---------------------------------------------------------------------------
# malformed files: each refused with a WeightsError naming the file and the
# layer or tensor


def _rt_good():
    rng = np.random.default_rng(7)
    H, I = 3, 2
    return {"in_shape": [None, None, I], "in_skip": 1, "out_gain": -3.0, "layers": [
        {"type": "gru", "activation": "tanh", "shape": [None, None, H],
         "weights": [rng.normal(size=(I, 3 * H)).tolist(), rng.normal(size=(H, 3 * H)).tolist(),
                     rng.normal(size=(2, 3 * H)).tolist()]},
        {"type": "lstm", "activation": "", "shape": [None, None, 2],
         "weights": [rng.normal(size=(H, 8)).tolist(), rng.normal(size=(2, 8)).tolist(),
                     rng.normal(size=8).tolist()]},
        {"type": "dense", "activation": "", "shape": [None, None, 1],
         "weights": [rng.normal(size=(2, 1)).tolist(), [0.1]]}]}


def _gml_good():
    rng = np.random.default_rng(8)
    return {"model_data": {"model": "SimpleRNN", "input_size": 1, "skip": 1, "output_size": 1,
                           "unit_type": "GRU", "num_layers": 1, "hidden_size": 2, "bias_fl": True},
            "state_dict": {"rec.weight_ih_l0": rng.normal(size=(6, 1)).tolist(),
                           "rec.weight_hh_l0": rng.normal(size=(6, 2)).tolist(),
                           "rec.bias_ih_l0": rng.normal(size=6).tolist(),
                           "rec.bias_hh_l0": rng.normal(size=6).tolist(),
                           "lin.weight": rng.normal(size=(1, 2)).tolist(), "lin.bias": [0.0]}}


def _edit(*path, value=KeyError):
    def change(doc):
        d = doc
        for p in path[:-1]:
            d = d[p]
        if value is KeyError:
            del d[path[-1]]
        else:
            d[path[-1]] = value
        return doc
    return change


BAD_RTNEURAL = {
    "no_in_shape": (_edit("in_shape"), "'in_shape' is missing"),
    "in_shape_str": (_edit("in_shape", value=[None, None, "2"]), "'in_shape' must end with"),
    "layers_obj": (_edit("layers", value={}), "'layers' must be list"),
    "no_layers": (_edit("layers", value=[]), "'layers' must list 1 to"),
    "layer_not_obj": (_edit("layers", 1, value=[1]), "layer 1: expected a JSON object"),
    "no_type": (_edit("layers", 0, "type"), "layer 0: key 'type' is missing"),
    "conv2d": (_edit("layers", 0, "type", value="conv2d"),
               "layer 0 (conv2d): unsupported layer type 'conv2d'"),
    "no_shape": (_edit("layers", 1, "shape"), "layer 1 (lstm): key 'shape' is missing"),
    "no_weights": (_edit("layers", 2, "weights"), "layer 2 (dense): key 'weights' is missing"),
    "gru_relu": (_edit("layers", 0, "activation", value="relu"),
                 "layer 0 (gru): activation 'relu': RTNeural's recurrent layers always compute tanh"),
    "dense_swish": (_edit("layers", 2, "activation", value="swish"),
                    "layer 2 (dense): unsupported activation 'swish'"),
    "gru_bias_1d": (lambda d: _edit("layers", 0, "weights", 2, value=d["layers"][0]["weights"][2][0])(d),
                    "layer 0 (gru): weights[2] (bias, (2, 3H)"),
    "gru_kernel_rows": (lambda d: _edit("layers", 0, "weights", 0,
                                        value=d["layers"][0]["weights"][0][:1])(d),
                        "layer 0 (gru): weights[0] (kernel) takes 1 inputs but the previous layer gives 2"),
    "gru_units": (_edit("layers", 0, "shape", value=[None, None, 4]),
                  "layer 0 (gru): weights[1] (recurrent_kernel) has 3 rows but 'shape' says 4"),
    "lstm_bias_len": (lambda d: _edit("layers", 1, "weights", 2, value=d["layers"][1]["weights"][2][:7])(d),
                      "layer 1 (lstm): tensor bias"),
    "lstm_two_arrays": (lambda d: _edit("layers", 1, "weights", value=d["layers"][1]["weights"][:2])(d),
                        "layer 1 (lstm): 'weights' holds 2 arrays, expected 3"),
    "ragged": (_edit("layers", 0, "weights", 1, 1, value=[0.5]),
               "layer 0 (gru): weights[1] (recurrent_kernel): ragged lists"),
    "string_number": (_edit("layers", 2, "weights", 1, 0, value="0.1"),
                      "layer 2 (dense): weights[1] (bias): expected numbers, found a string"),
    "null_number": (_edit("layers", 2, "weights", 1, 0, value=None),
                    "layer 2 (dense): weights[1] (bias): expected numbers, found null"),
    "dense_cols": (_edit("layers", 2, "shape", value=[None, None, 2]),
                   "layer 2 (dense): weights[0] (kernel) has 1 columns but 'shape' says 2"),
    "in_skip_2": (_edit("in_skip", value=2), "in_skip=2"),
    "in_skip_bool": (_edit("in_skip", value=True), "'in_skip' must be int"),
    "out_gain_str": (_edit("out_gain", value="-3 dB"), "'out_gain' must be int or float"),
    "activation_only": (lambda d: {"in_shape": [None, None, 2],
                                   "layers": [{"type": "activation", "activation": "", "shape": [None, 2],
                                               "weights": []}]}, "holds only empty activations"),
    "neither": (lambda d: {"hello": 1}, "none of the JSON models streamgru reads"),
    "list": (lambda d: [d], "none of the JSON models streamgru reads"),
}

BAD_GUITARML = {
    "recnet": (_edit("model_data", "model", value="RecNet"), "model 'RecNet' is not supported"),
    "unit": (_edit("model_data", "unit_type", value="Transformer"), "unit_type 'Transformer'"),
    "no_hidden": (_edit("model_data", "hidden_size"), "model_data: key 'hidden_size' is missing"),
    "no_state_dict": (_edit("state_dict"), "key 'state_dict' is missing"),
    "missing_tensor": (_edit("state_dict", "rec.bias_hh_l0"),
                       "tensor state_dict['rec.bias_hh_l0'] is missing"),
    "extra_tensor": (_edit("state_dict", "rec.weight_ih_l1", value=[[0.0]]),
                     "tensor state_dict['rec.weight_ih_l1'] is unexpected"),
    "lin_shape": (_edit("state_dict", "lin.weight", value=[[0.1, 0.2, 0.3]]),
                  "tensor state_dict['lin.weight']: expected shape (1, 2)"),
    "hidden_mismatch": (_edit("model_data", "hidden_size", value=3),
                        "tensor state_dict['rec.weight_ih_l0']: a GRU layer 1->2, but model_data says 1->3"),
    "skip_2": (_edit("model_data", "skip", value=2), "skip=2"),
    "rec_shape": (_edit("state_dict", "rec.weight_hh_l0", value=[[0.1, 0.2]] * 5),
                  "rec layer 0 (GRU): tensor weight_hh"),
}


@pytest.mark.parametrize("name", list(BAD_RTNEURAL) + [f"gml:{n}" for n in BAD_GUITARML])
def test_malformed_documents_are_refused(tmp_path, name):
    if name.startswith("gml:"):
        change, words = BAD_GUITARML[name[4:]]
        doc = change(_gml_good())
    else:
        change, words = BAD_RTNEURAL[name]
        doc = change(_rt_good())
    path = tmp_path / f"{name.replace(':', '_')}.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(sg.WeightsError) as info:
        sg.load(path)
    assert str(path) in str(info.value) and words in str(info.value), str(info.value)


BAD_BYTES = {  # document, change to its bytes, words
    "truncated": (_rt_good, lambda raw: raw[: len(raw) // 2], "not a valid JSON file"),
    "garbage": (_rt_good, lambda raw: b"\x00\xff{garbage", "not a JSON file (not UTF-8"),
    "nan": (_rt_good, lambda raw: raw.replace(b"[0.1]", b"[NaN]"), "non-finite number NaN"),
    "overflow": (_rt_good, lambda raw: raw.replace(b"[0.1]", b"[1e999]"),
                 "layer 2 (dense): weights[1] (bias): 1 non-finite value"),
    "gml_overflow": (_gml_good, lambda raw: raw.replace(b'"lin.bias": [0.0]', b'"lin.bias": [-1e999]'),
                     "tensor state_dict['lin.bias']: 1 non-finite value"),
    "deep": (_rt_good, lambda raw: b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "empty": (_rt_good, lambda raw: b"", "not a valid JSON file"),
}


@pytest.mark.parametrize("name", list(BAD_BYTES))
def test_malformed_bytes_are_refused(tmp_path, name):
    doc, change, words = BAD_BYTES[name]
    path = tmp_path / f"{name}.json"
    path.write_bytes(change(json.dumps(doc()).encode()))
    with pytest.raises(sg.WeightsError) as info:
        sg.load(path)
    assert str(path) in str(info.value) and words in str(info.value), str(info.value)


def test_a_broken_nam_file_named_json_names_both_readers_tried(tmp_path):
    path = tmp_path / "amp.json"
    path.write_text(json.dumps({"version": "0.5.4", "architecture": "ConvNet", "config": {},
                                "weights": []}))
    with pytest.raises(sg.WeightsError) as info:
        sg.load(path)
    msg = str(info.value)
    assert "architecture 'ConvNet' is not supported" in msg and "also tried" in msg
    assert "RTNeural / AIDA-X / GuitarML JSON" in msg


def test_the_budget_bounds_the_parse(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(_rt_good()))
    with pytest.raises(sg.WeightsError, match="budget"):
        sg.load(path, max_bytes=2 * path.stat().st_size)


def test_a_json_suffix_is_not_needed(tmp_path):
    doc = _gml_good()
    (tmp_path / "model.txt").write_text(json.dumps(doc))
    (tmp_path / "model.json").write_text(json.dumps(doc))
    assert sg.load(tmp_path / "model.txt") == sg.load(tmp_path / "model.json")
