"""The LSTM layer in canonical (PyTorch) form, and its constructors from each framework's layout."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import WeightsError
from .activations import CELL_ACTIVATIONS, GATE_ACTIVATIONS, _restricted, keras_activation, onnx_activations
from .base import (
    Layer, _act_config, _act_from_config, _array, _weight, _clip, _drop_direction, _float_dtype,
    _gate_rows, _keras_kernels, _reorder, _shape_of, _source,
)

class LSTM(Layer):
    """An LSTM layer in canonical (PyTorch) form.

    Gate rows are i, f, g, o::

        i  = sigmoid(W_i x + b_i + R_i h + p_i * c)
        f  = sigmoid(W_f x + b_f + R_f h + p_f * c)      (f = 1 - i if input_forget)
        g  = tanh(W_g x + b_g + R_g h)
        c' = f * c + i * g
        o  = sigmoid(W_o x + b_o + R_o h + p_o * c')
        h' = o * tanh(c');   h' = W_hr h' if projected

    The state is h (size P if projected, else H) then c (size H).

    Parameters
    ----------
    weight_ih : array (4H, I), or a ``QuantizedWeight`` (reduced precision)
    weight_hh : array (4H, P) where P = proj size or H, or a ``QuantizedWeight``
    bias_ih, bias_hh : array (4H,), optional (zeros)
    weight_hr : array (P, H), optional projection (``torch.nn.LSTM(proj_size=P)``)
    peepholes : array (3, H), optional, rows p_i, p_f, p_o
    input_forget : bool, couple the forget gate to the input gate (ONNX)
    clip : float, optional, clip every gate pre-activation to ``[-clip, clip]``
    gate_activation, cell_activation, hidden_activation : the ONNX f, g, h
    """

    kind = "lstm"
    _weight_names = ("weight_ih", "weight_hh")
    _array_names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "peepholes")

    def __init__(
        self,
        weight_ih: Any,
        weight_hh: Any,
        bias_ih: Any = None,
        bias_hh: Any = None,
        *,
        weight_hr: Any = None,
        peepholes: Any = None,
        input_forget: bool = False,
        clip: float | None = None,
        gate_activation: Any = "sigmoid",
        cell_activation: Any = "tanh",
        hidden_activation: Any = "tanh",
    ) -> None:
        s_ih = _shape_of(weight_ih, "weight_ih", 2)
        H = _gate_rows("weight_ih", s_ih, 4)
        I = s_ih[1]
        P = H
        if weight_hr is not None:
            P = _shape_of(weight_hr, "weight_hr", 2)[0]
        dt = _float_dtype(weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, peepholes)
        self.weight_ih = _weight(weight_ih, "weight_ih", (4 * H, I), dt)
        self.weight_hh = _weight(weight_hh, "weight_hh", (4 * H, P), dt)
        self.bias_ih = _array(np.zeros(4 * H) if bias_ih is None else bias_ih, "bias_ih", (4 * H,), dt)
        self.bias_hh = _array(np.zeros(4 * H) if bias_hh is None else bias_hh, "bias_hh", (4 * H,), dt)
        self.weight_hr = None if weight_hr is None else _array(weight_hr, "weight_hr", (P, H), dt)
        self.peepholes = None if peepholes is None else _array(peepholes, "peepholes", (3, H), dt)
        self.input_forget = bool(input_forget)
        self.clip = _clip(clip)
        self.gate_activation = _restricted(gate_activation, GATE_ACTIVATIONS, "LSTM gate")
        self.cell_activation = _restricted(cell_activation, CELL_ACTIVATIONS, "LSTM cell")
        self.hidden_activation = _restricted(hidden_activation, CELL_ACTIVATIONS, "LSTM hidden")
        self.input_size = I
        self.hidden_size = H
        self.proj_size = P if weight_hr is not None else 0
        self.output_size = P
        self.state_size = P + H

    def config(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "proj_size": self.proj_size,
            "input_forget": self.input_forget,
            "clip": self.clip,
            "gate_activation": _act_config(self.gate_activation),
            "cell_activation": _act_config(self.cell_activation),
            "hidden_activation": _act_config(self.hidden_activation),
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "LSTM":
        return cls(
            arrays["weight_ih"],
            arrays["weight_hh"],
            arrays.get("bias_ih"),
            arrays.get("bias_hh"),
            weight_hr=arrays.get("weight_hr"),
            peepholes=arrays.get("peepholes"),
            input_forget=bool(config.get("input_forget", False)),
            clip=config.get("clip"),
            gate_activation=_act_from_config(config.get("gate_activation", "sigmoid")),
            cell_activation=_act_from_config(config.get("cell_activation", "tanh")),
            hidden_activation=_act_from_config(config.get("hidden_activation", "tanh")),
        )

    @classmethod
    def from_torch(
        cls,
        weight_ih: Any,
        weight_hh: Any,
        bias_ih: Any = None,
        bias_hh: Any = None,
        weight_hr: Any = None,
    ) -> "LSTM":
        """From ``torch.nn.LSTM`` / ``LSTMCell`` tensors (already canonical: rows i, f, g, o)."""
        return cls(weight_ih, weight_hh, bias_ih, bias_hh, weight_hr=weight_hr)

    @classmethod
    def from_onnx(
        cls,
        W: Any,
        R: Any,
        B: Any = None,
        P: Any = None,
        input_forget: int = 0,
        clip: float | None = None,
        activations: Sequence[str] | None = None,
        activation_alpha: Sequence[float] | None = None,
        activation_beta: Sequence[float] | None = None,
    ) -> "LSTM":
        """From the inputs and attributes of an ONNX ``LSTM`` node (one direction).

        ONNX stores gate rows i, o, f, c, ``B = [Wb; Rb]`` of length 8H and
        peepholes ``P`` of length 3H in order i, o, f. ``activations`` is the
        ONNX list ``[f, g, h]`` (default ``["Sigmoid", "Tanh", "Tanh"]``).
        """
        W = _drop_direction(W, "W", 2)
        R = _drop_direction(R, "R", 2)
        B = _drop_direction(B, "B", 1)
        P = _drop_direction(P, "P", 1)
        H = _gate_rows("R", _shape_of(R, "R", 2), 4)
        R = _source(R, "R", (4 * H, H))
        W = _source(W, "W", (4 * H, _shape_of(W, "W", 2)[1]))
        iofc_to_ifgo = (0, 2, 3, 1)  # ONNX rows i, o, f, c; canonical i, f, g, o
        bias_ih = bias_hh = None
        if B is not None:
            if np.shape(B) != (8 * H,):
                raise WeightsError(f"tensor B: expected shape {(8 * H,)}, got {tuple(np.shape(B))}")
            bias_ih = _reorder(B[: 4 * H], iofc_to_ifgo, 4)
            bias_hh = _reorder(B[4 * H :], iofc_to_ifgo, 4)
        peep = None
        if P is not None:
            if np.shape(P) != (3 * H,):
                raise WeightsError(f"tensor P: expected shape {(3 * H,)}, got {tuple(np.shape(P))}")
            p = np.asarray(P).reshape(3, H)
            peep = p[[0, 2, 1]]  # ONNX i, o, f -> canonical i, f, o
        f, g, h = onnx_activations(
            activations, activation_alpha, activation_beta, ("Sigmoid", "Tanh", "Tanh")
        )
        return cls(
            _reorder(W, iofc_to_ifgo, 4),
            _reorder(R, iofc_to_ifgo, 4),
            bias_ih,
            bias_hh,
            peepholes=peep,
            input_forget=bool(int(input_forget)),
            clip=clip,
            gate_activation=f,
            cell_activation=g,
            hidden_activation=h,
        )

    @classmethod
    def from_keras(
        cls,
        kernel: Any,
        recurrent_kernel: Any,
        bias: Any = None,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        keras_version: int = 3,
    ) -> "LSTM":
        """From a Keras ``LSTM`` layer's weights: ``kernel`` (I, 4H) and
        ``recurrent_kernel`` (H, 4H) transposed, gate columns i, f, c, o (the
        canonical order), one bias (4H,). ``recurrent_activation`` is the
        gates' activation; ``activation`` is both the cell input's and the
        one applied to c before the output gate (Keras names, read as Keras
        ``keras_version`` defines them).

        Examples
        --------
        >>> import numpy as np, streamgru as sg
        >>> sg.LSTM.from_keras(np.ones((3, 8)), np.ones((2, 8))).state_size
        4
        """
        H, k, rk = _keras_kernels(kernel, recurrent_kernel, 4)
        if bias is not None:
            bias = _source(bias, "bias", (4 * H,))
        act = keras_activation(activation, keras_version)
        # Keras columns i, f, c, o are the canonical rows i, f, g, o: transpose only
        return cls(k.T, rk.T, bias, None,
                   gate_activation=keras_activation(recurrent_activation, keras_version),
                   cell_activation=act, hidden_activation=act)
