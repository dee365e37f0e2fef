"""ONNX import: a whole recurrent model from an ``.onnx`` file, as a streaming Model.

ONNX Runtime runs a graph over a whole sequence and forgets everything
between calls; this module turns the same file into canonical layers
(layers.py) that a Stream advances one sample at a time.

How a graph is read
-------------------
Every tensor of the graph becomes one of a few kinds of value:

* a constant (initializers, ``Constant`` nodes and everything computed from
  them only; such nodes are folded with onnx's own reference implementation
  of the op, ``onnx.reference``, so they follow the spec exactly);
* a shape vector, some of whose entries are the unknown time or batch size
  (``Shape`` of the data and the arithmetic exporters do on it);
* a fill, a tensor of partly unknown shape whose values are known (what
  ``ConstantOfShape`` / ``Expand`` build, typically an all-zero initial state);
* *the stream*: the per-sample data flowing from the graph input through
  RNN nodes, Dense-like ops and element-wise ops. For it the importer tracks
  which axis is time, batch, features or a singleton (the direction axis),
  and the chain of layers that produced it.

Ops are handled by a flat table (``HANDLERS``) from op type to one function
per op, each citing the spec. An absent optional input and an empty-named one
are treated the same. An op that cannot be streamed does not stop the import
at once: its outputs become "unstreamable" values, and the import fails,
naming the op type, the node and the supported ops, only if the chosen output
depends on one (so the ``h_n`` / ``c_n`` outputs exporters add do no harm).

Mapping
-------
* ``GRU``, ``LSTM``, ``RNN`` (every attribute: ``hidden_size``,
  ``activations`` with ``activation_alpha`` / ``activation_beta``, ``clip``,
  ``linear_before_reset``, ``input_forget``, ``layout`` 0 and 1; inputs W, R,
  B, P) become ``GRU.from_onnx`` / ``LSTM.from_onnx`` / ``RNN.from_onnx``.
  ``linear_before_reset`` is always taken from the file (the dynamo exporter
  has been known to write it wrongly; the file is what ONNX Runtime runs).
  ``direction="reverse"`` or ``"bidirectional"`` is refused: it needs the
  future of the sequence, which a stream does not have.
* ``sequence_lens`` is ignored: a stream has no sequence length.
* ``initial_h`` / ``initial_c`` given as constants become the model's initial
  state (what ``reset()`` returns to); the all-zero states exporters build
  from ``Shape``/``Gather``/``ConstantOfShape``/``Expand``/``Tile`` are zeros. A state
  fed from a second graph input (a model exported as ``f(x, h) -> (y, h')``)
  starts at zeros; the Stream carries the state itself.
* ``Gemm``, ``MatMul`` (+ ``Add``) become ``Dense``; ``Add``/``Sub``/``Mul``/
  ``Div``/``Neg`` by constants fold into the preceding Dense (or become a Dense
  with a diagonal weight); ``Relu``, ``Tanh``, ``Sigmoid``, ``LeakyRelu``,
  ``Elu``, ``Gelu``, ``HardSigmoid``, ``Softmax``/``LogSoftmax`` on the feature
  axis attach to the preceding Dense (or become an identity-weight Dense);
  GELU in the form exporters write below opset 20,
  ``x * 0.5 * (1 + erf(x / sqrt(2)))``, is recognised as ``gelu``.
  ``Gather``/``Slice`` on the feature axis become a selection Dense.
* ``Transpose``, ``Squeeze``, ``Unsqueeze``, ``Reshape``, ``Flatten``,
  ``Slice``, ``Gather`` of the direction and batch axes only move axes.
  Taking the last time step (``y[-1]``, ``y[:, -1]``, the ``Y_h`` output, or
  one layer of ``h_n``, the ``Y_h`` of each layer concatenated) makes a
  many-to-one model; streamed, step ``t`` gives the model's output
  for the sequence ending at ``t`` (``metadata["many_to_one"]``).
* The streamed output is the graph's first output (or ``output=name``).

Refused (``WeightsError`` naming the node): reverse or bidirectional
recurrent nodes; a recurrence unrolled into per-step ops (the dynamo exporter
does this for ``torch.nn.RNN``; export it with ``dynamo=False``); ops that mix
time steps or samples (convolutions, reductions, attention); the stream
combined with itself (residual connections, ``x * x``) other than in GELU's
erf form, since a Model is one chain of layers; LSTM's ``Y_c`` as the output.

Safety: the file is parsed as a protobuf and never executed; external-data
tensors must lie inside the model's folder; every tensor's byte size must
match its shape; a malformed file, a missing initializer or a bad tensor
raises ``WeightsError`` naming the file and the tensor.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import WeightsError
from ..layers import GRU, LSTM, RNN, Dense, Layer
from ..model import Model

__all__ = ["load"]

# folding refuses to build constants larger than this many elements
_MAX_FOLD_ELEMENTS = 1 << 26

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

    def __init__(self, path: str, opset: int, sizes: dict[str, Any]) -> None:
        self.path = path
        self.opset = opset
        self.sizes = sizes  # atom -> int, or the symbol itself when unknown
        self.state_sources: set[str] = set()
        self.node = None  # the node being handled, for messages
        self.index = 0  # its position in the graph

    # -- messages
    def where(self) -> str:
        n = self.node
        if n is None:
            return self.path
        name = repr(n.name) if n.name else f"#{self.index} (unnamed)"
        return f"{self.path}: node {name} ({n.op_type})"

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
        return s.features if atom == "F" else self.sizes[atom]

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


def _int_list(g: _Graph, v: Any, what: str) -> list[int]:
    if isinstance(v, _Const):
        return [int(x) for x in np.asarray(v.value).reshape(-1)]
    raise g.fail(f"{what} must be a constant")


def _opt(inputs: list, i: int) -> Any:
    return inputs[i] if i < len(inputs) else None


def _materialize(g: _Graph, v: Any) -> np.ndarray | None:
    """The values of a constant, or of a fill whose shape is fully known."""
    if isinstance(v, _Const):
        return v.value
    if isinstance(v, _Fill) and v.source is None and all(isinstance(d, int) for d in v.shape):
        if math.prod(v.shape) > _MAX_FOLD_ELEMENTS:
            raise WeightsError(f"{g.where()}: tensor of shape {v.shape} is too large to build")
        return np.broadcast_to(v.base, v.shape).copy()
    return None


# ----------------------------------------------------------------------------
# the stream's layer chain


def _append(s: _Stream, layer: Layer, init: np.ndarray | None = None, **changes: Any) -> _Stream:
    return dataclasses.replace(s, layers=s.layers + ((layer, init),), origin=None, **changes)


def _last_dense(s: _Stream) -> Dense | None:
    """The last layer if it is a Dense without activation (something to fold into)."""
    if s.layers and isinstance(s.layers[-1][0], Dense):
        d = s.layers[-1][0]
        if d.activation.name == "identity":
            return d
    return None


def _affine(s: _Stream, scale: np.ndarray, shift: np.ndarray) -> _Stream:
    """y = x * scale + shift, per feature: folded into the preceding Dense
    (W' = diag(scale) W, b' = scale * b + shift), else a diagonal Dense."""
    d = _last_dense(s)
    if d is not None:
        w = np.asarray(d.weight, np.float64) * scale[:, None]
        b = np.asarray(d.bias, np.float64) * scale + shift
        out = dataclasses.replace(s, layers=s.layers[:-1] + ((Dense(w, b), None),))
    else:
        out = _append(s, Dense(np.diag(scale), shift))
    return dataclasses.replace(out, origin=(s, scale, shift))


def _root(s: _Stream) -> tuple[_Stream, np.ndarray, np.ndarray]:
    """(base, scale, shift) with ``s = base * scale + shift``, following the
    chain of affine maps that produced ``s``."""
    scale, shift = np.ones(s.features), np.zeros(s.features)
    while s.origin is not None:
        s, a, b = s.origin
        scale, shift = a * scale, b * scale + shift
    return s, scale, shift


def _activate(s: _Stream, act: Any) -> _Stream:
    """Attach an activation to the preceding Dense, or add an identity Dense."""
    d = _last_dense(s)
    if d is not None:
        return dataclasses.replace(
            s, layers=s.layers[:-1] + ((Dense(d.weight, d.bias, act), None),), origin=None
        )
    return _append(s, Dense(np.eye(s.features), None, act))


def _select(g: _Graph, s: _Stream, rows: np.ndarray, keep_axis: bool) -> _Stream:
    """Pick features ``rows`` (a Gather/Slice on the feature axis) with a 0/1 Dense."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if rows.size == 0:
        raise g.fail("selects no features")
    if keep_axis and np.array_equal(rows, np.arange(s.features)):
        return s
    w = np.zeros((rows.size, s.features))
    w[np.arange(rows.size), rows] = 1.0
    out = _append(s, Dense(w), features=int(rows.size))
    if not keep_axis:
        fi = g.feature_axis(s)
        out = dataclasses.replace(out, axes=s.axes[:fi] + s.axes[fi + 1 :])
    return out


