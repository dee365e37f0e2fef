"""The stream's chain of layers: appending a layer, folding affine maps and
activations into the preceding Dense, selecting features."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...layers import ELEMENTWISE_ACTIVATIONS, Conv1d, Dense, Layer, make_activation
from ...layers.quant import QuantizedWeight
from .values import _Graph, _Join, _Stream, _describe_axes


def _append(s: _Stream, layer: Layer, init: np.ndarray | None = None, **changes: Any) -> _Stream:
    return dataclasses.replace(s, layers=s.layers + ((layer, init),), origin=None, **changes)


def _last_dense(s: _Stream) -> Dense | Conv1d | None:
    """The last layer if it is a Dense or Conv1d without activation (something
    to fold a per-feature affine map or an activation into)."""
    if s.layers and isinstance(s.layers[-1][0], (Dense, Conv1d)):
        d = s.layers[-1][0]
        if d.activation.name == "identity":
            return d
    return None


def _conv_like(conv: Conv1d, weight: Any, bias: Any, act: Any = None) -> Conv1d:
    return Conv1d(weight, bias, dilation=conv.dilation, groups=conv.groups, activation=act,
                  padding=conv.padding, stride=conv.stride)


def _square(g: _Graph, s: _Stream, what: str) -> None:
    """Charge an (F, F) Dense weight (float64, then the model's copy) to the
    budget before it is built: an activation on a 20,000-wide input would
    otherwise be a 3.2 GB identity matrix from a file of a few bytes."""
    g.budget.take(12 * s.features * s.features,
                  f"{g.label()}: {what} as a "
                  f"{s.features}x{s.features} Dense (no Dense before it to fold into)")


def _affine(g: _Graph, s: _Stream, scale: np.ndarray, shift: np.ndarray) -> _Stream:
    """y = x * scale + shift, per feature: folded into the preceding Dense
    (W' = diag(scale) W, b' = scale * b + shift), else a diagonal Dense."""
    d = _last_dense(s)
    if d is not None:
        w = d.weight
        if isinstance(w, QuantizedWeight) and not np.all(scale == 1):
            w = w.dequantize()  # a scaled quantized weight: its exact float values
        with np.errstate(all="ignore"):  # a non-finite result is refused by Dense / Conv1d
            if not isinstance(w, QuantizedWeight):  # (a bias alone keeps the stored weight)
                w = np.asarray(w, np.float64)
                w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
            b = np.asarray(d.bias, np.float64) * scale + shift
        layer = Dense(w, b) if isinstance(d, Dense) else _conv_like(d, w, b)
        out = dataclasses.replace(s, layers=s.layers[:-1] + ((layer, None),))
    else:
        _square(g, s, "a per-feature scale and shift")
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


def _activate(g: _Graph, s: _Stream, act: Any) -> _Stream:
    """Attach an activation to the preceding Dense, Conv1d or join of two
    branches (``relu(out + res)``), or add an identity Dense."""
    if s.layers and isinstance(s.layers[-1][0], _Join):
        j = s.layers[-1][0]
        if j.activation is None and make_activation(act).name in ELEMENTWISE_ACTIVATIONS:
            again = _Join(j.op, j.other, act)
            return dataclasses.replace(s, layers=s.layers[:-1] + ((again, None),), origin=None)
    d = _last_dense(s)
    if isinstance(d, Conv1d) and make_activation(act).name in ELEMENTWISE_ACTIVATIONS:
        return dataclasses.replace(
            s, layers=s.layers[:-1] + ((_conv_like(d, d.weight, d.bias, act), None),), origin=None
        )
    if isinstance(d, Dense):
        return dataclasses.replace(
            s, layers=s.layers[:-1] + ((Dense(d.weight, d.bias, act), None),), origin=None
        )
    _square(g, s, f"activation {make_activation(act).name}")
    return _append(s, Dense(np.eye(s.features), None, act))


def _select(g: _Graph, s: _Stream, rows: np.ndarray, keep_axis: bool) -> _Stream:
    """Pick features ``rows`` (a Gather/Slice on the feature axis) with a 0/1 Dense."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if rows.size == 0:
        raise g.fail("selects no features")
    if keep_axis and np.array_equal(rows, np.arange(s.features)):
        return s
    g.budget.take(12 * rows.size * s.features,
                  f"{g.label()}: selecting {rows.size} of "
                  f"{s.features} features as a Dense")
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

