"""Activations of the canonical layers: names, parameters, and which a
recurrent cell may use where."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import WeightsError

__all__ = ["Activation", "ACTIVATIONS", "make_activation", "onnx_activations",
           "GATE_ACTIVATIONS", "CELL_ACTIVATIONS", "ELEMENTWISE_ACTIVATIONS",
           "keras_activation"]


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
