"""Keras model configs (JSON, parsed as data) to the list of their layers.

``model_layers`` reads a ``Sequential`` or functional model's config (the
``config.json`` of a ``.keras`` file, a legacy ``.h5`` file's
``model_config``, a live model's ``get_config()``) and returns its layers in
two orders: as ``model.layers`` lists them (how Keras names their weights)
and as data flows through them. A functional model has one input and one
output; one whose layers branch and join again (``Add``, ``Multiply``,
``Concatenate``...) comes back in an order where each layer follows those
it takes (``Entry.inputs``), for keras_dag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import WeightsError

__all__ = ["Entry", "branches", "entry", "fail", "model_layers"]


@dataclass(frozen=True)
class Entry:
    """One layer of a Keras config; in a functional model's data flow, also
    the names of the layers whose outputs it takes (``inputs``)."""

    class_name: str
    name: str
    config: dict
    module: str = ""          # Keras 3 records where the class lives
    registered_name: Any = None
    inputs: tuple = ()


_MODELS = ("Sequential", "Functional", "Model")
# operations Keras 3 records to compute Masking's mask in a functional model
_MASK_OPS = ("NotEqual", "Any", "Cast")


def fail(where: str, entry: Entry | None, msg: str) -> WeightsError:
    """A WeightsError naming the source and, if given, the layer."""
    if entry is None:
        return WeightsError(f"{where}: {msg}")
    return WeightsError(f"{where}: layer {entry.name!r} ({entry.class_name}): {msg}")


def entry(raw: Any, where: str) -> Entry:
    """One layer's ``{"class_name", "config", ...}`` object as an ``Entry``."""
    if not isinstance(raw, dict) or not isinstance(raw.get("class_name"), str):
        raise WeightsError(f"{where}: malformed layer entry in the model config: {str(raw)[:120]}")
    cfg = raw.get("config")
    if not isinstance(cfg, dict):
        raise WeightsError(f"{where}: layer of type {raw['class_name']!r} has no config object")
    name = raw.get("name", cfg.get("name"))
    if not isinstance(name, str):
        raise WeightsError(f"{where}: a {raw['class_name']} layer has no name")
    module = raw.get("module")
    return Entry(raw["class_name"], name, cfg, module if isinstance(module, str) else "",
                 raw.get("registered_name"))


def model_layers(model_config: Any, where: str) -> tuple[str, list[Entry], list[Entry]]:
    """(model class, the layers in the order of ``model.layers``, the layers in
    the order data flows through them) of a Keras model config."""
    if not isinstance(model_config, dict) or not isinstance(model_config.get("class_name"), str):
        raise WeightsError(f"{where}: the model config is not a Keras model description")
    kind = model_config["class_name"]
    if kind not in _MODELS:
        raise WeightsError(
            f"{where}: the model is a {kind!r}, a subclassed keras.Model whose call() is Python "
            f"code; streamgru reads Sequential and functional models (never running code)"
        )
    cfg = model_config.get("config")
    raw = cfg if isinstance(cfg, list) else cfg.get("layers") if isinstance(cfg, dict) else None
    if not isinstance(raw, list) or not raw:
        raise WeightsError(f"{where}: the {kind} model config has no list of layers")
    entries = [entry(r, where) for r in raw]
    for e in entries:
        if e.class_name in _MODELS:
            raise fail(where, e, "a model nested inside the model; build the outer model "
                                  "from the inner model's layers instead")
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise WeightsError(f"{where}: two layers share a name in the model config")
    if kind == "Sequential":
        # Sequential.layers leaves its InputLayer out
        return kind, [e for e in entries if e.class_name != "InputLayer"], entries
    dag = _dag(raw, cfg, entries, where)
    return kind, entries, dag if branches(dag) else _chain(dag, where)


def branches(layers: list[Entry]) -> bool:
    """Whether a functional model's layers (``model_layers``) branch: a layer
    takes two tensors, or a tensor feeds two layers (then keras_dag builds
    a graph model)."""
    taken = [src for e in layers for src in e.inputs]
    return any(len(e.inputs) > 1 for e in layers) or len(set(taken)) < len(taken)


