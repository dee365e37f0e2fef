"""A graph model's topology in the native format (format version 4).

A graph model (``sg.Model(node)``, ``streamgru.graph``) is stored as its
distinct layers plus a ``graph`` object in the description::

    "layers": [{"kind": "conv1d", ...}, ...]      each layer object once
    "graph": {"input_size": 1,
              "nodes": [{"layer": 0, "inputs": [0], "size": 16},
                        {"elementwise": {"op": "add", "input_size": 16, ...},
                         "inputs": [1, 0], "size": 16},
                        ...]}

Node 0 is the model input (``input_size`` channels); node ``n + 1`` is
``nodes[n]``: the layer ``layers[layer]`` or the element-wise op
``elementwise`` (an ``Elementwise.config()``) applied to the nodes
``inputs`` (one, or two for ``add`` and ``mul``), giving ``size`` channels.
Inputs come before the node that reads them, so the list is an execution
order and holds no cycle; the last node is the model's output, and every
node feeds it. ``nodes[n]`` is ``m.layers[n]`` and its ``inputs`` are
``m.graph[n]``; a layer object called on several nodes (shared weights) is
one entry of ``layers``, one set of tensors, and comes back as one object.

Reading checks everything above, names the node in every error, and charges
the load's budget for the rows of scratch a stream keeps per node before
the model exists, so a file cannot declare a node too large to stream.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import WeightsError
from ..graph import Node, apply
from ..layers.base import Layer
from ..layers.elementwise import Elementwise
from ..model import Model
from .guard import Budget

# rows of scratch a stream keeps per graph node (the kernels run a graph in
# tiles of 64 rows), charged per node so the file pays for what it declares
NODE_ROWS = 64


def describe(model: Model) -> tuple[list[Layer], dict]:
    """``(distinct layers, graph object)`` of a graph model: each layer
    object once, in order of first use, and the node list above."""
    index: dict[int, int] = {}
    distinct: list[Layer] = []
    nodes = []
    for layer, inputs in zip(model.layers, model.graph):
        node: dict[str, Any] = {"inputs": list(inputs), "size": layer.output_size}
        if isinstance(layer, Elementwise):
            node["elementwise"] = layer.config()
        else:
            if id(layer) not in index:
                index[id(layer)] = len(distinct)
                distinct.append(layer)
            node["layer"] = index[id(layer)]
        nodes.append(node)
    return distinct, {"input_size": model.input_size, "nodes": nodes}


def _int(value: Any) -> bool:
    return type(value) is int  # not bool, not float


def build(graph: Any, n_layers: int, layer: Callable[[int], Layer], dtype: str, path: str,
          budget: Budget) -> Node:
    """The output node of ``graph`` (a description's graph object);
    ``layer(j)`` gives ``layers[j]``, built once (its errors name the layer)."""
    if not isinstance(graph, dict) or set(graph) != {"input_size", "nodes"}:
        raise WeightsError(f"{path}: malformed graph description {graph!r:.200} (expected "
                           f"input_size and nodes)")
    size, nodes = graph["input_size"], graph["nodes"]
    if not _int(size) or size < 1:
        raise WeightsError(f"{path}: graph input_size {size!r:.50} is not a positive integer")
    if not isinstance(nodes, list) or not nodes:
        raise WeightsError(f"{path}: graph nodes is not a non-empty list")
    budget.count(len(nodes), "graph nodes")
    row = NODE_ROWS * np.dtype(dtype).itemsize
    budget.take(row * size, "graph node 0 (the input)")
    values = [Node(None, (), size)]
    used = set()
    for n, nd in enumerate(nodes, 1):
        values.append(_node(n, len(nodes), nd, values, n_layers, layer, path, budget, row, used))
    unused = sorted(set(range(n_layers)) - used)
    if unused:
        raise WeightsError(f"{path}: layer {unused[0]} is in the file but no graph node uses it")
    _all_feed_the_output(values, path)
    return values[-1]


def _node(n: int, total: int, nd: Any, values: list[Node], n_layers: int,
          layer: Callable[[int], Layer], path: str, budget: Budget, row: int, used: set) -> Node:
    """Graph node ``n`` from its description ``nd``, reading earlier ``values``."""
    where = f"{path}: graph node {n}"
    if not isinstance(nd, dict) or set(nd) not in ({"layer", "inputs", "size"},
                                                    {"elementwise", "inputs", "size"}):
        raise WeightsError(f"{where}: malformed description {nd!r:.200} (expected layer or "
                           f"elementwise, inputs and size)")
    inputs, size = nd["inputs"], nd["size"]
    if not (isinstance(inputs, list) and 1 <= len(inputs) <= 2 and all(map(_int, inputs))):
        raise WeightsError(f"{where}: inputs {inputs!r:.100} is not a list of one or two "
                           f"node numbers")
    for i in inputs:
        if not 0 <= i <= total:
            raise WeightsError(f"{where}: reads node {i}, which does not exist (the graph has "
                               f"nodes 0 to {total})")
        if i >= n:
            raise WeightsError(f"{where}: reads node {i}, which is not before it (a cycle or a "
                               f"forward reference; nodes are stored in execution order)")
    if not _int(size) or size < 1:
        raise WeightsError(f"{where}: size {size!r:.50} is not a positive integer")
    budget.take(row * size, f"graph node {n}")
    if "layer" in nd:
        j = nd["layer"]
        if not _int(j) or not 0 <= j < n_layers:
            raise WeightsError(f"{where}: layer {j!r:.50} is not one of the file's "
                               f"{n_layers} layers")
        try:
            op = layer(j)
        except WeightsError as exc:
            raise WeightsError(f"{where}: {_unprefixed(exc, path)}") from None
        used.add(j)
    else:
        op = _elementwise(nd["elementwise"], where)
    try:
        node = apply(op, tuple(values[i] for i in inputs))
    except WeightsError as exc:
        raise WeightsError(f"{where}: {exc}") from None
    if node.size != size:
        raise WeightsError(f"{where}: the file gives it {size} channels, but its "
                           f"{type(op).__name__} outputs {node.size}")
    return node


def _elementwise(config: Any, where: str) -> Elementwise:
    if not isinstance(config, dict):
        raise WeightsError(f"{where}: element-wise op {config!r:.100} is not a JSON object")
    try:
        return Elementwise.from_config(config, {})
    except WeightsError as exc:
        raise WeightsError(f"{where}: {exc}") from None
    # what a config of the wrong shape does (a missing key, a list for a number)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise WeightsError(f"{where}: malformed element-wise op ({type(exc).__name__}: "
                           f"{exc})") from None


def _unprefixed(exc: WeightsError, path: str) -> str:
    msg = str(exc)
    return msg[len(path) + 2:] if msg.startswith(f"{path}: ") else msg


def _all_feed_the_output(values: list[Node], path: str) -> None:
    """Refuse a node the output does not depend on (its state would be
    stored but never used, and the layer numbering would shift)."""
    live = {id(values[-1])}
    for node in reversed(values):
        if id(node) in live:
            live.update(id(i) for i in node.inputs)
    for n, node in enumerate(values):
        if id(node) not in live:
            raise WeightsError(f"{path}: graph node {n} does not feed the output (the last node)")
