"""RTNeural, AIDA-X and GuitarML model files (``.json``, ``.aidax``).

Two layouts are told apart by their keys:

RTNeural (its Keras exporter ``python/model_utils.py``; AIDA-X's trainer
writes the same): ``{"in_shape": [null, null, I], "layers": [...]}``, each
layer ``{"type", "activation", "shape", "weights"}`` with Keras's arrays:

- ``gru``: kernel (I, 3H), recurrent kernel (H, 3H), bias (2, 3H); gate
  columns z, r, h; RTNeural computes the reset_after cell;
- ``lstm``: kernel (I, 4H), recurrent kernel (H, 4H), bias (4H,); gate
  columns i, f, c, o;
- ``dense`` / ``time-distributed-dense``: kernel (in, out), bias (out,)
  optional, then its ``activation`` if not empty;
- ``activation``: tanh, relu, sigmoid, softmax or elu (alpha 1);
- ``conv1d``: ``kernel_size`` and ``dilation`` (numbers, or Keras's
  one-entry lists: RTNeural reads the last entry), ``groups`` (default 1),
  kernel (k, in / groups, out) and bias (out,), then its ``activation``.
  RTNeural's conv is always causal, whatever padding trained it:
  ``kernel[i]`` multiplies ``x[t - (k - 1 - i) * dilation]``, zeros before
  the first sample;
- ``batchnorm``: ``epsilon`` and 4 arrays gamma, beta, running mean,
  running variance, or 2 (mean, variance: no affine part);
  ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta``, folded into a
  conv right before it;
- ``prelu``: one array of shape (1, C) or (1, 1) (Keras's ``alpha`` with
  ``shared_axes=[1]``; RTNeural reads its first row): ``x`` if ``x >= 0``
  else ``alpha * x``.

RTNeural ignores a recurrent layer's ``activation`` and always computes
tanh, so anything but ``tanh`` or empty there is refused rather than run as
a different model. AIDA-X adds ``in_skip`` (1: the audio input x[0] is added
to the output), ``in_gain`` and ``out_gain`` in dB (10^(dB/20), silence at
-90 dB and below), applied as ``out_gain * (net(in_gain * x0, params...) +
in_gain * x0)``: the Model's ``input_skip=0`` and ``output_gain``, with
``in_gain`` folded into the weights of the audio input.

GuitarML / Automated-GuitarAmpModelling (``{"model_data", "state_dict"}``):
see ``guitarml.py``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import WeightsError
from ..layers import (ELEMENTWISE_ACTIVATIONS, GRU, LSTM, BatchNorm, Conv1d, Dense, Layer,
                      make_activation)
from ..model import Model
from . import conv_common, guitarml, jsonfile
from .guard import Budget, check_regular
from .jsonfile import field, kind

OPTIONS = ("dtype",)

# RTNeural's activation names -> streamgru's (elu: RTNeural's default alpha 1)
ACTIVATIONS = {"tanh": "tanh", "relu": "relu", "sigmoid": "sigmoid", "softmax": "softmax",
               "elu": ("elu", 1.0)}
LAYER_TYPES = ("gru", "lstm", "dense", "time-distributed-dense", "activation", "conv1d",
               "batchnorm", "prelu")
KERAS = ("Keras layout: kernel (inputs, n*H) transposed; GRU gate columns z, r, h with a "
         "(2, 3H) bias (reset_after); LSTM gate columns i, f, c, o")
_BIAS = {"gru": "bias, (2, 3H): input and recurrent rows (reset_after)", "lstm": "bias, (4H,)"}
MAX_LAYERS = 1024
SILENT_DB = -90.0  # AIDA-X: a gain at or below this is silence


def sniff(head: bytes) -> bool:
    """A JSON object naming RTNeural's ``in_shape`` or GuitarML's ``model_data``."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text.startswith(b"{") and (b'"in_shape"' in head or b'"model_data"' in head)


def load(path: str, dtype: Any = None, *, budget: Budget | None = None) -> Model:
    """Read an RTNeural / AIDA-X or GuitarML JSON model file."""
    if budget is None:
        budget = Budget(path, check_regular(path).st_size)
    doc = jsonfile.read(path, budget)
    dt = np.float32 if dtype is None else dtype  # Model checks it
    if isinstance(doc, dict) and "model_data" in doc:
        return guitarml.from_document(doc, path, dt, budget)
    if isinstance(doc, dict) and ("layers" in doc or "in_shape" in doc):
        return from_document(doc, path, dt, budget)
    keys = ", ".join(map(repr, list(doc)[:8])) if isinstance(doc, dict) else kind(doc)
    raise WeightsError(
        f"{path}: a JSON file, but none of the JSON models streamgru reads: RTNeural / AIDA-X "
        f"(keys \"in_shape\" and \"layers\"), GuitarML (\"model_data\" and \"state_dict\") or "
        f"NAM (\"architecture\" and \"weights\", usually .nam); it holds {keys}"
    )


def _activation(name: Any, where: str) -> Any:
    if name is None or name == "":
        return None
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise WeightsError(
            f"{where}: unsupported activation {_text(name)}; RTNeural's are "
            f"{', '.join(ACTIVATIONS)} (or empty for none)"
        )
    return ACTIVATIONS[name]


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, str) else f"{kind(value)} {value!r}"[:60]


