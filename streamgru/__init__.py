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
from .formats import from_keras, from_torch, load, save
from .layers import GRU, LSTM, RNN, Dense
from .model import Model

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
    "from_keras",
    "StreamGRUError",
    "WeightsError",
    "UnsafeWeightsError",
    "InputError",
]


def __getattr__(name: str):
    # Stream and StreamBatch bring in numba and the kernels (about 0.2 s before
    # the first kernel even loads), so they are imported on first use: loading,
    # inspecting and converting models stays light (``streamgru info``).
    if name in ("Stream", "StreamBatch"):
        from . import stream

        value = getattr(stream, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
