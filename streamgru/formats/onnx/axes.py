"""Handlers of the ops that move, select or drop axes (Shape, Gather,
Squeeze/Unsqueeze, Slice, Transpose, Flatten): on the stream they only
change which axis is time, batch or features (or pick features).

Handlers: f(g, node, inputs, attrs) -> list of output values."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...errors import WeightsError
from .chain import _select
from .values import (_INT_MAX, _Const, _Dims, _Fill, _Graph, _Stack, _Stream, _describe_axes, _dims,
                     _int_list, _int_values, _norm_axis, _opt)


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
    idx = np.asarray(_int_values(g, idx.value, "Gather indices"), np.int64).reshape(np.shape(idx.value))
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