def _width(layer: dict, where: str) -> int:
    """The layer's output size: the last entry of its ``shape`` (as RTNeural reads it)."""
    shape = field(layer, "shape", where, (list,))
    if not shape or len(shape) > 3:
        raise WeightsError(f"{where}: 'shape' must be [batch, time, size] or [batch, size], "
                           f"got {shape!r}"[:200])
    last = shape[-1]
    if not isinstance(last, int) or isinstance(last, bool) or not 1 <= last <= 1 << 20:
        raise WeightsError(f"{where}: 'shape' must end with the layer's size, got {shape!r}"[:200])
    return last


def _weights(layer: dict, where: str, ndims: tuple[int, ...], names: tuple[str, ...],
             budget: Budget, optional: int = 0) -> list[np.ndarray]:
    """The layer's ``weights`` list as arrays of the given dimensions; the
    last ``optional`` entries may be missing."""
    weights = field(layer, "weights", where, (list,))
    if not len(ndims) - optional <= len(weights) <= len(ndims):
        need = f"{len(ndims) - optional} to {len(ndims)}" if optional else str(len(ndims))
        raise WeightsError(f"{where}: 'weights' holds {len(weights)} arrays, expected {need} "
                           f"({', '.join(names)})")
    return [jsonfile.array(w, f"{where}: weights[{k}] ({names[k]})", ndims[k], budget)
            for k, w in enumerate(weights)]


def _recurrent_activation(layer: dict, where: str) -> None:
    act = layer.get("activation", "")
    if act not in ("", "tanh", None):
        raise WeightsError(
            f"{where}: activation {_text(act)}: RTNeural's recurrent layers always compute "
            f"tanh, so this file would run as a different model there; streamgru refuses it"
        )


def _check_input(where: str, got: int, size: int, tensor: str) -> None:
    if got != size:
        raise WeightsError(f"{where}: {tensor} takes {got} inputs but the previous layer "
                           f"gives {size}")


def _layer(layer: Any, where: str, size: int, budget: Budget) -> tuple[str, Layer | Any]:
    """One RTNeural layer: ("layer", canonical layer) or ("activation", spec)."""
    if not isinstance(layer, dict):
        raise WeightsError(f"{where}: expected a JSON object, got {kind(layer)}")
    ltype = field(layer, "type", where, (str,))
    if ltype not in LAYER_TYPES:
        raise WeightsError(
            f"{where}: unsupported layer type {ltype!r}; streamgru reads RTNeural's "
            f"{', '.join(LAYER_TYPES)}"
        )
    width = _width(layer, where)
    if ltype == "activation":
        if width != size:
            raise WeightsError(f"{where}: shape says {width} values, the previous layer gives {size}")
        return "activation", _activation(layer.get("activation", ""), where)
    if ltype in ("conv1d", "batchnorm", "prelu"):
        if ltype != "conv1d" and width != size:
            raise WeightsError(f"{where}: shape says {width} values, the previous layer gives {size}")
        return "layer", _CONV_TYPES[ltype](layer, where, size, width, budget)
    if ltype in ("dense", "time-distributed-dense"):
        arrays = _weights(layer, where, (2, 1), ("kernel", "bias"), budget, optional=1)
        kernel = arrays[0]
        _check_input(where, kernel.shape[0], size, "weights[0] (kernel)")
        if kernel.shape[1] != width:
            raise WeightsError(f"{where}: weights[0] (kernel) has {kernel.shape[1]} columns but "
                               f"'shape' says {width} outputs")
        act = _activation(layer.get("activation", ""), where)
        # Keras stores the kernel as (in, out): the transpose of torch's (out, in)
        return "layer", Dense(kernel.T, arrays[1] if len(arrays) > 1 else None, act)
    _recurrent_activation(layer, where)
    kernel, recurrent, bias = _weights(layer, where, (2, 2, 2 if ltype == "gru" else 1),
                                       ("kernel", "recurrent_kernel", _BIAS[ltype]), budget)
    _check_input(where, kernel.shape[0], size, "weights[0] (kernel)")
    if recurrent.shape[0] != width:
        raise WeightsError(f"{where}: weights[1] (recurrent_kernel) has {recurrent.shape[0]} rows "
                           f"but 'shape' says {width} units")
    if ltype == "gru":
        # Keras columns z, r, h, reset_after bias (2, 3H): from_keras reorders to r, z, n
        return "layer", GRU.from_keras(kernel, recurrent, bias, reset_after=True)
    # Keras LSTM columns i, f, c, o are the canonical order, transposed
    return "layer", LSTM.from_keras(kernel, recurrent, bias)


