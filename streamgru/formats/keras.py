"""Keras files: Keras 3 ``.keras``, legacy ``.h5``, and live Keras models.

Read without TensorFlow or Keras, and without running anything from the
file: the model config is JSON parsed as data (``keras_graph`` and
``keras_layers`` turn it into canonical layers) and h5py (the optional extra
``keras``) reads the weight arrays, in a child process (``keras_h5``: the
HDF5 library can crash or hang on hostile bytes).

* ``.keras`` (Keras 3, and Keras 2.12-2.15): a zip of ``metadata.json``
  (``keras_version``), ``config.json`` (the model) and ``model.weights.h5``,
  where layer k of ``model.layers`` keeps its arrays under
  ``layers/<class name in snake case, _1, _2... for repeats>/`` in
  ``vars/0, 1, ...`` (a recurrent layer's in ``cell/vars``, a
  ``TimeDistributed`` layer's in ``layer/vars``).
* legacy ``.h5`` (Keras 2, and Keras 3's ``model.save("m.h5")``): root
  attributes ``model_config`` (JSON) and ``keras_version``; group
  ``model_weights/<layer name>`` lists its arrays, in Keras order, in the
  attribute ``weight_names`` (split into ``weight_names0, 1, ...`` when
  long), each a dataset at that path inside the group.
* ``.weights.h5`` and Keras 2 ``save_weights`` files hold no architecture and
  are refused with what to do instead.

The Keras version decides ``hard_sigmoid``: 0.2 x + 0.5 in Keras 2, x / 6 +
0.5 in Keras 3.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import sys
import zipfile
from typing import Any, Callable

import numpy as np

from ..errors import WeightsError
from ..model import Model
from .guard import Budget, check_regular, read_regular
from ..graph import flatten
from .keras_dag import build_graph
from .keras_graph import Entry, branches, model_layers
from .keras_h5 import H5Tree, read_tree
from .keras_layers import build

OPTIONS = ("dtype", "keras_version")

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MEMBERS = (b"config.json", b"metadata.json", b"model.weights.h5")
_NESTED = {"GRU": "cell", "LSTM": "cell", "SimpleRNN": "cell", "TimeDistributed": "layer"}
_WEIGHTS_ONLY = ("holds weights only, no architecture. Build the model in Keras, call "
                 "model.load_weights(path) and pass it to sg.from_keras(model), or save the "
                 "whole model with model.save('m.keras')")


def sniff(head: bytes) -> bool:
    """An HDF5 file (signature at offset 0, or after a user block of 512,
    1024 or 2048 bytes) or a zip whose first members are Keras's."""
    if any(head[o:o + 8] == _HDF5_MAGIC for o in (0, 512, 1024, 2048)):
        return True
    return head.startswith(b"PK") and any(m in head for m in _ZIP_MEMBERS)


def _version(value: Any, path: str) -> int | None:
    """The major version of a ``keras_version`` string, or of an explicit option."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    m = re.match(r"\s*(\d+)", str(value))
    major = int(m.group(1)) if m else None
    if major == 1:
        raise WeightsError(f"{path}: written by Keras {value}; Keras 1 layer configs are not "
                           f"read (load and re-save the model with Keras 2 or 3)")
    if major not in (2, 3):
        raise WeightsError(f"{path}: keras_version {value!r} is neither Keras 2 nor Keras 3")
    return major


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _json(raw: bytes | str, what: str, path: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd nesting
        raise WeightsError(f"{path}: {what} is not valid JSON ({str(exc)[:120]})") from None


def _snake(name: str) -> str:
    """A class name as Keras names its weights group: ``SimpleRNN`` -> ``simple_rnn``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


# ----------------------------------------------------------------------------
# the two file layouts (HDF5 read through keras_h5, in a child process)


def _attr_list(tree: H5Tree, path: str, name: str, where: str) -> list[str]:
    """A list attribute, joined from ``name0, name1, ...`` where Keras split it."""
    attrs = tree.attrs(path, where)
    if name in attrs:
        parts = [attrs[name]]
    else:
        parts, k = [], 0
        while f"{name}{k}" in attrs:
            parts.append(attrs[f"{name}{k}"])
            k += 1
    out = []
    for part in parts:
        for v in part if isinstance(part, list) else [part]:
            if not isinstance(v, str):
                raise WeightsError(f"{where}: attribute {name!r} should list names, got {v!r}")
            out.append(v)
    return out


