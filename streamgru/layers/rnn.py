"""The Elman RNN layer in canonical (PyTorch) form, and its constructors."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import WeightsError
from .activations import CELL_ACTIVATIONS, _restricted, keras_activation, onnx_activations
from .base import (
    Layer, _act_config, _act_from_config, _array, _weight, _clip, _drop_direction, _float_dtype,
    _keras_kernels, _shape_of, _source,
)

class RNN(Layer):
    """An Elman RNN layer: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``.

    The state is h (size H).

    Parameters
    ----------
    weight_ih : array (H, I), or a ``QuantizedWeight`` (reduced precision)
    weight_hh : array (H, H), or a ``QuantizedWeight``
    bias_ih, bias_hh : array (H,), optional (zeros)
    activation : ``"tanh"`` (default) or ``"relu"`` (or another cell activation)
    clip : float, optional, clip the pre-activation to ``[-clip, clip]``
    """

    kind = "rnn"
    _weight_names = ("weight_ih", "weight_hh")
    _array_names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

    def __init__(
        self,
        weight_ih: Any,
        weight_hh: Any,
        bias_ih: Any = None,
        bias_hh: Any = None,
        *,
        activation: Any = "tanh",
        clip: float | None = None,
    ) -> None:
        s_hh = _shape_of(weight_hh, "weight_hh", 2)
        H = s_hh[0]
        I = _shape_of(weight_ih, "weight_ih", 2)[1]
        dt = _float_dtype(weight_ih, weight_hh, bias_ih, bias_hh)
        self.weight_ih = _weight(weight_ih, "weight_ih", (H, I), dt)
        self.weight_hh = _weight(weight_hh, "weight_hh", (H, H), dt)
        self.bias_ih = _array(np.zeros(H) if bias_ih is None else bias_ih, "bias_ih", (H,), dt)
        self.bias_hh = _array(np.zeros(H) if bias_hh is None else bias_hh, "bias_hh", (H,), dt)
        self.activation = _restricted(activation, CELL_ACTIVATIONS, "RNN")
        self.clip = _clip(clip)
        self.input_size = I
        self.hidden_size = H
        self.output_size = H
        self.state_size = H

    def config(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "activation": _act_config(self.activation),
            "clip": self.clip,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "RNN":
        return cls(
            arrays["weight_ih"],
            arrays["weight_hh"],
            arrays.get("bias_ih"),
            arrays.get("bias_hh"),
            activation=_act_from_config(config.get("activation", "tanh")),
            clip=config.get("clip"),
        )

    @classmethod
    def from_torch(
        cls,
        weight_ih: Any,
        weight_hh: Any,
        bias_ih: Any = None,
        bias_hh: Any = None,
        nonlinearity: str = "tanh",
    ) -> "RNN":
        """From ``torch.nn.RNN`` / ``RNNCell`` tensors; ``nonlinearity`` is
        ``"tanh"`` or ``"relu"`` as in torch."""
        if nonlinearity not in ("tanh", "relu"):
            raise WeightsError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        return cls(weight_ih, weight_hh, bias_ih, bias_hh, activation=nonlinearity)

    @classmethod
    def from_onnx(
        cls,
        W: Any,
        R: Any,
        B: Any = None,
        activation: str = "tanh",
        clip: float | None = None,
        activation_alpha: Sequence[float] | None = None,
        activation_beta: Sequence[float] | None = None,
    ) -> "RNN":
        """From the inputs and attributes of an ONNX ``RNN`` node (one direction).

        ``B = [Wb; Rb]`` of length 2H. ``activation`` is the node's single
        activation, ONNX-style (``"Tanh"``, ``"Relu"``) or lower case.
        """
        W = _drop_direction(W, "W", 2)
        R = _drop_direction(R, "R", 2)
        B = _drop_direction(B, "B", 1)
        H = _shape_of(R, "R", 2)[0]
        _shape_of(W, "W", 2)
        bias_ih = bias_hh = None
        if B is not None:
            if np.shape(B) != (2 * H,):
                raise WeightsError(f"tensor B: expected shape {(2 * H,)}, got {tuple(np.shape(B))}")
            bias_ih, bias_hh = B[:H], B[H:]
        if isinstance(activation, (str, bytes)) and str(
            activation.decode() if isinstance(activation, bytes) else activation
        )[:1].isupper():
            (act,) = onnx_activations([activation], activation_alpha, activation_beta, ("Tanh",))
        else:
            act = activation
        return cls(W, R, bias_ih, bias_hh, activation=act, clip=clip)

    @classmethod
    def from_keras(
        cls,
        kernel: Any,
        recurrent_kernel: Any,
        bias: Any = None,
        activation: Any = "tanh",
        keras_version: int = 3,
    ) -> "RNN":
        """From a Keras ``SimpleRNN`` layer's weights: ``kernel`` (I, H) and
        ``recurrent_kernel`` (H, H), transposed, and one bias (H,).

        Examples
        --------
        >>> import numpy as np, streamgru as sg
        >>> rnn = sg.RNN.from_keras(np.ones((3, 5)), np.eye(5), activation="relu")
        >>> (rnn.input_size, rnn.hidden_size, rnn.activation.name)
        (3, 5, 'relu')
        """
        H, k, rk = _keras_kernels(kernel, recurrent_kernel, 1)
        if bias is not None:
            bias = _source(bias, "bias", (H,))
        # Keras kernels are (in, out): transposed to torch's (out, in)
        return cls(k.T, rk.T, bias, None, activation=keras_activation(activation, keras_version))
