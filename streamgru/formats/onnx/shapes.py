"""Handlers of the ops that build or reshape tensors (Reshape, Expand, Tile,
ConstantOfShape, Concat), mostly the shape arithmetic and all-zero initial
states exporters write.

Handlers: f(g, node, inputs, attrs) -> list of output values."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...errors import WeightsError
from .branches import join
from .values import (_Const, _Dims, _Fill, _Graph, _Stack, _Stream,
                     _describe_axes, _dims, _int_values, _norm_axis)


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
            if all(g.feature_axis(v) == axis for v in present):  # branches' channels
                out = present[0]
                for v in present[1:]:
                    out = join(g, "Concat", out, v)
                return [out]
        raise g.fail("concatenates the stream with other tensors, or over an axis other than "
                     "the features; streamgru joins branches by Add, Sub, Mul and Concat over "
                     "the features (and sums stacked ones)")
    if all(isinstance(v, (_Dims, _Const)) for v in present):
        vals: list = []
        for v in present:
            if isinstance(v, _Dims):
                vals.extend(v.values)
            else:
                vals.extend(_int_values(g, v.value, "Concat of a shape"))
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
        return _int_values(g, shape_v.value, f"{op} shape")
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
        counts = _int_values(g, reps.value, "Tile repeats")
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
                g.budget.take(base.nbytes * k, f"{g.label()}: Tile "
                                               f"of {base.size * k:,} elements")
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