def _endpoints(value: Any, what: str, where: str) -> list[str]:
    """``["name", 0, 0]`` (Keras 3, one tensor) or ``[["name", 0, 0], ...]``."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        value = [value]
    if not isinstance(value, list) or not all(
        isinstance(v, list) and v and isinstance(v[0], str) for v in value
    ):
        raise WeightsError(f"{where}: malformed {what} in the functional model config")
    return [v[0] for v in value]


def _sources(node: Any) -> tuple[list[Any], list[Any]]:
    """The tensors an inbound node feeds a layer, and those it feeds as the
    ``mask`` keyword: Keras 3 ``{"args", "kwargs"}`` holding ``__keras_tensor__``
    objects, or Keras 2 ``[[name, node, tensor, kwargs], ...]``."""
    if isinstance(node, list):
        return list(node), []
    if not isinstance(node, dict):
        return [None], []

    def walk(v: Any, found: list) -> list:
        if isinstance(v, dict):
            if v.get("class_name") == "__keras_tensor__":
                cfg = v.get("config")
                found.append(cfg.get("keras_history") if isinstance(cfg, dict) else None)
            else:
                for x in v.values():
                    walk(x, found)
        elif isinstance(v, list):
            for x in v:
                walk(x, found)
        return found

    kwargs = node.get("kwargs") if isinstance(node.get("kwargs"), dict) else {}
    rest = {k: v for k, v in kwargs.items() if k != "mask"}
    return walk([node.get("args"), rest], []), walk(kwargs.get("mask"), [])


def _dag(raw: list, cfg: dict, entries: list[Entry], where: str) -> list[Entry]:
    """The layers of a functional model that its output depends on, in an
    order where each comes after the layers it takes (``Entry.inputs``), the
    input layer first. Layers that only compute a ``mask`` (Keras 3 records
    ``Masking``'s as NotEqual and Any operations) are left out: with no
    padded step the mask is all true."""
    by_name = {e.name: e for e in entries}
    (first,) = _one(_endpoints(cfg.get("input_layers"), "input_layers", where), "input", where)
    (last,) = _one(_endpoints(cfg.get("output_layers"), "output_layers", where), "output", where)
    if first not in by_name or last not in by_name:
        raise WeightsError(f"{where}: the model's input or output layer is not in its layers")
    inputs: dict[str, tuple] = {}
    for r, e in zip(raw, entries):
        if e.class_name == "InputLayer":
            continue
        nodes = r.get("inbound_nodes")
        if not isinstance(nodes, list) or len(nodes) != 1:
            n = len(nodes) if isinstance(nodes, list) else 0
            raise fail(where, e, f"is called {n} times in the model (a shared layer); "
                                  f"each layer must be called once to stream")
        try:
            srcs, _ = _sources(nodes[0])
        except RecursionError:
            raise fail(where, e, "inbound node nested too deeply") from None
        for src in srcs:
            if not (isinstance(src, list) and len(src) >= 3 and src[0] in by_name
                    and src[2] == 0):
                raise fail(where, e, f"malformed inbound node {str(src)[:80]}")
        if not srcs:
            raise fail(where, e, "takes no input tensor")
        inputs[e.name] = tuple(src[0] for src in srcs)
    # depth-first from the output, iteratively: every layer it depends on, each once
    order: list[str] = []
    state: dict[str, int] = {}  # 1: being visited, 2: placed
    todo = [(last, False)]
    while todo:
        name, done = todo.pop()
        if done:
            state[name] = 2
            order.append(name)
            continue
        if state.get(name) == 2:
            continue
        if state.get(name) == 1:
            raise fail(where, by_name[name], "is part of a cycle in the model config")
        if name != first and name not in inputs:
            raise fail(where, by_name[name], "is not connected to the model's input")
        state[name] = 1
        todo.append((name, True))
        for src in reversed(inputs.get(name, ())):
            if state.get(src) != 2:
                todo.append((src, False))
    used = set(order)
    off = [e.name for e in entries if e.name not in used]
    if any(by_name[n].class_name not in _MASK_OPS for n in off):
        raise WeightsError(f"{where}: layers {off} do not reach the model's output; a stream "
                           f"computes only what its output depends on")
    return [Entry(by_name[n].class_name, n, by_name[n].config, by_name[n].module,
                  by_name[n].registered_name, inputs.get(n, ())) for n in order]


def _chain(dag: list[Entry], where: str) -> list[Entry]:
    """A ``_dag`` whose every layer takes the one before it, as a list."""
    for prev, e in zip(dag, dag[1:]):
        if e.inputs != (prev.name,):
            raise fail(where, e, "is not fed by the layer before it")
    return dag


def _one(names: list[str], what: str, where: str) -> list[str]:
    if len(names) != 1:
        raise WeightsError(f"{where}: the model has {len(names)} {what}s; a stream has one")
    return names
