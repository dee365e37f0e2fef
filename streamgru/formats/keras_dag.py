"""A Keras functional model whose layers branch and join again, as a graph model.

``keras_graph`` gives the layers in an order where each follows the layers
it takes. They are cut into runs: a layer continues the run of the layer it
takes when it takes only that one and nothing else takes it. Each run is
converted by ``keras_layers.build`` exactly as a chain model would be (an
activation folds into the Conv1D or Dense before it, ``ZeroPadding1D``
into its conv, ``BatchNormalization`` into a conv) and its layers are
called on the run's input node; the merge layers combine nodes:

    Add, Average           a + b (+ ...), the average scaled by 1/n
    Subtract               a - b
    Multiply               a * b (* ...)
    Concatenate (axis -1)  a.concat(b, ...)

Every branch must be causal and keep the sample rate, as in any graph
(``padding="same"`` at stride 1 is refused by the graph: it would delay a
branch), and a recurrent layer must return sequences unless it is in the
run that ends at the output (then the model is many-to-one: step t gives
the answer for the sequence ending at t, as for a chain).
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import WeightsError
from ..graph import Input
from .guard import Budget
from .keras_graph import Entry, fail
from .keras_layers import _input_shape, build

__all__ = ["MERGES", "build_graph"]

MERGES = ("Add", "Average", "Subtract", "Multiply", "Concatenate")


def _runs(dag: list[Entry]) -> list[list[Entry]]:
    """The layers cut into runs (see the module docstring), in data-flow order."""
    takers: dict[str, int] = {}
    for e in dag:
        for src in e.inputs:
            takers[src] = takers.get(src, 0) + 1
    by_name = {e.name: e for e in dag}
    runs: list[list[Entry]] = []
    run_of: dict[str, list[Entry]] = {}
    for e in dag:
        if e.class_name == "InputLayer":
            continue
        src = by_name[e.inputs[0]] if len(e.inputs) == 1 else None
        if (src is not None and src.class_name not in MERGES + ("InputLayer",)
                and takers[src.name] == 1 and e.class_name not in MERGES):
            run = run_of[src.name]
        else:
            run = []
            runs.append(run)
        run.append(e)
        run_of[e.name] = run
    return runs


def _merge(e: Entry, nodes: list, where: str) -> Any:
    if len(nodes) < 2:
        raise fail(where, e, f"merges {len(nodes)} tensor(s); it needs two or more")
    if e.class_name == "Concatenate":
        if e.config.get("axis", -1) not in (-1, 2):
            raise fail(where, e, f"concatenates over axis {e.config.get('axis')!r}; only the "
                                  f"features (axis -1) are channels of one sample")
        return nodes[0].concat(*nodes[1:])
    sizes = {n.size for n in nodes}
    if len(sizes) > 1:
        raise fail(where, e, f"merges tensors of {sorted(sizes)} features; element-wise merges "
                              f"need the same number")
    if e.class_name == "Subtract":
        if len(nodes) != 2:
            raise fail(where, e, f"subtracts {len(nodes)} tensors; it takes two")
        return nodes[0] + nodes[1] * -1.0
    out = nodes[0]
    for n in nodes[1:]:
        out = out * n if e.class_name == "Multiply" else out + n
    return out * (1.0 / len(nodes)) if e.class_name == "Average" else out


def build_graph(dag: list[Entry], fetch: Callable[[Entry], list], where: str,
                keras_version: int | None, budget: Budget | None = None) -> tuple[Any, dict]:
    """The output node of the graph computing ``dag`` (its input layer
    first, as keras_graph orders it), and the metadata (``many_to_one``,
    notes)."""
    shape = _input_shape(dag)
    size = shape[-1] if shape and isinstance(shape[-1], int) else None
    if not size:
        raise WeightsError(f"{where}: the model's input has no fixed feature size; a graph "
                           f"needs it")
    nodes: dict[str, Any] = {dag[0].name: Input(int(size))}
    notes: list[str] = []
    many_to_one = False
    for run in _runs(dag):
        first = run[0]
        if first.class_name in MERGES:
            nodes[first.name] = _merge(first, [nodes[n] for n in first.inputs], where)
            continue
        node = nodes[first.inputs[0]]
        layers, meta = build(run, fetch, where, keras_version, budget, size=node.size)
        if meta.get("many_to_one"):
            if run[-1] is not dag[-1]:
                raise fail(where, run[-1], "returns the last step only (return_sequences=False) "
                                            "inside a graph; every branch must stream sequences")
            many_to_one = True  # the output's own run: step t answers for the sequence to t
        if meta.get("valid_delay"):
            raise fail(where, run[-1], "a padding='valid' conv inside a graph would run its "
                                        "branch ahead of the others; use padding='causal'")
        notes.extend(meta.get("notes", []))
        for layer in layers:
            try:
                node = layer(node)
            except WeightsError as exc:
                raise fail(where, run[-1], str(exc)) from None
        nodes[run[-1].name] = node
        for e in run[:-1]:
            nodes[e.name] = None  # inside a run: nothing else takes it
    out = nodes[dag[-1].name]
    if out is None or out.layer is None:
        raise WeightsError(f"{where}: the model's output is its input; no layers to run")
    info: dict = {"many_to_one": many_to_one}
    if notes:
        info["notes"] = notes
    return out, info