def _last_int(layer: dict, key: str, where: str, default: Any = ...) -> int:
    """A conv setting as a number or a Keras tuple (``[3]``: RTNeural reads the last entry)."""
    value = field(layer, key, where, (int, list), default=default)
    if isinstance(value, list):
        value = value[-1] if len(value) == 1 else None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 1 << 24:
        raise WeightsError(f"{where}: {key!r} must be a whole number from 1 to {1 << 24} (or a "
                           f"list of one), got {_text(layer[key])}")
    return value


def _conv1d(layer: dict, where: str, size: int, width: int, budget: Budget) -> Conv1d:
    k, d = _last_int(layer, "kernel_size", where), _last_int(layer, "dilation", where)
    groups = _last_int(layer, "groups", where, default=1)
    kernel, *bias = _weights(layer, where, (3, 1), ("kernel (k, in / groups, out)", "bias"),
                             budget, optional=1)
    if kernel.shape[0] != k or kernel.shape[1] * groups != size or kernel.shape[2] != width:
        raise WeightsError(
            f"{where}: weights[0] (kernel) has shape {kernel.shape}; kernel_size={k}, "
            f"groups={groups}, {size} inputs from the previous layer and 'shape' {width} outputs "
            f"need ({k}, {size / groups:g}, {width})")
    conv_common.ring(budget, k, d, size, where)
    # RTNeural's kernel[i] multiplies x[t - (k-1-i)*d]: Keras's causal layout
    return Conv1d.from_keras(kernel, bias[0] if bias else None, dilation=d, groups=groups)


def _batchnorm(layer: dict, where: str, size: int, width: int, budget: Budget) -> BatchNorm:
    eps = field(layer, "epsilon", where, (int, float))
    n = len(field(layer, "weights", where, (list,)))
    names = ("gamma", "beta", "running_mean", "running_variance")
    if n not in (2, 4):
        raise WeightsError(f"{where}: 'weights' holds {n} arrays; RTNeural reads 4 ({', '.join(names)}) "
                           f"or 2 (running_mean, running_variance: no affine part)")
    arrays = _weights(layer, where, (1,) * n, names[4 - n:], budget)
    for k, (a, name) in enumerate(zip(arrays, names[4 - n:])):
        if a.shape != (size,):
            raise WeightsError(f"{where}: weights[{k}] ({name}) has shape {a.shape}, but the "
                               f"previous layer gives {size} values")
    gamma, beta = (arrays[0], arrays[1]) if n == 4 else (None, None)
    # RTNeural: gamma * (x - mean) / sqrt(var + epsilon) + beta, torch's BatchNorm1d form
    return BatchNorm(arrays[-2], arrays[-1], gamma, beta, eps=eps)


def _prelu(layer: dict, where: str, size: int, width: int, budget: Budget) -> Layer:
    (alpha,) = _weights(layer, where, (2,), ("alpha, (1, C) or (1, 1)",), budget)
    return conv_common.prelu(alpha, size, f"{where}: weights[0] (alpha)")


_CONV_TYPES = {"conv1d": _conv1d, "batchnorm": _batchnorm, "prelu": _prelu}


def _attach(layers: list[Layer], act: Any, size: int) -> None:
    """An activation after the last layer: the Dense's or Conv1d's own when it
    has none yet (RTNeural runs it right after), else an identity Dense."""
    last = layers[-1] if layers else None
    if isinstance(last, Dense) and last.activation.name == "identity":
        layers[-1] = Dense(last.weight, last.bias, act)
    elif (isinstance(last, Conv1d) and last.activation.name == "identity"
          and make_activation(act).name in ELEMENTWISE_ACTIVATIONS):
        layers[-1] = Conv1d(last.weight, last.bias, dilation=last.dilation, groups=last.groups,
                            activation=act)
    else:
        layers.append(Dense(np.eye(size), None, act))


def _db(doc: dict, key: str, path: str) -> tuple[float, float]:
    """(dB, linear factor) of AIDA-X's ``in_gain`` / ``out_gain`` (0 dB if absent)."""
    db = field(doc, key, path, (int, float), default=0.0)
    if not np.isfinite(db):
        raise WeightsError(f"{path}: {key!r} must be a finite number of dB, got {db}")
    return float(db), 0.0 if db <= SILENT_DB else 10.0 ** (db / 20.0)


