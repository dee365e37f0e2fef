"""What the Keras, RTNeural and ONNX readers share for convolutions and
normalisation: the budget of a conv's ring buffer, BatchNorm folded into the
conv before it, and a PReLU slope array as Keras and ONNX store it."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import WeightsError
from ..layers import BatchNorm, Conv1d, Layer, PReLU
from .guard import Budget
from .torch_conv import fold as _fold

__all__ = ["ring", "add_batchnorm", "prelu"]

# the ring position is a float in the state: Conv1d keeps fewer past samples
_MAX_HISTORY = (1 << 24) - 1


def ring(budget: Budget, kernel_size: int, dilation: int, channels: int, what: str) -> None:
    """Charge the ring buffer of past inputs a streamed conv keeps (a float64
    initial state, the model's and a stream's copy) before the layer exists:
    a dilation of 10**6 on a few bytes of kernel is a file-sized request for
    gigabytes once a stream is made."""
    history = (kernel_size - 1) * dilation
    if history > _MAX_HISTORY:
        raise WeightsError(f"{what}: (kernel_size - 1) * dilation = {history} past samples; at "
                           f"most {_MAX_HISTORY} are supported")
    budget.take(24 * (1 + history * channels),
                f"{what}: a ring of {history} past inputs of {channels} channels")


def add_batchnorm(layers: list[Layer], bn: BatchNorm) -> bool:
    """Append ``bn`` to ``layers``, folded into the Conv1d before it when that
    conv has no activation yet (exact up to rounding); True if folded."""
    last = layers[-1] if layers else None
    if isinstance(last, Conv1d) and last.activation.name == "identity":
        # folded in float64, kept in the sources' own precision (Keras picks the model dtype from it)
        layers[-1] = _fold(last, bn).astype(np.result_type(last.dtype, bn.dtype))
        return True
    layers.append(bn)
    return False


def prelu(alpha: Any, size: int, what: str) -> PReLU:
    """A PReLU from a slope array shaped like one sample with some axes
    shared (Keras ``alpha``: (1, C) with ``shared_axes=[1]``; ONNX ``slope``
    broadcast against (N, C, T)): every axis but the last must be 1 (a slope
    per time step cannot stream), the last is C or 1 (shared)."""
    a = np.asarray(alpha)
    a = a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)
    if a.ndim == 0:
        a = a.reshape(1)
    if any(d != 1 for d in a.shape[:-1]):
        raise WeightsError(f"{what}: slope of shape {a.shape} varies along an axis other than "
                           f"the features (a slope per time step cannot stream); share it "
                           f"over time (Keras: shared_axes=[1])")
    if a.shape[-1] not in (1, size):
        raise WeightsError(f"{what}: slope of shape {a.shape} for {size} features; expected "
                           f"{size} slopes or 1 (shared)")
    return PReLU(a.reshape(-1), size=size)
