"""Keras convolution and normalisation layers, in models written by Keras 3
itself (torch backend, no TensorFlow) as .keras and legacy .h5 and read live
with sg.from_keras, streamed against Keras's own forward pass over 1,000
steps: float32 within 1e-5, float64 within 1e-9. Refusals and malformed
files raise WeightsError naming the file and the layer."""

import json
import logging
import zipfile

import numpy as np
import pytest

import streamgru as sg

from keras_models import T, floatx, forward, keras, save_all
from onnx_models import err

TOL = {np.float32: 1e-5, np.float64: 1e-9}
logging.getLogger("absl").setLevel(logging.ERROR)


def _cnn_gru(k):
    """A sensor classifier: causal dilated convs, batchnorm, shared PReLU, GRU."""
    L = k.layers
    return k.Sequential([
        k.Input((None, 3)),
        L.Conv1D(8, 5, padding="causal", dilation_rate=2, activation="relu"),
        L.BatchNormalization(),                       # after the relu: its own layer
        L.Conv1D(8, 3, padding="causal", groups=2),
        L.BatchNormalization(epsilon=1e-2),           # folded into the conv
        L.PReLU(shared_axes=[1]),
        L.GRU(16, return_sequences=True),
        L.Dense(4, activation="softmax"),
    ])


def _tcn(k):
    """A functional TCN: a left pad before a depthwise conv, dilated causal
    convs, layer norm (Keras's epsilon 1e-3), a slope shared by all."""
    L = k.layers
    x = k.Input((None, 2))
    y = L.ZeroPadding1D((4, 0))(x)
    y = L.DepthwiseConv1D(3, dilation_rate=2, depth_multiplier=3)(y)
    y = L.Conv1D(6, 2, padding="causal", dilation_rate=4, activation="tanh")(y)
    y = L.Conv1D(6, 3, padding="causal", dilation_rate=8)(y)
    y = L.LayerNormalization()(y)
    y = L.PReLU(shared_axes=[1, 2])(y)
    y = L.Conv1D(3, 1)(y)
    return k.Model(x, y)


def _valid(k):
    """padding="valid" convs with only stateless layers after them."""
    L = k.layers
    return k.Sequential([
        k.Input((None, 2)),
        L.Conv1D(5, 3, padding="valid", dilation_rate=2),
        L.BatchNormalization(center=False),
        L.PReLU(shared_axes=[1]),
        L.DepthwiseConv1D(2, padding="valid", activation="elu"),
        L.LayerNormalization(scale=False),
        L.Dense(2),
    ])


MODELS = {"cnn_gru": _cnn_gru, "tcn": _tcn, "valid": _valid}


def build(name, dtype, seed=0):
    with floatx(dtype) as k:
        model = MODELS[name](k)
        rng = np.random.default_rng(seed)
        weights = []
        for v, w in zip(model.weights, model.get_weights()):
            if "variance" in v.path:
                w = rng.uniform(0.5, 2.0, w.shape)
            elif "alpha" in v.path:
                w = rng.uniform(0.05, 0.5, w.shape)
            else:
                w = rng.normal(0, 0.5, w.shape)
            weights.append(w.astype(w.dtype if w.dtype == dtype else dtype))
        model.set_weights(weights)
    return model


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(MODELS))
def test_streams_like_keras(name, dtype, tmp_path):
    model = build(name, dtype)
    X = np.random.default_rng(1).normal(size=(T, model.input_shape[-1])).astype(dtype)
    want = forward(model, X)
    paths = save_all(model, tmp_path, name)
    sources = {".keras": sg.load(paths[".keras"]), ".h5": sg.load(paths[".h5"]),
               "live": sg.from_keras(model)}
    delay = 5 if name == "valid" else 0
    assert len(want) == T - delay
    for source, m in sources.items():
        assert m.dtype == dtype and m.latency == 0, source
        assert m.metadata.get("valid_delay", 0) == delay, source
        s = m.stream()
        y = np.empty(m.output_size, dtype)
        got = np.array([s.step(x, out=y).copy() for x in X])
        # Keras's valid output at t is the stream's at t + delay
        err = np.max(np.abs(got[delay:] - want))
        assert err <= TOL[dtype], f"{name} from {source}: max error {err:.3g}"
        np.testing.assert_allclose(m.stream().process(X), got, rtol=0, atol=TOL[dtype])


