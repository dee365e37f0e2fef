"""The kinds of value an ONNX tensor becomes while the graph is walked, and
the context (``_Graph``) the op handlers share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import WeightsError
from ..guard import Budget


_INT_MAX = 2**62  # Slice ends at or beyond this mean "to the end"


# ----------------------------------------------------------------------------
# errors that do not stop the import at once


class _Unstreamable(WeightsError):
    """An op or pattern that cannot be streamed. The tensors it produces
    become ``_Poison`` values; the import fails only if the output uses them."""


class _Mismatch(_Unstreamable):
    """The guessed roles of the graph input's axes (time, batch) are
    contradicted by a recurrent node; the next guess is tried."""


# ----------------------------------------------------------------------------
# values


@dataclass(frozen=True)
class _Const:
    """A tensor whose every value is known."""

    value: np.ndarray


@dataclass(frozen=True)
class _Dims:
    """A 1-D (or 0-D when ``scalar``) int tensor holding a shape in which some
    entries are unknown: ``"T"``, ``"N"``, products like ``"N*T"``, or ``"?"``."""

    values: tuple
    scalar: bool = False


@dataclass(frozen=True)
class _Fill:
    """``base`` broadcast to ``shape`` (entries int or unknown str). ``source``
    names the graph input it stands for (a state fed from outside), else None."""

    base: np.ndarray
    shape: tuple
    source: str | None = None


@dataclass(frozen=True)
class _Stream:
    """The per-sample data. ``axes`` has one entry per tensor axis: the tuple of
    atoms merged into it (``"T"`` time, ``"N"`` batch, ``"F"`` features;
    ``()`` is a singleton axis). ``layers`` is the chain of (layer, initial
    state or None) from the graph input to here; ``last`` marks a tensor that
    holds only the last time step."""

    axes: tuple
    features: int
    layers: tuple = ()
    last: bool = False
    # (stream, scale, shift) when this stream is ``stream * scale + shift``
    # (per feature): lets patterns such as GELU's erf form be recognised
    origin: tuple | None = field(default=None, compare=False, repr=False)
    # the offline length of the time axis where it is not the input's (after
    # an unpadded or strided conv, a pool): an int, or "?" when the input's is symbolic
    steps: Any = None


@dataclass(frozen=True, eq=False)
class _Join:
    """An entry of a stream's ``layers`` (in place of a layer; its init is
    None): the element-wise ``op`` ("add" or "mul", then ``activation``) of
    the stream so far with ``other``, the ``layers`` of another stream from
    the same input. A stream whose layers hold one is a graph (branches.py)."""

    op: str
    other: tuple
    activation: Any = None


@dataclass(frozen=True)
class _ErfOf:
    """``erf(stream) + offset``: the inner part of GELU's erf form
    ``x * 0.5 * (1 + erf(x / sqrt(2)))`` that exporters write below opset 20."""

    stream: _Stream
    offset: float = 0.0
    node: str = ""


@dataclass(frozen=True)
class _Stack:
    """Streams concatenated along a singleton axis (``h_n``: the ``Y_h`` of
    each layer joined on the layer axis); picking one entry gives it back."""

    parts: tuple
    axis: int


@dataclass(frozen=True)
class _Pending:
    """The stream inside a causal-conv idiom not finished yet: ``kind`` "pad"
    (a left zero ``Pad`` of ``amount`` time steps, waiting for its ``Conv``)
    or "chomp" (a ``Conv`` padded by ``amount`` on both sides, waiting for the
    ``Slice`` that drops its last ``amount`` outputs). Only that op may take it."""

    stream: _Stream
    kind: str
    amount: int
    node: str


@dataclass(frozen=True)
class _Poison:
    """A tensor that cannot be streamed, with the reason."""

    error: _Unstreamable


def _dims(values: list | tuple, scalar: bool = False) -> Any:
    """A shape vector, folded to a constant when every entry is known."""
    values = tuple(values)
    if all(isinstance(v, (int, np.integer)) for v in values):
        arr = np.array([int(v) for v in values], dtype=np.int64)
        return _Const(arr.reshape(()) if scalar else arr)
    return _Dims(values, scalar)


# ----------------------------------------------------------------------------
# graph context


class _Graph:
    """What the handlers share while walking one graph with one guess of the
    input's axis roles."""

    def __init__(self, path: str, opset: int, sizes: dict[str, Any], budget: Budget) -> None:
        self.path = path
        self.opset = opset
        self.budget = budget
        self.evaluators: dict[int, tuple] = {}  # id(node) -> (node, its folding evaluator)
        self.sizes = sizes  # atom -> int, or the symbol itself when unknown
        self.input_features = 0  # the data input's feature count, once known
        self.state_sources: set[str] = set()
        self.node = None  # the node being handled, for messages
        self.index = 0  # its position in the graph
        # QuantizeLinear -> DequantizeLinear on the stream (statically quantized
        # activations): refused unless the caller asks to keep them in float
        self.static_activations = "refuse"
        self.dropped_qdq = 0  # pairs dropped with static_activations="float"

    # -- messages
    def label(self) -> str:
        """The node being handled, as ``node 'name' (OpType)``."""
        n = self.node
        if n is None:
            return "the graph"
        name = repr(n.name) if n.name else f"#{self.index} (unnamed)"
        return f"node {name} ({n.op_type})"

    def where(self) -> str:
        return self.path if self.node is None else f"{self.path}: {self.label()}"

    def fail(self, msg: str) -> _Unstreamable:
        return _Unstreamable(f"{self.where()}: {msg}")

    def mismatch(self, msg: str) -> _Mismatch:
        return _Mismatch(f"{self.where()}: {msg}")

    # -- axis sizes
    def unit_atom(self, atom: str) -> bool:
        """A batch atom of static size 1 is as good as a singleton axis."""
        return atom == "N" and self.sizes.get("N") == 1

    def core(self, axis: tuple) -> tuple:
        """The atoms of an axis that carry more than one element."""
        return tuple(a for a in axis if not self.unit_atom(a))

    def atom_size(self, s: _Stream, atom: str) -> Any:
        if atom == "T" and s.steps is not None:
            return s.steps
        return s.features if atom == "F" else self.sizes[atom]

    def steps_after(self, s: _Stream, left: int, right: int, reach: int, stride: int) -> Any:
        """The offline time length after a window reaching ``reach`` samples
        back, over ``s`` padded by ``left`` and ``right`` zeros, every ``stride``."""
        n = self.atom_size(s, "T")
        if left + right == reach and stride == 1:
            return s.steps
        return (n + left + right - reach - 1) // stride + 1 if isinstance(n, int) else "?"

    def axis_size(self, s: _Stream, axis: tuple) -> Any:
        known, syms = 1, []
        for atom in axis:
            v = self.atom_size(s, atom)
            if isinstance(v, str):
                syms.append(v)
            else:
                known *= v
        if not syms:
            return known
        if known != 1:
            return "?"
        return "*".join(syms)

    def feature_axis(self, s: _Stream) -> int | None:
        """Index of the axis holding the features, None if F was squeezed away
        (a single feature); an axis merging F with time or batch is refused."""
        for i, axis in enumerate(s.axes):
            if "F" in axis:
                if self.core(axis) != ("F",):
                    raise self.fail(
                        "the feature axis is merged with the time or batch axis; "
                        "that mixes samples and cannot stream"
                    )
                return i
        return None


