"""Keras layers (their configs parsed as data, never run) to canonical layers.

``build`` takes a model's layers in data-flow order (``keras_graph``) and a
``fetch(entry)`` that returns one layer's weight arrays in Keras order, and
returns the canonical layers. It knows nothing of files: ``keras.py``
supplies ``fetch`` for each source.

Supported: ``Sequential`` and functional models (one input, one output;
one whose layers branch and join again becomes a graph, keras_dag); layers ``GRU`` (both
``reset_after``), ``LSTM``, ``SimpleRNN``, ``Dense``, ``TimeDistributed(Dense)``,
``Activation``, ``ReLU``, ``LeakyReLU``, ``ELU``, ``Softmax``, ``InputLayer``;
``Conv1D``, ``DepthwiseConv1D``, ``ZeroPadding1D``, ``BatchNormalization``,
``LayerNormalization`` and ``PReLU`` (``keras_conv``, which says how each
padding lines up with the stream);
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
from ..layers import (ELEMENTWISE_ACTIVATIONS, GRU, LSTM, RNN, Conv1d, Dense, Layer,
                      keras_activation)
from .guard import Budget
from .keras_graph import Entry, entry, fail

__all__ = ["build"]


# identity at inference: random noise and dropout are training-only
_NO_OPS = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
           "ActivityRegularization", "Identity")
_REFUSED = {
    "Bidirectional": "it reads the sequence backwards from its end, so it needs the future "
                     "and cannot run one sample at a time",
    "Lambda": "it holds Python code, and streamgru never runs code from a file",
    "TFOpLambda": "it holds a TensorFlow operation, and streamgru never runs code from a file",
    "CuDNNGRU": "re-save it as a GRU layer with reset_after=True",
    "CuDNNLSTM": "re-save it as an LSTM layer",
    "RepeatVector": "it repeats one vector over a sequence of a fixed length",
}


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
    budget: Budget = field(default_factory=Budget.unlimited)
    left_pad: int | None = None     # a ZeroPadding1D((p, 0)) waiting for its conv
    valid_delay: int = 0            # samples the stream runs ahead of padding="valid" convs
    valid_layers: set = field(default_factory=set)  # indices of those convs in ``layers``

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
            raise fail(b.where, e, f"{what} {shown!r} (module {module!r}) is a custom object, "
                                    f"Python code that streamgru never runs")
    if value is not None and not isinstance(value, str):
        raise fail(b.where, e, f"malformed {what} {value!r}")
    if value == "hard_sigmoid" and b.version not in (2, 3):
        raise fail(b.where, e, f"{what} 'hard_sigmoid' is 0.2 x + 0.5 in Keras 2 and "
                                f"x / 6 + 0.5 in Keras 3, and the file does not say which Keras "
                                f"wrote it; pass sg.load(path, keras_version=2) or 3")
    try:
        return keras_activation(value, b.version)
    except WeightsError as exc:
        raise fail(b.where, e, f"{what}: {exc}") from None


def _weights(b: _Build, e: Entry, use_bias: bool, names: tuple[str, ...],
             stored: Entry | None = None) -> list:
    """``e``'s weights (kept under the layer ``stored``, default ``e``), with
    None for an absent bias."""
    arrays = list(b.fetch(stored or e))
    want = len(names) if use_bias else len(names) - 1
    if len(arrays) != want:
        raise fail(b.where, e, f"expected {want} weight tensors ({', '.join(names[:want])}), "
                                f"found {len(arrays)}")
    return arrays + [None] * (len(names) - want)


def _flag(b: _Build, e: Entry, key: str, default: Any) -> Any:
    value = e.config.get(key, default)
    if not isinstance(value, type(default)):
        raise fail(b.where, e, f"config {key!r} should be a {type(default).__name__}, "
                                f"got {value!r}")
    return value


def _recurrent(b: _Build, e: Entry) -> None:
    for key, why in (("go_backwards", "reads the sequence backwards from its end, so it needs "
                                      "the future and cannot run one sample at a time"),
                     ("return_state", "returns its state as extra outputs; a stream has one output"),
                     ("time_major", "takes time-major input")):
        if _flag(b, e, key, False):
            raise fail(b.where, e, f"{key}=True is not supported: the layer {why}")
    if not b.seq:
        raise fail(b.where, e, "follows a layer that returned only its last step; there is no "
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
        raise fail(b.where, e, f"tensor kernel: expected a 2-D (in, out) matrix, got shape "
                                f"{kernel.shape}")
    # Keras Dense kernels are (in, out): transposed to torch's (out, in)
    b.push(Dense(kernel.T, bias, _activation(e.config.get("activation"), b, e)))


def _time_distributed(b: _Build, e: Entry) -> None:
    inner = e.config.get("layer")
    inner_e = entry(inner, b.where) if isinstance(inner, dict) else None
    if inner_e is None or inner_e.class_name != "Dense":
        kind = inner_e.class_name if inner_e else inner
        raise fail(b.where, e, f"wraps a {kind!r}; streamgru reads TimeDistributed(Dense) only")
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
    if (isinstance(last, Conv1d) and last.activation.name == "identity"
            and act.name in ELEMENTWISE_ACTIVATIONS):
        b.layers[-1] = Conv1d(last.weight, last.bias, dilation=last.dilation,
                              groups=last.groups, activation=act)
        return
    if b.size is None:
        raise fail(b.where, e, "an activation before any layer with weights, and the model "
                                "config gives no input size")
    eye = np.eye(b.size, dtype=last.dtype if last is not None else np.float32)
    b.push(Dense(eye, None, act))


def _activation_layer(b: _Build, e: Entry) -> None:
    _apply(b, e, _activation(e.config.get("activation"), b, e))


def _number(b: _Build, e: Entry, key: str, default: float | None) -> float | None:
    v = e.config.get(key, default)
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise fail(b.where, e, f"config {key!r} should be a number, got {v!r}")
    return v


def _relu(b: _Build, e: Entry) -> None:
    slope = _number(b, e, "negative_slope", 0.0)
    if _number(b, e, "max_value", None) is not None or _number(b, e, "threshold", 0.0) != 0:
        raise fail(b.where, e, "max_value and threshold are not supported (only "
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
        raise fail(b.where, e, f"softmax over axis {axis!r}; only the feature axis can stream")
    _apply(b, e, keras_activation("softmax"))


def _masking(b: _Build, e: Entry) -> None:
    b.notes.append(f"layer {e.name!r} (Masking, mask_value={e.config.get('mask_value')}) is "
                   f"the identity: a stream has no padded steps")


def _flatten(b: _Build, e: Entry) -> None:
    if b.seq:
        raise fail(b.where, e, "flattens the time axis into the features, which needs the "
                                "whole sequence")


_HANDLERS: dict[str, Callable[[_Build, Entry], None]] = {
    "GRU": _recurrent, "LSTM": _recurrent, "SimpleRNN": _recurrent,
    "Dense": _dense, "TimeDistributed": _time_distributed,
    "Activation": _activation_layer, "ReLU": _relu, "LeakyReLU": _leaky_relu, "ELU": _elu,
    "Softmax": _softmax, "Masking": _masking, "Flatten": _flatten,
    **{n: (lambda b, e: None) for n in _NO_OPS},
}


def _tables() -> tuple[dict, dict]:
    """(handlers, refusals) with keras_conv's convolution and normalisation
    layers (imported here: keras_conv builds on this module's helpers)."""
    from .keras_conv import HANDLERS, REFUSED

    return {**_HANDLERS, **HANDLERS}, {**_REFUSED, **REFUSED}


def _input_shape(chain: list[Entry]) -> list | None:
    for e in chain[:1]:
        for key in ("batch_shape", "batch_input_shape"):   # Keras 3 / Keras 2
            shape = e.config.get(key)
            if isinstance(shape, list) and shape:
                return shape
    return None


def build(chain: list[Entry], fetch: Callable[[Entry], list], where: str,
          keras_version: int | None, budget: Budget | None = None,
          size: int | None = None) -> tuple[list[Layer], dict]:
    """Canonical layers for the Keras layers ``chain`` (in data-flow order),
    with ``fetch(entry)`` giving a layer's weights; also the metadata
    (``many_to_one``, ``valid_delay``, notes). ``size``: the features the
    chain takes, where its first entry does not say (a run of a graph)."""
    b = _Build(where, fetch, keras_version, budget=budget or Budget.unlimited(where), size=size)
    shape = _input_shape(chain)
    if shape is not None:
        b.seq = len(shape) >= 3
        if isinstance(shape[-1], int) and not isinstance(shape[-1], bool) and shape[-1] > 0:
            b.size = shape[-1]
    handlers, refused = _tables()
    for i, e in enumerate(chain):
        if e.class_name == "InputLayer":
            if i:
                raise fail(where, e, "an input layer in the middle of the model")
            continue
        if e.class_name in refused:
            raise fail(where, e, f"not supported: {refused[e.class_name]}")
        handler = handlers.get(e.class_name)
        if handler is None:
            # registered objects are "package>Name"; Keras 3 also records the module
            custom = (e.registered_name or ">" in e.class_name
                      or (e.module and not e.module.startswith("keras")))
            if custom:
                raise fail(where, e, f"a custom layer (module {e.module!r}): Python code, "
                                      f"which streamgru never runs")
            raise fail(where, e, f"Keras layer type {e.class_name!r} is not supported; "
                                  f"supported: {', '.join(sorted(handlers))}, InputLayer")
        if b.left_pad is not None and e.class_name not in ("Conv1D", "DepthwiseConv1D"):
            raise fail(where, e, f"follows ZeroPadding1D(({b.left_pad}, 0)), which must feed a "
                                  f"Conv1D or DepthwiseConv1D directly (the causal conv idiom)")
        n, delayed = len(b.layers), b.valid_delay
        try:
            handler(b, e)
        except WeightsError as exc:
            msg = str(exc)
            raise (exc if msg.startswith(where) else fail(where, e, msg)) from None
        if delayed and any(layer.state_size and i not in b.valid_layers
                           for i, layer in enumerate(b.layers[n:], n)):
            raise fail(where, e, f"has memory and follows padding='valid' convolutions that the "
                                  f"stream runs {delayed} samples ahead of Keras: it would see "
                                  f"{delayed} samples the Keras model never computed. Use "
                                  f"padding='causal' (or ZeroPadding1D((L, 0)) before the conv)")
    if b.left_pad is not None:
        raise WeightsError(f"{where}: the model ends with a ZeroPadding1D, not a conv")
    if not b.layers:
        raise WeightsError(f"{where}: the model has no layer that computes anything")
    meta: dict[str, Any] = {"many_to_one": b.many_to_one}
    if b.valid_delay:
        meta["valid_delay"] = b.valid_delay
        b.notes.append(f"padding='valid' convolutions stream causally: the stream's output at step "
                       f"t + {b.valid_delay} is the Keras model's output at t")
    if b.notes:
        meta["notes"] = b.notes
    return b.layers, meta
