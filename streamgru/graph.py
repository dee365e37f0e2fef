"""Graph models: layers called on nodes, like the model they describe.

A graph starts from ``sg.Input(size)``; calling a layer on a node gives the
node of its output, and nodes combine with ``+`` and ``*`` (element-wise,
same size), ``node * 0.5`` (scale), ``node[i:j]`` (a channel slice),
``node.act("tanh")``, ``node.gate()`` (WaveNet's ``tanh(a) * sigmoid(b)``
over the two halves of the channels), ``node.blend()`` and ``a.concat(b)``
(the channels of both). ``sg.Model(y)``
is the model computing ``y``: every node ``y`` depends on, each layer call
with its own state (a layer object called twice shares its weights, not
its state).

    >>> import numpy as np, streamgru as sg
    >>> rng = np.random.default_rng(0)
    >>> x = sg.Input(1)
    >>> h = sg.Conv1d(rng.normal(size=(4, 1, 1)))(x)            # 1 -> 4 channels
    >>> z = sg.Conv1d(rng.normal(size=(8, 4, 3)), dilation=2)(h).gate()
    >>> y = sg.Dense(rng.normal(size=(1, 4)))(h + z)              # residual, then a head
    >>> m = sg.Model(y)
    >>> m.stream().process(np.zeros((3, 1))).shape
    (3, 1)
"""

from __future__ import annotations

import itertools
from typing import Any

from .errors import WeightsError
from .layers.base import Layer
from .layers.elementwise import Elementwise

__all__ = ["Input", "Node"]

_ids = itertools.count()


class Node:
    """A value in a graph: the model input, or the output of a layer or an
    element-wise op applied to earlier nodes. ``size`` is its channel count."""

    __slots__ = ("layer", "inputs", "size", "_id")

    def __init__(self, layer: Layer | None, inputs: tuple["Node", ...], size: int) -> None:
        self.layer = layer
        self.inputs = inputs
        self.size = int(size)
        self._id = next(_ids)  # creation order: a node comes after its inputs

    def __repr__(self) -> str:
        what = "Input" if self.layer is None else type(self.layer).__name__
        return f"<Node {what}, {self.size} channels>"

    def _binary(self, op: str, other: Any) -> "Node":
        if not isinstance(other, Node):
            return NotImplemented
        if other.size != self.size:
            raise WeightsError(f"{op}: the two branches have {self.size} and {other.size} "
                               f"channels; element-wise ops need the same number")
        return Node(Elementwise(op, self.size), (self, other), self.size)

    def __add__(self, other: Any) -> "Node":
        return self._binary("add", other)

    def __radd__(self, other: Any) -> "Node":
        # sum(nodes) starts from 0
        if isinstance(other, int) and other == 0:
            return self
        return self._binary("add", other)

    def __mul__(self, other: Any) -> "Node":
        if isinstance(other, (int, float)) and not isinstance(other, bool):
            return self._unary(Elementwise("slice", self.size, scale=float(other)))
        return self._binary("mul", other)

    __rmul__ = __mul__

    def __getitem__(self, index: Any) -> "Node":
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise WeightsError(f"a node is sliced over its channels with [start:stop], got {index!r}")
        start, stop, _ = index.indices(self.size)
        return self._unary(Elementwise("slice", self.size, stop - start, offset=start))

    def act(self, activation: Any) -> "Node":
        """``activation(node)`` element-wise (any activation ``sg.Dense`` takes
        except softmax)."""
        return self._unary(Elementwise("slice", self.size, activation=activation))

    def gate(self, primary: Any = "tanh", secondary: Any = "sigmoid") -> "Node":
        """``primary(a) * secondary(b)`` with ``a, b`` the first and second
        half of the channels (WaveNet's gated activation)."""
        return self._unary(Elementwise("gate", self.size, activation=primary, secondary=secondary))

    def blend(self, primary: Any = "tanh", secondary: Any = "sigmoid") -> "Node":
        """``s * primary(a) + (1 - s) * a`` with ``s = secondary(b)`` over the
        two halves ``a, b`` of the channels (NAM's "blended" gating)."""
        return self._unary(Elementwise("blend", self.size, activation=primary, secondary=secondary))

    def concat(self, *others: "Node") -> "Node":
        """This node's channels followed by each of ``others``' (as
        ``np.concatenate`` over the channels).

        >>> import streamgru as sg
        >>> x = sg.Input(3)
        >>> x.concat(x[:1], x.act("tanh")).size
        7
        """
        out = self
        for other in others:
            if not isinstance(other, Node):
                raise TypeError(f"concat takes graph nodes, got {type(other).__name__}")
            out = apply(Elementwise("concat", out.size, out.size + other.size), (out, other))
        return out

    def _unary(self, op: Elementwise) -> "Node":
        return Node(op, (self,), op.output_size)