def _keras_zip(path: str, raw: bytes, budget: Budget) -> tuple:
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
        infos = {i.filename: i for i in zf.infolist()}
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable .keras zip ({exc})") from None

    def member(name: str) -> bytes:
        info = infos.get(name)
        if info is None:
            if name == "model.weights.h5" and "model.weights.json" in infos:
                raise WeightsError(f"{path}: the weights are sharded (model.weights.json); "
                                   f"re-save the model without max_shard_size")
            raise WeightsError(f"{path}: member {name} is missing (members: "
                               f"{', '.join(sorted(infos)) or 'none'})")
        budget.take(info.file_size, f"member {name}")
        try:
            return zf.read(info)
        except Exception as exc:  # truncated, bad CRC, bad compression
            raise WeightsError(f"{path}: member {name} is unreadable ({exc})") from None

    if "config.json" not in infos and "model.weights.h5" in infos:
        raise WeightsError(f"{path}: {_WEIGHTS_ONLY}")
    config = _json(member("config.json"), "config.json", path)
    meta = _json(member("metadata.json"), "metadata.json", path) if "metadata.json" in infos else {}
    version = meta.get("keras_version") if isinstance(meta, dict) else None
    weights = read_tree(member("model.weights.h5"), f"{path}: model.weights.h5", budget)
    return config, version, weights, ".keras"


def _fetch_zip(tree: H5Tree, layers: list[Entry], path: str,
               budget: Budget) -> Callable[[Entry], list]:
    # each layer of model.layers is stored under its class name, numbered on repeats
    seen: dict[str, int] = {}
    group_of: dict[str, str] = {}
    for e in layers:
        base = _snake(e.class_name)
        n = seen.get(base, -1) + 1
        seen[base] = n
        group_of[e.name] = f"layers/{base}" + (f"_{n}" if n else "")

    def fetch(e: Entry) -> list:
        top = group_of[e.name]
        where = f"{path}: model.weights.h5: {top}"
        stored = tree.attrs(f"{top}/vars", f"{where}/vars (layer {e.name!r})").get("name", e.name)
        if stored != e.name:
            raise WeightsError(f"{where} holds layer {stored!r}, but the config puts layer "
                               f"{e.name!r} there")
        vars_path = f"{top}/{_NESTED[e.class_name]}/vars" if e.class_name in _NESTED else f"{top}/vars"
        keys = sorted(tree.children(vars_path, f"{path}: model.weights.h5: {vars_path}"),
                      key=lambda k: (len(k), k))
        budget.count(len(keys), f"the arrays of {vars_path}")
        if keys != [str(i) for i in range(len(keys))]:
            raise WeightsError(f"{path}: model.weights.h5: {vars_path} holds {keys[:6]}, "
                               f"expected arrays 0, 1, ...")
        return [tree.array(f"{vars_path}/{k}", f"{path}: tensor {vars_path}/{k} "
                           f"(layer {e.name!r})") for k in keys]

    return fetch


def _legacy(path: str, tree: H5Tree) -> tuple:
    attrs = tree.attrs("", path)
    if "model_config" not in attrs:
        if "layer_names" in attrs or tree.has("layers") or tree.has("vars"):
            raise WeightsError(f"{path}: {_WEIGHTS_ONLY}")
        raise WeightsError(f"{path}: an HDF5 file without a Keras model_config attribute "
                           f"(not a Keras model file)")
    raw = attrs["model_config"]
    if not isinstance(raw, str):
        raise WeightsError(f"{path}: attribute model_config is not text ({str(raw)[:80]})")
    config = _json(raw, "attribute model_config", path)
    if not tree.has("model_weights"):
        raise WeightsError(f"{path}: group model_weights is missing")
    version = attrs.get("keras_version")
    return config, version if isinstance(version, str) else None, tree, "legacy h5"


def _fetch_legacy(tree: H5Tree, path: str) -> Callable[[Entry], list]:
    def fetch(e: Entry) -> list:
        group = f"model_weights/{e.name}"
        where = f"{path}: {group}"
        names = _attr_list(tree, group, "weight_names", f"{where} (layer {e.name!r})")
        return [tree.array(f"{group}/{n}", f"{path}: tensor {group}/{n}") for n in names]

    return fetch


# ----------------------------------------------------------------------------
# entry points


