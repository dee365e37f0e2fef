"""streamgru's native format: ``.npz`` or ``.safetensors``.

Both hold one tensor per layer array, named ``layers.{i}.{name}``, plus
``initial_state``, and a JSON description of the model (format version,
dtype, each layer's kind and config). In ``.npz`` the JSON is stored as a
uint8 array ``__streamgru__`` (loading never unpickles); in ``.safetensors``
it is the header's ``__metadata__["streamgru"]`` string. The containers
themselves are read and written by ``native_files``; this module turns a
description and its tensors into a Model and back.

A graph model (``sg.Model(node)``) is written as version 4: ``layers``
lists each distinct layer once (a layer object called on several nodes is
one entry, its tensors stored once) and ``graph`` holds the topology, a
data-only list of nodes (which layer or element-wise op, which earlier
nodes it reads, its size; ``native_graph`` describes and checks it). Chain
files are written exactly as before (version 1, 2 or 3), so older readers
keep reading them and refuse a graph file by its version.

Loading reads the description first and then only the tensors it names,
each charged to the load's budget before it is allocated.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

import numpy as np

from ..errors import WeightsError
from ..layers import LAYER_TYPES
from ..layers.quant import QuantizedWeight, weight_type
from ..model import Model
from . import native_graph
from .guard import Budget, read_regular
from .native_files import META_KEY, Getter, npz_bytes, read_npz, read_safetensors, safetensors_bytes

FORMAT = "streamgru"
VERSION = 1
# version 2 adds the model's input_skip and output_gain; a file is written as
# version 1 when it has neither, so older readers keep reading it, and as 2
# when it has one, so an older reader refuses it instead of dropping them
VERSION_SKIP_GAIN = 2
# version 3 adds reduced-precision weight matrices: a layer's "quantized"
# maps array names to their weight type; the tensor holds the stored values
# (int8; float16; bfloat16 as uint16 bit patterns in .npz, BF16 in
# .safetensors) and int8 adds ``<name>.scale`` (float32, one per row).
# Written only when a layer has one, so older readers refuse such a file.
VERSION_QUANT = 3
# version 4 adds a graph model's topology: ``graph`` (native_graph.py) lists
# the nodes, ``layers`` each distinct layer once (shared weights stored
# once). Written only for a graph model; it may also hold quantized weights.
VERSION_GRAPH = 4
READS = (VERSION, VERSION_SKIP_GAIN, VERSION_QUANT, VERSION_GRAPH)


# ----------------------------------------------------------------------------
# model <-> (description, tensors)


def _describe(model: Model) -> tuple[dict, dict[str, np.ndarray]]:
    tensors: dict[str, np.ndarray] = {}
    layers = []
    quantized = False
    graph = None
    distinct = model.layers
    if model.graph is not None:
        distinct, graph = native_graph.describe(model)
    for i, layer in enumerate(distinct):
        names = []
        stored = {}
        for name, arr in layer.arrays().items():
            key = f"layers.{i}.{name}"
            if isinstance(arr, QuantizedWeight):
                stored[name] = arr.kind
                tensors[key] = arr.values
                if arr.scale is not None:
                    tensors[f"{key}.scale"] = arr.scale
            else:
                tensors[key] = np.ascontiguousarray(arr)
            names.append(name)
        ld = {"kind": layer.kind, "config": layer.config(), "arrays": names}
        if stored:
            ld["quantized"] = stored
            quantized = True
        layers.append(ld)
    tensors["initial_state"] = np.ascontiguousarray(model.initial_state)
    desc = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": model.dtype.name,
        "layers": layers,
        "metadata": _jsonable(model.metadata),
    }
    if model.input_skip is not None or model.output_gain != 1.0:
        # a Python float's repr round-trips exactly through JSON: bit-exact
        desc.update(version=VERSION_SKIP_GAIN, input_skip=model.input_skip,
                    output_gain=model.output_gain)
    if quantized:
        desc["version"] = VERSION_QUANT
    if graph is not None:
        desc.update(version=VERSION_GRAPH, graph=graph)
    return desc, tensors


def _quantized(kind: Any, get: Getter, present: set, key: str, path: str) -> QuantizedWeight:
    """The stored weight matrix ``key`` of weight type ``kind`` (checked)."""
    try:
        if not isinstance(kind, str):
            raise WeightsError(f"weight type {kind!r:.50} is not a name")
        kind = weight_type(kind)
    except WeightsError as exc:
        raise WeightsError(f"{path}: tensor {key}: {exc}") from None
    values = get(key)
    if kind == "bfloat16" and values.dtype == np.float32:
        # safetensors' BF16, which the container reader widens: take the bits back
        bits = values.view(np.uint32)
        if np.any(bits & 0xFFFF):
            raise WeightsError(f"{path}: tensor {key}: not bfloat16 values")
        values = (bits >> 16).astype(np.uint16)
    scale = None
    if kind == "int8":
        if f"{key}.scale" not in present:
            raise WeightsError(f"{path}: tensor {key}.scale is missing (int8 weights need it)")
        scale = get(f"{key}.scale")
        if scale.dtype != np.float32:
            raise WeightsError(f"{path}: tensor {key}.scale: expected float32, got {scale.dtype}")
    try:
        return QuantizedWeight(kind, values, scale)
    except WeightsError as exc:
        raise WeightsError(f"{path}: tensor {key}: {exc}") from None


def _jsonable(meta: dict) -> dict:
    out = {}
    for k, v in meta.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            v = str(v)
        out[str(k)] = v
    return out


def _build(desc: Any, names: list[str], get: Getter, path: str, budget: Budget) -> Model:
    """The Model a streamgru description describes, reading (through
    ``get``) only the tensors its layers name."""
    if not isinstance(desc, dict) or desc.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a streamgru file (no streamgru description)")
    version = desc.get("version")
    if type(version) is not int or version not in READS:
        raise WeightsError(
            f"{path}: streamgru format version {version!r:.50}; this streamgru reads "
            f"{' and '.join(map(str, READS))}"
        )
    layer_descs, dtype, metadata = desc.get("layers"), desc.get("dtype"), desc.get("metadata", {})
    if not isinstance(layer_descs, list):
        raise WeightsError(f"{path}: malformed streamgru description (layers is not a list)")
    if dtype not in ("float32", "float64"):
        raise WeightsError(f"{path}: malformed streamgru description (dtype {dtype!r:.50}; "
                           f"expected 'float32' or 'float64')")
    if not isinstance(metadata, dict):
        raise WeightsError(f"{path}: malformed streamgru description (metadata is a "
                           f"{type(metadata).__name__}, not a JSON object)")
    budget.count(len(layer_descs), "layers")
    present = set(names)
    graph = desc.get("graph")
    if graph is not None and version != VERSION_GRAPH:
        raise WeightsError(f"{path}: a graph description in a version {version} file (graphs "
                           f"are version {VERSION_GRAPH})")
    built: dict[int, Any] = {}

    def layer(i: int) -> Any:
        if i not in built:
            built[i] = _layer(i, layer_descs[i], get, present, path)
        return built[i]

    if graph is None:
        layers: Any = [layer(i) for i in range(len(layer_descs))]
    else:
        layers = native_graph.build(graph, len(layer_descs), layer, dtype, path, budget)
    init = get("initial_state") if "initial_state" in present else None
    try:
        return Model(layers, dtype=dtype, initial_state=init, metadata=metadata,
                     input_skip=desc.get("input_skip"), output_gain=desc.get("output_gain", 1.0))
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None


def _layer(i: int, ld: Any, get: Getter, present: set, path: str) -> Any:
    """Layer ``i`` from its description ``ld``, reading the tensors it names."""
    kind, config, arrays = (ld.get("kind"), ld.get("config"), ld.get("arrays")) \
        if isinstance(ld, dict) else (None, None, None)
    if not (isinstance(kind, str) and isinstance(config, dict) and isinstance(arrays, list)
            and all(isinstance(a, str) for a in arrays)):
        raise WeightsError(f"{path}: layer {i}: malformed description {ld!r:.200}")
    cls = LAYER_TYPES.get(kind)
    if cls is None:
        raise WeightsError(f"{path}: layer {i}: unknown kind {kind!r:.50}")
    stored = ld.get("quantized", {})
    if not (isinstance(stored, dict) and set(stored) <= set(arrays)):
        raise WeightsError(f"{path}: layer {i}: malformed description (quantized "
                           f"{stored!r:.100} does not name its arrays)")
    tensors = {}
    for name in arrays:
        key = f"layers.{i}.{name}"
        if key not in present:
            raise WeightsError(f"{path}: tensor {key} is missing")
        tensors[name] = (_quantized(stored[name], get, present, key, path) if name in stored
                         else get(key))
    try:
        return cls.from_config(config, tensors)
    except WeightsError as exc:
        raise WeightsError(f"{path}: layer {i} ({kind}): {exc}") from None
    # what a config of the wrong shape does to from_config (a missing key,
    # a list where a number belongs, a number beyond float range)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise WeightsError(f"{path}: layer {i} ({kind}): malformed config "
                           f"({type(exc).__name__}: {exc})") from None


# ----------------------------------------------------------------------------
# files


def _open_temp(folder: str) -> tuple[int, str]:
    """Create a new temporary file in ``folder``: like mkstemp, but with the
    mode open() would give (0o666 less the umask), so a saved model is as
    readable as any other file the user writes."""
    for _ in range(100):
        tmp = os.path.join(folder, f".streamgru-{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name in {folder}")


def _write_atomic(path: str, data: bytes) -> None:
    fd, tmp = _open_temp(os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(model: Model, path: str) -> None:
    """Write ``model`` to ``path`` (``.npz`` or ``.safetensors``)."""
    if not isinstance(model, Model):
        raise WeightsError(f"save: expected a streamgru Model, got {type(model).__name__}")
    suffix = os.path.splitext(path)[1].lower()
    desc, tensors = _describe(model)
    if suffix == ".npz":
        data = npz_bytes(desc, tensors)
    elif suffix == ".safetensors":
        data = safetensors_bytes(desc, tensors)
    else:
        raise WeightsError(
            f"{path}: save writes the native format; use a .npz or .safetensors suffix"
        )
    _write_atomic(path, data)


OPTIONS = ("dtype", "rnn_nonlinearity", "activations", "order")


def sniff(head: bytes) -> bool:
    """A zip (``.npz``) holding the description member, or a safetensors
    header (8-byte little-endian length, then JSON)."""
    if head.startswith(b"PK"):
        return META_KEY.encode() in head
    return len(head) > 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 27)


def load(path: str, dtype: Any = None, *, budget: Budget | None = None,
         **state_dict_options: Any) -> Model:
    """Read a native ``.npz`` or ``.safetensors`` file.

    A ``.safetensors`` file without a streamgru description (e.g. written by
    ``safetensors.torch.save_file``) is read as a PyTorch state dict;
    ``state_dict_options`` (``rnn_nonlinearity``, ``activations``, ``order``)
    are for that case only. ``dtype`` converts the model after loading.
    ``budget`` bounds what the load allocates (``guard.Budget``; unlimited
    for a direct call without one).
    """
    if budget is None:
        budget = Budget.unlimited(path)
    raw = read_regular(path, budget)
    if os.path.splitext(path)[1].lower() == ".npz":
        desc, names, get = read_npz(raw, path, budget)
    else:
        desc, names, get = read_safetensors(raw, path, budget)
        if desc is None:
            from .state_dict import model_from_state_dict

            tensors = {name: get(name) for name in names}
            return model_from_state_dict(
                tensors, path, dtype=dtype or np.float32, **state_dict_options
            )
    if state_dict_options:
        raise WeightsError(
            f"{path}: a streamgru file records its layers; the option(s) "
            f"{', '.join(sorted(state_dict_options))} only apply to PyTorch state dicts"
        )
    model = _build(desc, names, get, path, budget)
    return model if dtype is None else model.astype(dtype)
