"""PyTorch state dict (key -> array) to Model.

Keys are grouped by module (everything before the last dot) and the modules
are taken in their order of appearance, which is the order the modules were
registered in ``__init__``:

- ``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN``: ``{prefix}weight_ih_l{k}``,
  ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` and, for an LSTM
  with ``proj_size``, ``weight_hr_l{k}``; every layer k becomes one layer.
- ``nn.GRUCell`` / ``LSTMCell`` / ``RNNCell``: the same names without ``_l{k}``.
- ``nn.Linear``: a 2-D ``weight`` and an optional ``bias``.

The kind of a recurrent layer follows from the gate multiple of
``weight_hh`` (rows / columns: 3 GRU, 4 LSTM, 1 RNN). What a state dict
cannot say is given by keywords: ``rnn_nonlinearity`` (tanh or relu) for
Elman layers, ``activations`` (one per Linear) for the Dense layers, and
``order`` when the forward order differs from the registration order.

Tensors that are not layer weights (a learned ``_initial_hidden``, a
``_sample_rate`` buffer, a recurrent module's extra buffer) do not stop the
load: they are kept in ``metadata["extra_tensors"]`` (listed by ``streamgru
info``). A module with the weights of a layer streamgru cannot run
(BatchNorm, LayerNorm, Conv) is refused, naming its key. A wrapper prefix
shared by every layer (``module.`` from DataParallel, ``model.``/``net.``
from Lightning modules and training scripts, ``_orig_mod.`` from
``torch.compile``) is shown stripped, recorded in ``metadata["prefix"]``, and
may be left out of ``order=``.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from ..errors import WeightsError
from ..layers import GRU, LSTM, RNN, Dense, Layer
from ..layers.quant import QuantizedWeight
from ..model import Model

__all__ = ["model_from_state_dict"]

_RECURRENT = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")
_CELL = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
_LINEAR = ("weight", "bias")
_KINDS = {3: "GRU", 4: "LSTM", 1: "RNN"}
# parameter names of layers streamgru does not run: a module holding any of
# these is a layer the forward applies, never a loose extra tensor
_LAYER_STATE = {"running_mean", "running_var", "num_batches_tracked", "in_proj_weight",
                "in_proj_bias", "weight_g", "weight_v", "weight_orig", "original",
                "original0", "original1"}
# what wrappers put in front of every key
_WRAPPERS = ("module", "model", "net", "network", "_orig_mod")


class TensorTable(dict):
    """Name -> array of the tensors that are not layer weights; prints as a
    short list (``streamgru info``) rather than the arrays."""

    def __str__(self) -> str:
        def one(k, v):
            if isinstance(v, np.ndarray):
                return f"{k} {tuple(v.shape)} {v.dtype}" if v.size > 4 else f"{k} = {v.tolist()}"
            return f"{k} = {v!r}"[:80]

        return ", ".join(one(k, v) for k, v in self.items())


def _split(key: str) -> tuple[str, str]:
    """``"encoder.gru.weight_ih_l0"`` -> (``"encoder.gru"``, ``"weight_ih_l0"``)."""
    module, _, param = key.rpartition(".")
    return module, param


def _module_label(module: str) -> str:
    return repr(module) if module else "(top level)"


def _float_array(path: str, key: str, value: Any) -> np.ndarray:
    if isinstance(value, QuantizedWeight):  # from torch_quant: the file's own int8/float16
        return value
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
        what = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
        raise WeightsError(f"{path}: tensor {key}: expected floating-point weights, got {what}")
    return value


def _recurrent_layers(path: str, module: str, params: dict[str, np.ndarray],
                      nonlinearity: str, extras: dict) -> tuple[list[Layer], str]:
    """The layers of one nn.GRU / LSTM / RNN (keys ``*_l{k}``) or Cell module;
    other tensors of the module go to ``extras``."""
    prefix = module + "." if module else ""
    by_layer: dict[int | None, dict[str, tuple[str, np.ndarray]]] = {}
    for param, arr in params.items():
        m = _RECURRENT.match(param)
        if m:
            if m.group(3):
                raise WeightsError(
                    f"{path}: tensor {prefix}{param}: module {_module_label(module)} is "
                    f"bidirectional; a bidirectional layer reads the sequence backwards from "
                    f"its end, so it needs the future and cannot run one sample at a time"
                )
            by_layer.setdefault(int(m.group(2)), {})[m.group(1)] = (prefix + param, arr)
        elif param in _CELL:
            by_layer.setdefault(None, {})[param] = (prefix + param, arr)
        elif param in _LAYER_STATE:
            raise WeightsError(
                f"{path}: tensor {prefix}{param}: module {_module_label(module)} holds recurrent "
                f"weights and {param}, a layer streamgru cannot run"
            )
        else:  # e.g. a learned initial state registered on a GRU subclass
            extras[prefix + param] = arr
    if None in by_layer and len(by_layer) > 1:
        raise WeightsError(
            f"{path}: module {_module_label(module)} mixes cell keys (weight_ih) and layer keys "
            f"(weight_ih_l0)"
        )
    numbers = sorted(k for k in by_layer if k is not None)
    if numbers and numbers != list(range(len(numbers))):
        missing = next(k for k in range(len(numbers)) if k not in by_layer)
        raise WeightsError(
            f"{path}: module {_module_label(module)} has layers {numbers} but no "
            f"{prefix}weight_ih_l{missing} (layer {missing} is missing)"
        )
    layers: list[Layer] = []
    kinds = set()
    for k in (numbers or [None]):
        found = by_layer[k]
        suffix = "" if k is None else f"_l{k}"
        for need in ("weight_ih", "weight_hh"):
            if need not in found:
                raise WeightsError(f"{path}: tensor {prefix}{need}{suffix} is missing")
        arrays = {n: _float_array(path, key, a) for n, (key, a) in found.items()}
        kind = _kind(path, found, prefix, suffix)
        kinds.add(kind)
        try:
            if kind == "GRU":
                layer: Layer = GRU.from_torch(
                    arrays["weight_ih"], arrays["weight_hh"], arrays.get("bias_ih"), arrays.get("bias_hh")
                )
            elif kind == "LSTM":
                layer = LSTM.from_torch(
                    arrays["weight_ih"], arrays["weight_hh"], arrays.get("bias_ih"),
                    arrays.get("bias_hh"), weight_hr=arrays.get("weight_hr"),
                )
            else:
                layer = RNN.from_torch(
                    arrays["weight_ih"], arrays["weight_hh"], arrays.get("bias_ih"),
                    arrays.get("bias_hh"), nonlinearity=nonlinearity,
                )
        except WeightsError as exc:
            # name the state-dict key, not only the canonical tensor name
            msg = re.sub(r"tensor (\w+)", lambda m: f"tensor {prefix}{m.group(1)}{suffix}", str(exc), 1)
            raise WeightsError(f"{path}: {msg}") from None
        layers.append(layer)
    if len(kinds) > 1:
        raise WeightsError(
            f"{path}: module {_module_label(module)} mixes layer kinds {sorted(kinds)}"
        )
    label = kinds.pop() + ("" if numbers else " cell")
    if len(layers) > 1:
        label += f" x{len(layers)}"
    return layers, label


def _kind(path: str, found: dict[str, tuple[str, np.ndarray]], prefix: str, suffix: str) -> str:
    """GRU, LSTM or RNN from the gate multiple of weight_hh."""
    key, w_hh = found["weight_hh"]
    if len(w_hh.shape) != 2 or 0 in w_hh.shape:
        raise WeightsError(f"{path}: tensor {key}: expected a 2-D matrix, got shape {w_hh.shape}")
    if "weight_hr" in found:
        hr_key, w_hr = found["weight_hr"]
        if len(w_hr.shape) != 2 or w_hr.shape[0] != w_hh.shape[1]:
            raise WeightsError(
                f"{path}: tensor {hr_key}: expected shape ({w_hh.shape[1]}, hidden), got {w_hr.shape}"
            )
        if w_hh.shape[0] != 4 * w_hr.shape[1]:
            raise WeightsError(
                f"{path}: tensor {key}: a projected LSTM needs {4 * w_hr.shape[1]} rows "
                f"(4 x hidden {w_hr.shape[1]}), got shape {w_hh.shape}"
            )
        return "LSTM"
    rows, cols = w_hh.shape
    gates = rows // cols if rows % cols == 0 else 0
    if gates not in _KINDS:
        raise WeightsError(
            f"{path}: tensor {key}: shape {w_hh.shape} is not (3H, H) GRU, (4H, H) LSTM "
            f"or (H, H) RNN"
        )
    return _KINDS[gates]


def _linear(path: str, module: str, params: dict[str, np.ndarray]) -> Dense:
    prefix = module + "." if module else ""
    extra = [p for p in params if p not in _LINEAR]  # in the file's order
    if extra or "weight" not in params:
        key = prefix + (extra[0] if extra else "bias")
        raise WeightsError(
            f"{path}: tensor {key}: module {_module_label(module)} is not a GRU, LSTM, RNN or "
            f"Linear layer (keys: {', '.join(params)}); streamgru cannot run it"
        )
    weight = _float_array(path, prefix + "weight", params["weight"])
    if len(weight.shape) != 2:
        raise WeightsError(
            f"{path}: tensor {prefix}weight: shape {weight.shape}; module "
            f"{_module_label(module)} is not a Linear layer (2-D weight) and streamgru cannot run it"
        )
    bias = params.get("bias")
    if bias is not None:
        bias = _float_array(path, prefix + "bias", bias)
    try:
        return Dense(weight, bias)
    except WeightsError as exc:
        msg = re.sub(r"tensor (\w+)", lambda m: f"tensor {prefix}{m.group(1)}", str(exc), 1)
        raise WeightsError(f"{path}: {msg}") from None


def _group(path: str, tensors: dict[str, Any], extras: dict) -> dict[str, dict[str, np.ndarray]]:
    """Module name -> {parameter name: array}, in order of first appearance;
    values that are not arrays go to ``extras``."""
    modules: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        if not isinstance(key, str):
            raise WeightsError(f"{path}: state dict key {type(key).__name__} is not a string")
        if not isinstance(value, (np.ndarray, QuantizedWeight)):
            extras[key] = value  # a module's extra state, a step counter
            continue
        module, param = _split(key)
        modules.setdefault(module, {})[param] = value
    return modules


def _is_layer(params: dict[str, np.ndarray]) -> bool:
    """Does this module hold the weights of a layer (one streamgru runs or
    not), as opposed to loose tensors such as a learned initial state?"""
    return _is_recurrent(params) or "weight" in params or any(p in _LAYER_STATE for p in params)


def _wrapper_prefix(modules: list[str]) -> str:
    """``"module."`` etc. if every layer's name starts with it (nested
    wrappers give ``"model.module."``)."""
    prefix = ""
    while modules:
        head = {m.split(".", 1)[0] for m in modules}
        if len(head) != 1 or head.pop() not in _WRAPPERS or any("." not in m for m in modules):
            break
        first = modules[0].split(".", 1)[0] + "."
        prefix += first
        modules = [m[len(first):] for m in modules]
    return prefix


def _is_recurrent(params: dict[str, np.ndarray]) -> bool:
    return any(_RECURRENT.match(p) for p in params) or "weight_hh" in params


def model_from_state_dict(
    tensors: dict[str, Any],
    path: str,
    dtype: Any = np.float32,
    rnn_nonlinearity: str = "tanh",
    activations: Sequence[Any] | None = None,
    order: Sequence[str] | None = None,
) -> Model:
    """Build a Model from a PyTorch state dict.

    Parameters
    ----------
    tensors : dict of str to numpy array
        The state dict, in its saved order (module registration order).
        Arrays that are not layer weights, and values that are not arrays,
        are kept in ``metadata["extra_tensors"]``.
    path : str
        The file it came from, for messages and metadata.
    dtype : float32 (default) or float64
    rnn_nonlinearity : ``"tanh"`` (default) or ``"relu"``
        The ``nonlinearity`` of every ``nn.RNN`` / ``RNNCell`` (a state dict
        does not record it).
    activations : list, optional
        The activation after each Linear layer, in order (``None``, a name
        such as ``"relu"``, or ``(name, alpha)``). Without it a single Linear
        after the recurrent layers gets none (logits); two or more Linear
        layers need it.
    order : list of str, optional
        The module names (key prefixes, e.g. ``["gru", "fc"]``) in the order
        ``forward`` applies them, if that is not the order of the keys
        (with or without a wrapper prefix such as ``module.``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> sd = {"gru.weight_ih_l0": rng.normal(size=(24, 3)),
    ...       "gru.weight_hh_l0": rng.normal(size=(24, 8)),
    ...       "fc.weight": rng.normal(size=(2, 8)), "fc.bias": np.zeros(2)}
    >>> m = model_from_state_dict(sd, "example.pt")
    >>> m
    Model([GRU(3->8), Dense(8->2)], dtype=float32)
    >>> m.metadata["modules"]
    'gru: GRU (3->8), fc: Linear (8->2)'

    Raises
    ------
    WeightsError
        Keys that do not belong to a GRU, LSTM, RNN or Linear layer,
        bidirectional layers, missing or mis-shaped tensors, or an
        ambiguous Dense activation; the message names the file and the key.
    """
    if not tensors:
        raise WeightsError(f"{path}: the state dict is empty")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.float32, np.float64):
        raise WeightsError(f"dtype must be float32 or float64, got {dtype!r}")
    if rnn_nonlinearity not in ("tanh", "relu"):
        raise WeightsError(
            f"rnn_nonlinearity must be 'tanh' or 'relu' (nn.RNN's nonlinearity), got {rnn_nonlinearity!r}"
        )
    extras = TensorTable()
    grouped = _group(path, tensors, extras)
    modules = {}
    for module, params in grouped.items():
        if _is_layer(params):
            modules[module] = params
        else:
            prefix = module + "." if module else ""
            extras.update({prefix + p: a for p, a in params.items()})
    if not modules:
        shown = ", ".join(list(tensors)[:8])
        raise WeightsError(
            f"{path}: the state dict holds no layer weights (no weight, weight_ih_l0 or "
            f"weight_hh); keys: {shown}"
        )
    wrapper = _wrapper_prefix(list(modules))
    if order is not None:
        order = [str(o) for o in order]
        full = [o if o in modules else wrapper + o for o in order]
        unknown = [o for o, f in zip(order, full) if f not in modules]
        left = [m for m in modules if m not in full]
        if unknown or left or len(set(full)) != len(full):
            raise WeightsError(
                f"{path}: order={order!r} must name each module exactly once; modules in the "
                f"file: {', '.join(repr(m[len(wrapper):]) for m in modules)}"
            )
        modules = {m: modules[m] for m in full}

    # (module, kind label, layers)
    parts: list[tuple[str, str, list[Layer]]] = []
    for module, params in modules.items():
        if _is_recurrent(params):
            layers, label = _recurrent_layers(path, module, params, rnn_nonlinearity, extras)
            parts.append((module, label, layers))
        else:
            parts.append((module, "Linear", [_linear(path, module, params)]))

    dense_at = [i for i, p in enumerate(parts) if p[1] == "Linear"]
    first_recurrent = next((i for i, p in enumerate(parts) if p[1] != "Linear"), len(parts))
    example = "[" + ", ".join(['"relu"'] * (len(dense_at) - 1) + ["None"]) + "]"
    if activations is None:
        if len(dense_at) > 1 or (dense_at and dense_at[0] < first_recurrent):
            names = ", ".join(repr(parts[i][0][len(wrapper):]) for i in dense_at)
            raise WeightsError(
                f"{path}: a state dict does not record the activations between Linear layers "
                f"({names}); give one per Linear, e.g. sg.load(path, activations={example})"
            )
        activations = [None] * len(dense_at)
    activations = list(activations)
    if len(activations) != len(dense_at):
        raise WeightsError(
            f"{path}: activations= has {len(activations)} entries but the file has "
            f"{len(dense_at)} Linear layer(s)"
        )
    for i, act in zip(dense_at, activations):
        module, label, (dense,) = parts[i]
        try:
            parts[i] = (module, label, [Dense(dense.weight, dense.bias, act)])
        except WeightsError as exc:
            raise WeightsError(f"{path}: activations= entry for {module!r}: {exc}") from None

    layers = [layer for _, _, ls in parts for layer in ls]
    summary = ", ".join(
        f"{m[len(wrapper):] or '(top)'}: {label} ({ls[0].input_size}->{ls[-1].output_size})"
        for m, label, ls in parts
    )
    metadata = {
        "format": "pytorch",
        "source": path,
        "modules": summary,
        "conventions": "PyTorch gate order (GRU r,z,n; LSTM i,f,g,o), reset_after GRU",
    }
    if any(label.startswith("RNN") for _, label, _ in parts):
        metadata["rnn_nonlinearity"] = rnn_nonlinearity
    if wrapper:
        metadata["prefix"] = wrapper
    if extras:
        metadata["extra_tensors"] = extras
    try:
        return Model(layers, dtype=dt, metadata=metadata)
    except WeightsError as exc:
        raise WeightsError(
            f"{path}: {exc}; layers were taken in the order of the keys ({summary}); if "
            f"forward applies them in another order, pass order=[...] with the module names"
        ) from None