def _scaled(layer: Layer, name: str, column: int | None, factor: float) -> Layer:
    """``layer`` with array ``name`` multiplied by ``factor`` (only ``column``
    if given)."""
    arrays = dict(layer.arrays())
    arr = arrays[name].copy()
    if column is None:
        arr *= factor
    else:
        arr[:, column] *= factor
    arrays[name] = arr
    return type(layer).from_config(layer.config(), arrays)


def from_document(doc: dict, path: str, dtype: Any, budget: Budget) -> Model:
    """The Model an RTNeural / AIDA-X document describes."""
    in_shape = field(doc, "in_shape", path, (list,))
    if not in_shape or len(in_shape) > 3:
        raise WeightsError(f"{path}: 'in_shape' must be [batch, time, inputs], got {in_shape!r}"[:200])
    size = in_shape[-1]
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 1 << 20:
        raise WeightsError(f"{path}: 'in_shape' must end with the number of inputs, got "
                           f"{in_shape!r}"[:200])
    entries = field(doc, "layers", path, (list,))
    if not entries or len(entries) > MAX_LAYERS:
        raise WeightsError(f"{path}: 'layers' must list 1 to {MAX_LAYERS} layers, got {len(entries)}")
    layers: list[Layer] = []
    many_to_one = False
    for i, entry in enumerate(entries):
        where = f"{path}: layer {i}" + (f" ({entry['type']})" if isinstance(entry, dict)
                                        and isinstance(entry.get("type"), str) else "")
        try:
            what, item = _layer(entry, where, size, budget)
        except WeightsError as exc:
            msg = str(exc)
            raise WeightsError(msg if msg.startswith(where) else f"{where}: {msg}") from None
        if what == "activation":
            if item is not None:
                _attach(layers, item, size)
            continue
        if isinstance(item, (GRU, LSTM)) and len(entry["shape"]) == 2:
            many_to_one = True  # return_sequences=False: Keras answers once per sequence
        if isinstance(item, BatchNorm):
            conv_common.add_batchnorm(layers, item)
        else:
            layers.append(item)
        size = item.output_size
        if isinstance(item, Conv1d):
            act = _activation(entry.get("activation", ""), where)
            if act is not None:
                _attach(layers, act, size)
    if not layers:
        raise WeightsError(f"{path}: 'layers' holds only empty activations; nothing to run")

    skip = field(doc, "in_skip", path, (int,), default=0)
    in_db, g_in = _db(doc, "in_gain", path)
    out_db, g_out = _db(doc, "out_gain", path)
    O = layers[-1].output_size
    if skip not in (0, O) or skip > in_shape[-1]:
        raise WeightsError(
            f"{path}: in_skip={skip}: the first {skip} inputs are added to the {O} outputs; "
            f"streamgru (like AIDA-X) needs in_skip 0 or equal to the number of outputs"
        )
    input_skip = 0 if skip else None
    gain = g_out
    if g_in != 1.0:
        # AIDA-X scales the audio input x[0] (not the parameter inputs) before the model
        first = layers[0]
        if not isinstance(first, (Dense, GRU, LSTM)):
            raise WeightsError(f"{path}: in_gain with a first layer {type(first).__name__} is not "
                               f"supported (AIDA-X models start with a recurrent or dense layer)")
        layers[0] = _scaled(first, "weight" if isinstance(first, Dense) else "weight_ih", 0, g_in)
        if input_skip is not None and g_in == 0.0:
            input_skip = None  # the skipped input is silenced too
        elif input_skip is not None:
            # out * (net + g_in x0) = (out * g_in) * (net / g_in + x0): fold 1/g_in into the head
            last = layers[-1]
            if not (isinstance(last, Dense) and last.activation.name == "identity"):
                raise WeightsError(
                    f"{path}: in_gain with in_skip needs a last dense layer without activation "
                    f"(to carry 1/in_gain); this model ends with {type(last).__name__}"
                )
            layers[-1] = _scaled(_scaled(last, "weight", None, 1.0 / g_in), "bias", None, 1.0 / g_in)
            gain = g_out * g_in
    aidax = any(k in doc for k in ("in_skip", "in_gain", "out_gain"))
    metadata: dict[str, Any] = {
        "format": "aidax" if aidax or path.lower().endswith(".aidax") else "rtneural",
        "source": os.path.basename(path),
        "conventions": KERAS,
    }
    if aidax:
        metadata.update(in_skip=skip, in_gain_db=in_db, out_gain_db=out_db)
    if many_to_one:
        metadata["many_to_one"] = True
    if isinstance(doc.get("metadata"), dict):
        metadata["file_metadata"] = doc["metadata"]
    try:
        return Model(layers, dtype=dtype, metadata=metadata, input_skip=input_skip, output_gain=gain)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
