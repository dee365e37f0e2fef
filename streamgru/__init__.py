"""streamgru: run trained recurrent networks one sample at a time, fast.

Public API (everything else is internal)::

    m = sg.load(path)                 # .onnx .pt .pth .ckpt .safetensors .npz ...
    m = sg.from_torch(module)         # a live torch.nn.Module
    sg.save(m, "m.npz")               # native .npz / .safetensors, loads back bit-exact
    m = sg.Model([sg.GRU.from_torch(w_ih, w_hh), sg.Dense(w)])   # from arrays

    s = m.stream()                    # one stream at the model's initial state
    y = s.step(x, out=None)           # (input_size,) -> (output_size,)
    Y = s.process(X, out=None)        # (T, input_size) -> (T, output_size)
    s.get_state(), s.set_state(st), s.reset()

    b = m.streams(n)                  # n streams sharing one set of weights
    Y = b.step(X)                     # (n, input_size) -> (n, output_size)

Layers: GRU, LSTM, RNN (``from_torch`` / ``from_onnx`` / ``from_keras``
take each framework's layout), Dense; Conv1d (streamed with a ring of
past inputs: causal, or "same"-padded with a fixed delay, ``Model.latency``;
strided), MaxPool1d, AvgPool1d (downsampling over time, ``Model.stride``),
BatchNorm, LayerNorm, PReLU. Errors: ``WeightsError`` (a file or
weights), ``UnsafeWeightsError`` (a pickle asked for code), ``InputError``
(bad input to a stream), all ``StreamGRUError``. The command line:
``streamgru --help``.

    >>> import numpy as np, streamgru as sg
    >>> rng = np.random.default_rng(0)
    >>> gru = sg.GRU.from_torch(rng.normal(size=(12, 2)), rng.normal(size=(12, 4)))
    >>> s = sg.Model([gru]).stream()
    >>> s.step([0.5, -1.0]).shape
    (4,)
"""

from .errors import InputError, StreamGRUError, UnsafeWeightsError, WeightsError
from .formats import from_keras, from_torch, load, save
from .graph import Input, Node
from .layers import (
    GRU, LSTM, RNN, AvgPool1d, BatchNorm, Conv1d, Dense, LayerNorm, MaxPool1d, PReLU,
)
from .model import Model

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Dense",
    "Conv1d",
    "BatchNorm",
    "LayerNorm",
    "PReLU",
    "MaxPool1d",
    "AvgPool1d",
    "Model",
    "Input",
    "Node",
    "Stream",
    "StreamBatch",
    "load",
    "save",
    "from_torch",
    "from_keras",
    "StreamGRUError",
    "WeightsError",
    "UnsafeWeightsError",
    "InputError",
]


import sys as _sys  # noqa: E402

from ._lazy import LazyModule as _LazyModule  # noqa: E402

_sys.modules[__name__].__class__ = _LazyModule  # Stream, StreamBatch on first use