def test_layers_after_conversion():
    kinds = lambda n: [type(l).__name__ for l in sg.from_keras(build(n, np.float32)).layers]  # noqa: E731
    assert kinds("cnn_gru") == ["Conv1d", "BatchNorm", "Conv1d", "PReLU", "GRU", "Dense"]
    assert kinds("tcn") == ["Conv1d", "Conv1d", "Conv1d", "LayerNorm", "PReLU", "Conv1d"]
    tcn = sg.from_keras(build("tcn", np.float32))
    dw = tcn.layers[0]
    assert (dw.groups, dw.input_size, dw.output_size, dw.dilation) == (2, 2, 6, 2)
    assert tcn.layers[3].eps == pytest.approx(1e-3)
    m = sg.from_keras(build("valid", np.float32))
    assert "t + 5 is the Keras model's output at t" in " ".join(m.metadata["notes"])


def _refused(model, *words):
    with pytest.raises(sg.WeightsError) as info:
        sg.from_keras(model)
    msg = str(info.value)
    for w in words:
        assert w in msg, msg
    return msg


REFUSED = {
    "same_strided": (lambda k, L: [L.Conv1D(4, 3, strides=2, padding="same")],
                     ["layer 'c' (Conv1D)", "padding='same' with strides 2", "length"]),
    "pooling_same": (lambda k, L: [L.Conv1D(4, 1), L.MaxPooling1D(2, padding="same", name="c")],
                     ["layer 'c' (MaxPooling1D)", "only 'valid' streams"]),
    "global_pool": (lambda k, L: [L.GlobalAveragePooling1D(name="c")], ["pools over the whole"]),
    "valid_then_gru": (lambda k, L: [L.Conv1D(4, 3), L.GRU(3, return_sequences=True, name="g")],
                       ["layer 'g' (GRU)", "has memory", "padding='valid'", "2 samples"]),
    "valid_then_causal": (lambda k, L: [L.Conv1D(4, 3), L.Conv1D(3, 2, padding="causal", name="g")],
                          ["layer 'g' (Conv1D)", "has memory"]),
    "pad_right": (lambda k, L: [L.ZeroPadding1D((2, 1), name="c")], ["padding on the right"]),
    "pad_amount": (lambda k, L: [L.ZeroPadding1D((3, 0)), L.Conv1D(4, 3, name="c")],
                   ["layer 'c' (Conv1D)", "exactly (k-1)*d = 2"]),
    "pad_then_dense": (lambda k, L: [L.ZeroPadding1D((2, 0)), L.Dense(2, name="c")],
                       ["layer 'c' (Dense)", "must feed a Conv1D"]),
    "pad_then_causal": (lambda k, L: [L.ZeroPadding1D((2, 0)), L.Conv1D(4, 3, padding="causal",
                                                                          name="c")],
                        ["padding='valid' after a left pad"]),
    "conv_after_last_step": (lambda k, L: [L.GRU(4, name="g"), L.Reshape((4, 1)),
                                           L.Conv1D(2, 2, name="c")], ["(Reshape)"]),
    "layernorm_rms": (lambda k, L: [L.LayerNormalization(rms_scaling=True, name="c")],
                      ["layer 'c' (LayerNormalization)", "rms_scaling"]),
    "batchnorm_axis": (lambda k, L: [L.BatchNormalization(axis=1, name="c")],
                       ["layer 'c' (BatchNormalization)", "over axis 1"]),
    "bidirectional": (lambda k, L: [L.Bidirectional(L.GRU(3, return_sequences=True), name="c")],
                      ["(Bidirectional)", "needs the future"]),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_unstreamable_layers_are_refused_by_name(name):
    k = keras()
    make, words = REFUSED[name]
    layers = make(k, k.layers)
    if name == "same_strided":
        layers[0].name = "c"
    steps = 20 if name == "batchnorm_axis" else None  # (Keras builds axis 1 only at a fixed length)
    model = k.Sequential([k.Input((steps, 3))] + layers)
    _refused(model, *words)


def test_a_slope_per_time_step_is_refused():
    k = keras()
    model = k.Sequential([k.Input((50, 3)), k.layers.PReLU(name="p")])  # alpha (50, 3)
    _refused(model, "layer 'p' (PReLU): tensor alpha", "slope of shape (50, 3)", "shared_axes=[1]")


def test_a_conv_over_the_features_is_refused():
    k = keras()
    # a Conv1D after return_sequences=False has no time axis left: Keras itself
    # cannot build that Sequential, so the config is edited as a file would be
    model = k.Sequential([k.Input((None, 3)), k.layers.GRU(4, return_sequences=True, name="g"),
                          k.layers.Conv1D(2, 1, name="c")])
    cfg = model.get_config()
    cfg["layers"][1]["config"]["return_sequences"] = False
    from streamgru.formats.keras import _model
    from streamgru.formats.keras_graph import model_layers

    _, _, chain = model_layers({"class_name": "Sequential", "config": json.loads(json.dumps(cfg))},
                               "edited")
    fetch = lambda e: [np.asarray(w) for w in model.get_layer(e.name).get_weights()]  # noqa: E731
    with pytest.raises(sg.WeightsError, match="layer 'c' \\(Conv1D\\): Conv1D after the time "
                                              "axis is gone.*over the features"):
        _model(chain, fetch, "edited", 3, None, {})


# ---------------------------------------------------------------------------
# malformed .keras files, edited member by member


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    k = keras()
    model = k.Sequential([k.Input((None, 3)), k.layers.Conv1D(4, 3, padding="causal", name="c"),
                          k.layers.BatchNormalization(name="b"), k.layers.PReLU(shared_axes=[1], name="p"),
                          k.layers.Dense(2, name="d")])
    return save_all(model, tmp_path_factory.mktemp("good"), "m")[".keras"]


def _rewrite(src, dst, config=None, weights=None):
    import io

    import h5py

    with zipfile.ZipFile(src) as z:
        content = {n: z.read(n) for n in z.namelist()}
    if config is not None:
        cfg = json.loads(content["config.json"])
        config(cfg["config"]["layers"])
        content["config.json"] = json.dumps(cfg).encode()
    if weights is not None:
        buf = io.BytesIO(content["model.weights.h5"])
        with h5py.File(buf, "a") as f:
            weights(f)
        content["model.weights.h5"] = buf.getvalue()
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in content.items():
            z.writestr(n, data)
    return str(dst)


def _cfg(i, key, value):
    def edit(layers):
        layers[i]["config"][key] = value
    return edit


def _replace(name, value):
    def edit(f):
        del f[name]
        f[name] = value
    return edit


BAD = {
    "kernel_size": (_cfg(1, "kernel_size", [4]), None, ["layer 'c' (Conv1D)", "tensor kernel",
                                                         "expected shape (4, channels"]),
    "kernel_size_str": (_cfg(1, "kernel_size", "3"), None, ["config 'kernel_size' should be"]),
    "dilation_zero": (_cfg(1, "dilation_rate", [0]), None, ["config 'dilation_rate' should be"]),
    "huge_dilation": (_cfg(1, "dilation_rate", [1 << 22]), None,
                      ["layer 'c'", "a ring of 8388608 past inputs", "budget"]),
    "groups": (_cfg(1, "groups", 2), None, ["layer 'c' (Conv1D)", "takes 6 channels",
                                            "previous layer gives 3"]),
    "padding": (_cfg(1, "padding", "reflect"), None, ["padding 'reflect' is not supported"]),
    "no_bias": (_cfg(1, "use_bias", False), None, ["expected 1 weight tensors (kernel), found 2"]),
    "kernel_2d": (None, _replace("layers/conv1d/vars/0", np.zeros((3, 4), np.float32)),
                  ["layer 'c' (Conv1D)", "tensor kernel: expected shape (3, channels"]),
    "bias_len": (None, _replace("layers/conv1d/vars/1", np.zeros(5, np.float32)),
                 ["layer 'c' (Conv1D)", "tensor bias: expected shape (4,)"]),
    "bn_center": (_cfg(2, "center", False), None, ["layer 'b' (BatchNormalization)",
                                                   "expected 3 weight tensors"]),
    "bn_negative": (None, _replace("layers/batch_normalization/vars/3", -np.ones(4, np.float32)),
                    ["layer 'b' (BatchNormalization)", "negative variance"]),
    "bn_eps": (_cfg(2, "epsilon", "big"), None, ["config 'epsilon' should be a number"]),
    "bn_nan": (None, _replace("layers/batch_normalization/vars/0", np.full(4, np.nan, np.float32)),
               ["layer 'b' (BatchNormalization)", "non-finite"]),
    "prelu_len": (None, _replace("layers/p_re_lu/vars/0", np.zeros((1, 3), np.float32)),
                  ["layer 'p' (PReLU): tensor alpha", "for 4 features"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_malformed_files_are_refused(good, tmp_path, name):
    config, weights, words = BAD[name]
    err(_rewrite(good, tmp_path / f"{name}.keras", config, weights), *words)
