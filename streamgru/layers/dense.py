"""The Dense layer: y = act(W x + b), W (out, in) like torch.nn.Linear."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .activations import make_activation
from .base import Layer, _act_config, _act_from_config, _array, _weight, _float_dtype, _shape_of

class Dense(Layer):
    """A fully connected layer ``y = act(W x + b)``, weight (out, in) like
    ``torch.nn.Linear``.

    Parameters
    ----------
    weight : array (out, in), or a ``QuantizedWeight`` (reduced precision)
    bias : array (out,), optional (zeros)
    activation : None (identity), "relu", "tanh", "sigmoid", "hard_sigmoid",
        "leaky_relu", "elu", "gelu" (exact, erf), "softmax", "log_softmax",
        optionally as ``(name, alpha[, beta])``.
    """

    kind = "dense"
    _weight_names = ("weight",)
    _array_names = ("weight", "bias")

    def __init__(self, weight: Any, bias: Any = None, activation: Any = None) -> None:
        out_size, in_size = _shape_of(weight, "weight", 2)
        dt = _float_dtype(weight, bias)
        self.weight = _weight(weight, "weight", (out_size, in_size), dt)
        self.bias = _array(np.zeros(out_size) if bias is None else bias, "bias", (out_size,), dt)
        self.activation = make_activation(activation)
        self.input_size = in_size
        self.output_size = out_size
        self.state_size = 0

    def config(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "output_size": self.output_size,
            "activation": _act_config(self.activation),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "Dense":
        return cls(arrays["weight"], arrays.get("bias"), _act_from_config(config.get("activation")))
