"""Keras model configs (JSON, parsed as data) to the list of their layers.

``model_layers`` reads a ``Sequential`` or functional model's config (the
``config.json`` of a ``.keras`` file, a legacy ``.h5`` file's
``model_config``, a live model's ``get_config()``) and returns its layers in
two orders: as ``model.layers`` lists them (how Keras names their weights)
and as data flows through them. A functional model must be a chain: one
input, one output, every layer fed by the one before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import WeightsError

__all__ = ["Entry", "entry", "fail", "model_layers"]


@dataclass(frozen=True)
class Entry:
    """One layer of a Keras config."""

    class_name: str
    name: str
    config: dict
    module: str = ""          # Keras 3 records where the class lives
    registered_name: Any = None


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
    return kind, entries, _chain(raw, cfg, entries, where)


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


def _chain(raw: list, cfg: dict, entries: list[Entry], where: str) -> list[Entry]:
    """The layers of a functional model from its input to its output, refusing
    anything but a chain. Layers that only compute a ``mask`` (Keras 3 records
    ``Masking``'s as NotEqual and Any operations) are left out: with no padded
    step the mask is all true."""
    by_name = {e.name: e for e in entries}
    (first,) = _one(_endpoints(cfg.get("input_layers"), "input_layers", where), "input", where)
    (last,) = _one(_endpoints(cfg.get("output_layers"), "output_layers", where), "output", where)
    parent: dict[str, str] = {}
    for r, e in zip(raw, entries):
        if e.class_name == "InputLayer":
            continue
        nodes = r.get("inbound_nodes")
        if not isinstance(nodes, list) or len(nodes) != 1:
            n = len(nodes) if isinstance(nodes, list) else 0
            raise fail(where, e, f"is called {n} times in the model (a shared layer); "
                                  f"only a chain of layers can stream")
        try:
            srcs, _ = _sources(nodes[0])
        except RecursionError:
            raise fail(where, e, "inbound node nested too deeply") from None
        for src in srcs:
            if not (isinstance(src, list) and len(src) >= 3 and src[0] in by_name
                    and src[2] == 0):
                raise fail(where, e, f"malformed inbound node {str(src)[:80]}")
        if len(srcs) != 1:
            raise fail(where, e, f"takes {len(srcs)} input tensors; only a chain of layers, "
                                  f"each fed by the one before, can stream")
        parent[e.name] = srcs[0][0]
    if first not in by_name or last not in by_name:
        raise WeightsError(f"{where}: the model's input or output layer is not in its layers")
    order = [last]
    while order[-1] != first:
        if order[-1] not in parent or len(order) > len(entries):
            raise fail(where, by_name[order[-1]], "is not connected to the model's input")
        order.append(parent[order[-1]])
    order.reverse()
    # an on-path layer's one data input is its parent, so what is off the path
    # feeds only masks or nothing: allowed if it is Keras's own mask computation
    off = [e.name for e in entries if e.name not in set(order)]
    if any(by_name[n].class_name not in _MASK_OPS for n in off):
        raise WeightsError(f"{where}: layers {off} are not on the path from the input to the "
                           f"output; only a chain of layers can stream")
    return [by_name[n] for n in order]


def _one(names: list[str], what: str, where: str) -> list[str]:
    if len(names) != 1:
        raise WeightsError(f"{where}: the model has {len(names)} {what}s; a stream has one")
    return names
