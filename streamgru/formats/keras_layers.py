"""Keras model configs (JSON parsed as data, never run) to canonical layers.

``build`` takes a model's config (the ``config.json`` of a ``.keras`` file,
the ``model_config`` attribute of a legacy ``.h5`` file, or a live model's
``get_config()``) and a ``fetch(entry)`` that returns one layer's weight
arrays in Keras order, and returns the canonical layers. It knows nothing
of files: ``keras.py`` supplies ``fetch`` for each source.

Supported: ``Sequential`` and functional models that are a chain (one input,
one output, every layer fed by the one before); layers ``GRU`` (both
``reset_after``), ``LSTM``, ``SimpleRNN``, ``Dense``, ``TimeDistributed(Dense)``,
``Activation``, ``ReLU``, ``LeakyReLU``, ``ELU``, ``Softmax``, ``InputLayer``;
``Dropout``-like layers and ``Masking`` are the identity at inference (a
stream has no padding; Keras would skip a step whose every feature equals
``mask_value``). A recurrent layer with ``return_sequences=False`` makes a
many-to-one model: streamed, step t gives the model's answer for the
sequence ending at t. Everything else is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import WeightsError
from ..layers import GRU, LSTM, RNN, Dense, Layer, keras_activation

__all__ = ["Entry", "build", "model_layers"]


@dataclass(frozen=True)
class Entry:
    """One layer of a Keras config."""

    class_name: str
    name: str
    config: dict
    module: str = ""          # Keras 3 records where the class lives
    registered_name: Any = None


# identity at inference: random noise and dropout are training-only
_NO_OPS = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
           "ActivityRegularization", "Identity")
_MODELS = ("Sequential", "Functional", "Model")
# operations Keras 3 records to compute Masking's mask in a functional model
_MASK_OPS = ("NotEqual", "Any", "Cast")
_REFUSED = {
    "Bidirectional": "it reads the sequence backwards from its end, so it needs the future "
                     "and cannot run one sample at a time",
    "Lambda": "it holds Python code, and streamgru never runs code from a file",
    "TFOpLambda": "it holds a TensorFlow operation, and streamgru never runs code from a file",
    "CuDNNGRU": "re-save it as a GRU layer with reset_after=True",
    "CuDNNLSTM": "re-save it as an LSTM layer",
    "RepeatVector": "it repeats one vector over a sequence of a fixed length",
}


def _fail(where: str, entry: Entry | None, msg: str) -> WeightsError:
    if entry is None:
        return WeightsError(f"{where}: {msg}")
    return WeightsError(f"{where}: layer {entry.name!r} ({entry.class_name}): {msg}")


def _entry(raw: Any, where: str) -> Entry:
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
    entries = [_entry(r, where) for r in raw]
    for e in entries:
        if e.class_name in _MODELS:
            raise _fail(where, e, "a model nested inside the model; build the outer model "
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
            raise _fail(where, e, f"is called {n} times in the model (a shared layer); "
                                  f"only a chain of layers can stream")
        srcs, _ = _sources(nodes[0])
        for src in srcs:
            if not (isinstance(src, list) and len(src) >= 3 and src[0] in by_name
                    and src[2] == 0):
                raise _fail(where, e, f"malformed inbound node {str(src)[:80]}")
        if len(srcs) != 1:
            raise _fail(where, e, f"takes {len(srcs)} input tensors; only a chain of layers, "
                                  f"each fed by the one before, can stream")
        parent[e.name] = srcs[0][0]
    if first not in by_name or last not in by_name:
        raise WeightsError(f"{where}: the model's input or output layer is not in its layers")
    order = [last]
    while order[-1] != first:
        if order[-1] not in parent or len(order) > len(entries):
            raise _fail(where, by_name[order[-1]], "is not connected to the model's input")
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


# ----------------------------------------------------------------------------
# building


@dataclass
class _Build:
    where: str
    fetch: Callable[[Entry], list]
    version: int | None             # the major version that wrote the model, if known
    layers: list[Layer] = field(default_factory=list)
    size: int | None = None         # features of the current tensor, where known
    seq: bool = True                # it still has a time axis
    many_to_one: bool = False
    notes: list[str] = field(default_factory=list)

    def push(self, layer: Layer) -> None:
        self.layers.append(layer)
        self.size = layer.output_size


def _activation(value: Any, b: _Build, e: Entry, what: str = "activation") -> Any:
    """A Keras activation config value -> ``Activation`` (as b's Keras version defines it)."""
    if isinstance(value, dict):
        module = value.get("module")
        if value.get("class_name") == "function" and isinstance(value.get("config"), str) and (
            isinstance(module, str) and module.startswith("keras")
        ):
            value = value["config"]
        else:
            shown = value.get("config") if value.get("class_name") == "function" else value.get(
                "class_name")
            raise _fail(b.where, e, f"{what} {shown!r} (module {module!r}) is a custom object, "
                                    f"Python code that streamgru never runs")
    if value is not None and not isinstance(value, str):
        raise _fail(b.where, e, f"malformed {what} {value!r}")
    if value == "hard_sigmoid" and b.version not in (2, 3):
        raise _fail(b.where, e, f"{what} 'hard_sigmoid' is 0.2 x + 0.5 in Keras 2 and "
                                f"x / 6 + 0.5 in Keras 3, and the file does not say which Keras "
                                f"wrote it; pass sg.load(path, keras_version=2) or 3")
    try:
        return keras_activation(value, b.version)
    except WeightsError as exc:
        raise _fail(b.where, e, f"{what}: {exc}") from None


def _weights(b: _Build, e: Entry, use_bias: bool, names: tuple[str, ...],
             stored: Entry | None = None) -> list:
    """``e``'s weights (kept under the layer ``stored``, default ``e``), with
    None for an absent bias."""
    arrays = list(b.fetch(stored or e))
    want = len(names) if use_bias else len(names) - 1
    if len(arrays) != want:
        raise _fail(b.where, e, f"expected {want} weight tensors ({', '.join(names[:want])}), "
                                f"found {len(arrays)}")
    return arrays + [None] * (len(names) - want)


def _flag(b: _Build, e: Entry, key: str, default: Any) -> Any:
    value = e.config.get(key, default)
    if not isinstance(value, type(default)):
        raise _fail(b.where, e, f"config {key!r} should be a {type(default).__name__}, "
                                f"got {value!r}")
    return value


def _recurrent(b: _Build, e: Entry) -> None:
    for key, why in (("go_backwards", "reads the sequence backwards from its end, so it needs "
                                      "the future and cannot run one sample at a time"),
                     ("return_state", "returns its state as extra outputs; a stream has one output"),
                     ("time_major", "takes time-major input")):
        if _flag(b, e, key, False):
            raise _fail(b.where, e, f"{key}=True is not supported: the layer {why}")
    if not b.seq:
        raise _fail(b.where, e, "follows a layer that returned only its last step; there is no "
                                "sequence left to run over")
    use_bias = _flag(b, e, "use_bias", True)
    act = _activation(e.config.get("activation", "tanh"), b, e)
    names = ("kernel", "recurrent_kernel", "bias")
    kernel, recurrent, bias = _weights(b, e, use_bias, names)
    if e.class_name == "SimpleRNN":
        layer: Layer = RNN.from_keras(kernel, recurrent, bias, activation=act)
    else:
        ract = _activation(e.config.get("recurrent_activation", "sigmoid"), b, e,
                           "recurrent_activation")
        if e.class_name == "GRU":
            # reset_after is absent only from Keras 2.0-2.1 files, which predate it (and
            # computed reset_after=False)
            reset_after = _flag(b, e, "reset_after", False)
            layer = GRU.from_keras(kernel, recurrent, bias, reset_after=reset_after,
                                   activation=act, recurrent_activation=ract)
        else:
            layer = LSTM.from_keras(kernel, recurrent, bias, activation=act,
                                    recurrent_activation=ract)
    b.push(layer)
    if not _flag(b, e, "return_sequences", False):
        b.seq, b.many_to_one = False, True


def _dense(b: _Build, e: Entry, stored: Entry | None = None) -> None:
    kernel, bias = _weights(b, e, _flag(b, e, "use_bias", True), ("kernel", "bias"), stored)
    kernel = np.asarray(kernel)
    if kernel.ndim != 2:
        raise _fail(b.where, e, f"tensor kernel: expected a 2-D (in, out) matrix, got shape "
                                f"{kernel.shape}")
    # Keras Dense kernels are (in, out): transposed to torch's (out, in)
    b.push(Dense(kernel.T, bias, _activation(e.config.get("activation"), b, e)))


def _time_distributed(b: _Build, e: Entry) -> None:
    inner = e.config.get("layer")
    inner_e = _entry(inner, b.where) if isinstance(inner, dict) else None
    if inner_e is None or inner_e.class_name != "Dense":
        kind = inner_e.class_name if inner_e else inner
        raise _fail(b.where, e, f"wraps a {kind!r}; streamgru reads TimeDistributed(Dense) only")
    # the wrapper's weights are the Dense's; its own config says what to compute
    _dense(b, Entry("Dense", e.name, inner_e.config, inner_e.module), stored=e)


def _apply(b: _Build, e: Entry, act: Any) -> None:
    """An activation on its own: folded into a preceding linear Dense (exact), or
    an identity-weight Dense (also exact: x * 1 plus zeros)."""
    if act.name == "identity":
        return
    last = b.layers[-1] if b.layers else None
    if isinstance(last, Dense) and last.activation.name == "identity":
        b.layers[-1] = Dense(last.weight, last.bias, act)
        return
    if b.size is None:
        raise _fail(b.where, e, "an activation before any layer with weights, and the model "
                                "config gives no input size")
    eye = np.eye(b.size, dtype=last.dtype if last is not None else np.float32)
    b.push(Dense(eye, None, act))


def _activation_layer(b: _Build, e: Entry) -> None:
    _apply(b, e, _activation(e.config.get("activation"), b, e))


def _number(b: _Build, e: Entry, key: str, default: float | None) -> float | None:
    v = e.config.get(key, default)
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise _fail(b.where, e, f"config {key!r} should be a number, got {v!r}")
    return v


def _relu(b: _Build, e: Entry) -> None:
    slope = _number(b, e, "negative_slope", 0.0)
    if _number(b, e, "max_value", None) is not None or _number(b, e, "threshold", 0.0) != 0:
        raise _fail(b.where, e, "max_value and threshold are not supported (only "
                                "max(x, negative_slope * x))")
    _apply(b, e, keras_activation(("leaky_relu", slope) if slope else "relu"))


def _leaky_relu(b: _Build, e: Entry) -> None:
    key = "negative_slope" if "negative_slope" in e.config else "alpha"  # Keras 3 / Keras 2
    _apply(b, e, keras_activation(("leaky_relu", _number(b, e, key, 0.3))))


def _elu(b: _Build, e: Entry) -> None:
    _apply(b, e, keras_activation(("elu", _number(b, e, "alpha", 1.0))))


def _softmax(b: _Build, e: Entry) -> None:
    axis = e.config.get("axis", -1)
    if axis not in (-1, [-1], 2 if b.seq else 1):
        raise _fail(b.where, e, f"softmax over axis {axis!r}; only the feature axis can stream")
    _apply(b, e, keras_activation("softmax"))


def _masking(b: _Build, e: Entry) -> None:
    b.notes.append(f"layer {e.name!r} (Masking, mask_value={e.config.get('mask_value')}) is "
                   f"the identity: a stream has no padded steps")


def _flatten(b: _Build, e: Entry) -> None:
    if b.seq:
        raise _fail(b.where, e, "flattens the time axis into the features, which needs the "
                                "whole sequence")


_HANDLERS: dict[str, Callable[[_Build, Entry], None]] = {
    "GRU": _recurrent, "LSTM": _recurrent, "SimpleRNN": _recurrent,
    "Dense": _dense, "TimeDistributed": _time_distributed,
    "Activation": _activation_layer, "ReLU": _relu, "LeakyReLU": _leaky_relu, "ELU": _elu,
    "Softmax": _softmax, "Masking": _masking, "Flatten": _flatten,
    **{n: (lambda b, e: None) for n in _NO_OPS},
}


def _input_shape(chain: list[Entry]) -> list | None:
    for e in chain[:1]:
        for key in ("batch_shape", "batch_input_shape"):   # Keras 3 / Keras 2
            shape = e.config.get(key)
            if isinstance(shape, list) and shape:
                return shape
    return None


def build(chain: list[Entry], fetch: Callable[[Entry], list], where: str,
          keras_version: int | None) -> tuple[list[Layer], dict]:
    """Canonical layers for the Keras layers ``chain`` (in data-flow order),
    with ``fetch(entry)`` giving a layer's weights; also the metadata
    (``many_to_one``, notes)."""
    b = _Build(where, fetch, keras_version)
    shape = _input_shape(chain)
    if shape is not None:
        b.seq = len(shape) >= 3
        if isinstance(shape[-1], int) and not isinstance(shape[-1], bool) and shape[-1] > 0:
            b.size = shape[-1]
    for i, e in enumerate(chain):
        if e.class_name == "InputLayer":
            if i:
                raise _fail(where, e, "an input layer in the middle of the model")
            continue
        if e.class_name in _REFUSED:
            raise _fail(where, e, f"not supported: {_REFUSED[e.class_name]}")
        handler = _HANDLERS.get(e.class_name)
        if handler is None:
            custom = e.registered_name or (e.module and not e.module.startswith("keras"))
            if custom:
                raise _fail(where, e, f"a custom layer (module {e.module!r}): Python code, "
                                      f"which streamgru never runs")
            raise _fail(where, e, f"Keras layer type {e.class_name!r} is not supported; "
                                  f"supported: {', '.join(sorted(_HANDLERS))}, InputLayer")
        try:
            handler(b, e)
        except WeightsError as exc:
            msg = str(exc)
            raise (exc if msg.startswith(where) else _fail(where, e, msg)) from None
    if not b.layers:
        raise WeightsError(f"{where}: the model has no layer that computes anything")
    meta: dict[str, Any] = {"many_to_one": b.many_to_one}
    if b.notes:
        meta["notes"] = b.notes
    return b.layers, meta
