"""Malformed, unsupported and hostile Keras files: each raises WeightsError
naming the file and the tensor or layer (never another exception), and
nothing is left changed. Good files are written by Keras 3 (torch backend);
the bad ones are those files edited member by member."""

import io
import json
import logging
import os
import sys
import zipfile

import h5py
import numpy as np
import pytest

import streamgru as sg
from streamgru.formats import UnexpectedReaderError

from keras_models import keras, randomise, save_all
from test_keras_legacy import stack, write_keras2

logging.getLogger("absl").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A small Sequential GRU -> Dense saved as .keras, .h5 and .weights.h5."""
    k = keras()
    folder = tmp_path_factory.mktemp("good")
    model = randomise(k.Sequential([k.Input((None, 3)),
                                    k.layers.GRU(4, return_sequences=True, name="gru"),
                                    k.layers.Dense(2, name="dense")]))
    paths = save_all(model, folder, "m")
    paths["weights"] = str(folder / "m.weights.h5")
    model.save_weights(paths["weights"])
    return paths


def members(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def write_zip(path, content):
    with zipfile.ZipFile(path, "w") as z:
        for n, data in content.items():
            z.writestr(n, data)
    return str(path)


def edit_weights(raw, edit):
    """model.weights.h5 bytes after ``edit(h5py.File)``."""
    buf = io.BytesIO(raw)
    with h5py.File(buf, "a") as f:
        edit(f)
    return buf.getvalue()


def edit_config(raw, edit):
    cfg = json.loads(raw)
    edit(cfg["config"]["layers"])
    return json.dumps(cfg).encode()


def refuses(path, *patterns, **options):
    with pytest.raises(sg.WeightsError) as info:
        sg.load(path, **options)
    msg = str(info.value)
    assert not isinstance(info.value, UnexpectedReaderError), msg
    assert os.path.basename(str(path)) in msg, msg
    for p in patterns:
        assert p in msg, f"{p!r} not in {msg!r}"
    return msg


def gru_cfg(layers):
    return next(l["config"] for l in layers if l["class_name"] == "GRU")


def _set(d, key, value):
    d[key] = value


# (name, member, edit of that member, expected message parts)
KERAS_CASES = [
    ("no weights", "model.weights.h5", None, ["member model.weights.h5 is missing"]),
    ("no config", "config.json", None, ["weights only, no architecture", "sg.from_keras"]),
    ("config garbage", "config.json", lambda raw: b"{not json", ["config.json is not valid JSON"]),
    ("config nested", "config.json", lambda raw: b"[" * 200000, ["config.json is not valid JSON"]),
    ("config not a model", "config.json", lambda raw: b"[1, 2]", ["not a Keras model"]),
    ("weights garbage", "model.weights.h5", lambda raw: b"\x89HDF\r\n\x1a\n" + b"\x00" * 300,
     ["model.weights.h5", "not a readable HDF5 file"]),
    ("wrong shape", "model.weights.h5", lambda raw: edit_weights(raw, lambda f: (
        f.__delitem__("layers/gru/cell/vars/1"),
        f.create_dataset("layers/gru/cell/vars/1", data=np.zeros((4, 11), np.float32)))),
     ["layer 'gru' (GRU)", "tensor recurrent_kernel", "(4, 11)"]),
    ("missing tensor", "model.weights.h5", lambda raw: edit_weights(
        raw, lambda f: f.__delitem__("layers/gru/cell/vars/2")),
     ["layer 'gru' (GRU)", "expected 3 weight tensors", "found 2"]),
    ("missing layer", "model.weights.h5", lambda raw: edit_weights(
        raw, lambda f: f.__delitem__("layers/dense")), ["layers/dense/vars", "'dense'", "missing"]),
    ("int weights", "model.weights.h5", lambda raw: edit_weights(raw, lambda f: (
        f.__delitem__("layers/dense/vars/0"),
        f.create_dataset("layers/dense/vars/0", data=np.zeros((4, 2), np.int32)))),
     ["tensor layers/dense/vars/0", "expected a float"]),
    ("nan weights", "model.weights.h5", lambda raw: edit_weights(
        raw, lambda f: f["layers/dense/vars/1"].__setitem__(0, np.nan)),
     ["layer 'dense' (Dense)", "non-finite"]),
    ("external link", "model.weights.h5", lambda raw: edit_weights(raw, lambda f: (
        f.__delitem__("layers/dense/vars/1"),
        _set(f["layers/dense/vars"], "1", h5py.ExternalLink("/etc/passwd.h5", "/x")))),
     ["layers/dense/vars/1", "links to another file"]),
    ("soft link", "model.weights.h5", lambda raw: edit_weights(raw, lambda f: (
        f.__delitem__("layers/dense/vars/1"),
        _set(f["layers/dense/vars"], "1", h5py.SoftLink("/layers/gru/cell/vars/2")))),
     ["layers/dense/vars/1", "links to another path"]),
    ("unsupported layer", "config.json", lambda raw: edit_config(
        raw, lambda ls: _set(ls[-1], "class_name", "Conv3D")),
     ["layer 'dense' (Conv3D)", "Keras layer type 'Conv3D' is not supported"]),
    ("unsupported activation", "config.json", lambda raw: edit_config(
        raw, lambda ls: _set(ls[-1]["config"], "activation", "selu")),
     ["layer 'dense' (Dense)", "unsupported Keras activation 'selu'"]),
    ("gate activation", "config.json", lambda raw: edit_config(
        raw, lambda ls: _set(gru_cfg(ls), "recurrent_activation", "tanh")),
     ["layer 'gru' (GRU)", "unsupported GRU gate activation 'tanh'"]),
    ("go_backwards", "config.json", lambda raw: edit_config(
        raw, lambda ls: _set(gru_cfg(ls), "go_backwards", True)),
     ["layer 'gru' (GRU)", "go_backwards=True"]),
    ("bad flag", "config.json", lambda raw: edit_config(
        raw, lambda ls: _set(gru_cfg(ls), "reset_after", "yes")),
     ["layer 'gru' (GRU)", "'reset_after' should be a bool"]),
    ("subclassed", "config.json", lambda raw: json.dumps(
        dict(json.loads(raw), class_name="MyModel")).encode(), ["'MyModel'", "subclassed"]),
    ("custom activation", "config.json", lambda raw: edit_config(raw, lambda ls: _set(
        ls[-1]["config"], "activation", {"module": "builtins", "class_name": "function",
                                         "config": "evil", "registered_name": "function"})),
     ["layer 'dense' (Dense)", "'evil'", "custom object"]),
    ("no version", "metadata.json", None, ["layer 'gru'", "keras_version=2"]),
]


@pytest.mark.parametrize("name,member,edit,parts", KERAS_CASES, ids=[c[0] for c in KERAS_CASES])
def test_malformed_keras_file(good, tmp_path, name, member, edit, parts):
    content = members(good[".keras"])
    if name == "no version":  # hard_sigmoid means different things in Keras 2 and 3
        content["config.json"] = edit_config(content["config.json"], lambda ls: _set(
            gru_cfg(ls), "recurrent_activation", "hard_sigmoid"))
    if edit is None:
        del content[member]
    else:
        content[member] = edit(content[member])
    path = write_zip(tmp_path / "bad.keras", content)
    before = open(path, "rb").read()
    refuses(path, *parts)
    assert open(path, "rb").read() == before  # reading changes nothing


def test_weights_only_files(good, tmp_path):
    refuses(good["weights"], "weights only, no architecture", "model.load_weights")
    p = str(tmp_path / "k2weights.h5")  # Keras 2 save_weights: layer_names, no model_config
    with h5py.File(p, "w") as f:
        f.attrs["layer_names"] = np.array([b"gru"])
        f.attrs["keras_version"] = b"2.4.0"
    refuses(p, "weights only")


def test_truncated_and_garbage_files(good, tmp_path):
    for key in (".keras", ".h5"):
        raw = open(good[key], "rb").read()
        for cut in sorted({8, 64, 512, len(raw) // 3, len(raw) // 2, len(raw) - 100, len(raw) - 1}):
            p = tmp_path / f"cut{cut}{key}"
            p.write_bytes(raw[:cut])
            refuses(str(p))
    p = tmp_path / "noise.h5"
    p.write_bytes(np.random.default_rng(0).bytes(4000))
    refuses(str(p), "neither a .keras zip nor an HDF5 file")
    p = tmp_path / "hdf5noise.h5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + np.random.default_rng(1).bytes(4000))
    refuses(str(p), "not a readable HDF5 file")
    p = tmp_path / "other.h5"  # an HDF5 file that is not a Keras model
    with h5py.File(p, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    refuses(str(p), "without a Keras model_config")


def test_legacy_h5_variants(good, tmp_path):
    def variant(name, edit):
        p = tmp_path / name
        p.write_bytes(open(good[".h5"], "rb").read())
        with h5py.File(p, "a") as f:
            edit(f)
        return str(p)

    refuses(variant("nomw.h5", lambda f: f.__delitem__("model_weights")),
            "group model_weights is missing")
    refuses(variant("badcfg.h5", lambda f: f.attrs.__setitem__("model_config", b"{{")),
            "model_config is not valid JSON")
    refuses(variant("k1.h5", lambda f: f.attrs.__setitem__("keras_version", b"1.2.2")),
            "Keras 1")
    def rename(f):
        names = [n if isinstance(n, bytes) else n.encode()
                 for n in f["model_weights/gru"].attrs["weight_names"]]
        f["model_weights/gru"].attrs["weight_names"] = np.array(names[:1] + [b"nope"] + names[2:])

    refuses(variant("names.h5", rename), "tensor model_weights/gru/nope", "missing")
    refuses(variant("nolayer.h5", lambda f: f.__delitem__("model_weights/dense")),
            "model_weights/dense", "'dense'", "missing")


def test_refused_by_name_in_real_keras_files(tmp_path):
    k = keras()

    @k.saving.register_keras_serializable(package="evil")
    class Doubler(k.layers.Layer):
        def call(self, x):
            return 2 * x

    x = k.Input((None, 3))
    cases = {
        "bidi": (k.Sequential([x, k.layers.Bidirectional(k.layers.GRU(3))]),
                 ["(Bidirectional)", "needs the future"]),
        "lambda": (k.Sequential([x, k.layers.Lambda(lambda t: t * 2)]),
                   ["(Lambda)", "Python code"]),
        "custom": (k.Sequential([x, Doubler()]), ["Doubler)", "custom layer"]),
        "pool": (k.Sequential([x, k.layers.Conv1D(2, 1), k.layers.MaxPooling1D(2, padding="same")]),
                 ["MaxPooling1D", "only 'valid' streams"]),
    }
    # (a residual Add streams as a graph now: tests/test_keras_graph.py)
    cases["max_merge"] = (k.Model(x, k.layers.Maximum()([x, k.layers.Dense(3)(x)])),
                          ["(Maximum)", "is not supported"])
    g, state = k.layers.GRU(3, return_state=True)(x)
    cases["two outputs"] = (k.Model(x, [g, state]), ["2 outputs"])
    for name, (model, parts) in cases.items():
        for path in save_all(model, tmp_path, name).values():
            refuses(path, *parts)
        with pytest.raises(sg.WeightsError) as info:
            sg.from_keras(model)
        assert all(p in str(info.value) for p in parts), str(info.value)


def test_live_model_refusals():
    k = keras()

    class Sub(k.Model):
        def call(self, x):
            return x

    with pytest.raises(sg.WeightsError, match="not a Keras Sequential or functional model"):
        sg.from_keras(Sub())
    with pytest.raises(sg.WeightsError, match="not a Keras Sequential"):
        sg.from_keras(object())


def test_missing_h5py_names_the_package(good, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    refuses(good[".keras"], "pip install h5py")


def test_budget_and_keywords(good):
    refuses(good[".keras"], "budget", max_bytes=2000)
    with pytest.raises(TypeError, match="keras_version"):
        sg.load(good[".keras"], order=[0])
    refuses(good[".keras"], "neither Keras 2 nor Keras 3", keras_version=4)


def test_keras2_file_with_a_bad_tensor(tmp_path):
    layers, _ = stack()
    layers[1][3][1] = np.zeros((5, 19), np.float32)  # LSTM recurrent kernel one column short
    p = write_keras2(str(tmp_path / "k2bad.h5"), layers, 3)
    refuses(p, "layer 'lstm' (LSTM)", "tensor recurrent_kernel", "(5, 19)")


def _flipped(raw, rng):
    b = bytearray(raw)
    for j in rng.integers(0, len(b), rng.integers(1, 8)):
        b[j] = rng.integers(0, 256)
    return bytes(b)


def _keras2_bytes(tmp_path):
    """A legacy HDF5 model file written byte-for-byte reproducibly (Keras's own
    .h5 differs from run to run)."""
    layers, _ = stack()
    return open(write_keras2(str(tmp_path / "keras2.h5"), layers, 3), "rb").read()


@pytest.mark.parametrize("source", ["keras2.h5", ".keras"])
def test_corrupted_bytes_raise_only_weights_errors(good, tmp_path, source):
    """Random bytes overwritten anywhere in a file: the load succeeds (the
    bytes were padding or unused) or raises WeightsError, never another
    exception (HDF5 reports corruption as RuntimeError, OSError, KeyError...)."""
    raw = _keras2_bytes(tmp_path) if source == "keras2.h5" else open(good[source], "rb").read()
    rng = np.random.default_rng(0)
    p = tmp_path / f"flip{os.path.splitext(source)[1]}"
    for _ in range(20):
        p.write_bytes(_flipped(raw, rng))
        try:
            sg.load(str(p))
        except sg.WeightsError as exc:
            assert not isinstance(exc, UnexpectedReaderError), str(exc)
            assert p.name in str(exc)


def test_a_file_that_crashes_the_hdf5_library(tmp_path):
    """Variant 115 of these flips makes h5py 3.16 (libhdf5) die of a segmentation
    fault while reading: HDF5 runs in a child process, so the caller gets a
    WeightsError and lives on."""
    raw, rng = _keras2_bytes(tmp_path), np.random.default_rng(0)
    for _ in range(116):
        bad = _flipped(raw, rng)
    p = tmp_path / "crash.h5"
    p.write_bytes(bad)
    refuses(str(p))


def test_a_reader_that_does_not_finish_is_stopped(good, monkeypatch):
    from streamgru.formats import keras_h5

    monkeypatch.setattr(keras_h5, "TIMEOUT", -1.0)  # no time at all: as if HDF5 hung
    refuses(good[".h5"], "did not finish reading")
