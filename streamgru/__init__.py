"""streamgru: run trained recurrent networks one sample at a time, fast.

Load a model with ``sg.load(path)`` (``.onnx``, ``.pt``/``.pth``,
``.safetensors``, ``.npz``) or ``sg.from_torch(module)``, or build one from
arrays, then stream samples through it:

    >>> import numpy as np, streamgru as sg
    >>> rng = np.random.default_rng(0)
    >>> gru = sg.GRU.from_torch(rng.normal(size=(12, 2)), rng.normal(size=(12, 4)))
    >>> s = sg.Model([gru]).stream()
    >>> s.step([0.5, -1.0]).shape
    (4,)
"""

from .errors import InputError, StreamGRUError, UnsafeWeightsError, WeightsError
from .formats import from_torch, load, save
from .layers import GRU, LSTM, RNN, Dense
from .model import Model
from .stream import Stream, StreamBatch

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Dense",
    "Model",
    "Stream",
    "StreamBatch",
    "load",
    "save",
    "from_torch",
    "StreamGRUError",
    "WeightsError",
    "UnsafeWeightsError",
    "InputError",
]
