"""Max and average pooling over time (``torch.nn.MaxPool1d`` / ``AvgPool1d``), streamed."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..errors import WeightsError
from .base import Layer
from .conv import _positive_int


class _Pool1d(Layer):
    """What the two pools share: the window, the stride, the padding, the
    state. A pool has no weights; its ``dtype`` is whatever the model
    computes in."""

    _array_names = ()

    def __init__(self, channels: int, kernel_size: int, stride: int | None, padding: int,
                 dilation: int, dtype: Any) -> None:
        self.input_size = self.output_size = _positive_int(channels, "channels")
        self.kernel_size = _positive_int(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _positive_int(stride, "stride")
        self.dilation = _positive_int(dilation, "dilation")
        self.padding = _positive_int(padding, "padding", 0)
        self.history = (self.kernel_size - 1) * self.dilation
        if self.padding > self.history:
            raise WeightsError(
                f"{type(self).__name__}: padding {self.padding} is more than (kernel_size - 1) * "
                f"dilation = {self.history}: a window would hold no sample")
        if self.history >= 1 << 24:
            raise WeightsError(f"{type(self).__name__}: a window of {self.history + 1} samples; at "
                               f"most {1 << 24} are supported")
        self.latency = self.history - self.padding
        self.counter_index = 2
        self.state_size = 3 + self.history * self.input_size
        self._dtype = np.dtype(dtype)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def astype(self, dtype: Any) -> "Layer":
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise WeightsError(f"dtype must be float32 or float64, got {dt}")
        return self if dt == self._dtype else type(self).from_config(dict(self.config(), dtype=dt.name), {})

    def config(self) -> dict[str, Any]:
        return {"input_size": self.input_size, "kernel_size": self.kernel_size,
                "stride": self.stride, "padding": self.padding}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.config() == other.config()

    __hash__ = None  # type: ignore[assignment]


_STATE_DOC = """
    The window is the last ``L = (kernel_size - 1) * dilation`` inputs and the
    current one; with ``padding`` p (at most L) the layer emits the offline
    output ``j`` at input ``latency + j * stride``, ``latency = L - p`` (the
    output before it is the first window's, so a model holding a pool
    downsamples: see ``Model.stride``). Window positions before the first
    sample are the padding. State (``state_size = 3 + L * C``): the ring
    position, the number of samples seen (up to L), the rate counter
    (kernels/rate.py), then L slots of C past inputs; zeros at the start.
"""


class MaxPool1d(_Pool1d):
    """The largest value of each channel over a window of time, like
    ``torch.nn.MaxPool1d(kernel_size, stride=None, padding=0, dilation=1)``
    (positions in the padding never win).
    """ + _STATE_DOC + """
    Examples
    --------
    >>> import numpy as np, streamgru as sg
    >>> s = sg.Model([sg.MaxPool1d(1, 2)], dtype=np.float64).stream()
    >>> s.process(np.array([[1.0], [3.0], [2.0], [0.0], [5.0]])).ravel()
    array([3., 2.])
    >>> s.step([4.0])
    array([5.])
    """

    kind = "maxpool1d"

    def __init__(self, channels: int, kernel_size: int, stride: int | None = None,
                 padding: int = 0, dilation: int = 1, *, dtype: Any = np.float64) -> None:
        super().__init__(channels, kernel_size, stride, padding, dilation, dtype)

    def config(self) -> dict[str, Any]:
        return dict(super().config(), dilation=self.dilation)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "MaxPool1d":
        return cls(config["input_size"], config["kernel_size"], config.get("stride"),
                   config.get("padding", 0), config.get("dilation", 1),
                   dtype=config.get("dtype", "float64"))


class AvgPool1d(_Pool1d):
    """The mean of each channel over a window of time, like
    ``torch.nn.AvgPool1d(kernel_size, stride=None, padding=0,
    count_include_pad=True)``: the sum over the window divided by
    ``kernel_size``, or by the number of samples in it when
    ``count_include_pad`` is False.
    """ + _STATE_DOC + """
    Examples
    --------
    >>> import numpy as np, streamgru as sg
    >>> s = sg.Model([sg.AvgPool1d(1, 3)], dtype=np.float64).stream()
    >>> s.process(np.arange(7.0)[:, None]).ravel()
    array([1., 4.])
    """

    kind = "avgpool1d"

    def __init__(self, channels: int, kernel_size: int, stride: int | None = None,
                 padding: int = 0, count_include_pad: bool = True, *,
                 dtype: Any = np.float64) -> None:
        super().__init__(channels, kernel_size, stride, padding, 1, dtype)
        if not isinstance(count_include_pad, (bool, np.bool_)):
            raise WeightsError(f"count_include_pad must be True or False, got {count_include_pad!r}")
        self.count_include_pad = bool(count_include_pad)

    def config(self) -> dict[str, Any]:
        return dict(super().config(), count_include_pad=self.count_include_pad)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "AvgPool1d":
        return cls(config["input_size"], config["kernel_size"], config.get("stride"),
                   config.get("padding", 0), config.get("count_include_pad", True),
                   dtype=config.get("dtype", "float64"))