def _describe_axes(s: _Stream) -> str:
    names = {"T": "time", "N": "batch", "F": "features"}
    parts = ["*".join(names[a] for a in ax) if ax else "1" for ax in s.axes]
    return "(" + ", ".join(parts) + ")"


def _norm_axis(g: _Graph, axis: int, rank: int) -> int:
    a = int(axis)
    if a < 0:
        a += rank
    if not 0 <= a < rank:
        raise WeightsError(f"{g.where()}: axis {axis} out of range for rank {rank}")
    return a


def _int_values(g: _Graph, value: Any, what: str) -> list[int]:
    """The entries of a constant that the spec makes an int64 list (axes,
    shapes, indices): a float or non-finite entry is a malformed file, not an
    ``OverflowError`` later."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iub":
        raise WeightsError(f"{g.where()}: {what} must be integers (int64), got {arr.dtype} values")
    return [int(x) for x in arr.reshape(-1)]


def _int_list(g: _Graph, v: Any, what: str) -> list[int]:
    if isinstance(v, _Const):
        return _int_values(g, v.value, what)
    raise g.fail(f"{what} must be a constant")


def _broadcast(g: _Graph, shapes: list) -> list[int]:
    """The multidirectional-broadcast shape, in Python ints (no overflow);
    shapes that do not broadcast are refused before anything is built."""
    rank = max((len(s) for s in shapes), default=0)
    out = [1] * rank
    for s in shapes:
        for i, d in enumerate((1,) * (rank - len(s)) + tuple(int(x) for x in s)):
            if d != 1 and out[i] not in (1, d):
                raise g.fail(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
            out[i] = d if out[i] == 1 else out[i]
    return out


def _opt(inputs: list, i: int) -> Any:
    return inputs[i] if i < len(inputs) else None


def _materialize(g: _Graph, v: Any) -> np.ndarray | None:
    """The values of a constant, or of a fill whose shape is fully known
    (charged to the budget before it is built)."""
    if isinstance(v, _Const):
        return v.value
    if isinstance(v, _Fill) and v.source is None and all(isinstance(d, int) for d in v.shape):
        g.budget.take(math.prod(v.shape) * v.base.dtype.itemsize,
                      f"{g.label()}: a tensor of shape {v.shape}")
        return np.broadcast_to(v.base, v.shape).copy()
    return None