def _feature_vector(g: _Graph, s: _Stream, c: np.ndarray) -> tuple[np.ndarray, tuple]:
    """The per-feature vector a constant operand amounts to, and the axes of
    the broadcast result; refuses constants that vary along time or batch."""
    c = np.asarray(c, dtype=np.float64)
    axes = s.axes
    if c.ndim > len(axes):
        extra = c.shape[: c.ndim - len(axes)]
        if any(d != 1 for d in extra):
            raise g.fail(f"a constant of shape {c.shape} would repeat the stream")
        c = c.reshape(c.shape[c.ndim - len(axes) :])
        axes = ((),) * len(extra) + axes
    c = c.reshape((1,) * (len(s.axes) - c.ndim) + c.shape)
    fi = g.feature_axis(s)
    for i, axis in enumerate(s.axes):
        if i == fi or c.shape[i] == 1:
            continue
        size = g.axis_size(s, axis)
        if size != c.shape[i] or not g.core(axis):
            raise g.fail(
                f"a constant of shape {c.shape} does not broadcast along the stream's "
                f"axes {_describe_axes(s)}"
            )
        if not np.all(c == c.take([0], axis=i)):
            raise g.fail("a constant operand differs along the time or batch axis")
        c = c.take([0], axis=i)
    vec = c.reshape(-1)
    if vec.size not in (1, s.features):
        raise g.fail(f"a constant of {vec.size} values does not match {s.features} features")
    return np.broadcast_to(vec, (s.features,)).astype(np.float64), axes


# ----------------------------------------------------------------------------
# handlers: f(g, node, inputs, attrs) -> list of output values. Inputs that are
# all constants never reach a handler (they are folded), except for Constant.

Handler = Callable[[_Graph, Any, list, dict], list]


