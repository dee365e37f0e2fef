"""The GRU layer in canonical (PyTorch) form, and its constructors from each framework's layout."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .activations import CELL_ACTIVATIONS, GATE_ACTIVATIONS, _restricted, keras_activation, onnx_activations
from .base import (
    Layer, _act_config, _act_from_config, _array, _weight, _clip, _drop_direction, _float_dtype,
    _gate_rows, _keras_kernels, _reorder, _shape_of, _source,
)

class GRU(Layer):
    """A GRU layer in canonical (PyTorch) form.

    Gate rows are r, z, n::

        r  = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z  = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))        reset_after=True
        n  = tanh(W_in x + b_in + W_hn (r * h) + b_hn)        reset_after=False
        h' = (1 - z) * n + z * h

    ``reset_after=True`` is PyTorch, Keras 2+ and ONNX ``linear_before_reset=1``;
    ``reset_after=False`` is the ONNX default and the original formulation.
    ``clip`` (ONNX) clips every gate pre-activation to ``[-clip, clip]``.

    Parameters
    ----------
    weight_ih : array (3H, I), or a ``QuantizedWeight`` (reduced precision)
    weight_hh : array (3H, H), or a ``QuantizedWeight``
    bias_ih, bias_hh : array (3H,), optional (zeros)
    reset_after : bool
    clip : float, optional
    gate_activation : activation of r and z: ``"sigmoid"`` or ``"hard_sigmoid"``
    activation : activation of the candidate n (``"tanh"`` by default)
    """

    kind = "gru"
    _weight_names = ("weight_ih", "weight_hh")
    _array_names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

    def __init__(
        self,
        weight_ih: Any,
        weight_hh: Any,
        bias_ih: Any = None,
        bias_hh: Any = None,
        *,
        reset_after: bool = True,
        clip: float | None = None,
        gate_activation: Any = "sigmoid",
        activation: Any = "tanh",
    ) -> None:
        s_hh = _shape_of(weight_hh, "weight_hh", 2)
        H = _gate_rows("weight_hh", s_hh, 3)
        s_ih = _shape_of(weight_ih, "weight_ih", 2)
        I = s_ih[1]
        dt = _float_dtype(weight_ih, weight_hh, bias_ih, bias_hh)
        self.weight_ih = _weight(weight_ih, "weight_ih", (3 * H, I), dt)
        self.weight_hh = _weight(weight_hh, "weight_hh", (3 * H, H), dt)
        self.bias_ih = _array(np.zeros(3 * H) if bias_ih is None else bias_ih, "bias_ih", (3 * H,), dt)
        self.bias_hh = _array(np.zeros(3 * H) if bias_hh is None else bias_hh, "bias_hh", (3 * H,), dt)
        self.reset_after = bool(reset_after)
        self.clip = _clip(clip)
        self.gate_activation = _restricted(gate_activation, GATE_ACTIVATIONS, "GRU gate")
        self.activation = _restricted(activation, CELL_ACTIVATIONS, "GRU candidate")
        self.input_size = I
        self.hidden_size = H
        self.output_size = H
        self.state_size = H

    def config(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "reset_after": self.reset_after,
            "clip": self.clip,
            "gate_activation": _act_config(self.gate_activation),
            "activation": _act_config(self.activation),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "GRU":
        return cls(
            arrays["weight_ih"],
            arrays["weight_hh"],
            arrays.get("bias_ih"),
            arrays.get("bias_hh"),
            reset_after=bool(config["reset_after"]),
            clip=config.get("clip"),
            gate_activation=_act_from_config(config.get("gate_activation", "sigmoid")),
            activation=_act_from_config(config.get("activation", "tanh")),
        )

    @classmethod
    def from_torch(cls, weight_ih: Any, weight_hh: Any, bias_ih: Any = None, bias_hh: Any = None) -> "GRU":
        """From ``torch.nn.GRU`` / ``GRUCell`` tensors (already canonical: rows r, z, n)."""
        return cls(weight_ih, weight_hh, bias_ih, bias_hh, reset_after=True)

    @classmethod
    def from_onnx(
        cls,
        W: Any,
        R: Any,
        B: Any = None,
        linear_before_reset: int = 0,
        clip: float | None = None,
        activations: Sequence[str] | None = None,
        activation_alpha: Sequence[float] | None = None,
        activation_beta: Sequence[float] | None = None,
    ) -> "GRU":
        """From the inputs and attributes of an ONNX ``GRU`` node (one direction).

        ONNX stores gate rows z, r, h and ``B = [Wb; Rb]`` of length 6H; arrays
        may keep their leading num_directions axis of 1. ``activations`` is the
        ONNX list ``[f, g]`` (default ``["Sigmoid", "Tanh"]``).
        """
        W = _drop_direction(W, "W", 2)
        R = _drop_direction(R, "R", 2)
        B = _drop_direction(B, "B", 1)
        H = _gate_rows("R", _shape_of(R, "R", 2), 3)
        R = _source(R, "R", (3 * H, H))
        W = _source(W, "W", (3 * H, _shape_of(W, "W", 2)[1]))
        bias_ih = bias_hh = None
        if B is not None:
            B = _source(B, "B", (6 * H,))
            bias_ih, bias_hh = B[: 3 * H], B[3 * H :]
        zrh_to_rzn = (1, 0, 2)  # ONNX rows are z, r, h; canonical r, z, n
        gate, cand = onnx_activations(activations, activation_alpha, activation_beta, ("Sigmoid", "Tanh"))
        return cls(
            _reorder(W, zrh_to_rzn, 3),
            _reorder(R, zrh_to_rzn, 3),
            None if bias_ih is None else _reorder(bias_ih, zrh_to_rzn, 3),
            None if bias_hh is None else _reorder(bias_hh, zrh_to_rzn, 3),
            reset_after=bool(int(linear_before_reset)),
            clip=clip,
            gate_activation=gate,
            activation=cand,
        )

    @classmethod
    def from_keras(
        cls,
        kernel: Any,
        recurrent_kernel: Any,
        bias: Any = None,
        reset_after: bool = True,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        keras_version: int = 3,
    ) -> "GRU":
        """From a Keras ``GRU`` layer's weights.

        Keras stores ``kernel`` as (I, 3H) and ``recurrent_kernel`` as (H, 3H),
        transposed, with gate columns z, r, h. With ``reset_after=True`` the
        bias is (2, 3H) (input bias, recurrent bias); otherwise it is (3H,) and
        there is no recurrent bias. ``activation`` (the candidate's) and
        ``recurrent_activation`` (the gates') are Keras names, read as Keras
        ``keras_version`` defines them (``"hard_sigmoid"`` is 0.2 x + 0.5 in
        Keras 2, x / 6 + 0.5 in Keras 3).

        Examples
        --------
        >>> import numpy as np, streamgru as sg
        >>> k, rk = np.ones((2, 12)), np.ones((4, 12))
        >>> gru = sg.GRU.from_keras(k, rk, recurrent_activation="hard_sigmoid")
        >>> print(gru.gate_activation)
        hard_sigmoid(alpha=0.166667, beta=0.5)
        """
        H, k, rk = _keras_kernels(kernel, recurrent_kernel, 3)
        zrh_to_rzn = (1, 0, 2)  # Keras columns are z, r, h (transposed); canonical rows r, z, n
        bias_ih = bias_hh = None
        if bias is not None:
            if reset_after:
                b = _source(bias, "bias (reset_after=True)", (2, 3 * H))
                bias_ih, bias_hh = b[0], b[1]  # Keras rows: [input bias; recurrent bias]
            else:
                bias_ih = _source(bias, "bias (reset_after=False)", (3 * H,))
        return cls(
            _reorder(k.T, zrh_to_rzn, 3),
            _reorder(rk.T, zrh_to_rzn, 3),
            None if bias_ih is None else _reorder(bias_ih, zrh_to_rzn, 3),
            None if bias_hh is None else _reorder(bias_hh, zrh_to_rzn, 3),
            reset_after=reset_after,
            gate_activation=keras_activation(recurrent_activation, keras_version),
            activation=keras_activation(activation, keras_version),
        )