def _model(chain: list[Entry], fetch: Callable[[Entry], list], where: str, version: int | None,
           dtype: Any, meta: dict, budget: Budget | None = None) -> Model:
    if branches(chain):  # a functional model that branches: a graph
        out, info = build_graph(chain, fetch, where, version, budget)
        layers = flatten(out)[1]
    else:
        layers, info = build(chain, fetch, where, version, budget)
        out = layers
    if dtype is None:
        wide = any(a.dtype == np.float64 for l in layers for a in l.arrays().values())
        dtype = np.float64 if wide else np.float32
    try:
        return Model(out, dtype=dtype, metadata={**meta, **info})
    except WeightsError as exc:
        raise WeightsError(f"{where}: {exc}") from None


def load(path: str, dtype: Any = None, keras_version: Any = None, *,
         budget: Budget | None = None) -> Model:
    """Read a Keras ``.keras`` or legacy ``.h5`` model file.

    Parameters
    ----------
    path : str
    dtype : float32 or float64, optional
        Default: float64 if the file's weights are float64, else float32.
    keras_version : 2 or 3, optional
        Which Keras wrote the file, where the file does not say (it decides
        what ``hard_sigmoid`` means); overrides the file's own record.

    Returns
    -------
    Model
        ``metadata`` holds ``format="keras"``, ``source``, ``container``
        (``.keras`` or ``legacy h5``), ``keras_version`` and ``many_to_one``.
    """
    path = os.fspath(path)
    budget = budget or Budget(path, check_regular(path).st_size)
    if importlib.util.find_spec("h5py") is None:
        raise WeightsError(f"{path}: reading Keras files needs h5py: pip install h5py "
                           f"(or pip install streamgru[keras])")
    raw = read_regular(path, budget)
    if raw.startswith(b"PK"):
        config, version, tree, container = _keras_zip(path, raw, budget)
        fetch_for = lambda layers: _fetch_zip(tree, layers, path, budget)  # noqa: E731
    elif sniff(raw[:4096]):
        config, version, tree, container = _legacy(path, read_tree(raw, path, budget))
        fetch_for = lambda layers: _fetch_legacy(tree, path)  # noqa: E731
    else:
        raise WeightsError(f"{path}: neither a .keras zip nor an HDF5 file")
    major = _version(keras_version if keras_version is not None else version, path)
    _, model_order, chain = model_layers(config, path)
    meta = {"format": "keras", "source": path, "container": container,
            "keras_version": _text(version) if version is not None else None}
    return _model(chain, fetch_for(model_order), path, major, dtype, meta, budget)


def from_keras(model: Any, dtype: Any = None) -> Model:
    """Build a Model from a live Keras ``Sequential`` or functional model.

    The model's config (``get_config()``) is read as data and its weights with
    ``get_weights()``; the Keras version that runs it decides what
    ``hard_sigmoid`` means. Nothing is imported: the model brings its Keras.

    Raises
    ------
    WeightsError
        A subclassed model, a layer or activation that cannot stream (named).
    """
    names = [c.__name__ for c in type(model).__mro__]
    kind = next((k for k in ("Sequential", "Functional") if k in names), type(model).__name__)
    where = f"Keras model {getattr(model, 'name', '?')!r}"
    if kind not in ("Sequential", "Functional"):
        raise WeightsError(f"{where}: a {kind}, not a Keras Sequential or functional model")
    try:
        # as data, the way a file holds it (tuples become lists, numpy scalars numbers)
        config = json.loads(json.dumps({"class_name": kind, "config": model.get_config()},
                                       default=lambda v: v.item() if hasattr(v, "item") else str(v)))
    except Exception as exc:
        raise WeightsError(f"{where}: get_config() failed ({type(exc).__name__}: {exc})") from None
    package = sys.modules.get(type(model).__module__.split(".")[0])
    version = getattr(package, "__version__", None)

    def fetch(e: Entry) -> list:
        try:
            return [np.asarray(w) for w in model.get_layer(e.name).get_weights()]
        except Exception as exc:
            raise WeightsError(f"{where}: layer {e.name!r}: cannot read its weights ({exc})") from None

    meta = {"format": "keras", "source": where, "container": "live model",
            "keras_version": version}
    _, _, chain = model_layers(config, where)
    return _model(chain, fetch, where, _version(version, where), dtype, meta)