def _h_constant(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Constant-1/9/11/12/13/19/21: exactly one of value, value_float(s), value_int(s)
    if "value" in at:
        return [_Const(at["value"])]
    for key, dt in (("value_float", np.float32), ("value_floats", np.float32),
                    ("value_int", np.int64), ("value_ints", np.int64)):
        if key in at:
            return [_Const(np.array(at[key], dtype=dt))]
    raise g.fail(f"Constant with attributes {sorted(at)} is not supported")


def _h_identity(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Identity, Dropout (inference: output = input; the mask output is unused),
    # Cast/CastLike between float types (the Model picks its own dtype)
    if node.op_type == "Cast" and isinstance(ins[0], _Stream):
        to = at.get("to")
        if to not in (1, 10, 11, 16):  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
            raise g.fail(f"casts the stream to a non-float type ({to})")
    outs = [ins[0]]
    if node.op_type == "Dropout":
        outs.append(_Poison(g.fail("the Dropout mask is not a stream")))
    return outs


def _h_shape(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Shape-15: optional start/end attributes slice the shape vector
    x = ins[0]
    if isinstance(x, _Stream):
        shape = [g.axis_size(x, ax) for ax in x.axes]
    elif isinstance(x, _Fill):
        shape = list(x.shape)
    elif isinstance(x, _Dims):
        shape = [] if x.scalar else [len(x.values)]
    else:
        raise g.fail(f"Shape of a {type(x).__name__}")
    start, end = at.get("start", 0), at.get("end", None)
    return [_dims(shape[slice(start, end)])]


def _h_gather(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Gather-13: out = data.take(indices, axis)
    data, idx = ins[0], ins[1]
    if not isinstance(idx, _Const):
        raise g.fail("Gather indices must be constant")
    idx = np.asarray(idx.value, dtype=np.int64)
    if isinstance(data, _Stack):
        axis = _norm_axis(g, at.get("axis", 0), len(data.parts[0].axes))
        return [_unstack(g, data, axis, idx.reshape(-1).tolist(), keep_axis=idx.ndim > 0)]
    if isinstance(data, _Dims):
        n = len(data.values)
        vals = [data.values[int(i) % n if -n <= i < n else _bad_index(g, i, n)] for i in idx.reshape(-1)]
        return [_dims(vals, scalar=idx.ndim == 0)]
    if isinstance(data, _Fill):
        axis = _norm_axis(g, at.get("axis", 0), len(data.shape))
        base = data.base
        if base.shape[axis] == 1:
            base = np.take(base, np.zeros_like(idx), axis=axis)
        else:
            base = np.take(base, idx, axis=axis)
        shape = data.shape[:axis] + tuple(idx.shape) + data.shape[axis + 1 :]
        return [_Fill(base, shape, data.source)]
    if isinstance(data, _Stream):
        axis = _norm_axis(g, at.get("axis", 0), len(data.axes))
        return [_pick(g, data, axis, idx.reshape(-1), keep_axis=idx.ndim > 0)]
    raise g.fail(f"Gather of a {type(data).__name__}")


def _unstack(g: _Graph, st: _Stack, axis: int, idx: list, keep_axis: bool) -> _Stream:
    """One part of a stack (``h_n[k]``)."""
    n = len(st.parts)
    if axis != st.axis or len(idx) != 1 or not -n <= idx[0] < n:
        raise g.fail(
            f"selects {idx} on axis {axis} of {n} stacked layer states; only one entry "
            f"of the stack axis can stream"
        )
    part = st.parts[idx[0]]
    if keep_axis:
        return part
    return dataclasses.replace(part, axes=part.axes[:axis] + part.axes[axis + 1 :])


def _bad_index(g: _Graph, i: int, n: int) -> int:
    raise WeightsError(f"{g.where()}: index {i} out of range for {n} entries")


def _pick(g: _Graph, s: _Stream, axis: int, idx: list | np.ndarray, keep_axis: bool) -> _Stream:
    """Take entries ``idx`` of one axis of the stream (Gather, or a Slice
    that kept ``idx``)."""
    idx = [int(i) for i in idx]
    ax = s.axes[axis]
    core = g.core(ax)

    def without_axis(out: _Stream) -> _Stream:
        # a kept axis becomes a singleton; a scalar index removes it
        if keep_axis:
            return dataclasses.replace(out, axes=out.axes[:axis] + ((),) + out.axes[axis + 1 :])
        return dataclasses.replace(out, axes=out.axes[:axis] + out.axes[axis + 1 :])

    if core == ("F",):
        F = s.features
        rows = np.array([i % F if -F <= i < F else _bad_index(g, i, F) for i in idx])
        return _select(g, s, rows, keep_axis)
    if core == () or core == ("N",):
        # a singleton axis, or the batch: each stream is batch element 0 of its own
        if len(idx) != 1 or idx[0] not in (0, -1):
            raise g.fail(
                f"selects entries {idx} of the batch/direction axis; only entry 0 exists per stream"
            )
        return without_axis(s)
    if core == ("T",):
        T = g.sizes["T"]
        if len(idx) == 1 and (idx[0] == -1 or (isinstance(T, int) and idx[0] == T - 1)):
            return without_axis(dataclasses.replace(s, last=True))
        raise g.fail(
            f"selects time step(s) {idx}; only the last time step (a many-to-one output) can "
            f"stream (a graph that unrolls the recurrence step by step, as the dynamo exporter "
            f"does for torch.nn.RNN, has no recurrent node to stream; export with dynamo=False)"
        )
    raise g.fail(f"selects entries of a merged axis {_describe_axes(s)}")


def _axes_arg(g: _Graph, node: Any, ins: list, at: dict, index: int) -> list[int] | None:
    """Squeeze/Unsqueeze/Reduce axes: an attribute before opset 13, an input since."""
    if "axes" in at:
        return [int(a) for a in at["axes"]]
    v = _opt(ins, index)
    return None if v is None else _int_list(g, v, "axes")


def _h_unsqueeze(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Unsqueeze-13: insert size-1 axes at ``axes`` (positions in the output)
    x = ins[0]
    axes = _axes_arg(g, node, ins, at, 1)
    if axes is None:
        raise WeightsError(f"{g.where()}: Unsqueeze without axes")
    if isinstance(x, _Dims):
        if x.scalar and axes in ([0], [-1]):
            return [_Dims(x.values)]
        raise g.fail("Unsqueeze of a shape vector beyond rank 1")
    if not isinstance(x, (_Stream, _Fill)):
        raise g.fail(f"Unsqueeze of a {type(x).__name__}")
    seq = list(x.axes if isinstance(x, _Stream) else x.shape)
    rank = len(seq) + len(axes)
    for a in sorted(_norm_axis(g, a, rank) for a in axes):
        seq.insert(a, () if isinstance(x, _Stream) else 1)
    if isinstance(x, _Stream):
        return [dataclasses.replace(x, axes=tuple(seq))]
    if isinstance(x, _Fill):
        base = x.base
        for a in sorted(_norm_axis(g, a, rank) for a in axes):
            base = np.expand_dims(base, a)
        return [_Fill(base, tuple(seq), x.source)]
    raise g.fail(f"Unsqueeze of a {type(x).__name__}")


def _h_squeeze(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Squeeze-13: remove the listed size-1 axes (all size-1 axes if none listed)
    x = ins[0]
    axes = _axes_arg(g, node, ins, at, 1)
    if isinstance(x, _Dims):
        if not x.scalar and len(x.values) == 1 and axes in (None, [0], [-1]):
            return [_dims(x.values, scalar=True)]
        raise g.fail("Squeeze of a shape vector")
    if isinstance(x, _Fill):
        rank = len(x.shape)
        drop = [i for i, d in enumerate(x.shape) if d == 1] if axes is None else sorted(
            _norm_axis(g, a, rank) for a in axes)
        for i in drop:
            if x.shape[i] != 1 and not (isinstance(x.shape[i], str) and x.base.shape[i] == 1):
                raise WeightsError(f"{g.where()}: squeezes axis {i} of size {x.shape[i]}")
        keep = [i for i in range(rank) if i not in drop]
        return [_Fill(x.base.reshape([x.base.shape[i] for i in keep]),
                      tuple(x.shape[i] for i in keep), x.source)]
    if isinstance(x, _Stream):
        rank = len(x.axes)
        fi = g.feature_axis(x)
        if axes is None:
            drop = [i for i, ax in enumerate(x.axes) if not g.core(ax) or (i == fi and x.features == 1)]
        else:
            drop = sorted(_norm_axis(g, a, rank) for a in axes)
        for i in drop:
            ax = x.axes[i]
            if g.core(ax) and not (i == fi and x.features == 1):
                raise g.fail(
                    f"squeezes axis {i} of the stream {_describe_axes(x)}, which is not of size 1"
                )
        kept = tuple(ax for i, ax in enumerate(x.axes) if i not in drop)
        return [dataclasses.replace(x, axes=kept)]
    raise g.fail(f"Squeeze of a {type(x).__name__}")


def _h_concat(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Concat-13: join along ``axis``; only shape vectors and fills are handled
    present = [v for v in ins if v is not None]
    if any(isinstance(v, _Stream) for v in present):
        if all(isinstance(v, _Stream) for v in present):
            axis = _norm_axis(g, at.get("axis", 0), len(present[0].axes))
            # same axes up to batch axes of static size 1 (which may or may not be named)
            cores = {tuple(g.core(a) for a in v.axes) for v in present}
            if len(cores) == 1 and not g.core(present[0].axes[axis]):
                return [_Stack(tuple(present), axis)]
        raise g.fail("concatenates the stream with other tensors; a stream is one chain of layers")
    if all(isinstance(v, (_Dims, _Const)) for v in present):
        vals: list = []
        for v in present:
            if isinstance(v, _Dims):
                vals.extend(v.values)
            else:
                vals.extend(int(x) for x in np.asarray(v.value).reshape(-1))
        return [_dims(vals)]
    fills = [v for v in present if isinstance(v, _Fill)]
    if fills and all(isinstance(v, (_Fill, _Const)) for v in present):
        values = set()
        for v in present:
            arr = v.base if isinstance(v, _Fill) else v.value
            values.update(np.unique(np.asarray(arr)).tolist())
        if len(values) == 1 and len({f.source for f in fills}) == 1:
            rank = len(fills[0].shape)
            axis = _norm_axis(g, at.get("axis", 0), rank)
            shapes = [v.shape if isinstance(v, _Fill) else v.value.shape for v in present]
            total: Any = 0
            for shp in shapes:
                d = shp[axis]
                total = total + d if isinstance(total, int) and isinstance(d, int) else "?"
            shape = tuple(total if i == axis else shapes[0][i] for i in range(rank))
            base = np.full((1,) * rank, values.pop(), dtype=fills[0].base.dtype)
            return [_Fill(base, shape, fills[0].source)]
    raise g.fail("Concat of tensors with unknown values")


def _slice_args(g: _Graph, node: Any, ins: list, at: dict, rank: int) -> list[tuple[int, int, int, int]]:
    """(axis, start, end, step) per sliced axis: attributes before opset 10, inputs since."""
    if "starts" in at:
        starts, ends = list(at["starts"]), list(at["ends"])
        axes = list(at.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = _int_list(g, ins[1], "Slice starts")
        ends = _int_list(g, ins[2], "Slice ends")
        axes = (_int_list(g, ins[3], "Slice axes") if _opt(ins, 3) is not None
                else list(range(len(starts))))
        steps = _int_list(g, ins[4], "Slice steps") if _opt(ins, 4) is not None else [1] * len(starts)
    if not (len(starts) == len(ends) == len(axes) == len(steps)):
        raise WeightsError(f"{g.where()}: Slice starts/ends/axes/steps differ in length")
    if any(s == 0 for s in steps):
        raise WeightsError(f"{g.where()}: Slice step 0")
    return [(_norm_axis(g, a, rank), s, e, st) for a, s, e, st in zip(axes, starts, ends, steps)]


def _range(start: int, end: int, step: int, n: int) -> range:
    """The indices a Slice keeps of ``n`` (a lazy range: n may be huge)."""
    return range(n)[slice(start, end, step)]


def _h_slice(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Slice-13: numpy-style slicing per listed axis; ends clamp to the size
    x = ins[0]
    if isinstance(x, _Stack):
        ((axis, s, e, st),) = _slice_args(g, node, ins, at, len(x.parts[0].axes))
        return [_unstack(g, x, axis, _range(s, e, st, len(x.parts)), keep_axis=True)]
    if isinstance(x, _Dims):
        ((_, s, e, st),) = _slice_args(g, node, ins, at, 1)
        return [_dims(list(x.values)[slice(s, min(e, _INT_MAX), st)])]
    if isinstance(x, _Fill):
        base, shape = x.base, list(x.shape)
        for axis, s, e, st in _slice_args(g, node, ins, at, len(shape)):
            n = shape[axis]
            if isinstance(n, int):
                keep = _range(s, e, st, n)
                shape[axis] = len(keep)
                if base.shape[axis] != 1:
                    base = np.take(base, np.asarray(keep, dtype=np.int64), axis=axis)
            elif base.shape[axis] == 1:
                shape[axis] = "?"
            else:
                raise g.fail("Slice of an axis of unknown size")
        return [_Fill(base, tuple(shape), x.source)]
    if isinstance(x, _Stream):
        out = x
        for axis, s, e, st in _slice_args(g, node, ins, at, len(x.axes)):
            core = g.core(out.axes[axis])
            if core == ("F",):
                out = _select(g, out, _range(s, e, st, out.features), keep_axis=True)
                continue
            size = g.axis_size(out, out.axes[axis])
            if isinstance(size, int):
                keep = _range(s, e, st, size)
                if keep == range(size):
                    continue
                if len(keep) == 1:
                    idx = -1 if keep[0] == size - 1 else keep[0]
                    out = _pick(g, out, axis, [idx], keep_axis=True)
                    continue
                raise g.fail(f"slices entries {keep} of axis {axis} of the stream {_describe_axes(out)}")
            # unknown size: the whole axis, its first entry, or its last entry
            if st == 1 and s == 0 and e >= _INT_MAX:
                continue
            if st == 1 and ((s == 0 and e == 1) or (s == -1 and e >= _INT_MAX)):
                out = _pick(g, out, axis, [s], keep_axis=True)
                continue
            raise g.fail(f"slices [{s}:{e}:{st}] of an axis of unknown size in the stream")
        return [out]
    raise g.fail(f"Slice of a {type(x).__name__}")


def _h_transpose(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Transpose-13: output axis i is input axis perm[i] (default: reversed)
    x = ins[0]
    seq = x.axes if isinstance(x, _Stream) else x.shape if isinstance(x, _Fill) else None
    if seq is None:
        raise g.fail(f"Transpose of a {type(x).__name__}")
    perm = [int(p) for p in at.get("perm", range(len(seq) - 1, -1, -1))]
    if sorted(perm) != list(range(len(seq))):
        raise WeightsError(f"{g.where()}: perm {perm} is not a permutation of {len(seq)} axes")
    if isinstance(x, _Stream):
        return [dataclasses.replace(x, axes=tuple(x.axes[p] for p in perm))]
    return [_Fill(np.transpose(x.base, perm), tuple(x.shape[p] for p in perm), x.source)]


def _parse_size(d: Any) -> tuple[int, tuple] | None:
    """A dimension as (known product, sorted unknown symbols); None if unknowable."""
    if isinstance(d, (int, np.integer)):
        return int(d), ()
    if d == "?" or not isinstance(d, str):
        return None
    return 1, tuple(sorted(d.split("*")))


def _target_shape(g: _Graph, shape_v: Any, op: str) -> list:
    """The shape operand of Reshape/Expand as a list (known values or symbols)."""
    if isinstance(shape_v, _Const):
        return [int(v) for v in np.asarray(shape_v.value).reshape(-1)]
    if isinstance(shape_v, _Dims):
        return list(shape_v.values)
    raise g.fail(f"{op} to a shape that is not known")


def _h_reshape(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Reshape-14: 0 copies the input's dimension (unless allowzero), -1 is inferred
    x, target = ins[0], _target_shape(g, ins[1], "Reshape")
    if at.get("allowzero", 0) and 0 in target:
        raise g.fail("Reshape with allowzero to an empty shape")
    if isinstance(x, _Fill):
        if np.all(x.base == x.base.reshape(-1)[0]):
            dims = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
            dims = ["?" if d == -1 else d for d in dims]
            base = np.full((1,) * len(dims), x.base.reshape(-1)[0], x.base.dtype)
            return [_Fill(base, tuple(dims), x.source)]
        raise g.fail("Reshape of a partly known tensor")
    if isinstance(x, _Dims):
        if len(target) == 1 and target[0] in (-1, len(x.values)) and not x.scalar:
            return [x]
        if x.scalar and target in ([1], [-1]):
            return [_Dims(x.values)]
        raise g.fail("Reshape of a shape vector")
    if not isinstance(x, _Stream):
        raise g.fail(f"Reshape of a {type(x).__name__}")
    sizes = [g.axis_size(x, ax) for ax in x.axes]
    dims = [sizes[i] if d == 0 and i < len(sizes) else d for i, d in enumerate(target)]
    atoms = [a for ax in x.axes for a in g.core(ax)]

    def grab(dim: Any, pool: list, from_left: bool) -> tuple:
        """Take atoms from one end of ``pool`` until their sizes make ``dim``."""
        want = _parse_size(dim)
        if want is None:
            raise g.fail(f"Reshape to a dimension of unknown size {dim!r}")
        got, known, syms = [], 1, []
        while (known, tuple(sorted(syms))) != want:
            if not pool or known > want[0] or len(syms) > len(want[1]):
                raise g.fail(
                    f"Reshape {_describe_axes(x)} -> {target} splits or merges the stream's "
                    f"axes in a way that cannot be followed"
                )
            atom = pool.pop(0 if from_left else -1)
            v = g.atom_size(x, atom)
            if isinstance(v, str):
                syms.append(v)
            else:
                known *= v
            got.append(atom)
        return tuple(got if from_left else got[::-1])

    pool = list(atoms)
    if dims.count(-1) > 1:
        raise WeightsError(f"{g.where()}: Reshape with more than one -1")
    k = dims.index(-1) if -1 in dims else len(dims)
    left = [grab(d, pool, True) for d in dims[:k]]
    right = [grab(d, pool, False) for d in reversed(dims[k + 1 :])][::-1]
    middle = [tuple(pool)] if k < len(dims) else []
    if k == len(dims) and pool != [] and not (pool == ["F"] and x.features == 1):
        raise g.fail(f"Reshape {_describe_axes(x)} -> {target} drops part of the stream")
    axes = left + middle + right
    if x.features == 1:
        # a single feature may end up anywhere, or nowhere: it is not an axis of its own
        axes = [tuple(a for a in ax if a != "F") if len(ax) > 1 else ax for ax in axes]
    return [dataclasses.replace(x, axes=tuple(axes))]


def _h_flatten(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Flatten-13: 2-D (prod(shape[:axis]), prod(shape[axis:]))
    x = ins[0]
    if not isinstance(x, _Stream):
        raise g.fail(f"Flatten of a {type(x).__name__}")
    axis = at.get("axis", 1)
    axis = axis + len(x.axes) if axis < 0 else axis
    head = tuple(a for ax in x.axes[:axis] for a in ax)
    tail = tuple(a for ax in x.axes[axis:] for a in ax)
    out = dataclasses.replace(x, axes=(head, tail))
    if x.features > 1 or "F" in head:
        g.feature_axis(out)  # refuses F merged with time/batch
    return [out]


def _h_expand(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Expand-13: bidirectional broadcast of data to shape
    x, target = ins[0], _target_shape(g, ins[1], "Expand")
    if isinstance(x, (_Const, _Fill)):
        base = x.value if isinstance(x, _Const) else x.base
        xs = tuple(base.shape) if isinstance(x, _Const) else x.shape
        rank = max(len(xs), len(target))
        base = base.reshape((1,) * (rank - base.ndim) + base.shape)
        xs = (1,) * (rank - len(xs)) + tuple(xs)
        tg = [1] * (rank - len(target)) + target
        shape = tuple(a if b == 1 else b if a == 1 else a for a, b in zip(xs, tg))
        return [_Fill(base, shape, getattr(x, "source", None))]
    if isinstance(x, _Stream):
        sizes = [g.axis_size(x, ax) for ax in x.axes]
        if len(target) <= len(sizes) and all(
            t == 1 or t == s for t, s in zip(target[::-1], sizes[::-1])
        ):
            return [x]
        raise g.fail("Expand would repeat the stream")
    raise g.fail(f"Expand of a {type(x).__name__}")


def _h_tile(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Tile-13: output dim i = input dim i * repeats[i]; a known tensor tiled by
    # an unknown count (the batch) must have size 1 on that axis
    x, reps = ins[0], ins[1]
    if isinstance(reps, _Const):
        counts = [int(v) for v in np.asarray(reps.value).reshape(-1)]
    elif isinstance(reps, _Dims):
        counts = list(reps.values)
    else:
        raise g.fail("Tile by counts that are not known")
    if not isinstance(x, (_Const, _Fill)):
        raise g.fail(f"Tile of a {type(x).__name__} (it would repeat the stream)")
    base = x.value if isinstance(x, _Const) else x.base
    shape = tuple(base.shape) if isinstance(x, _Const) else x.shape
    if len(counts) != len(shape):
        raise WeightsError(f"{g.where()}: Tile repeats {counts} for rank {len(shape)}")
    out_shape = []
    for i, (d, k) in enumerate(zip(shape, counts)):
        if isinstance(k, int) and isinstance(d, int):
            out_shape.append(d * k)
            if base.shape[i] > 1:
                if base.size * k > _MAX_FOLD_ELEMENTS:
                    raise WeightsError(f"{g.where()}: Tile would build {base.size * k} elements; refused")
                base = np.tile(base, [k if j == i else 1 for j in range(base.ndim)])
        elif base.shape[i] == 1:
            out_shape.append(k if d == 1 else "?")
        else:
            raise g.fail("Tile of a varying tensor by an unknown count")
    return [_Fill(base, tuple(out_shape), getattr(x, "source", None))]


def _h_constant_of_shape(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # ConstantOfShape-9: a tensor of ``shape`` filled with ``value`` (default 0.0 float32)
    value = np.asarray(at.get("value", np.zeros(1, np.float32))).reshape(-1)[:1]
    shape_v = ins[0]
    if not isinstance(shape_v, _Dims):
        raise g.fail("ConstantOfShape of an unknown shape")
    return [_Fill(value.reshape((1,) * len(shape_v.values)), tuple(shape_v.values))]


_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}


def _h_binary(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Add/Sub/Mul/Div-14: element-wise with multidirectional broadcasting
    a, b = ins[0], ins[1]
    op = node.op_type
    if isinstance(a, _ErfOf) or isinstance(b, _ErfOf):
        return [_gelu_part(g, op, a, b)]
    if isinstance(a, _Stream) and isinstance(b, _Stream):
        raise g.fail(f"{op} of the stream with itself; a stream is one chain of layers")
    if isinstance(a, _Stream) or isinstance(b, _Stream):
        s, c, stream_first = (a, b, True) if isinstance(a, _Stream) else (b, a, False)
        arr = _materialize(g, c)
        if arr is None:
            raise g.fail(f"{op} of the stream with a tensor of unknown values")
        vec, axes = _feature_vector(g, s, arr)
        one, zero = np.ones_like(vec), np.zeros_like(vec)
        if op == "Add":
            out = _affine(s, one, vec)
        elif op == "Mul":
            out = _affine(s, vec, zero)
        elif op == "Sub":
            out = _affine(s, one, -vec) if stream_first else _affine(s, -one, vec)
        else:
            if not stream_first:
                raise g.fail("divides a constant by the stream (not an affine map)")
            if np.any(vec == 0):
                raise WeightsError(f"{g.where()}: divides the stream by zero")
            out = _affine(s, 1.0 / vec, zero)
        return [dataclasses.replace(out, axes=axes)]
    if isinstance(a, (_Dims, _Const)) and isinstance(b, (_Dims, _Const)):
        return [_dims_arith(g, op, a, b)]
    if isinstance(a, (_Fill, _Const)) and isinstance(b, (_Fill, _Const)):
        fa = a if isinstance(a, _Fill) else None
        fb = b if isinstance(b, _Fill) else None
        if (fa and fa.source) or (fb and fb.source):
            raise g.fail(f"{op} on a state fed from a graph input")
        ba = a.base if fa else a.value
        bb = b.base if fb else b.value
        sa = fa.shape if fa else tuple(ba.shape)
        sb = fb.shape if fb else tuple(bb.shape)
        rank = max(len(sa), len(sb))
        sa, sb = (1,) * (rank - len(sa)) + tuple(sa), (1,) * (rank - len(sb)) + tuple(sb)
        shape = tuple(x if y == 1 else y for x, y in zip(sa, sb))
        with np.errstate(all="ignore"):
            base = _BINARY[op](ba.reshape((1,) * (rank - ba.ndim) + ba.shape),
                               bb.reshape((1,) * (rank - bb.ndim) + bb.shape))
        return [_Fill(np.asarray(base), shape)]
    raise g.fail(f"{op} of a {type(a).__name__} and a {type(b).__name__}")


def _h_erf(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Erf-13: only inside GELU's erf form x * 0.5 * (1 + erf(x / sqrt(2)))
    s = ins[0]
    if not isinstance(s, _Stream):
        raise g.fail(f"Erf of a {type(s).__name__}")
    return [_ErfOf(s, 0.0, node.name)]


def _gelu_part(g: _Graph, op: str, a: Any, b: Any) -> Any:
    """One step of GELU's erf form: ``erf(e) + 1``, then ``m * (1 + erf(e))``
    with ``m`` proportional to ``x = sqrt(2) e``, which is ``2c * gelu(x)``."""
    erf, other = (a, b) if isinstance(a, _ErfOf) else (b, a)
    if op == "Add" and not isinstance(other, (_Stream, _ErfOf)):
        value = _materialize(g, other)
        if value is not None and value.size >= 1 and np.all(value == value.reshape(-1)[0]):
            return _ErfOf(erf.stream, erf.offset + float(value.reshape(-1)[0]), erf.node)
    if op == "Mul" and isinstance(other, _Stream) and erf.offset == 1.0:
        e, m = erf.stream, other
        base_e, ke, se = _root(e)
        base_m, km, sm = _root(m)
        if base_e is base_m and e.axes == m.axes and np.all(ke != 0):
            c = km / (math.sqrt(2.0) * ke)  # m = c * sqrt(2) * e = c * x
            if np.allclose(c, c[0], rtol=1e-6, atol=0) and np.allclose(
                    sm, c * math.sqrt(2.0) * se, rtol=1e-6, atol=1e-12):
                # the exporter's sqrt(2) is a float32 constant: c is exact to float32
                c0 = float(np.float32(c[0]))
                n = e.features
                x = m if c0 == 1.0 else _affine(m, np.full(n, 1.0 / c0), np.zeros(n))
                return _affine(_activate(x, "gelu"), np.full(n, 2.0 * c0), np.zeros(n))
    raise g.fail(
        f"Erf (node {erf.node!r}) is only supported in GELU's form x * 0.5 * (1 + erf(x / sqrt(2)))"
    )


def _dims_arith(g: _Graph, op: str, a: Any, b: Any) -> Any:
    """Arithmetic on shape vectors: known entries computed, unknown ones stay
    unknown (a product of two unknown sizes is kept as ``"N*T"``)."""
    def entries(v: Any) -> tuple[list, bool]:
        if isinstance(v, _Dims):
            return list(v.values), v.scalar
        arr = np.asarray(v.value)
        return [int(x) for x in arr.reshape(-1)], arr.ndim == 0
    va, sa = entries(a)
    vb, sb = entries(b)
    n = max(len(va), len(vb))
    if len(va) == 1:
        va = va * n
    if len(vb) == 1:
        vb = vb * n
    if len(va) != len(vb):
        raise WeightsError(f"{g.where()}: shapes {len(va)} and {len(vb)} do not broadcast")
    out = []
    for x, y in zip(va, vb):
        if isinstance(x, int) and isinstance(y, int):
            out.append(int(_BINARY[op](x, y)) if op != "Div" else (x // y if y else "?"))
        elif op == "Mul" and (x == 1 or y == 1):
            out.append(y if x == 1 else x)
        elif op == "Mul" and isinstance(x, str) and isinstance(y, str) and "?" not in (x, y):
            out.append("*".join(sorted(x.split("*") + y.split("*"))))
        elif op in ("Div",) and y == 1:
            out.append(x)
        elif op in ("Add", "Sub") and y == 0:
            out.append(x)
        else:
            out.append("?")
    return _dims(out, scalar=sa and sb)


def _h_neg(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Neg-13: y = -x
    s = ins[0]
    if not isinstance(s, _Stream):
        raise g.fail(f"Neg of a {type(s).__name__}")
    return [_affine(s, -np.ones(s.features), np.zeros(s.features))]


def _h_matmul(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # MatMul-13: numpy matmul; stream @ W with W (F, O) is Dense(W.T)
    a, b = ins[0], ins[1]
    if not isinstance(a, _Stream):
        raise g.fail("MatMul with the stream on the right (a constant times the stream)")
    w = _materialize(g, b)
    if w is None:
        raise g.fail("MatMul of the stream with a tensor of unknown values")
    w = np.asarray(w)
    while w.ndim > 2 and w.shape[0] == 1:
        w = w[0]
    if w.ndim != 2:
        raise g.fail(f"MatMul with a weight of shape {w.shape} (expected 2-D)")
    fi = g.feature_axis(a)
    if fi != len(a.axes) - 1:
        raise g.fail(f"MatMul over an axis that is not the features: stream axes {_describe_axes(a)}")
    if w.shape[0] != a.features:
        raise WeightsError(
            f"{g.where()}: tensor {node.input[1]!r}: shape {w.shape} does not take {a.features} features"
        )
    return [_append(a, Dense(w.T), features=int(w.shape[1]))]


def _h_gemm(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Gemm-13: Y = alpha * A' @ B' + beta * C, A' = A.T if transA, B' = B.T if transB
    a, b, c = ins[0], ins[1], _opt(ins, 2)
    if not isinstance(a, _Stream):
        raise g.fail("Gemm with the stream as B")
    if len(a.axes) != 2:
        raise g.fail(f"Gemm of a stream with axes {_describe_axes(a)} (expected 2-D)")
    axes = a.axes[::-1] if at.get("transA", 0) else a.axes
    s = dataclasses.replace(a, axes=axes)
    if g.feature_axis(s) != 1:
        raise g.fail(f"Gemm contracts an axis that is not the features: {_describe_axes(s)}")
    w = _materialize(g, b)
    if w is None or w.ndim != 2:
        raise g.fail("Gemm B must be a constant matrix")
    w = w.T if at.get("transB", 0) else w
    if w.shape[0] != s.features:
        raise WeightsError(
            f"{g.where()}: tensor {node.input[1]!r}: shape {w.shape} does not take "
            f"{s.features} features"
        )
    alpha, beta = float(at.get("alpha", 1.0)), float(at.get("beta", 1.0))
    out_size = int(w.shape[1])
    bias = None
    if c is not None:
        carr = _materialize(g, c)
        if carr is None:
            raise g.fail("Gemm C must be a constant")
        tmp = dataclasses.replace(s, features=out_size)
        bias, _ = _feature_vector(g, tmp, carr)
        bias = beta * bias
    dense = Dense(alpha * np.asarray(w, np.float64).T, bias)
    return [_append(s, dense, features=out_size)]


def _activation_of(g: _Graph, node: Any, at: dict) -> Any:
    op = node.op_type
    if op == "LeakyRelu":
        return ("leaky_relu", float(at.get("alpha", 0.01)))
    if op == "Elu":
        return ("elu", float(at.get("alpha", 1.0)))
    if op == "HardSigmoid":
        return ("hard_sigmoid", float(at.get("alpha", 0.2)), float(at.get("beta", 0.5)))
    if op == "Gelu":
        if at.get("approximate", "none") != "none":
            raise g.fail(f"Gelu approximate={at.get('approximate')!r} is not supported (only 'none')")
        return "gelu"
    return {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid",
            "Softmax": "softmax", "LogSoftmax": "log_softmax"}[op]


def _h_activation(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Relu/Tanh/Sigmoid-13, LeakyRelu-16, Elu-6, HardSigmoid-6, Gelu-20: element-wise;
    # Softmax/LogSoftmax-13: over ``axis`` (before 13: over the flattened axes from ``axis``)
    s = ins[0]
    if not isinstance(s, _Stream):
        raise g.fail(f"{node.op_type} of a {type(s).__name__}")
    act = _activation_of(g, node, at)
    if node.op_type in ("Softmax", "LogSoftmax"):
        rank = len(s.axes)
        fi = g.feature_axis(s)
        if g.opset >= 13:
            ok = _norm_axis(g, at.get("axis", -1), rank) == fi
        else:
            axis = _norm_axis(g, at.get("axis", 1), rank)
            ok = fi is not None and fi >= axis and all(
                not g.core(ax) for i, ax in enumerate(s.axes[axis:], axis) if i != fi)
        if not ok:
            raise g.fail(f"{node.op_type} over an axis other than the features {_describe_axes(s)}")
    return [_activate(s, act)]


# -- recurrent nodes


def _const_input(g: _Graph, v: Any, name: str) -> np.ndarray | None:
    if v is None:
        return None
    arr = _materialize(g, v)
    if arr is None:
        raise g.fail(f"input {name} must be a constant (an initializer), not computed from data")
    return arr


def _initial(g: _Graph, v: Any, H: int, layout: int, name: str) -> np.ndarray | None:
    """One stream's initial state from an ``initial_h`` / ``initial_c`` input
    (shape (1, batch, H), or (batch, 1, H) with layout 1)."""
    if v is None:
        return None
    if isinstance(v, _Stream):
        raise g.fail(f"{name} is computed from the input data; a stream starts from a fixed state")
    if isinstance(v, _Fill):
        base, shape = v.base, v.shape
        if v.source is not None:
            g.state_sources.add(v.source)
    elif isinstance(v, _Const):
        base = v.value
        shape = tuple(base.shape)
    else:
        raise g.fail(f"{name} is not a tensor of known values")
    if base.ndim != 3 or (isinstance(shape[-1], int) and shape[-1] != H):
        raise WeightsError(f"{g.where()}: tensor {name}: expected shape (1, batch, {H}), got {shape}")
    if not np.all(np.isfinite(base)):
        raise WeightsError(f"{g.where()}: tensor {name}: contains NaN or inf")
    rows = base[0] if layout == 0 else base[:, 0]  # (batch, H) or broadcastable
    if rows.shape[-1] not in (1, H):
        raise WeightsError(f"{g.where()}: tensor {name}: expected {H} values per row, got {rows.shape[-1]}")
    if not np.all(rows == rows[:1]):
        raise g.fail(
            f"{name} differs between batch entries; a stream has one initial state "
            f"(save the model with one batch entry)"
        )
    return np.broadcast_to(np.asarray(rows[0], np.float64), (H,)).copy()


def _h_recurrent(g: _Graph, node: Any, ins: list, at: dict) -> list:
    """GRU-22 / LSTM-22 / RNN-22. Inputs X, W, R, B, sequence_lens, initial_h
    (LSTM: initial_c, P); outputs Y, Y_h (LSTM: Y_c)."""
    op = node.op_type
    direction = at.get("direction", "forward")
    if direction != "forward":
        raise g.fail(
            f"direction={direction!r}: a {direction} {op} reads the sequence from its end, "
            f"so it needs the future and cannot stream; export a forward-only model"
        )
    x = ins[0]
    if not isinstance(x, _Stream):
        raise g.fail(f"input X is not the data stream (it is a {type(x).__name__})")
    if x.last:
        raise g.fail(
            "input X holds only the last time step of a previous layer; "
            "a recurrent layer needs every step"
        )
    layout = int(at.get("layout", 0))
    if layout not in (0, 1):
        raise WeightsError(f"{g.where()}: layout {layout} (expected 0 or 1)")
    W = _const_input(g, ins[1], "W")
    R = _const_input(g, ins[2], "R")
    B = _const_input(g, _opt(ins, 3), "B")
    # sequence_lens (input 4) is ignored: a stream has no sequence length
    acts = at.get("activations")
    alpha, beta = at.get("activation_alpha"), at.get("activation_beta")
    clip = at.get("clip")
    try:
        if op == "GRU":
            layer = GRU.from_onnx(W, R, B, int(at.get("linear_before_reset", 0)), clip,
                                  acts, alpha, beta)
        elif op == "LSTM":
            P = _const_input(g, _opt(ins, 7), "P")
            layer = LSTM.from_onnx(W, R, B, P, int(at.get("input_forget", 0)), clip,
                                   acts, alpha, beta)
        else:
            if acts and len(acts) != 1:
                raise WeightsError(f"RNN activations has {len(acts)} entries, expected 1")
            act = acts[0] if acts else "Tanh"
            layer = RNN.from_onnx(W, R, B, act, clip, alpha, beta)
    except _Unstreamable:
        raise
    except WeightsError as exc:
        raise WeightsError(f"{g.where()}: {exc}") from None
    H = layer.hidden_size
    if "hidden_size" in at and int(at["hidden_size"]) != H:
        raise WeightsError(f"{g.where()}: hidden_size={at['hidden_size']} but tensor R has {H} rows per gate")

    # X is (seq, batch, input) with layout 0, (batch, seq, input) with layout 1
    if len(x.axes) != 3:
        raise g.mismatch(f"input X has axes {_describe_axes(x)}; expected 3 (time, batch, features)")
    t_ax, b_ax = (0, 1) if layout == 0 else (1, 0)
    batch = x.axes[b_ax]
    if x.axes[t_ax] != ("T",) or g.core(x.axes[2]) != ("F",) or g.core(batch) not in ((), ("N",)):
        order = "(time, batch, features)" if layout == 0 else "(batch, time, features)"
        raise g.mismatch(f"input X has axes {_describe_axes(x)}; layout={layout} needs {order}")
    if x.features != layer.input_size:
        raise WeightsError(
            f"{g.where()}: tensor W takes {layer.input_size} inputs but X has {x.features} features"
        )

    h0 = _initial(g, _opt(ins, 5), H, layout, "initial_h")
    init = h0
    if op == "LSTM":
        c0 = _initial(g, _opt(ins, 6), H, layout, "initial_c")
        if h0 is not None or c0 is not None:
            init = np.concatenate([np.zeros(H) if h0 is None else h0, np.zeros(H) if c0 is None else c0])
    layers = x.layers + ((layer, init),)
    if layout == 0:
        y_axes, yh_axes = (("T",), (), batch, ("F",)), ((), batch, ("F",))
    else:
        y_axes, yh_axes = (batch, ("T",), (), ("F",)), (batch, (), ("F",))
    y = _Stream(y_axes, H, layers)
    y_h = _Stream(yh_axes, H, layers, last=True)
    outs: list = [y, y_h]
    if op == "LSTM":
        outs.append(_Poison(g.fail("Y_c (the cell state) is not an output a stream produces")))
    return outs


HANDLERS: dict[str, Handler] = {
    "Constant": _h_constant,
    "Identity": _h_identity,
    "Dropout": _h_identity,
    "Cast": _h_identity,
    "CastLike": _h_identity,
    "Shape": _h_shape,
    "Gather": _h_gather,
    "Unsqueeze": _h_unsqueeze,
    "Squeeze": _h_squeeze,
    "Concat": _h_concat,
    "Slice": _h_slice,
    "Transpose": _h_transpose,
    "Reshape": _h_reshape,
    "Flatten": _h_flatten,
    "Expand": _h_expand,
    "Tile": _h_tile,
    "ConstantOfShape": _h_constant_of_shape,
    "Add": _h_binary,
    "Sub": _h_binary,
    "Mul": _h_binary,
    "Div": _h_binary,
    "Neg": _h_neg,
    "MatMul": _h_matmul,
    "Gemm": _h_gemm,
    "Relu": _h_activation,
    "Tanh": _h_activation,
    "Sigmoid": _h_activation,
    "LeakyRelu": _h_activation,
    "Elu": _h_activation,
    "Gelu": _h_activation,
    "Erf": _h_erf,
    "HardSigmoid": _h_activation,
    "Softmax": _h_activation,
    "LogSoftmax": _h_activation,
    "GRU": _h_recurrent,
    "LSTM": _h_recurrent,
    "RNN": _h_recurrent,
}

_SUPPORTED = ", ".join(sorted(HANDLERS))
_RECURRENT = ("GRU", "LSTM", "RNN")


# ----------------------------------------------------------------------------
# reading the file safely


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise WeightsError(
            'reading .onnx files needs the onnx package: pip install "streamgru[onnx]"'
        ) from None
    return onnx


def _read(path: str) -> Any:
    onnx = _import_onnx()
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        model = onnx.load_model_from_string(raw)  # parses only; external data is read below
    except Exception as exc:
        raise WeightsError(f"{path}: not a valid ONNX file ({type(exc).__name__}: {exc})") from None
    if not model.HasField("graph") or not model.graph.output:
        raise WeightsError(f"{path}: not an ONNX model (no graph with outputs)")
    if model.functions:
        try:
            from onnx import inliner

            model = inliner.inline_local_functions(model)
        except Exception as exc:
            raise WeightsError(f"{path}: cannot inline the model's local functions ({exc})") from None
    return model


def _tensor(t: Any, path: str, where: str = "") -> np.ndarray:
    """A TensorProto as a numpy array, checking its size against its shape and
    reading external data only from inside the model's folder."""
    onnx = _import_onnx()
    from onnx import numpy_helper

    name = t.name or "(unnamed)"
    label = f"{path}: tensor {name!r}{where}"
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims):
        raise WeightsError(f"{label}: negative dimension in shape {dims}")
    if t.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        raise WeightsError(f"{label}: not a numeric tensor (data type {t.data_type})")
    try:
        np_dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type))
    except Exception:
        raise WeightsError(f"{label}: unsupported data type {t.data_type}") from None
    count = math.prod(dims)
    if t.data_location == onnx.TensorProto.EXTERNAL:
        t = _external(t, path, label, count * np_dtype.itemsize)
    if t.HasField("raw_data"):
        if len(t.raw_data) != count * np_dtype.itemsize:
            raise WeightsError(
                f"{label}: {len(t.raw_data)} bytes of data for shape {dims} of {np_dtype} "
                f"({count * np_dtype.itemsize} bytes expected)"
            )
    else:
        try:
            field = onnx.helper.tensor_dtype_to_field(t.data_type)
        except Exception:
            raise WeightsError(f"{label}: unsupported data type {t.data_type}") from None
        n = len(getattr(t, field))
        expected = count * (2 if np_dtype.kind == "c" else 1)
        if n != expected:
            raise WeightsError(f"{label}: {n} values for shape {dims} ({expected} expected)")
    try:
        arr = numpy_helper.to_array(t)
    except Exception as exc:
        raise WeightsError(f"{label}: cannot be read ({exc})") from None
    return np.array(arr)


def _external(t: Any, path: str, label: str, nbytes: int) -> Any:
    """A copy of ``t`` with its external data read into ``raw_data``."""
    info = {e.key: e.value for e in t.external_data}
    location = info.get("location", "")
    if not location:
        raise WeightsError(f"{label}: external data without a location")
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    try:
        target = os.path.realpath(os.path.join(folder, location))
        inside = not os.path.isabs(location) and os.path.commonpath([folder, target]) == folder
    except ValueError:  # a NUL byte, or another drive
        inside = False
    if not inside:
        raise WeightsError(
            f"{label}: external data {location!r} lies outside the model's folder {folder}; refused"
        )
    try:
        offset = int(info.get("offset", 0))
        length = int(info.get("length", nbytes))
    except ValueError:
        raise WeightsError(f"{label}: bad external data offset/length") from None
    if offset < 0 or length != nbytes:
        raise WeightsError(
            f"{label}: external data length {length} does not match its shape ({nbytes} bytes)"
        )
    try:
        with open(target, "rb") as f:
            f.seek(offset)
            data = f.read(length)
    except OSError as exc:
        raise WeightsError(
            f"{label}: cannot read external data {location!r} ({exc.strerror or exc})"
        ) from None
    if len(data) != length:
        raise WeightsError(
            f"{label}: external data {location!r} is truncated ({len(data)} of {length} bytes)"
        )
    out = type(t)()
    out.CopyFrom(t)
    del out.external_data[:]
    out.data_location = 0  # DEFAULT
    out.raw_data = data
    return out


def _attrs(node: Any, path: str) -> dict:
    onnx = _import_onnx()
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = _tensor(a.t, path, f" (attribute {a.name} of node {node.name!r})")
            continue
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS,
                      onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.TENSORS):
            out[a.name] = None  # subgraphs: the op is refused as unsupported
            continue
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list):
            v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


def _fold(g: _Graph, node: Any, ins: list, at: dict) -> list:
    """Evaluate a node whose inputs are all constants with onnx's reference
    implementation of the op."""
    op = node.op_type
    if op in ("ConstantOfShape", "Expand", "Tile", "Range"):
        _check_fold_size(g, node, ins)
    try:
        from onnx.reference import ReferenceEvaluator

        feeds = {name: v.value for name, v in zip(node.input, ins) if v is not None and name}
        result = ReferenceEvaluator(node, opsets={"": g.opset}).run(None, feeds)
    except Exception as exc:
        raise g.fail(
            f"cannot fold this op on constants ({type(exc).__name__}: {exc}); "
            f"ops that touch the stream: {_SUPPORTED}"
        ) from None
    return [_Const(np.asarray(r)) for r in result]


def _check_fold_size(g: _Graph, node: Any, ins: list) -> None:
    op = node.op_type
    if op in ("ConstantOfShape", "Expand"):
        shape = np.asarray(ins[0 if op == "ConstantOfShape" else 1].value).reshape(-1)
        n = int(np.prod(np.maximum(shape, 1), dtype=np.float64))
    elif op == "Tile":
        n = ins[0].value.size * int(np.prod(np.maximum(np.asarray(ins[1].value), 1), dtype=np.float64))
    else:
        start, limit, delta = (float(np.asarray(v.value)) for v in ins[:3])
        n = int(abs((limit - start) / delta)) if delta else 0
    if n > _MAX_FOLD_ELEMENTS:
        raise WeightsError(f"{g.where()}: would build a constant of {n} elements; refused")


# ----------------------------------------------------------------------------
# walking the graph


def _shape_of_input(vi: Any) -> list | None:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]


def _guesses(rank: int) -> list[tuple[str, ...]]:
    """Roles of the data input's axes to try, most common first."""
    if rank == 3:
        return [("T", "N", "F"), ("N", "T", "F")]
    if rank == 2:
        return [("T", "F")]
    if rank == 1:
        return [("F",)]
    return [("T", "N", "F")[: rank - 1] + ("F",)] if rank > 0 else []


def _walk(model: Any, path: str, tensors: dict, data_input: Any, others: list,
          roles: tuple, opset: int) -> tuple[dict, _Graph]:
    shape = _shape_of_input(data_input)
    sizes: dict[str, Any] = {"T": "T", "N": "N"}
    features = None
    for role, dim in zip(roles, shape):
        if role == "F":
            features = dim
        else:
            sizes[role] = dim if dim is not None else role
    if not features:
        raise WeightsError(
            f"{path}: graph input {data_input.name!r} has no fixed feature size (last axis)"
        )
    g = _Graph(path, opset, sizes)
    env: dict[str, Any] = dict((k, _Const(v)) for k, v in tensors.items())
    env[data_input.name] = _Stream(tuple((r,) for r in roles), int(features))
    for vi in others:
        dims = _shape_of_input(vi) or []
        env[vi.name] = _Fill(np.zeros((1,) * len(dims), np.float32),
                             tuple(d if d is not None else "?" for d in dims), source=vi.name)
    for k, node in enumerate(model.graph.node):
        g.node, g.index = node, k
        ins = []
        for name in node.input:
            if not name:
                ins.append(None)  # an empty name is an absent optional input
            elif name in env:
                ins.append(env[name])
            else:
                raise WeightsError(
                    f"{g.where()}: input tensor {name!r} is not defined (missing initializer, "
                    f"or not produced by an earlier node)"
                )
        at = _attrs(node, path)
        # sequence_lens (input 4 of GRU/LSTM/RNN) is ignored, whatever it is computed from
        used = [v for k, v in enumerate(ins) if not (k == 4 and node.op_type in _RECURRENT)]
        poison = next((v for v in used if isinstance(v, _Poison)), None)
        try:
            if poison is not None:
                outs = [poison] * len(node.output)
            elif node.domain not in ("", "ai.onnx"):
                raise g.fail(f"op from domain {node.domain!r} is not supported; supported: {_SUPPORTED}")
            elif node.op_type != "Constant" and all(v is None or isinstance(v, _Const) for v in ins) \
                    and node.op_type not in _RECURRENT:
                outs = _fold(g, node, ins, at)
            elif node.op_type in HANDLERS:
                outs = HANDLERS[node.op_type](g, node, ins, at)
            else:
                raise g.fail(f"op {node.op_type!r} cannot be streamed; supported: {_SUPPORTED}")
        except _Unstreamable as exc:
            outs = [_Poison(exc)] * len(node.output)
        except WeightsError:
            raise
        except (IndexError, KeyError, TypeError, ValueError, AttributeError) as exc:
            # a node with too few inputs, wrong attribute types and the like
            raise WeightsError(
                f"{g.where()}: malformed node ({type(exc).__name__}: {exc})"
            ) from None
        for name, v in zip(node.output, list(outs) + [None] * len(node.output)):
            if name:
                env[name] = v if v is not None else _Poison(g.fail(f"output {name!r} is not produced"))
    g.node = None
    return env, g


OPTIONS = ("dtype", "output", "input")


def sniff(head: bytes) -> bool:
    """A ModelProto starts with field 1 (ir_version, varint: tag 0x08) and
    usually names its producer (field 2) early."""
    return head[:1] == b"\x08" and (b"pytorch" in head or b"onnx" in head or b"\x12" in head[:16])


def load(path: str, dtype: Any = np.float32, output: str | None = None,
         input: str | None = None, *, budget: Any = None) -> Model:
    """Load an ONNX model as a streaming ``Model``.

    Parameters
    ----------
    path : str
        The ``.onnx`` file. External-data tensors are read from its folder.
    dtype : float32 (default, also for None) or float64
        The float type the model computes in.
    output : str, optional
        Name of the graph output to stream (default: the first output).
    input : str, optional
        Name of the graph input carrying the data (default: the first input
        that is not an initializer); other inputs (e.g. a state ``h0``) start
        at zeros.

    Returns
    -------
    Model
        ``metadata`` holds ``format="onnx"``, ``source``, ``input``,
        ``output``, ``opset``, ``producer``, ``many_to_one`` and
        ``state_inputs`` (graph inputs replaced by the stream's own state).

    Raises
    ------
    WeightsError
        Malformed file, unsafe external data, missing or mis-sized tensors,
        an op or pattern that cannot be streamed (naming op type, node and the
        supported ops), or a reverse / bidirectional recurrent node.

    Notes
    -----
    ``sequence_lens`` inputs are ignored: a stream has no sequence length.
    """
    path = os.fspath(path)
    model = _read(path)
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise WeightsError(f"{path}: no default-domain opset import")
    if graph.sparse_initializer:
        raise WeightsError(f"{path}: sparse initializers are not supported")
    tensors: dict[str, np.ndarray] = {}
    for t in graph.initializer:
        tensors[t.name] = _tensor(t, path)
    real_inputs = [vi for vi in graph.input if vi.name not in tensors]
    if input is not None:
        chosen = [vi for vi in real_inputs if vi.name == input]
        if not chosen:
            names = [v.name for v in real_inputs]
            raise WeightsError(f"{path}: no graph input named {input!r}; inputs: {names}")
        data_input = chosen[0]
    elif real_inputs:
        data_input = real_inputs[0]
    else:
        raise WeightsError(f"{path}: the graph has no input")
    shape = _shape_of_input(data_input)
    if shape is None:
        raise WeightsError(f"{path}: graph input {data_input.name!r} has no shape")
    others = [vi for vi in real_inputs if vi is not data_input]
    out_names = [o.name for o in graph.output]
    out_name = out_names[0] if output is None else output
    if out_name not in out_names:
        raise WeightsError(f"{path}: no graph output named {out_name!r}; outputs: {out_names}")

    errors: list[_Mismatch] = []
    for roles in _guesses(len(shape)):
        env, g = _walk(model, path, tensors, data_input, others, roles, opset)
        v = env.get(out_name)
        if isinstance(v, _Poison):
            if isinstance(v.error, _Mismatch):
                errors.append(v.error)
                continue
            raise WeightsError(str(v.error))
        if isinstance(v, _ErfOf):
            raise WeightsError(
                f"{path}: output {out_name!r} comes from Erf node {v.node!r}; Erf is only "
                f"supported in GELU's form x * 0.5 * (1 + erf(x / sqrt(2)))"
            )
        if not isinstance(v, _Stream):
            raise WeightsError(
                f"{path}: output {out_name!r} does not depend on input {data_input.name!r}"
            )
        g.feature_axis(v)
        if not v.layers:
            raise WeightsError(f"{path}: output {out_name!r} is the input itself; no layers to run")
        return _build(path, model, v, g, data_input.name, out_name, opset, dtype)
    if errors:
        raise WeightsError(str(errors[0]))
    raise WeightsError(f"{path}: input {data_input.name!r} of rank {len(shape)} cannot be streamed")


def _is_identity(layer: Layer) -> bool:
    """A Dense that changes nothing (left behind when folded constants cancel)."""
    return (
        isinstance(layer, Dense)
        and layer.activation.name == "identity"
        and layer.input_size == layer.output_size
        and np.array_equal(layer.weight, np.eye(layer.input_size))
        and not np.any(layer.bias)
    )


def _build(path: str, model: Any, v: _Stream, g: _Graph, in_name: str, out_name: str,
           opset: int, dtype: Any) -> Model:
    chain = [(layer, init) for layer, init in v.layers if not _is_identity(layer)] or list(v.layers[:1])
    layers = [layer for layer, _ in chain]
    parts, has_init = [], False
    for layer, init in chain:
        if layer.state_size:
            has_init |= init is not None
            parts.append(np.zeros(layer.state_size) if init is None else init)
    initial = np.concatenate(parts) if has_init else None
    meta = {
        "format": "onnx",
        "source": path,
        "input": in_name,
        "output": out_name,
        "opset": opset,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "many_to_one": bool(v.last),
        "state_inputs": sorted(g.state_sources),
    }
    try:
        return Model(layers, dtype=np.float32 if dtype is None else dtype,
                     initial_state=initial, metadata=meta)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
