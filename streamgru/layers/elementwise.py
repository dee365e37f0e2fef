"""Element-wise graph operations: add, multiply, slice/scale/activate, gate, blend, concat.

These are the small stateless steps between the layers of a graph model
(``streamgru.graph``): residual and skip sums, products of two branches,
channel slices, and the gated activations of WaveNet-style blocks. They have
no weights; each is one row of the ``elementwise`` kernel kind.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from ..errors import WeightsError
from .activations import ELEMENTWISE_ACTIVATIONS, _restricted
from .base import Layer, _act_config, _act_from_config

# op name -> number of operands
OPS = {"add": 2, "mul": 2, "slice": 1, "gate": 1, "blend": 1, "concat": 2}


class Elementwise(Layer):
    """One element-wise operation of a graph (no weights, no state).

    With ``a`` (and ``b``) the operand rows, ``act``/``act2`` the activations::

        add    y = act(a + b)                     a, b of the same size
        mul    y = act(a * b)
        slice  y = act(scale * a[offset : offset + size])
        gate   y = act(a[:C]) * act2(a[C:2C])     C = size, a of 2C (tanh, sigmoid: WaveNet)
        blend  y = s * act(a[:C]) + (1 - s) * a[:C],  s = act2(a[C:2C])   (NAM "blended")
        concat y = act([a, b])                    a's channels, then b's (size: both)

    Built by the graph API (``a + b``, ``a * b``, ``node[i:j]``, ``node * 0.5``,
    ``node.act(...)``, ``node.gate()``, ``node.blend()``, ``a.concat(b)``),
    rarely by hand. ``operand_sizes`` is the size each operand must have.
    """

    kind = "elementwise"
    _array_names = ()

    def __init__(self, op: str, input_size: int, size: int | None = None, *, offset: int = 0,
                 scale: float = 1.0, activation: Any = None, secondary: Any = None) -> None:
        if op not in OPS:
            raise WeightsError(f"element-wise op {op!r}: expected one of {sorted(OPS)}")
        self.op = op
        self.operands = OPS[op]
        self.input_size = int(input_size)
        if op in ("add", "mul"):
            size = self.input_size
        elif op in ("gate", "blend"):
            if self.input_size % 2:
                raise WeightsError(f"{op}: needs an even number of channels (two halves), "
                                   f"got {self.input_size}")
            size = self.input_size // 2
        elif op == "concat":
            if size is None or int(size) <= self.input_size or self.input_size < 1:
                raise WeightsError(f"concat: the output ({size}) must have more channels than "
                                   f"its first operand ({self.input_size}), and both some")
        elif size is None:
            size = self.input_size - int(offset)
        self.offset = int(offset) if op == "slice" else 0
        self.output_size = int(size)
        if op == "concat":
            self.operand_sizes = (self.input_size, self.output_size - self.input_size)
        else:
            self.operand_sizes = (self.input_size,) * self.operands
            if (self.output_size < 1 or self.offset < 0
                    or self.offset + self.output_size > self.input_size):
                raise WeightsError(f"slice [{self.offset}:{self.offset + self.output_size}] of "
                                   f"{self.input_size} channels is empty or out of range")
        self.scale = float(scale)
        if not math.isfinite(self.scale) or (op != "slice" and self.scale != 1.0):
            raise WeightsError(f"{op}: scale must be finite (and is only for slice), got {scale!r}")
        paired = op in ("gate", "blend")
        # a gate defaults to WaveNet's tanh(a) * sigmoid(b)
        self.activation = _restricted("tanh" if paired and activation is None else activation,
                                      ELEMENTWISE_ACTIVATIONS, f"{op} output")
        self.secondary = _restricted("sigmoid" if paired and secondary is None else secondary,
                                     ELEMENTWISE_ACTIVATIONS, f"{op} gate")
        self.state_size = 0

    @property
    def dtype(self) -> np.dtype | None:  # type: ignore[override]
        return None  # no arrays: the same op in every dtype

    def astype(self, dtype: Any) -> "Elementwise":
        return self

    def config(self) -> dict[str, Any]:
        return {"op": self.op, "input_size": self.input_size, "output_size": self.output_size,
                "offset": self.offset, "scale": self.scale,
                "activation": _act_config(self.activation),
                "secondary": _act_config(self.secondary)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "Elementwise":
        return cls(config["op"], config["input_size"], config.get("output_size"),
                   offset=config.get("offset", 0), scale=config.get("scale", 1.0),
                   activation=_act_from_config(config.get("activation")),
                   secondary=_act_from_config(config.get("secondary")))

    def __repr__(self) -> str:
        extra = ""
        if self.op == "slice":
            extra = f"[{self.offset}:{self.offset + self.output_size}]"
            if self.scale != 1.0:
                extra += f" * {self.scale:g}"
        if self.activation.name != "identity":
            extra += f", {self.activation}"
        if self.op in ("gate", "blend"):
            extra += f", {self.secondary}"
        sizes = "+".join(map(str, self.operand_sizes)) if self.op == "concat" else self.input_size
        return f"Elementwise({self.op}{extra}, {sizes}->{self.output_size})"
