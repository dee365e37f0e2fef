"""Keras convolution and normalisation layers (configs parsed as data) to
canonical layers; ``keras_layers`` dispatches to ``HANDLERS``.

- ``Conv1D`` (``kernel`` (k, C_in / groups, filters), ``bias``):
  ``padding="causal"`` streams as it is; ``dilation_rate``, ``groups`` and
  the activation carry over (``Conv1d.from_keras``).
- ``ZeroPadding1D((p, 0))`` right before a ``"valid"`` conv with
  ``p = (k-1)*d`` is the causal conv (the form ``DepthwiseConv1D`` needs,
  having no ``"causal"`` padding).
- ``DepthwiseConv1D`` (``kernel`` (k, C, depth_multiplier)): output channel
  ``c * depth_multiplier + m`` convolves input channel c with kernel[:, c, m]:
  a Conv1d with ``groups=C``.
- A ``padding="valid"`` conv without that pad is streamed as the causal conv,
  ``L = (k-1)*d`` samples ahead of Keras: Keras's valid output at t, which
  needs inputs t .. t+L, is the stream's output at step t + L (the stream's
  first L outputs, from the zeros before the first sample, have no Keras
  counterpart). ``metadata["valid_delay"]`` is the sum over such convs. That
  holds exactly only while nothing with memory (a recurrent layer, a causal
  conv) follows one: it would see L samples the Keras model never computed,
  so such a model is refused (it needs the later layers held back for L
  steps, what ``"same"`` padding's latency will do).
- ``BatchNormalization`` over the features (inference: moving mean and
  variance; ``center`` / ``scale`` drop beta / gamma; epsilon 1e-3 by
  default), folded into a conv right before it.
- ``LayerNormalization`` over the features (epsilon 1e-3 by default, unlike
  torch's 1e-5; ``rms_scaling`` refused).
- ``PReLU``: ``alpha`` shaped like a sample with ``shared_axes`` of size 1:
  (1, C) with ``shared_axes=[1]`` (shared over time), (1, 1) shared by all;
  a slope per time step cannot stream.

- ``padding="same"`` (stride 1: ``L // 2`` zeros first, the rest last) and
  a strided ``"valid"`` conv stream with ``Conv1d``'s latency (step t is
  Keras's output at t - latency); ``strides=s`` emits one row every s
  inputs (``Model.stride``, ``step`` returns None between rows).
- ``MaxPooling1D`` / ``AveragePooling1D`` (``pool_size``, ``strides``,
  ``padding="valid"``): ``MaxPool1d`` / ``AvgPool1d``.

Refused: ``padding="same"`` with a stride and pooling with
``padding="same"`` (Keras pads by an amount that depends on the sequence's
length), ``channels_first`` (the conv would run over the features), a conv
after the time axis is gone, attention and global pooling.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..layers import ELEMENTWISE_ACTIVATIONS, AvgPool1d, BatchNorm, Conv1d, LayerNorm, MaxPool1d
from . import conv_common
from .keras_graph import Entry, fail
from .keras_layers import _activation, _apply, _Build, _flag, _number, _weights

__all__ = ["HANDLERS", "REFUSED"]

REFUSED = {
    "GlobalMaxPooling1D": "it pools over the whole sequence, which needs its end",
    "GlobalAveragePooling1D": "it pools over the whole sequence, which needs its end",
    "MultiHeadAttention": "attention mixes every time step of the sequence, which needs the future",
    "Attention": "attention mixes every time step of the sequence, which needs the future",
    "AdditiveAttention": "attention mixes every time step of the sequence, which needs the future",
    "Conv2D": "a 2-D convolution runs over the features as well as time",
    "SeparableConv1D": "not supported (write it as DepthwiseConv1D then a Conv1D of kernel 1)",
    "Conv1DTranspose": "a transposed convolution upsamples time",
}


def _ints(b: _Build, e: Entry, key: str, default: int) -> int:
    """A conv setting Keras stores as a one-entry tuple (``[3]``) or a number."""
    v = e.config.get(key, default)
    if isinstance(v, list) and len(v) == 1:
        v = v[0]
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1 << 24:
        raise fail(b.where, e, f"config {key!r} should be a whole number from 1 to {1 << 24}, "
                                f"got {e.config.get(key)!r}")
    return v


def _time_axis(b: _Build, e: Entry, what: str) -> None:
    if not b.seq:
        raise fail(b.where, e, f"{what} after the time axis is gone (a layer returned only its "
                                f"last step): it would run over the features, which does not stream")
    if e.config.get("data_format", "channels_last") != "channels_last":
        raise fail(b.where, e, f"data_format={e.config.get('data_format')!r}: only channels_last "
                                f"(batch, time, features) streams one sample per time step")


def _padding(b: _Build, e: Entry, k: int, d: int) -> tuple[str, int]:
    """How the conv lines up with the stream ("causal"; "valid", streamed
    ahead; "delayed", Conv1d's own latency) and its stride."""
    stride = _ints(b, e, "strides", 1)
    pad, L = e.config.get("padding", "valid"), (k - 1) * d
    pending, b.left_pad = b.left_pad, None
    if pending is not None:
        if pad != "valid" or pending != L:
            raise fail(b.where, e, f"follows ZeroPadding1D(({pending}, 0)), but a causal conv "
                                    f"with kernel {k} and dilation {d} needs padding='valid' after a "
                                    f"left pad of exactly (k-1)*d = {L}")
        return "causal", stride
    if pad not in ("causal", "valid", "same"):
        raise fail(b.where, e, f"padding {pad!r} is not supported (causal, valid or same)")
    if pad == "same" and L and stride != 1:
        raise fail(b.where, e, f"padding='same' with strides {stride}: Keras pads by an amount "
                                f"that depends on the sequence's length, which a stream does not "
                                f"know; use padding='causal' or 'valid'")
    if pad == "causal" or not L:
        return "causal", stride
    # "same" (L // 2 zeros first, the rest last) and a strided "valid" conv stream with
    # Conv1d's latency; an unstrided "valid" conv keeps the stream ahead of Keras (valid_delay)
    return ("valid" if pad == "valid" and stride == 1 else "delayed"), stride


def _push_conv(b: _Build, e: Entry, conv: Conv1d, mode: str, act: Any) -> None:
    if b.size is not None and conv.input_size != b.size:
        raise fail(b.where, e, f"its kernel takes {conv.input_size} channels but the previous "
                                f"layer gives {b.size}")
    if mode == "valid":
        b.valid_delay += conv.history
        b.valid_layers.add(len(b.layers))
    b.push(conv)
    if act.name in ELEMENTWISE_ACTIVATIONS:
        b.layers[-1] = Conv1d(conv.weight, conv.bias, dilation=conv.dilation, groups=conv.groups,
                              activation=act, padding=conv.padding, stride=conv.stride)
    else:
        _apply(b, e, act)


def _conv_padding(mode: str, e: Entry) -> str:
    return e.config.get("padding", "valid") if mode == "delayed" else "causal"


def _conv1d(b: _Build, e: Entry) -> None:
    _time_axis(b, e, "Conv1D")
    k, d = _ints(b, e, "kernel_size", 1), _ints(b, e, "dilation_rate", 1)
    groups = _ints(b, e, "groups", 1)
    mode, stride = _padding(b, e, k, d)
    kernel, bias = _weights(b, e, _flag(b, e, "use_bias", True), ("kernel", "bias"))
    kernel = np.asarray(kernel)
    if kernel.ndim != 3 or kernel.shape[0] != k:
        raise fail(b.where, e, f"tensor kernel: expected shape ({k}, channels / groups, filters), "
                                f"got {kernel.shape}")
    conv_common.ring(b.budget, k, d, kernel.shape[1] * groups, f"{b.where}: layer {e.name!r}")
    # Keras kernels are (k, C_in / groups, filters): kernel[i] meets x[t-(k-1-i)d] when causal
    conv = Conv1d.from_keras(kernel, bias, dilation=d, groups=groups, stride=stride,
                             padding=_conv_padding(mode, e))
    _push_conv(b, e, conv, mode, _activation(e.config.get("activation"), b, e))


def _depthwise(b: _Build, e: Entry) -> None:
    _time_axis(b, e, "DepthwiseConv1D")
    k, d = _ints(b, e, "kernel_size", 1), _ints(b, e, "dilation_rate", 1)
    mode, stride = _padding(b, e, k, d)
    kernel, bias = _weights(b, e, _flag(b, e, "use_bias", True), ("kernel", "bias"))
    kernel = np.asarray(kernel)
    dm = _ints(b, e, "depth_multiplier", 1)
    if kernel.ndim != 3 or kernel.shape[0] != k or kernel.shape[2] != dm:
        raise fail(b.where, e, f"tensor kernel: expected shape ({k}, channels, {dm}), got "
                                f"{kernel.shape}")
    C = kernel.shape[1]
    conv_common.ring(b.budget, k, d, C, f"{b.where}: layer {e.name!r}")
    # Keras depthwise (k, C, m): output c*m + j is input c through kernel[:, c, j]
    weight = np.transpose(kernel.reshape(k, C * dm))[:, None, :]
    conv = Conv1d(weight, bias, dilation=d, groups=C, stride=stride, padding=_conv_padding(mode, e))
    _push_conv(b, e, conv, mode, _activation(e.config.get("activation"), b, e))


def _zero_padding(b: _Build, e: Entry) -> None:
    _time_axis(b, e, "ZeroPadding1D")
    pad = e.config.get("padding", 1)
    pad = [pad, pad] if isinstance(pad, int) and not isinstance(pad, bool) else pad
    if not (isinstance(pad, list) and len(pad) == 2 and all(
            isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in pad)):
        raise fail(b.where, e, f"malformed padding {e.config.get('padding')!r}")
    if pad[1]:
        raise fail(b.where, e, f"padding {tuple(pad)}: padding on the right needs future "
                                f"samples; only (p, 0) before a conv streams")
    b.left_pad = pad[0]


def _pool(b: _Build, e: Entry) -> None:
    kind = e.class_name
    _time_axis(b, e, kind)
    if b.size is None:
        raise fail(b.where, e, f"{kind} before any layer with weights, and the model config "
                                f"gives no input size")
    k = _ints(b, e, "pool_size", 2)
    stride = k if e.config.get("strides") is None else _ints(b, e, "strides", k)
    if e.config.get("padding", "valid") != "valid":
        raise fail(b.where, e, f"padding={e.config.get('padding')!r}: Keras pads by an amount "
                                f"that depends on the sequence's length; only 'valid' streams")
    # Keras's valid pool: window j is x[j*s .. j*s + k - 1], emitted once its last sample is in
    layer = (MaxPool1d if kind == "MaxPooling1D" else AvgPool1d)(b.size, k, stride)
    b.push(layer)


def _feature_axis(b: _Build, e: Entry, what: str) -> None:
    axis = e.config.get("axis", -1)
    if axis not in (-1, [-1], 2 if b.seq else 1, [2 if b.seq else 1]):
        raise fail(b.where, e, f"{what} over axis {axis!r}; only the feature axis (-1) of one "
                                f"sample can stream")


def _norm_weights(b: _Build, e: Entry, flag: str, extra: tuple[str, ...] = ()) -> dict:
    """A normalisation layer's arrays by name: gamma if ``scale``, beta if
    ``center``, then ``extra``; refused after ``flag=True`` or a wrong count."""
    if _flag(b, e, flag, False):
        raise fail(b.where, e, f"{flag}=True is not supported")
    on = {"gamma": _flag(b, e, "scale", True), "beta": _flag(b, e, "center", True)}
    names = [n for n in ("gamma", "beta") if on[n]] + list(extra)
    arrays = list(b.fetch(e))
    if len(arrays) != len(names):
        raise fail(b.where, e, f"expected {len(names)} weight tensors ({', '.join(names)}), "
                                f"found {len(arrays)}")
    return dict(zip(names, arrays))


def _batchnorm(b: _Build, e: Entry) -> None:
    _feature_axis(b, e, "BatchNormalization")
    got = _norm_weights(b, e, "renorm", ("moving_mean", "moving_variance"))
    # Keras: gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta
    bn = BatchNorm(got["moving_mean"], got["moving_variance"], got.get("gamma"), got.get("beta"),
                   eps=_number(b, e, "epsilon", 1e-3))
    if b.size is not None and bn.input_size != b.size:
        raise fail(b.where, e, f"normalises {bn.input_size} features but the previous layer "
                                f"gives {b.size}")
    conv_common.add_batchnorm(b.layers, bn)
    b.size = bn.output_size


def _layernorm(b: _Build, e: Entry) -> None:
    _feature_axis(b, e, "LayerNormalization")
    if b.size is None and not (_flag(b, e, "scale", True) or _flag(b, e, "center", True)):
        raise fail(b.where, e, "neither scale nor center, and the model config gives no input size")
    got = _norm_weights(b, e, "rms_scaling")
    size = b.size if b.size is not None else int(np.size(next(iter(got.values()))))
    # Keras: (x - mean) / sqrt(var + epsilon) * gamma + beta (epsilon 1e-3 by default)
    b.push(LayerNorm(size, got.get("gamma"), got.get("beta"), eps=_number(b, e, "epsilon", 1e-3)))


def _prelu(b: _Build, e: Entry) -> None:
    (alpha,) = _weights(b, e, True, ("alpha",))
    alpha = np.asarray(alpha)
    size = b.size if b.size is not None else (int(alpha.shape[-1]) if alpha.ndim else None)
    if size is None:
        raise fail(b.where, e, "a shared slope before any layer with weights, and the model "
                                "config gives no input size")
    b.push(conv_common.prelu(alpha, size, f"{b.where}: layer {e.name!r} (PReLU): tensor alpha"))


HANDLERS = {"Conv1D": _conv1d, "DepthwiseConv1D": _depthwise, "ZeroPadding1D": _zero_padding,
            "MaxPooling1D": _pool, "AveragePooling1D": _pool,
            "BatchNormalization": _batchnorm, "LayerNormalization": _layernorm, "PReLU": _prelu}
