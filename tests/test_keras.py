"""Keras models written by Keras 3 itself (torch backend, no TensorFlow), read
by ``sg.load`` (.keras and legacy .h5) and ``sg.from_keras``, streamed against
Keras's own forward pass over 1,000 steps: float32 within 1e-5, float64
within 1e-9."""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

import streamgru as sg

from keras_models import MODELS, T, build, forward, keras, save_all

TOL = {np.float32: 1e-5, np.float64: 1e-9}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

logging.getLogger("absl").setLevel(logging.ERROR)  # Keras warns that .h5 is legacy


def _sources(model, tmp_path, name):
    paths = save_all(model, tmp_path, name)
    return {
        ".keras": sg.load(paths[".keras"]),
        ".h5": sg.load(paths[".h5"]),
        "live": sg.from_keras(model),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(set(MODELS) - {"many_to_one"}))
def test_streams_like_keras(name, dtype, tmp_path):
    model = build(name, dtype)
    I = model.input_shape[-1]
    X = np.random.default_rng(1).normal(size=(T, I)).astype(dtype)
    want = forward(model, X)
    assert want.shape[0] == T
    for source, m in _sources(model, tmp_path, name).items():
        assert m.dtype == dtype, source
        assert m.metadata["many_to_one"] is False
        got = m.stream().process(X)
        err = np.max(np.abs(got - want))
        print(f"{name} {np.dtype(dtype).name} {source}: max error {err:.2e}")  # shown with -s
        assert err <= TOL[dtype], f"{name} from {source}: max error {err:.3g}"
        # step by step from the same state agrees with process
        s = m.stream()
        steps = np.array([s.step(x) for x in X[:50]])
        np.testing.assert_allclose(steps, got[:50], rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_many_to_one(dtype, tmp_path):
    """return_sequences=False: step t gives Keras's answer for the sequence X[:t + 1]."""
    model = build("many_to_one", dtype)
    twin = build("many_to_one", dtype, last=False)   # same layers, every step returned
    twin.set_weights(model.get_weights())
    X = np.random.default_rng(2).normal(size=(T, 3)).astype(dtype)
    every = forward(twin, X)
    for source, m in _sources(model, tmp_path, "m2o").items():
        assert m.metadata["many_to_one"] is True, source
        got = m.stream().process(X)
        err = np.max(np.abs(got - every))
        print(f"many_to_one {np.dtype(dtype).name} {source}: max error {err:.2e}")
        assert err <= TOL[dtype], source
        for t in (0, 57, T - 1):  # the many-to-one model itself, on prefixes
            np.testing.assert_allclose(got[t], forward(model, X[: t + 1]), rtol=0,
                                       atol=TOL[dtype])


def test_layers_and_conventions(tmp_path):
    """Activations and flags are read as Keras defines them."""
    m = sg.load(save_all(build("stack_hard_sigmoid"), tmp_path, "s")[".keras"])
    gru, lstm, rnn, dense = m.layers
    assert (gru.gate_activation.name, gru.gate_activation.alpha) == ("hard_sigmoid", 1 / 6)
    assert lstm.gate_activation.alpha == 1 / 6 and lstm.cell_activation.name == "tanh"
    assert rnn.activation.name == "tanh" and dense.activation.name == "softmax"
    assert m.metadata["keras_version"] == keras().__version__
    assert m.metadata["container"] == ".keras"
    f = sg.load(save_all(build("functional_chain"), tmp_path, "f")[".h5"])
    kinds = [(type(l).__name__, l.activation.name if hasattr(l, "activation") else None)
             for l in f.layers]
    # Activation("gelu") folds into the linear Dense before it; LeakyReLU after
    # a Dense that has its own activation becomes an identity-weight Dense
    assert kinds == [("GRU", "relu"), ("Dense", "elu"), ("Dense", "leaky_relu"),
                     ("Dense", "gelu"), ("RNN", "relu"), ("Dense", "leaky_relu"),
                     ("Dense", "log_softmax")]
    np.testing.assert_array_equal(f.layers[2].weight, np.eye(4))
    assert f.layers[2].activation.alpha == pytest.approx(0.1)
    assert "Masking" in " ".join(f.metadata["notes"])


def test_weights_are_converted_exactly(tmp_path):
    """Keras's arrays, transposed and reordered, bit for bit."""
    k = keras()
    model = build("gru")
    kernel, recurrent, bias = model.layers[0].get_weights()
    m = sg.load(save_all(model, tmp_path, "g")[".keras"])
    gru = m.layers[0]
    H = 8
    z, r, h = (slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H))  # Keras columns z, r, h
    np.testing.assert_array_equal(gru.weight_ih, np.concatenate(
        [kernel[:, r].T, kernel[:, z].T, kernel[:, h].T]))
    np.testing.assert_array_equal(gru.bias_hh, np.concatenate([bias[1, r], bias[1, z], bias[1, h]]))
    assert k is not None


