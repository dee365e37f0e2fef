"""RTNeural JSON files with conv1d, batchnorm and prelu layers.

Each file is what RTNeural's Keras exporter (``python/model_utils.py``:
``kernel_size``, ``dilation`` and ``groups`` on a conv1d, ``epsilon`` on a
batchnorm, ``layer.get_weights()`` as the arrays) writes for a Keras 3 model
(torch backend) built with causal convolutions, which compute what RTNeural
computes. Streamed against both the Keras model's own forward and an
independent numpy transcription of RTNeural's math
(``reference.rtneural_run``), over 1500 steps: float32 within 1e-5.
"""

import json
import os

import numpy as np
import pytest

import streamgru as sg
import reference as ref
from onnx_models import err

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from test_rtneural import _Arrays, _rtneural_activation, _rtneural_type, signal  # noqa: E402

T = 1500
L = keras.layers


def rtneural_export(model, path):
    """model_utils.save_model's document, with its conv1d / batchnorm extras."""
    layers = []
    for l in model.layers:
        kind = "batchnorm" if isinstance(l, L.BatchNormalization) else _rtneural_type(l)
        d = {"type": kind, "activation": _rtneural_activation(l), "shape": tuple(l.output.shape)}
        if kind == "conv1d":
            d.update(kernel_size=l.kernel_size, dilation=l.dilation_rate, groups=l.groups)
        if kind == "batchnorm":
            d["epsilon"] = l.epsilon
        d["weights"] = l.get_weights()
        layers.append(d)
    doc = {"in_shape": model.input_shape, "layers": layers}
    with open(path, "w") as f:
        json.dump(doc, f, cls=_Arrays)
    return json.loads(open(path).read())


MODELS = {
    # a CNN-GRU: causal conv, batchnorm (folded), shared prelu, GRU, dense
    "cnn_gru": (2, lambda: [L.Conv1D(6, 3, padding="causal", dilation_rate=2),
                            L.BatchNormalization(epsilon=1e-3), L.PReLU(shared_axes=[1]),
                            L.GRU(8, return_sequences=True), L.Dense(1)]),
    # a TCN-style stack: grouped and dilated convs with activations, a
    # batchnorm after an activation (its own layer), a shared prelu slope
    "tcn": (1, lambda: [L.Conv1D(4, 2, padding="causal", activation="tanh"),
                        L.Conv1D(4, 3, padding="causal", dilation_rate=4, groups=2,
                                 activation="relu"),
                        L.BatchNormalization(center=True, scale=True),
                        L.Conv1D(6, 2, padding="causal", dilation_rate=8),
                        L.PReLU(shared_axes=[1, 2]), L.Dense(2, activation="tanh")]),
}


def build(name, seed=0):
    inputs, make = MODELS[name]
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((None, inputs))] + make())
    rng = np.random.default_rng(seed)
    weights = []
    for layer in model.layers:
        for v, w in zip(layer.weights, layer.get_weights()):
            if "variance" in v.path:
                w = rng.uniform(0.5, 1.5, w.shape)
            elif "alpha" in v.path:
                w = rng.uniform(0.05, 0.4, w.shape)
            elif w.ndim < 2:
                w = w + 0.3 * rng.normal(size=w.shape)
            weights.append(w.astype(np.float32))
    model.set_weights(weights)
    return model, inputs


@pytest.mark.parametrize("name", list(MODELS))
def test_rtneural_conv_file_streams_like_keras_and_rtneural_math(tmp_path, name):
    model, inputs = build(name)
    path = tmp_path / f"{name}.json"
    doc = rtneural_export(model, path)
    X = signal(T, inputs, seed=3).astype(np.float32)
    keras_out = np.asarray(keras.ops.convert_to_numpy(model(X[None])))[0]
    rt_out = ref.rtneural_run(doc, X)
    # the exporter's view and RTNeural's math agree (float32 Keras vs float64 numpy)
    assert np.max(np.abs(keras_out - rt_out)) < 1e-5
    m = sg.load(path)
    assert m.metadata["format"] == "rtneural" and m.latency == 0
    s = m.stream()
    y = np.empty(m.output_size, np.float32)
    got = np.array([s.step(x, out=y).copy() for x in X])
    assert np.max(np.abs(got - keras_out)) < 1e-5
    assert np.max(np.abs(got - rt_out)) < 1e-5
    m64 = sg.load(path, dtype=np.float64)
    np.testing.assert_allclose(m64.stream().process(X.astype(np.float64)), rt_out, rtol=0, atol=1e-9)


def test_batchnorm_folds_into_the_conv_before_it(tmp_path):
    model, _ = build("cnn_gru")
    path = tmp_path / "m.json"
    rtneural_export(model, path)
    kinds = [type(l).__name__ for l in sg.load(path).layers]
    assert kinds == ["Conv1d", "PReLU", "GRU", "Dense"]
    model, _ = build("tcn")
    rtneural_export(model, path)
    kinds = [type(l).__name__ for l in sg.load(path).layers]
    assert kinds == ["Conv1d", "Conv1d", "BatchNorm", "Conv1d", "PReLU", "Dense"]


