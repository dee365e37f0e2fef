"""Legacy Keras 2 ``.h5`` model files, which Keras 3 cannot write: made here
with h5py in exactly Keras 2's layout (root attributes ``model_config``,
``keras_version`` and ``backend``; ``model_weights/<layer>`` with a
``weight_names`` attribute and one dataset per name, e.g.
``gru/gru_cell/kernel:0``), streamed against reference math written from
Keras 2's formulas (hard_sigmoid = clip(0.2 x + 0.5, 0, 1)) and, once,
against Keras 3 running the same weights with Keras 2's hard_sigmoid."""

import json

import h5py
import numpy as np
import pytest

import reference as R
import streamgru as sg

from keras_models import T, forward, keras

TOL = {np.float32: 1e-5, np.float64: 1e-9}


def _rnn_config(name, units, **kw):
    cfg = {"name": name, "trainable": True, "dtype": "float32", "return_sequences": True,
           "return_state": False, "go_backwards": False, "stateful": False, "unroll": False,
           "time_major": False, "units": units, "activation": "tanh",
           "recurrent_activation": "hard_sigmoid", "use_bias": True,
           "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
           "recurrent_initializer": {"class_name": "Orthogonal", "config": {"gain": 1.0}},
           "bias_initializer": {"class_name": "Zeros", "config": {}},
           "dropout": 0.0, "recurrent_dropout": 0.0, "implementation": 2}
    cfg.update(kw)
    return cfg


def _weights(rng, dtype, *shapes):
    return [rng.normal(0, 0.5, s).astype(dtype) for s in shapes]


def stack(dtype=np.float32, seed=0):
    """Keras 2 (tf.keras 2.4) Sequential: GRU -> LSTM -> SimpleRNN -> Dense(softmax),
    hard_sigmoid gates, as (layers, reference forward)."""
    rng = np.random.default_rng(seed)
    gru = _weights(rng, dtype, (3, 18), (6, 18), (2, 18))
    lstm = _weights(rng, dtype, (6, 20), (5, 20), (20,))
    rnn = _weights(rng, dtype, (5, 4), (4, 4), (4,))
    dense = _weights(rng, dtype, (4, 3), (3,))
    layers = [
        ("GRU", _rnn_config("gru", 6, reset_after=True), "gru/gru_cell", gru),
        ("LSTM", _rnn_config("lstm", 5, unit_forget_bias=True), "lstm/lstm_cell", lstm),
        ("SimpleRNN", {k: v for k, v in _rnn_config("simple_rnn", 4).items()
                       if k not in ("recurrent_activation", "implementation")},
         "simple_rnn/simple_rnn_cell", rnn),
        ("Dense", {"name": "dense", "trainable": True, "dtype": "float32", "units": 3,
                   "activation": "softmax", "use_bias": True}, "dense", dense),
    ]

    def ref(X):
        h = R.keras_gru(X, *gru, reset_after=True, recurrent_activation="hard_sigmoid", version=2)
        h = R.keras_lstm(h, *lstm, recurrent_activation="hard_sigmoid", version=2)
        h = R.keras_simple_rnn(h, *rnn)
        return R.keras_dense(h, *dense, "softmax")

    return layers, ref


def write_keras2(path, layers, input_size, version="2.4.0", functional=False,
                 config_as_list=False, chunks=1, dtype=np.float32):
    """Write a Keras 2 ``model.save("m.h5")`` file: ``layers`` are (class_name,
    config, weight prefix, arrays) with arrays in Keras order."""
    names = ["kernel", "recurrent_kernel", "bias"]
    entries = []
    shape = [None, None, input_size]
    prev = "input_1"
    inp = {"class_name": "InputLayer", "config": {"batch_input_shape": shape, "dtype": "float32",
                                                  "sparse": False, "ragged": False,
                                                  "name": "input_1"}}
    if functional:
        inp["name"], inp["inbound_nodes"] = "input_1", []
    entries.append(inp)
    for cls, cfg, _, _ in layers:
        cfg = dict(cfg, dtype=np.dtype(dtype).name)
        e = {"class_name": cls, "config": cfg}
        if functional:
            e["name"] = cfg["name"]
            e["inbound_nodes"] = [[[prev, 0, 0, {}]]]
            prev = cfg["name"]
        entries.append(e)
    if functional:
        config = {"class_name": "Functional", "config": {
            "name": "model", "layers": entries, "input_layers": [["input_1", 0, 0]],
            "output_layers": [[prev, 0, 0]]}}
    elif config_as_list:  # Keras 2.0 and 2.1: the Sequential config is the list itself
        entries[1]["config"]["batch_input_shape"] = shape
        config = {"class_name": "Sequential", "config": entries[1:]}
    else:
        config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": entries}}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = version.encode()
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode()
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = np.array([c["name"].encode() for _, c, _, _ in layers])
        mw.attrs["keras_version"] = version.encode()
        mw.attrs["backend"] = b"tensorflow"
        for _, cfg, prefix, arrays in layers:
            g = mw.create_group(cfg["name"])
            wnames = [f"{prefix}/{n}:0" for n in (names if len(arrays) == 3 else ["kernel", "bias"])]
            wnames = np.array([n.encode() for n in wnames[: len(arrays)]])
            if chunks > 1:  # Keras splits attributes past HDF5's 64 KiB header limit
                for k, part in enumerate(np.array_split(wnames, chunks)):
                    g.attrs[f"weight_names{k}"] = part
            else:
                g.attrs["weight_names"] = wnames
            for n, a in zip(wnames, arrays):
                g.create_dataset(n.decode(), data=a)
    return path


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("layout", ["sequential", "functional", "chunked"])
def test_keras2_stack_streams_like_keras2_math(layout, dtype, tmp_path):
    layers, ref = stack(dtype)
    p = write_keras2(str(tmp_path / "k2.h5"), layers, 3, functional=layout == "functional",
                     chunks=2 if layout == "chunked" else 1, dtype=dtype)
    m = sg.load(p)
    assert m.dtype == dtype and m.metadata["keras_version"] == "2.4.0"
    assert m.layers[0].gate_activation.alpha == 0.2  # Keras 2's hard_sigmoid
    X = np.random.default_rng(5).normal(size=(T, 3)).astype(dtype)
    err = np.max(np.abs(m.stream().process(X) - ref(X)))
    print(f"keras 2 stack {layout} {np.dtype(dtype).name}: max error {err:.2e}")  # shown with -s
    assert err <= TOL[dtype], f"{layout}: max error {err:.3g}"


