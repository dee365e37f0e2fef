"""Seed files for tools/fuzz.py: for each reader (a module of
streamgru.formats), functions writing valid files into a folder, registered
with ``@seed("module")``. The shipped models, and small models written by
``sg.save``, ``torch.save``, ``torch.onnx.export`` and Keras (where
installed), so every mutant starts from what a real writer produces."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

os.environ.setdefault("KERAS_BACKEND", "torch")  # seeds written by Keras: never TensorFlow
ROOT = Path(__file__).resolve().parent.parent

SEEDS: dict[str, list[tuple[Callable[[Path], None], str | None]]] = {}


def seed(reader: str, needs: str | None = None):
    """Register ``fn(folder)`` as a writer of seed files for ``reader``
    (a module of streamgru.formats); ``needs``: a package it imports."""
    def register(fn):
        SEEDS.setdefault(reader, []).append((fn, needs))
        return fn
    return register


def _small_models():
    import numpy as np

    import streamgru as sg

    rng = np.random.default_rng(0)
    r = lambda *s: rng.normal(size=s) * 0.5  # noqa: E731
    yield "gru", sg.Model([sg.GRU.from_torch(r(12, 3), r(12, 4), r(12), r(12)), sg.Dense(r(2, 4), r(2))])
    yield "gru_v1", sg.Model([sg.GRU(r(12, 3), r(12, 4), None, r(12), reset_after=False, clip=2.0,
                                     gate_activation=("hard_sigmoid", 0.2, 0.5))],
                             dtype=np.float64, initial_state=r(4), metadata={"source": "fuzz"})
    yield "lstm", sg.Model([sg.LSTM(r(16, 3), r(16, 2), r(16), r(16), weight_hr=r(2, 4),
                                    peepholes=r(3, 4)), sg.Dense(r(3, 2), None, ("leaky_relu", 0.1))])
    yield "rnn", sg.Model([sg.RNN.from_torch(r(5, 3), r(5, 5), r(5), r(5), nonlinearity="relu"),
                           sg.Dense(r(2, 5), None, "softmax")])


@seed("native")
def native_saved(folder: Path) -> None:
    import streamgru as sg

    for name, m in _small_models():
        for suffix in (".npz", ".safetensors"):
            sg.save(m, folder / f"{name}{suffix}")


@seed("native")
def native_shipped(folder: Path) -> None:
    shutil.copy(ROOT / "streamgru" / "data" / "watch_gru.npz", folder / "watch_gru.npz")


@seed("native")
def safetensors_state_dict(folder: Path) -> None:
    """A safetensors file without a streamgru description (a PyTorch state
    dict, as safetensors.torch.save_file writes it)."""
    import numpy as np

    rng = np.random.default_rng(1)
    tensors = {"gru.weight_ih_l0": rng.normal(size=(12, 3)), "gru.weight_hh_l0": rng.normal(size=(12, 4)),
               "gru.bias_ih_l0": rng.normal(size=12), "gru.bias_hh_l0": rng.normal(size=12),
               "fc.weight": rng.normal(size=(2, 4)), "fc.bias": rng.normal(size=2)}
    header, blobs, at = {}, [], 0
    for name, arr in tensors.items():
        data = arr.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [at, at + len(data)]}
        blobs.append(data)
        at += len(data)
    hdr = json.dumps(header).encode()
    (folder / "state_dict.safetensors").write_bytes(len(hdr).to_bytes(8, "little") + hdr + b"".join(blobs))


@seed("torch")
def torch_shipped(folder: Path) -> None:
    shutil.copy(ROOT / "weights" / "watch_gru.pt", folder / "watch_gru.pt")


def _torch_nets(projections: bool = True):
    import torch

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn, self.fc = rnn, torch.nn.Linear(rnn.hidden_size if not getattr(rnn, "proj_size", 0)
                                                     else rnn.proj_size, 2)

        def forward(self, x):
            return self.fc(self.rnn(x)[0])

    yield "gru", Net(torch.nn.GRU(3, 4, batch_first=True))
    yield "lstm", Net(torch.nn.LSTM(3, 4, num_layers=2, batch_first=True))
    if projections:  # torch.onnx cannot export them
        yield "lstm_proj", Net(torch.nn.LSTM(3, 4, proj_size=2, batch_first=True))
    yield "rnn", Net(torch.nn.RNN(3, 4, nonlinearity="relu", batch_first=True))


@seed("torch", needs="torch")
def torch_saved(folder: Path) -> None:
    import torch

    for name, net in _torch_nets():
        torch.save(net.state_dict(), folder / f"{name}.pt")
    name, net = next(_torch_nets())
    torch.save(net.state_dict(), folder / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(net.double().state_dict(), folder / "float64.pth")
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.float().state_dict().items()},
                "epoch": 3, "global_step": 30, "hyper_parameters": {"hidden": 4, "lr": 0.01},
                "optimizer_states": [], "pytorch-lightning_version": "2.6.0"}, folder / "lightning.ckpt")


@seed("onnx")
def onnx_shipped(folder: Path) -> None:
    shutil.copy(ROOT / "weights" / "watch_gru.onnx", folder / "watch_gru.onnx")


@seed("onnx", needs="torch")
def onnx_exported(folder: Path) -> None:
    import warnings

    import torch

    for name, net in _torch_nets(projections=False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.zeros(1, 5, 3),), str(folder / f"{name}.onnx"), dynamo=False,
                              input_names=["x"], dynamic_axes={"x": {0: "batch", 1: "time"}})


@seed("onnx", needs="torch")
def onnx_branches(folder: Path) -> None:
    """A graph whose branches join again: residual and skip sums, a gate
    over a Split, a stack summed (formats/onnx/branches.py)."""
    import warnings

    import torch
    import torch.nn.functional as F

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = torch.nn.Conv1d(3, 4, 1)
            self.conv = torch.nn.Conv1d(4, 8, 2, dilation=2)
            self.out = torch.nn.Conv1d(4, 4, 1)

        def forward(self, x):
            h = self.inp(x)
            a, b = torch.chunk(self.conv(F.pad(h, (2, 0))), 2, dim=1)
            g = torch.tanh(a) * torch.sigmoid(b)
            y = torch.relu(h + self.out(g))
            return torch.stack([y, g, h]).sum(0) - h * 0.5

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Block().eval(), (torch.zeros(1, 3, 8),), str(folder / "branches.onnx"),
                          dynamo=False, input_names=["x"], dynamic_axes={"x": {2: "time"}})


@seed("keras", needs="keras")
def keras_saved(folder: Path) -> None:
    """Keras 3 ``.keras`` and legacy ``.h5`` files, written by Keras (torch backend)."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    for name, rec in (("gru", keras.layers.GRU(4, return_sequences=True)),
                      ("lstm", keras.layers.LSTM(4, return_sequences=True))):
        m = keras.Sequential([keras.Input((None, 3)), rec, keras.layers.Dense(2, activation="tanh")])
        m.predict(np.zeros((1, 2, 3), np.float32), verbose=0)
        m.save(folder / f"{name}.keras")
        if available("h5py"):
            m.save(folder / f"{name}.h5")
    # a functional model whose layers branch and join again (formats/keras_dag.py)
    x = keras.Input((None, 3))
    h = keras.layers.Conv1D(4, 2, padding="causal", activation="tanh")(x)
    g = keras.layers.Multiply()([h, keras.layers.Conv1D(4, 1, activation="sigmoid")(x)])
    y = keras.layers.Dense(2)(keras.layers.Concatenate()([keras.layers.Add()([h, g]), x]))
    keras.Model(x, y).save(folder / "branches.keras")


