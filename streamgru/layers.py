"""Canonical layer specifications: GRU, LSTM, RNN and Dense.

Canonical form is PyTorch's layout (gate rows r, z, n for GRU and i, f, g, o
for LSTM; separate input and recurrent biases) plus flags for what PyTorch
cannot express (GRU ``reset_after=False``, LSTM peepholes and coupled input
and forget gates, ``clip``, other gate activations). Every importer converts
to this form; the kernels repack it privately.

A layer is immutable: its arrays are read-only copies, validated for shape
and finiteness when the layer is built. A ``WeightsError`` names the tensor
and gives the expected and the actual shape.

Update convention: streamgru (like PyTorch, ONNX and Keras) writes the GRU
update as ``h' = (1 - z) * n + z * h``. Some texts write
``h' = (1 - z) * h + z * n``; that is the same cell with ``z -> 1 - z``.
Since ``1 - sigmoid(a) = sigmoid(-a)``, convert such weights by negating the
z rows of ``weight_ih``, ``weight_hh`` and of both biases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import WeightsError

__all__ = ["Activation", "GRU", "LSTM", "RNN", "Dense", "Layer"]


# ----------------------------------------------------------------------------
# Activations


@dataclass(frozen=True)
class Activation:
    """An element-wise (or, for softmax, last-axis) activation function.

    ``alpha`` and ``beta`` are the parameters of the functions that have them:
    ``hard_sigmoid(x) = max(0, min(1, alpha * x + beta))``,
    ``leaky_relu(x) = x if x >= 0 else alpha * x``,
    ``elu(x) = x if x >= 0 else alpha * (exp(x) - 1)``.
    """

    name: str
    alpha: float = 0.0
    beta: float = 0.0

    def __str__(self) -> str:
        if self.name in ("hard_sigmoid",):
            return f"{self.name}(alpha={self.alpha:g}, beta={self.beta:g})"
        if self.name in ("leaky_relu", "elu"):
            return f"{self.name}(alpha={self.alpha:g})"
        return self.name


# name -> default (alpha, beta)
ACTIVATIONS: dict[str, tuple[float, float]] = {
    "identity": (0.0, 0.0),
    "relu": (0.0, 0.0),
    "tanh": (0.0, 0.0),
    "sigmoid": (0.0, 0.0),
    "hard_sigmoid": (0.2, 0.5),
    "leaky_relu": (0.01, 0.0),
    "elu": (1.0, 0.0),
    "gelu": (0.0, 0.0),
    "softmax": (0.0, 0.0),
    "log_softmax": (0.0, 0.0),
}

_ALIASES = {
    None: "identity",
    "none": "identity",
    "linear": "identity",
    "hardsigmoid": "hard_sigmoid",
    "leakyrelu": "leaky_relu",
    "logsoftmax": "log_softmax",
}

# what a recurrent cell may use in each position; anything else is refused
GATE_ACTIVATIONS = ("sigmoid", "hard_sigmoid")
CELL_ACTIVATIONS = ("tanh", "relu", "sigmoid", "hard_sigmoid", "identity")
ELEMENTWISE_ACTIVATIONS = tuple(a for a in ACTIVATIONS if a not in ("softmax", "log_softmax"))


def make_activation(spec: Any, alpha: float | None = None, beta: float | None = None) -> Activation:
    """Normalise an activation given as a name, ``(name, alpha[, beta])`` or
    ``Activation`` into an ``Activation``; unknown names raise ``WeightsError``."""
    if isinstance(spec, Activation):
        name, a, b = spec.name, spec.alpha, spec.beta
    elif isinstance(spec, (tuple, list)) and spec and isinstance(spec[0], str):
        name = spec[0]
        a = spec[1] if len(spec) > 1 else None
        b = spec[2] if len(spec) > 2 else None
    elif spec is None or isinstance(spec, str):
        name, a, b = spec, None, None
    else:
        raise WeightsError(f"activation must be a name such as 'relu', not {spec!r}")
    key = name.lower() if isinstance(name, str) else name
    key = _ALIASES.get(key, key)
    if key not in ACTIVATIONS:
        raise WeightsError(
            f"unsupported activation {name!r}; supported: {', '.join(ACTIVATIONS)}"
        )
    da, db = ACTIVATIONS[key]
    if alpha is not None:
        a = alpha
    if beta is not None:
        b = beta
    a = float(da if a is None else a)
    b = float(db if b is None else b)
    if not (math.isfinite(a) and math.isfinite(b)):
        raise WeightsError(f"activation {key} parameters must be finite, got alpha={a}, beta={b}")
    return Activation(key, a, b)


def _restricted(spec: Any, allowed: Sequence[str], what: str) -> Activation:
    act = make_activation(spec)
    if act.name not in allowed:
        raise WeightsError(
            f"unsupported {what} activation {act.name!r}; supported here: {', '.join(allowed)}"
        )
    return act


# ONNX activation names (case-sensitive in the spec) -> streamgru names
_ONNX_ACTIVATIONS = {
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "Relu": "relu",
    "HardSigmoid": "hard_sigmoid",
    "LeakyRelu": "leaky_relu",
    "Elu": "elu",
}


def onnx_activations(
    names: Sequence[Any] | None,
    alphas: Sequence[float] | None,
    betas: Sequence[float] | None,
    defaults: Sequence[str],
) -> list[Activation]:
    """Translate an ONNX ``activations`` attribute (one direction) into
    ``Activation`` objects. Alphas and betas are consumed in order by the
    functions that take them, as the ONNX spec describes."""
    if not names:
        return [make_activation(d) for d in defaults]
    if len(names) != len(defaults):
        raise WeightsError(
            f"ONNX activations list has {len(names)} entries, expected {len(defaults)} "
            f"(one direction: {', '.join(defaults)})"
        )
    alphas = list(alphas or [])
    betas = list(betas or [])
    out = []
    for raw in names:
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        key = _ONNX_ACTIVATIONS.get(name)
        if key is None:
            # the spec's names are case-insensitive in practice (exporters vary)
            key = {k.lower(): v for k, v in _ONNX_ACTIVATIONS.items()}.get(name.lower())
        if key is None:
            raise WeightsError(
                f"unsupported ONNX activation {name!r}; supported: {', '.join(_ONNX_ACTIVATIONS)}"
            )
        da, db = ACTIVATIONS[key]
        a = b = None
        if key in ("hard_sigmoid", "leaky_relu", "elu"):
            a = alphas.pop(0) if alphas else da
        if key == "hard_sigmoid":
            b = betas.pop(0) if betas else db
        out.append(make_activation(key, a, b))
    return out


# Keras activation names -> streamgru (name, alpha, beta). hard_sigmoid changed
# between versions: Keras 2 clips 0.2 x + 0.5, Keras 3 clips x / 6 + 0.5.
_KERAS_ACTIVATIONS = {
    "linear": ("identity",),
    "relu": ("relu",),
    "tanh": ("tanh",),
    "sigmoid": ("sigmoid",),
    "hard_sigmoid": ("hard_sigmoid",),
    "leaky_relu": ("leaky_relu", 0.2),  # negative_slope 0.2 in Keras 2 and 3
    "elu": ("elu", 1.0),
    "gelu": ("gelu",),  # Keras' default approximate=False: the exact erf form
    "softmax": ("softmax",),
    "log_softmax": ("log_softmax",),
}
_KERAS_HARD_SIGMOID = {2: (0.2, 0.5), 3: (1.0 / 6.0, 0.5)}


def keras_activation(spec: Any, keras_version: int = 3) -> Activation:
    """Translate a Keras activation (a name such as ``"hard_sigmoid"``, or
    ``None`` for linear) into an ``Activation``, as Keras ``keras_version``
    (2 or 3) defines it; an ``Activation`` or ``(name, alpha[, beta])`` passes
    through as streamgru's own. Names Keras has that streamgru cannot compute
    (``"selu"``, ``"swish"``, ...) raise ``WeightsError``."""
    if spec is None:
        return make_activation("identity")
    if not isinstance(spec, str):
        return make_activation(spec)
    key = _KERAS_ACTIVATIONS.get(spec)
    if key is None:
        raise WeightsError(
            f"unsupported Keras activation {spec!r}; supported: {', '.join(_KERAS_ACTIVATIONS)}"
        )
    if key[0] == "hard_sigmoid":
        if keras_version not in _KERAS_HARD_SIGMOID:
            raise WeightsError(f"Keras version must be 2 or 3, got {keras_version!r}")
        return make_activation(key[0], *_KERAS_HARD_SIGMOID[keras_version])
    return make_activation(*key)


# ----------------------------------------------------------------------------
# Array validation


def _float_dtype(*arrays: np.ndarray | None) -> np.dtype:
    """float64 if any array is float64, else float32."""
    for a in arrays:
        if a is not None and np.asarray(a).dtype == np.float64:
            return np.dtype(np.float64)
    return np.dtype(np.float32)


def _array(value: Any, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A read-only C-contiguous copy of ``value`` in ``dtype`` with exactly ``shape``."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # e.g. a ragged list
        raise WeightsError(f"tensor {name}: cannot be read as an array ({exc})") from None
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise WeightsError(f"tensor {name}: expected real numbers, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise WeightsError(
            f"tensor {name}: expected shape {shape}, got {tuple(arr.shape)}"
        )
    out = np.array(arr, dtype=dtype, order="C", copy=True)
    if not np.all(np.isfinite(out)):
        bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
        raise WeightsError(f"tensor {name}: {bad} non-finite value(s) (NaN or inf)")
    out.setflags(write=False)
    return out


def _shape_of(value: Any, name: str, ndim: int) -> tuple[int, ...]:
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise WeightsError(f"tensor {name}: cannot be read as an array ({exc})") from None
    if arr.ndim != ndim:
        raise WeightsError(
            f"tensor {name}: expected {ndim} dimensions, got shape {tuple(arr.shape)}"
        )
    if 0 in arr.shape:
        raise WeightsError(f"tensor {name}: empty shape {tuple(arr.shape)}")
    return tuple(int(s) for s in arr.shape)


def _gate_rows(name: str, shape: tuple[int, ...], gates: int) -> int:
    if shape[0] % gates:
        raise WeightsError(
            f"tensor {name}: first dimension {shape[0]} is not a multiple of {gates} "
            f"({gates} gates), shape {shape}"
        )
    return shape[0] // gates


def _clip(clip: Any) -> float | None:
    if clip is None:
        return None
    c = float(clip)
    if not (c > 0 and math.isfinite(c)):
        raise WeightsError(f"clip must be a positive finite number, got {clip!r}")
    return c


def _source(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Validate an importer's tensor under its source name (``W``, ``kernel``),
    before any reordering, so an error names the tensor the user passed."""
    return _array(value, name, shape, _float_dtype(value))


