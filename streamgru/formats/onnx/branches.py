"""Streams that branch and join again: residual sums, skip sums, gates.

A stream's ``layers`` is the chain from the graph input to it; two streams
from the same input share the entries of their common part (the same
objects). ``join`` records the element-wise sum or product of two streams
as a ``_Join`` entry holding the other stream's chain, and ``to_graph``
turns a chain holding joins into graph nodes (streamgru.graph), each
common part built once: a layer entry reached through the same node is the
same node.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...errors import WeightsError
from ...graph import Input, Node
from ...layers import ELEMENTWISE_ACTIVATIONS, Dense
from ...layers.elementwise import Elementwise
from ...layers.quant import QuantizedWeight
from .chain import _affine, _select
from .values import (
    _describe_axes,
    _Graph,
    _int_list,
    _Join,
    _norm_axis,
    _opt,
    _Stack,
    _Stream,
)

__all__ = ["h_reduce", "h_split", "has_joins", "join", "to_graph"]


def join(g: _Graph, op: str, a: _Stream, b: _Stream) -> _Stream:
    """``a op b`` of two streams (ONNX ``Add``, ``Sub``, ``Mul``; ``Concat``
    over the features)."""
    if op == "Div":
        raise g.fail("divides the stream by the stream; a stream divides by constants only")
    # the same axes, up to batch axes of static size 1 (named or not)
    cores = {tuple(g.core(ax) for ax in s.axes) for s in (a, b)}
    wide = op == "Concat"
    if (len(cores) > 1 or (a.features != b.features and not wide) or a.last != b.last
            or a.steps != b.steps):
        raise g.fail(
            f"{op} of two streams of different shapes ({_describe_axes(a)}, {a.features} "
            f"features{', last step' if a.last else ''} and {_describe_axes(b)}, {b.features} "
            f"features{', last step' if b.last else ''}); branches join element-wise only")
    if op == "Sub":
        one = np.ones(b.features)
        b = _affine(g, b, -one, 0 * one)
    kind = {"Mul": "mul", "Concat": "concat"}.get(op, "add")
    return dataclasses.replace(a, layers=a.layers + ((_Join(kind, b.layers), None),), origin=None,
                               features=a.features + b.features if wide else a.features)


def has_joins(layers: tuple) -> bool:
    return any(isinstance(layer, _Join) for layer, _ in layers)


def to_graph(layers: tuple, size: int, skip: Any, budget: Any) -> tuple[Any, dict]:
    """The graph node computing ``layers`` from an input of ``size``, and
    {id(layer): initial state} of its layers; entries for which ``skip``
    is true (identity Dense) pass their input through."""
    x = Input(size)
    made: dict = {}  # (id of the node an entry reads, id of the entry) -> its node
    inits: dict = {}
    # (entries, position, node so far, the join waiting for this chain's node)
    work = [(layers, 0, x, None)]
    done: dict = {}  # id of a chain -> its node
    while work:
        entries, i, node, waiting = work.pop()
        while i < len(entries):
            budget.count(1, "the branches of the graph")
            layer, init = entries[i]
            key = (id(node), id(layer))
            if key in made:
                node = made[key]
            elif isinstance(layer, _Join):
                other = done.get(id(layer.other))
                if other is None:  # build the other chain first, then come back here
                    work.append((entries, i, node, waiting))
                    work.append((layer.other, 0, x, layer))
                    break
                size = node.size + other.size if layer.op == "concat" else node.size
                node = made[key] = _gate(layer, node, other) or Node(
                    Elementwise(layer.op, node.size, size, activation=layer.activation),
                    (node, other), size)
            elif skip(layer):
                pass
            else:
                node = made[key] = (_as_slice(layer) or layer)(node)
                inits[id(layer)] = init
            i += 1
        else:
            if waiting is not None:
                done[id(waiting.other)] = node
            else:
                return node, inits
    raise WeightsError("the graph's branches do not end")  # the outer chain always finishes


def _gate(join: _Join, a: Any, b: Any) -> Any:
    """``f(z[:C]) * g(z[C:])`` (the two halves of one node, each a slice with
    its activation, as a Split then Tanh and Sigmoid export) as the graph's
    one gate node ``z.gate(f, g)``; None for any other product."""
    if join.op != "mul" or join.activation is not None:
        return None
    for p, q in ((a, b), (b, a)):
        lp, lq = p.layer, q.layer
        if not (isinstance(lp, Elementwise) and isinstance(lq, Elementwise)
                and lp.op == lq.op == "slice" and lp.scale == lq.scale == 1.0):
            continue
        z = p.inputs[0]
        C = lp.output_size
        if (q.inputs[0] is z and z.size == 2 * C and lq.output_size == C
                and lp.offset == 0 and lq.offset == C):
            gate = Elementwise("gate", z.size, activation=lp.activation, secondary=lq.activation)
            return Node(gate, (z,), C)
    return None


def _as_slice(layer: Any) -> Elementwise | None:
    """A Dense that only picks a run of its inputs (``_select``: a Split or a
    Slice of the features), with an element-wise activation, as the graph's
    own slice: a copy instead of a product."""
    if not isinstance(layer, Dense) or isinstance(layer.weight, QuantizedWeight) or np.any(layer.bias):
        return None
    if layer.activation.name not in ELEMENTWISE_ACTIVATIONS:
        return None
    w = np.asarray(layer.weight)
    hits = np.flatnonzero(w[0] == 1)
    if hits.size != 1:
        return None
    start, n = int(hits[0]), layer.output_size
    want = np.zeros_like(w)
    if start + n > w.shape[1]:
        return None
    want[np.arange(n), start + np.arange(n)] = 1
    if not np.array_equal(w, want):
        return None
    return Elementwise("slice", layer.input_size, n, offset=start, activation=layer.activation)


def h_reduce(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # ReduceSum-13 / ReduceMean-18 (axes an input; an attribute before): only
    # over the axis along which streams were stacked (``torch.stack(branches).sum(0)``)
    from .axes import _axes_arg

    st = ins[0]
    axes = _axes_arg(g, node, ins, at, 1)
    if not isinstance(st, _Stack):
        raise g.fail(f"{node.op_type} of the stream; a reduction over time or features does not "
                     f"stream (only a sum or mean of stacked branches, torch.stack(...).sum(0))")
    rank = len(st.parts[0].axes)
    if axes is None or [_norm_axis(g, a, rank) for a in axes] != [st.axis]:
        raise g.fail(f"{node.op_type} over axes {axes} of streams stacked on axis {st.axis}; "
                     f"only the stacked axis sums branches")
    total = st.parts[0]
    for part in st.parts[1:]:
        total = join(g, "Add", total, part)
    if node.op_type == "ReduceMean":
        n = np.full(total.features, 1.0 / len(st.parts))
        total = _affine(g, total, n, 0 * n)
    if not at.get("keepdims", 1):
        total = dataclasses.replace(total, axes=total.axes[: st.axis] + total.axes[st.axis + 1:])
    return [total]


def h_split(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Split-18 (sizes an input since 13, an attribute before; or num_outputs):
    # over the features, each part a selection of the stream's features
    s = ins[0]
    if not isinstance(s, _Stream):
        raise g.fail(f"Split of a {type(s).__name__}")
    axis = _norm_axis(g, at.get("axis", 0), len(s.axes))
    if g.feature_axis(s) != axis:
        raise g.fail(f"Split over axis {axis} of {_describe_axes(s)}; only the features split")
    n = len(node.output)
    sizes = at.get("split")
    if sizes is None and _opt(ins, 1) is not None:
        sizes = _int_list(g, ins[1], "Split sizes")
    if sizes is None:  # equal parts, the last one smaller (Split-18 num_outputs)
        each = -(-s.features // n)
        sizes = [min(each, s.features - k * each) for k in range(n)]
    sizes = [int(k) for k in sizes]
    if len(sizes) != n or sum(sizes) != s.features or min(sizes) < 1:
        raise WeightsError(f"{g.where()}: Split sizes {sizes} for {n} outputs of "
                           f"{s.features} features")
    starts = np.cumsum([0] + sizes)
    return [_select(g, s, np.arange(starts[k], starts[k + 1]), keep_axis=True) for k in range(n)]