def _weights(rng, *shape):
    return (rng.normal(size=shape) * 0.3).round(6).tolist()


@seed("rtneural")
def rtneural_documents(folder: Path) -> None:
    """RTNeural's Keras-exporter layout (GRU + Dense) and AIDA-X's (LSTM with
    in_skip and gains), weights in Keras layout."""
    import numpy as np

    rng = np.random.default_rng(2)
    H = 4
    doc = {"in_shape": [None, None, 1], "layers": [
        {"type": "gru", "activation": "tanh", "shape": [None, None, H],
         "weights": [_weights(rng, 1, 3 * H), _weights(rng, H, 3 * H), _weights(rng, 2, 3 * H)]},
        {"type": "dense", "activation": "", "shape": [None, None, 1],
         "weights": [_weights(rng, H, 1), _weights(rng, 1)]}]}
    (folder / "rtneural_gru.json").write_text(json.dumps(doc))
    doc = {"in_shape": [None, None, 2], "in_skip": 1, "in_gain": 3.0, "out_gain": -4.5,
           "metadata": {"name": "fuzz amp", "samplerate": "48000"}, "layers": [
               {"type": "lstm", "activation": "", "shape": [None, None, H],
                "weights": [_weights(rng, 2, 4 * H), _weights(rng, H, 4 * H), _weights(rng, 4 * H)]},
               {"type": "dense", "activation": "", "shape": [None, None, 1],
                "weights": [_weights(rng, H, 1), _weights(rng, 1)]}]}
    (folder / "aidax_lstm.json").write_text(json.dumps(doc))


@seed("nam")
def nam_document(folder: Path) -> None:
    """A NAM LSTM file in its exporter's layout: per layer [W_ih | W_hh],
    bias, h0, c0; then the head."""
    import numpy as np

    rng = np.random.default_rng(5)
    I, H, L = 1, 3, 2
    n = sum(4 * H * ((I if k == 0 else H) + H) + 4 * H + 2 * H for k in range(L)) + H + 1
    doc = {"version": "0.5.4", "metadata": {}, "architecture": "LSTM",
           "config": {"input_size": I, "hidden_size": H, "num_layers": L},
           "weights": _weights(rng, n), "sample_rate": 48000}
    (folder / "amp.nam").write_text(json.dumps(doc))


def available(needs: str | None) -> bool:
    import importlib.util

    return needs is None or importlib.util.find_spec(needs) is not None


def write_seeds(reader: str, folder: Path) -> list[Path]:
    """Write ``reader``'s seeds into ``folder``; the files written, sorted."""
    folder.mkdir(parents=True, exist_ok=True)
    for fn, needs in SEEDS.get(reader, []):
        if available(needs):
            fn(folder)
    return sorted(p for p in folder.iterdir() if p.is_file())
