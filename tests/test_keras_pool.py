"""Keras "same"-padded and strided Conv1D, MaxPooling1D and
AveragePooling1D, in models written by Keras 3 itself (torch backend) as
.keras and legacy .h5 and read live with sg.from_keras, streamed against
Keras's own forward over 1,000+ steps (float32 within 1e-5, float64 within
1e-9): a "same" conv streams with its latency (step t is Keras's output at
t - latency), a strided conv or a pool downsamples (the stream's rows are
Keras's rows in order; step returns None between rows)."""

import logging

import numpy as np
import pytest

import streamgru as sg

from keras_models import T, floatx, forward, save_all
from test_keras_conv import TOL
from test_onnx_pool import check

logging.getLogger("absl").setLevel(logging.ERROR)


def _same(k):
    """"same" convs (odd and even kernels, dilated, depthwise), batchnorm, a GRU."""
    L = k.layers
    return k.Sequential([
        k.Input((None, 3)),
        L.Conv1D(8, 5, padding="same", activation="relu"),
        L.DepthwiseConv1D(4, padding="same"),             # 1 zero first, 2 last: delay 2
        L.Conv1D(6, 3, padding="same", dilation_rate=2),
        L.BatchNormalization(),
        L.GRU(7, return_sequences=True),
        L.Dense(3),
    ])


def _down(k):
    """A downsampling CNN-GRU: strided causal and valid convs, both pools."""
    L = k.layers
    x = k.Input((None, 3))
    y = L.Conv1D(8, 3, strides=2, padding="causal", activation="relu")(x)
    y = L.MaxPooling1D(2)(y)
    y = L.Conv1D(8, 3, padding="same", activation="tanh")(y)
    y = L.Conv1D(6, 4, strides=3, padding="valid")(y)
    y = L.AveragePooling1D(3, strides=2)(y)
    y = L.GRU(5, return_sequences=True)(y)
    return k.Model(x, L.Dense(2)(y))


MODELS = {"same": (_same, 2 + 2 + 2, 1), "down": (_down, None, 24)}


def build(name, dtype):
    with floatx(dtype) as k:
        model = MODELS[name][0](k)
        rng = np.random.default_rng(0)
        weights = [rng.uniform(0.5, 2.0, w.shape) if "variance" in v.path else
                   rng.normal(0, 0.5, w.shape) for v, w in zip(model.weights, model.get_weights())]
        model.set_weights([w.astype(dtype) for w in weights])
    return model


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(MODELS))
def test_streams_like_keras(name, dtype, tmp_path):
    model = build(name, dtype)
    X = np.random.default_rng(1).normal(size=(3 * T // 2, 3)).astype(dtype)
    want = forward(model, X)
    paths = save_all(model, tmp_path, name)
    _, latency, stride = MODELS[name]
    for source, m in {".keras": sg.load(paths[".keras"]), ".h5": sg.load(paths[".h5"]),
                      "live": sg.from_keras(model)}.items():
        assert m.dtype == dtype and m.stride == stride, source
        if latency is not None:
            assert m.latency == latency, source
        check(m, X, want, TOL[dtype])


def test_layers_after_conversion():
    m = sg.from_keras(build("down", np.float32))
    assert [type(l).__name__ for l in m.layers] == [
        "Conv1d", "MaxPool1d", "Conv1d", "Conv1d", "AvgPool1d", "GRU", "Dense"]
    assert [getattr(l, "stride", 1) for l in m.layers] == [2, 2, 1, 3, 2, 1, 1]
    same = sg.from_keras(build("same", np.float32))
    assert [l.padding for l in same.layers[:3]] == [(2, 2), (1, 2), (2, 2)]
