"""Per-sample normalisation and per-channel activation layers: BatchNorm
(inference form), LayerNorm and PReLU. None of them has state."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from ..errors import WeightsError
from .base import Layer, _array, _float_dtype, _shape_of
from .conv import _positive_int


def _eps(value: Any) -> float:
    try:
        e = float(value)
    except (TypeError, ValueError):
        raise WeightsError(f"eps must be a non-negative number, got {value!r}") from None
    if not (e >= 0 and math.isfinite(e)):
        raise WeightsError(f"eps must be a non-negative finite number, got {value!r}")
    return e


class BatchNorm(Layer):
    """Batch normalisation in inference form, per channel c::

        y[c] = (x[c] - running_mean[c]) / sqrt(running_var[c] + eps) * weight[c] + bias[c]

    (``torch.nn.BatchNorm1d`` in eval mode). Importers fold it into a
    neighbouring Conv1d or Dense where that is exact up to rounding; this
    layer is what remains elsewhere.

    Parameters
    ----------
    running_mean, running_var : array (C,); running_var >= 0
    weight, bias : array (C,), optional (ones, zeros: ``affine=False``)
    eps : float (default 1e-5)

    Examples
    --------
    >>> import numpy as np, streamgru as sg
    >>> bn = sg.BatchNorm([1.0, 0.0], [4.0, 1.0], eps=0.0)
    >>> sg.Model([bn], dtype=np.float64).stream().step([3.0, -2.0])
    array([ 1., -2.])
    """

    kind = "batchnorm"
    _array_names = ("running_mean", "running_var", "weight", "bias")

    def __init__(self, running_mean: Any, running_var: Any, weight: Any = None, bias: Any = None,
                 *, eps: float = 1e-5) -> None:
        (C,) = _shape_of(running_mean, "running_mean", 1)
        dt = _float_dtype(running_mean, running_var, weight, bias)
        self.running_mean = _array(running_mean, "running_mean", (C,), dt)
        self.running_var = _array(running_var, "running_var", (C,), dt)
        if np.any(self.running_var < 0):
            raise WeightsError("tensor running_var: negative variance")
        self.weight = _array(np.ones(C) if weight is None else weight, "weight", (C,), dt)
        self.bias = _array(np.zeros(C) if bias is None else bias, "bias", (C,), dt)
        self.eps = _eps(eps)
        if np.any(self.running_var.astype(np.float64) + self.eps <= 0):
            raise WeightsError("tensor running_var: var + eps is 0 (division by zero)")
        self.input_size = self.output_size = C
        self.state_size = 0

    def scale_shift(self) -> tuple[np.ndarray, np.ndarray]:
        """(scale, shift) in float64 with ``y = x * scale + shift``."""
        scale = self.weight.astype(np.float64) / np.sqrt(self.running_var.astype(np.float64) + self.eps)
        return scale, self.bias.astype(np.float64) - self.running_mean.astype(np.float64) * scale

    def config(self) -> dict[str, Any]:
        return {"input_size": self.input_size, "eps": self.eps}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "BatchNorm":
        return cls(arrays["running_mean"], arrays["running_var"], arrays.get("weight"),
                   arrays.get("bias"), eps=config.get("eps", 1e-5))


class LayerNorm(Layer):
    """Layer normalisation over the features of each sample::

        mu = mean(x);  var = mean((x - mu)^2)
        y = (x - mu) / sqrt(var + eps) * weight + bias

    (``torch.nn.LayerNorm(size)``, normalising the last axis).

    Parameters
    ----------
    size : int, the number of features
    weight, bias : array (size,), optional (``elementwise_affine=False``:
        ones and zeros)
    eps : float (default 1e-5)

    Examples
    --------
    >>> import numpy as np, streamgru as sg
    >>> y = sg.Model([sg.LayerNorm(4, eps=0.0)], dtype=np.float64).stream().step([1, 2, 3, 4.0])
    >>> bool(abs(y.mean()) < 1e-15 and abs(y.var() - 1) < 1e-15)
    True
    """

    kind = "layernorm"
    _array_names = ("weight", "bias")

    def __init__(self, size: int, weight: Any = None, bias: Any = None, *, eps: float = 1e-5) -> None:
        C = _positive_int(size, "size")
        dt = _float_dtype(weight, bias)
        self.affine = weight is not None or bias is not None
        self.weight = _array(np.ones(C) if weight is None else weight, "weight", (C,), dt)
        self.bias = _array(np.zeros(C) if bias is None else bias, "bias", (C,), dt)
        self.eps = _eps(eps)
        if self.eps == 0 and C == 1:
            raise WeightsError("LayerNorm of one feature with eps=0 divides by zero")
        self.input_size = self.output_size = C
        self.state_size = 0

    def config(self) -> dict[str, Any]:
        return {"input_size": self.input_size, "eps": self.eps, "affine": self.affine}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "LayerNorm":
        affine = config.get("affine", True)
        return cls(config["input_size"], arrays.get("weight") if affine else None,
                   arrays.get("bias") if affine else None, eps=config.get("eps", 1e-5))


class PReLU(Layer):
    """``y[c] = x[c] if x[c] >= 0 else weight[c] * x[c]``, with one slope per
    channel or one shared by all (``torch.nn.PReLU(num_parameters)``).

    Parameters
    ----------
    weight : array (C,) or (1,) (or a number: shared)
    size : int, the number of features; needed when the slope is shared

    Examples
    --------
    >>> import numpy as np, streamgru as sg
    >>> sg.Model([sg.PReLU([0.25], size=3)], dtype=np.float64).stream().step([-4, 0, 2.0])
    array([-1.,  0.,  2.])
    """

    kind = "prelu"
    _array_names = ("weight",)

    def __init__(self, weight: Any, size: int | None = None) -> None:
        w = np.asarray(weight) if np.ndim(weight) else np.reshape(weight, (1,))
        (n,) = _shape_of(w, "weight", 1)
        C = n if size is None else _positive_int(size, "size")
        if n not in (1, C):
            raise WeightsError(
                f"tensor weight: {n} slopes for {C} channels; expected {C} or 1 (shared)"
            )
        self.weight = _array(w, "weight", (n,), _float_dtype(w))
        self.input_size = self.output_size = C
        self.state_size = 0

    def config(self) -> dict[str, Any]:
        return {"input_size": self.input_size}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "PReLU":
        return cls(arrays["weight"], config.get("input_size"))