def test_hand_built_layers_match_keras():
    """GRU/LSTM/RNN.from_keras with activation arguments reproduce Keras layers."""
    k = keras()
    X = np.random.default_rng(3).normal(size=(200, 3)).astype(np.float32)
    cases = [
        (k.layers.GRU(5, return_sequences=True, recurrent_activation="hard_sigmoid",
                      activation="relu"), sg.GRU, {"reset_after": True}),
        (k.layers.GRU(5, return_sequences=True, reset_after=False,
                      recurrent_activation="hard_sigmoid"), sg.GRU, {"reset_after": False}),
        (k.layers.LSTM(5, return_sequences=True, recurrent_activation="hard_sigmoid",
                       activation="sigmoid"), sg.LSTM, {}),
        (k.layers.SimpleRNN(5, return_sequences=True, activation="relu"), sg.RNN, {}),
    ]
    for layer, cls, extra in cases:
        net = k.Sequential([k.Input((None, 3)), layer])
        from keras_models import randomise
        randomise(net, scale=0.4)
        cfg = layer.get_config()
        acts = {"activation": cfg["activation"]}
        if cls is not sg.RNN:
            acts["recurrent_activation"] = cfg["recurrent_activation"]
        canon = cls.from_keras(*layer.get_weights(), **extra, **acts)
        got = sg.Model([canon]).stream().process(X)
        err = np.max(np.abs(got - forward(net, X)))
        assert err <= 1e-5, f"{cls.__name__} {acts}: {err:.3g}"


def test_reading_imports_no_framework(tmp_path):
    """Loading a Keras file imports neither Keras, TensorFlow nor torch (nor h5py:
    HDF5 is read in a child process)."""
    paths = save_all(build("stack_hard_sigmoid"), tmp_path, "s")
    code = (
        "import sys, streamgru as sg\n"
        f"for p in {[paths['.keras'], paths['.h5']]!r}:\n"
        "    sg.load(p)\n"
        "bad = [m for m in ('keras', 'tensorflow', 'torch', 'h5py') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env, timeout=120)


def test_from_keras_keywords():
    with pytest.raises(TypeError, match="it takes: dtype"):
        sg.from_keras(build("gru"), order=[0])
    m = sg.from_keras(build("gru"), dtype=np.float64)
    assert m.dtype == np.float64


def test_reader_chosen_by_content(tmp_path):
    """A Keras file under another suffix (or none) is recognised by its bytes."""
    import shutil

    paths = save_all(build("gru"), tmp_path, "g")
    want = sg.load(paths[".keras"])
    for src, dst in ((".keras", "copy.zip"), (".h5", "copy.hdf5"), (".h5", "copy")):
        shutil.copy(paths[src], tmp_path / dst)
        assert sg.load(str(tmp_path / dst)) == want, dst


def test_from_keras_signatures():
    import inspect

    def params(f):
        return list(inspect.signature(f).parameters)

    assert params(sg.GRU.from_keras)[:6] == ["kernel", "recurrent_kernel", "bias", "reset_after",
                                             "activation", "recurrent_activation"]
    assert params(sg.LSTM.from_keras)[:5] == ["kernel", "recurrent_kernel", "bias", "activation",
                                              "recurrent_activation"]
    assert params(sg.RNN.from_keras)[:4] == ["kernel", "recurrent_kernel", "bias", "activation"]
    # Keras names mean what Keras means; Keras 2's hard_sigmoid on request
    k2 = sg.GRU.from_keras(np.ones((2, 6)), np.ones((2, 6)), recurrent_activation="hard_sigmoid",
                           keras_version=2)
    assert (k2.gate_activation.alpha, k2.gate_activation.beta) == (0.2, 0.5)
    with pytest.raises(sg.WeightsError, match="unsupported Keras activation 'swish'"):
        sg.RNN.from_keras(np.ones((2, 3)), np.eye(3), activation="swish")