def test_keras2_stack_matches_keras3_running_keras2_hard_sigmoid(tmp_path):
    """The reference math itself, checked once against Keras: Keras 3 with a
    recurrent activation of clip(0.2 x + 0.5, 0, 1) and the same weights."""
    k = keras()
    layers, ref = stack(np.float32)

    def hard_sigmoid_2(x):
        return k.ops.clip(0.2 * x + 0.5, 0.0, 1.0)

    net = k.Sequential([k.Input((None, 3)),
                        k.layers.GRU(6, return_sequences=True, recurrent_activation=hard_sigmoid_2),
                        k.layers.LSTM(5, return_sequences=True,
                                      recurrent_activation=hard_sigmoid_2),
                        k.layers.SimpleRNN(4, return_sequences=True),
                        k.layers.Dense(3, activation="softmax")])
    net.set_weights([a for *_, arrays in layers for a in arrays])
    X = np.random.default_rng(6).normal(size=(T, 3)).astype(np.float32)
    keras_out = forward(net, X)
    assert np.max(np.abs(keras_out - ref(X))) <= 1e-5
    got = sg.load(write_keras2(str(tmp_path / "k2.h5"), layers, 3)).stream().process(X)
    assert np.max(np.abs(got - keras_out)) <= 1e-5


def test_keras21_gru_without_reset_after(tmp_path):
    """Keras 2.0-2.1: the Sequential config is a bare list, GRU configs have no
    reset_after (they computed reset_after=False, bias (3H,)), weights are named
    ``gru_1/kernel:0``."""
    rng = np.random.default_rng(7)
    gru = _weights(rng, np.float32, (2, 15), (5, 15), (15,))
    dense = _weights(rng, np.float32, (5, 2), (2,))
    cfg = _rnn_config("gru_1", 5)
    del cfg["time_major"]  # and no reset_after: Keras 2.1 had none
    layers = [("GRU", cfg, "gru_1", gru),
              ("Dense", {"name": "dense_1", "units": 2, "activation": "linear",
                         "use_bias": True}, "dense_1", dense)]
    p = write_keras2(str(tmp_path / "k21.h5"), layers, 2, version="2.1.6", config_as_list=True)
    m = sg.load(p)
    assert m.layers[0].reset_after is False
    X = np.random.default_rng(8).normal(size=(T, 2)).astype(np.float32)
    want = R.keras_dense(R.keras_gru(X, *gru, reset_after=False,
                                     recurrent_activation="hard_sigmoid", version=2), *dense)
    assert np.max(np.abs(m.stream().process(X) - want)) <= 1e-5


def test_keras2_many_to_one_time_distributed(tmp_path):
    rng = np.random.default_rng(9)
    td = _weights(rng, np.float32, (3, 4), (4,))
    lstm = _weights(rng, np.float32, (4, 24), (6, 24), (24,))
    dense = _weights(rng, np.float32, (6, 2), (2,))
    layers = [
        ("TimeDistributed", {"name": "time_distributed", "layer": {
            "class_name": "Dense", "config": {"name": "dense", "units": 4, "activation": "relu",
                                              "use_bias": True}}}, "time_distributed", td),
        ("LSTM", _rnn_config("lstm", 6, return_sequences=False, recurrent_activation="sigmoid"),
         "lstm/lstm_cell", lstm),
        ("Dense", {"name": "dense_1", "units": 2, "activation": "sigmoid", "use_bias": True},
         "dense_1", dense),
    ]
    m = sg.load(write_keras2(str(tmp_path / "m2o.h5"), layers, 3, functional=True))
    assert m.metadata["many_to_one"] is True
    X = np.random.default_rng(10).normal(size=(T, 3)).astype(np.float32)
    h = R.keras_lstm(R.keras_dense(X, *td, "relu"), *lstm)
    want = R.keras_dense(h, *dense, "sigmoid")  # row t: the answer for X[:t + 1]
    assert np.max(np.abs(m.stream().process(X) - want)) <= 1e-5


def test_unknown_version_needs_keras_version_for_hard_sigmoid(tmp_path):
    layers, ref = stack()
    p = write_keras2(str(tmp_path / "nov.h5"), layers, 3)
    with h5py.File(p, "a") as f:
        del f.attrs["keras_version"]
    with pytest.raises(sg.WeightsError, match=r"nov\.h5.*'gru'.*keras_version=2"):
        sg.load(p)
    X = np.random.default_rng(11).normal(size=(50, 3)).astype(np.float32)
    m = sg.load(p, keras_version=2)
    assert np.max(np.abs(m.stream().process(X) - ref(X))) <= 1e-5
    assert sg.load(p, keras_version=3).layers[0].gate_activation.alpha == 1 / 6
