"""Keras functional models whose layers branch and join again (Add,
Subtract, Multiply, Average, Concatenate), written by Keras itself (.keras
and legacy .h5) and live, streamed against Keras's own forward as graph
models (formats/keras_dag.py); and what stays refused, by name."""

import numpy as np
import pytest

import streamgru as sg

from keras_models import T, floatx, forward, keras, randomise, save_all

TOL = {np.float32: 1e-5, np.float64: 1e-9}
C = 3


def tcn_block(k, x, ch, d):
    """A residual TCN block: two causal dilated convs, a 1x1 on the skip."""
    h = k.layers.Conv1D(ch, 3, padding="causal", dilation_rate=d, activation="relu")(x)
    h = k.layers.Conv1D(ch, 3, padding="causal", dilation_rate=d)(h)
    res = x if x.shape[-1] == ch else k.layers.Conv1D(ch, 1)(x)
    return k.layers.Activation("relu")(k.layers.Add()([h, res]))


def model(name):
    k = keras()
    x = k.Input((None, C))
    if name == "tcn":
        h = tcn_block(k, x, 6, 1)
        h = tcn_block(k, h, 6, 2)
        y = k.layers.Dense(2)(tcn_block(k, h, 6, 4))
    elif name == "gated_skips":  # WaveNet-like: gated blocks, skip outputs summed
        h = k.layers.Conv1D(4, 1)(x)
        skips = []
        for d in (1, 2, 4):
            a = k.layers.Conv1D(4, 2, padding="causal", dilation_rate=d, activation="tanh")(h)
            b = k.layers.Conv1D(4, 2, padding="causal", dilation_rate=d, activation="sigmoid")(h)
            g = k.layers.Multiply()([a, b])
            skips.append(g)
            h = k.layers.Add()([h, k.layers.Conv1D(4, 1)(g)])
        y = k.layers.Conv1D(1, 1)(k.layers.Add()(skips))
    elif name == "cnn_branches_gru":  # two conv branches concatenated into a GRU
        a = k.layers.Conv1D(4, 3, padding="causal", activation="relu")(x)
        b = k.layers.Conv1D(3, 5, padding="causal", dilation_rate=2)(x)
        b = k.layers.BatchNormalization()(b)
        h = k.layers.Concatenate()([a, b, x])
        h = k.layers.GRU(5, return_sequences=True)(h)
        y = k.layers.Dense(2, activation="softmax")(h)
    else:  # subtract and average, a LayerNorm and a PReLU on the way
        a = k.layers.Dense(4)(x)
        b = k.layers.LayerNormalization()(k.layers.Dense(4, activation="tanh")(x))
        c = k.layers.PReLU(shared_axes=[1])(a)
        y = k.layers.Average()([k.layers.Subtract()([a, b]), c, b])
    net = k.Model(x, y)
    randomise(net, seed=len(name), scale=0.4)
    for layer in net.layers:  # BatchNorm's moving variance must stay positive
        if type(layer).__name__ == "BatchNormalization":
            g, be, mu, var = layer.get_weights()
            layer.set_weights([g, be, mu, np.abs(var) + 0.5])
    return net


@pytest.mark.parametrize("name", ["tcn", "gated_skips", "cnn_branches_gru", "subtract_average"])
def test_streams_like_keras(name, tmp_path):
    net = model(name)
    X = np.random.default_rng(1).normal(size=(T, C)).astype(np.float32)
    want = forward(net, X)
    paths = save_all(net, tmp_path, name)
    for source, m in {".keras": sg.load(paths[".keras"]), ".h5": sg.load(paths[".h5"]),
                      "live": sg.from_keras(net)}.items():
        assert m.graph is not None and m.latency == 0, source
        s = m.stream()
        y = np.empty(m.output_size, np.float32)
        got = np.array([s.step(v, out=y).copy() for v in X])
        err = np.max(np.abs(got - want))
        assert err <= TOL[np.float32] * max(1.0, np.abs(want).max()), f"{name} {source}: {err:.3g}"
        np.testing.assert_allclose(m.stream().process(X), got, rtol=0, atol=1e-5)


def test_branches_into_a_last_step_gru_are_many_to_one(tmp_path):
    k = keras()
    x = k.Input((None, C))
    a = k.layers.Conv1D(4, 3, padding="causal", activation="relu")(x)
    h = k.layers.GRU(5)(k.layers.Concatenate()([a, x]))  # return_sequences=False
    net = randomise(k.Model(x, k.layers.Dense(2)(h)), seed=3, scale=0.4)
    m = sg.load(save_all(net, tmp_path, "last")[".keras"])
    assert m.metadata["many_to_one"] is True
    X = np.random.default_rng(3).normal(size=(40, C)).astype(np.float32)
    steps = np.array([y.copy() for y in map(m.stream().step, X)])
    for t in (1, 17, 40):  # step t: Keras's answer for the sequence ending at t
        np.testing.assert_allclose(steps[t - 1], forward(net, X[:t]), rtol=0, atol=1e-5)


def test_a_float64_graph_matches_keras_to_1e_9():
    with floatx(np.float64):
        net = model("tcn")
    X = np.random.default_rng(2).normal(size=(300, C))
    want = forward(net, X)
    m = sg.from_keras(net)
    assert m.dtype == np.float64
    assert np.max(np.abs(m.stream().process(X) - want)) < TOL[np.float64] * max(1, np.abs(want).max())


def _refused(net, *words):
    with pytest.raises(sg.WeightsError) as info:
        sg.from_keras(net)
    for w in words:
        assert w in str(info.value), str(info.value)


def test_what_does_not_stream_in_a_graph_is_refused_by_name():
    k = keras()
    x = k.Input((None, C))
    a = k.layers.Conv1D(4, 3, padding="causal")(x)
    _refused(k.Model(x, k.layers.Concatenate(axis=1)([a, a])), "(Concatenate)",
             "over axis 1", "only the features")
    _refused(k.Model(x, k.layers.Add()([a, k.layers.Conv1D(4, 3, padding="same")(x)])),
             "latency of 1 samples", "causal")
    g = k.layers.GRU(4)(a)  # return_sequences=False, then more graph after it
    _refused(k.Model(x, k.layers.Add()([g, k.layers.GRU(4)(a)])), "return_sequences=False")
    _refused(k.Model(x, k.layers.Maximum()([a, a])), "'Maximum' is not supported")


def test_malformed_graph_configs_are_refused():
    from streamgru.formats.keras_graph import model_layers

    def config(inbound):
        layers = [{"class_name": "InputLayer", "name": "x", "config": {"batch_shape": [None, None, 3]},
                   "inbound_nodes": []}]
        for name, srcs in inbound.items():
            layers.append({"class_name": "Dense", "name": name, "config": {"units": 3},
                           "inbound_nodes": [[[s, 0, 0, {}] for s in srcs]]})
        return {"class_name": "Functional", "config": {
            "layers": layers, "input_layers": [["x", 0, 0]], "output_layers": [["out", 0, 0]]}}

    cases = {
        "cycle": ({"a": ["x", "b"], "b": ["a"], "out": ["a", "b"]}, "part of a cycle"),
        "no input": ({"a": [], "out": ["a", "x"]}, "takes no input tensor"),
        "unconnected": ({"out": ["out"]}, "part of a cycle"),
        "dangling": ({"a": ["x"], "b": ["x"], "out": ["a", "x"]}, "do not reach the model's output"),
    }
    for name, (inbound, words) in cases.items():
        with pytest.raises(sg.WeightsError, match=words):
            model_layers(config(inbound), "m.keras")