def Input(size: int) -> Node:
    """The input of a graph model: ``size`` channels per sample."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise WeightsError(f"Input: size must be a positive integer, got {size!r}")
    return Node(None, (), size)


def call(layer: Layer, node: Any) -> Node:
    """``layer(node)``: the node of ``layer``'s output on ``node``."""
    if not isinstance(node, Node):
        raise TypeError(f"{type(layer).__name__} is called on a graph node (sg.Input(...) or "
                        f"another layer's output), got {type(node).__name__}")
    return apply(layer, (node,))


def apply(layer: Layer, inputs: tuple[Node, ...]) -> Node:
    """The node of ``layer`` (a layer, or an ``Elementwise`` op of one or two
    operands) applied to ``inputs``, their number and sizes checked."""
    name = type(layer).__name__ if not isinstance(layer, Elementwise) else f"element-wise {layer.op}"
    want = getattr(layer, "operands", 1)
    if len(inputs) != want:
        raise WeightsError(f"{name} reads {want} node(s), not {len(inputs)}")
    for node, size in zip(inputs, getattr(layer, "operand_sizes", (layer.input_size,))):
        if size != node.size:
            raise WeightsError(f"{name} takes {size} channels but is called on a node of "
                               f"{node.size}")
    if getattr(layer, "latency", 0) or getattr(layer, "stride", 1) != 1:
        raise WeightsError(f"{name} has a latency of {getattr(layer, 'latency', 0)} samples "
                           f"and a stride of {getattr(layer, 'stride', 1)}; a graph's branches "
                           f"must all be causal and keep the sample rate")
    return Node(layer, tuple(inputs), layer.output_size)


def _nodes(output: Node) -> list[Node]:
    """Every node ``output`` depends on (itself included), in creation order."""
    seen: dict[int, Node] = {}
    todo = [output]
    while todo:
        n = todo.pop()
        if n._id not in seen:
            seen[n._id] = n
            todo.extend(n.inputs)
    return sorted(seen.values(), key=lambda n: n._id)


def map_layers(output: Node, fn: Any) -> Node:
    """The graph computing ``output`` with every layer ``l`` replaced by
    ``fn(l)``: called once per layer object, so a layer called twice is
    still one (shared) layer in the new graph."""
    new: dict[int, Node] = {}
    done: dict[int, Layer] = {}
    for n in _nodes(output):
        if n.layer is None:
            new[n._id] = Node(None, (), n.size)
            continue
        if id(n.layer) not in done:
            done[id(n.layer)] = fn(n.layer)
        new[n._id] = apply(done[id(n.layer)], tuple(new[i._id] for i in n.inputs))
    return new[output._id]


def flatten(output: Node) -> tuple[int, list[Layer], list[tuple[int, ...]]]:
    """The graph computing ``output`` as (input size, layers in execution
    order, and for each layer the numbers of the nodes it reads: 0 is the
    input, ``j + 1`` the output of layer j). The last layer is the output."""
    nodes = _nodes(output)
    inputs = [n for n in nodes if n.layer is None]
    if len(inputs) != 1 or nodes[0] is not inputs[0]:
        raise WeightsError(f"a graph model has exactly one sg.Input; this one reaches "
                           f"{len(inputs)}")
    if output.layer is None:
        raise WeightsError("a model needs at least one layer (the graph's output is its input)")
    number = {n._id: i for i, n in enumerate(nodes)}
    layers = [n.layer for n in nodes[1:]]
    edges = [tuple(number[i._id] for i in n.inputs) for n in nodes[1:]]
    return nodes[0].size, layers, edges
