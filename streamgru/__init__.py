"""streamgru: run trained recurrent networks one sample at a time, fast.

    >>> import streamgru as sg
    >>> m = sg.load("model.onnx")        # or .pt / .pth / .safetensors / .npz
    >>> s = m.stream()
    >>> y = s.step(x)
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