def _drop_direction(value: Any, name: str, ndim: int) -> np.ndarray:
    """ONNX arrays may keep their leading num_directions axis of 1."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.ndim == ndim + 1:
        if arr.shape[0] != 1:
            raise WeightsError(
                f"tensor {name}: num_directions is {arr.shape[0]}; only one direction can "
                f"stream (a reverse or bidirectional layer needs the future)"
            )
        arr = arr[0]
    return arr


def _reorder(arr: np.ndarray, order: Sequence[int], gates: int) -> np.ndarray:
    """Reorder the gate blocks of the leading axis of ``arr``."""
    blocks = np.split(np.asarray(arr), gates, axis=0)
    return np.concatenate([blocks[i] for i in order], axis=0)


# ----------------------------------------------------------------------------
# Layers


class Layer:
    """Common behaviour of the canonical layers."""

    kind: str = ""
    _array_names: tuple[str, ...] = ()

    input_size: int
    output_size: int
    state_size: int

    @property
    def dtype(self) -> np.dtype:
        return getattr(self, self._array_names[0]).dtype

    def arrays(self) -> dict[str, np.ndarray]:
        """The layer's tensors by canonical name (absent optional ones left out)."""
        return {
            n: getattr(self, n) for n in self._array_names if getattr(self, n) is not None
        }

    def config(self) -> dict[str, Any]:
        """The layer's non-array settings, JSON-serialisable."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "Layer":
        """Rebuild a layer from ``config()`` and ``arrays()`` (used by the native format)."""
        raise NotImplementedError

    def astype(self, dtype: Any) -> "Layer":
        """The same layer with its arrays in another float dtype."""
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise WeightsError(f"dtype must be float32 or float64, got {dtype}")
        if dtype == self.dtype:
            return self
        return type(self).from_config(
            self.config(), {k: v.astype(dtype) for k, v in self.arrays().items()}
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        a, b = self.arrays(), other.arrays()
        return (
            self.config() == other.config()
            and a.keys() == b.keys()
            and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({cfg}, dtype={self.dtype})"


def _act_config(act: Activation) -> list:
    return [act.name, act.alpha, act.beta]


def _act_from_config(value: Any) -> Activation:
    return make_activation(value)


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
    weight_ih : array (3H, I)
    weight_hh : array (3H, H)
    bias_ih, bias_hh : array (3H,), optional (zeros)
    reset_after : bool
    clip : float, optional
    gate_activation : activation of r and z: ``"sigmoid"`` or ``"hard_sigmoid"``
    activation : activation of the candidate n (``"tanh"`` by default)
    """

    kind = "gru"
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
        self.weight_ih = _array(weight_ih, "weight_ih", (3 * H, I), dt)
        self.weight_hh = _array(weight_hh, "weight_hh", (3 * H, H), dt)
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
        H = _shape_of(recurrent_kernel, "recurrent_kernel", 2)[0]
        rk = _source(recurrent_kernel, "recurrent_kernel", (H, 3 * H))
        k = _source(kernel, "kernel", (_shape_of(kernel, "kernel", 2)[0], 3 * H))
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
    weight_ih : array (4H, I)
    weight_hh : array (4H, P) where P = proj size or H
    bias_ih, bias_hh : array (4H,), optional (zeros)
    weight_hr : array (P, H), optional projection (``torch.nn.LSTM(proj_size=P)``)
    peepholes : array (3, H), optional, rows p_i, p_f, p_o
    input_forget : bool, couple the forget gate to the input gate (ONNX)
    clip : float, optional, clip every gate pre-activation to ``[-clip, clip]``
    gate_activation, cell_activation, hidden_activation : the ONNX f, g, h
    """

    kind = "lstm"
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
        self.weight_ih = _array(weight_ih, "weight_ih", (4 * H, I), dt)
        self.weight_hh = _array(weight_hh, "weight_hh", (4 * H, P), dt)
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
        H = _shape_of(recurrent_kernel, "recurrent_kernel", 2)[0]
        rk = _source(recurrent_kernel, "recurrent_kernel", (H, 4 * H))
        k = _source(kernel, "kernel", (_shape_of(kernel, "kernel", 2)[0], 4 * H))
        if bias is not None:
            bias = _source(bias, "bias", (4 * H,))
        act = keras_activation(activation, keras_version)
        # Keras columns i, f, c, o are the canonical rows i, f, g, o: transpose only
        return cls(k.T, rk.T, bias, None,
                   gate_activation=keras_activation(recurrent_activation, keras_version),
                   cell_activation=act, hidden_activation=act)


class RNN(Layer):
    """An Elman RNN layer: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``.

    The state is h (size H).

    Parameters
    ----------
    weight_ih : array (H, I)
    weight_hh : array (H, H)
    bias_ih, bias_hh : array (H,), optional (zeros)
    activation : ``"tanh"`` (default) or ``"relu"`` (or another cell activation)
    clip : float, optional, clip the pre-activation to ``[-clip, clip]``
    """

    kind = "rnn"
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
        self.weight_ih = _array(weight_ih, "weight_ih", (H, I), dt)
        self.weight_hh = _array(weight_hh, "weight_hh", (H, H), dt)
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
        H = _shape_of(recurrent_kernel, "recurrent_kernel", 2)[0]
        rk = _source(recurrent_kernel, "recurrent_kernel", (H, H))
        k = _source(kernel, "kernel", (_shape_of(kernel, "kernel", 2)[0], H))
        if bias is not None:
            bias = _source(bias, "bias", (H,))
        # Keras kernels are (in, out): transposed to torch's (out, in)
        return cls(k.T, rk.T, bias, None, activation=keras_activation(activation, keras_version))


class Dense(Layer):
    """A fully connected layer ``y = act(W x + b)``, weight (out, in) like
    ``torch.nn.Linear``.

    Parameters
    ----------
    weight : array (out, in)
    bias : array (out,), optional (zeros)
    activation : None (identity), "relu", "tanh", "sigmoid", "hard_sigmoid",
        "leaky_relu", "elu", "gelu" (exact, erf), "softmax", "log_softmax",
        optionally as ``(name, alpha[, beta])``.
    """

    kind = "dense"
    _array_names = ("weight", "bias")

    def __init__(self, weight: Any, bias: Any = None, activation: Any = None) -> None:
        out_size, in_size = _shape_of(weight, "weight", 2)
        dt = _float_dtype(weight, bias)
        self.weight = _array(weight, "weight", (out_size, in_size), dt)
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


LAYER_TYPES: dict[str, type[Layer]] = {c.kind: c for c in (GRU, LSTM, RNN, Dense)}