def _conv_doc():
    rng = np.random.default_rng(4)
    return {"in_shape": [None, None, 2], "layers": [
        {"type": "conv1d", "activation": "tanh", "shape": [None, None, 4], "kernel_size": [3],
         "dilation": [2], "groups": 2, "weights": [rng.normal(size=(3, 1, 4)).tolist(),
                                                  rng.normal(size=4).tolist()]},
        {"type": "batchnorm", "activation": "", "shape": [None, None, 4], "epsilon": 0.001,
         "weights": [[1.0] * 4, [0.0] * 4, [0.1] * 4, [0.9] * 4]},
        {"type": "prelu", "activation": "", "shape": [None, None, 4], "weights": [[[0.2] * 4]]},
        {"type": "dense", "activation": "", "shape": [None, None, 1],
         "weights": [rng.normal(size=(4, 1)).tolist(), [0.0]]}]}


def _set(layer, key, value):
    def change(doc):
        doc["layers"][layer][key] = value
        return doc
    return change


def _weight(layer, k, value):
    def change(doc):
        doc["layers"][layer]["weights"][k] = value
        return doc
    return change


BAD = {
    "no_kernel_size": (lambda d: (d["layers"][0].pop("kernel_size"), d)[1],
                       "layer 0 (conv1d): key 'kernel_size' is missing"),
    "kernel_size_str": (_set(0, "kernel_size", "3"), "'kernel_size' must be int or list"),
    "dilation_zero": (_set(0, "dilation", [0]), "'dilation' must be a whole number from 1"),
    "dilation_two": (_set(0, "dilation", [1, 2]), "'dilation' must be a whole number"),
    "groups_mismatch": (_set(0, "groups", 1), "layer 0 (conv1d): weights[0] (kernel) has shape (3, 1, 4)"),
    "kernel_size_wrong": (_set(0, "kernel_size", 4), "kernel_size=4"),
    "kernel_2d": (_weight(0, 0, [[0.1] * 4] * 3), "weights[0] (kernel (k, in / groups, out)): "
                                                  "expected 3-D nested lists"),
    "conv_out": (_set(0, "shape", [None, None, 3]), "'shape' 3 outputs"),
    "huge_dilation": (_set(0, "dilation", 1 << 24), "at most 16777215"),
    "conv_bias": (_weight(0, 1, [0.0] * 3), "layer 0 (conv1d): tensor bias: expected shape (4,)"),
    "bn_no_eps": (lambda d: (d["layers"][1].pop("epsilon"), d)[1],
                  "layer 1 (batchnorm): key 'epsilon' is missing"),
    "bn_three": (lambda d: (d["layers"][1]["weights"].pop(), d)[1],
                 "layer 1 (batchnorm): 'weights' holds 3 arrays; RTNeural reads 4"),
    "bn_negative_var": (_weight(1, 3, [-1.0] * 4), "layer 1 (batchnorm): tensor running_var: negative"),
    "bn_short": (_weight(1, 2, [0.1] * 3), "layer 1 (batchnorm): weights[2] (running_mean) has shape (3,)"),
    "bn_eps_str": (_set(1, "epsilon", "1e-3"), "'epsilon' must be int or float"),
    "prelu_rows": (_weight(2, 0, [[0.2] * 4] * 2), "layer 2 (prelu): weights[0] (alpha): slope of "
                                                   "shape (2, 4) varies along an axis"),
    "prelu_len": (_weight(2, 0, [[0.2] * 3]), "layer 2 (prelu): weights[0] (alpha): slope of shape (1, 3)"),
    "prelu_1d": (_weight(2, 0, [0.2] * 4), "layer 2 (prelu): weights[0] (alpha, (1, C) or (1, 1)): "
                                           "expected 2-D"),
    "prelu_shape": (_set(2, "shape", [None, None, 5]), "layer 2 (prelu): shape says 5 values"),
    "conv_swish": (_set(0, "activation", "swish"),
                                     "layer 0 (conv1d): unsupported activation 'swish'"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_malformed_conv_layers_are_refused(tmp_path, name):
    change, words = BAD[name]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(change(_conv_doc())))
    err(path, words)


def test_the_good_conv_document_loads_and_matches_the_reference(tmp_path):
    doc = _conv_doc()
    path = tmp_path / "good.json"
    path.write_text(json.dumps(doc))
    X = signal(1000, 2, seed=5)
    np.testing.assert_allclose(sg.load(path, dtype=np.float64).stream().process(X),
                               ref.rtneural_run(doc, X), rtol=0, atol=1e-12)


def test_a_huge_ring_is_refused_by_the_budget(tmp_path):
    doc = _conv_doc()
    doc["layers"][0]["dilation"] = 1 << 22  # 3 taps 2**22 apart: a ring of 8 M samples
    path = tmp_path / "ring.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(sg.WeightsError, match="a ring of 8388608 past inputs of 2 channels.*budget"):
        sg.load(path)
