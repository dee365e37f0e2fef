"""Convolution, pooling and normalisation ops on the stream: ``Pad``, ``Conv``,
``MaxPool``, ``AveragePool``, ``BatchNormalization``, ``LayerNormalization``
and ``PRelu``.

A ``Conv`` streams when it runs over time on a channels-first stream
(batch, features, time) and sees exactly ``L = (k-1)*dilation`` zeros before
the first sample and none after the last (the causal conv, ``Conv1d``):

- ``pads = [L, 0]`` on the Conv (what torch's dynamo exporter writes for
  ``F.pad(x, (L, 0))`` before a conv);
- a ``Pad`` of the time axis by ``(L, 0)`` with zeros right before an
  unpadded Conv (the TorchScript exporter; its amounts arrive as small
  constant subgraphs, folded first), or any split of L between the two;
- ``pads = [L, L]`` followed at once by a ``Slice`` that drops the last L
  time steps (the TCN "chomp" ``x[:, :, :-L]``).

Any other zero padding streams too: ``pads = [l, r]`` (and ``auto_pad``
SAME_UPPER / SAME_LOWER at stride 1) with ``l <= L`` is a conv delayed by
``L - l`` samples (``Model.latency``), and ``strides = s`` emits one row
every s inputs (``Model.stride``). ``MaxPool`` and ``AveragePool`` over
time (kernel_shape, strides, pads, dilations, count_include_pad; floor
mode) are ``MaxPool1d`` / ``AvgPool1d``. Weight norm arrives as ``ReduceL2``
/ ``Div`` / ``Mul`` on the kernel, which are constants and folded before the
Conv sees them. Refused, naming the node: more zeros on the left than the
kernel reaches back (outputs before the first sample), SAME padding with a
stride (it depends on the sequence's length), ``ceil_mode=1``, a kernel of
more than one spatial axis, a conv or pool over an axis that is not time.
``BatchNormalization`` (inference form, channel axis 1 = the features) folds
into a Conv or Dense right before it, else is a ``BatchNorm`` layer;
``LayerNormalization`` must normalise the features only; ``PRelu``'s slope
must broadcast along time and batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import WeightsError
from ...layers import AvgPool1d, BatchNorm, Conv1d, LayerNorm, MaxPool1d
from .. import conv_common
from .chain import _affine, _append, _feature_vector, _last_dense
from .values import (_Graph, _Pending, _Stream, _describe_axes, _int_list, _materialize,
                     _norm_axis, _opt)


def _const(g: _Graph, v: Any, what: str) -> np.ndarray:
    arr = None if v is None else _materialize(g, v)
    if arr is None:
        raise g.fail(f"{what} must be a constant (an initializer), not computed from data")
    return np.asarray(arr)


def _channels_first(g: _Graph, s: _Stream, op: str) -> None:
    """Refuse (as a wrong guess of the input's axes: the next one is tried) a
    stream that is not (batch, features, time)."""
    ok = (len(s.axes) == 3 and g.core(s.axes[0]) in ((), ("N",)) and g.core(s.axes[1]) == ("F",)
          and s.axes[2] == ("T",))
    if not ok:
        raise g.mismatch(f"{op} runs over the last axis, which must be time on a (batch, "
                         f"features, time) tensor; here the axes are {_describe_axes(s)} (a "
                         f"convolution over the features or the batch does not stream)")
    if s.last:
        raise g.fail(f"{op} of the last time step only; a convolution needs every step")


def _h_pad(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Pad-2 (pads, value attributes) / 11 / 18 / 21: inputs data, pads, constant_value, axes
    s = ins[0]
    if not isinstance(s, _Stream):
        raise g.fail(f"Pad of a {type(s).__name__}")
    if at.get("mode", "constant") != "constant":
        raise g.fail(f"Pad mode={at.get('mode')!r}: only zeros before the first sample stream "
                     f"(the causal conv's starting state)")
    pads = list(at["pads"]) if "pads" in at else _int_list(g, ins[1], "Pad pads")
    value = at.get("value", 0.0) if "pads" in at else (
        0.0 if _opt(ins, 2) is None else _const(g, ins[2], "Pad constant_value"))
    if np.any(np.asarray(value) != 0):
        raise g.fail(f"Pad with value {np.asarray(value).reshape(-1)[:1]}: only zeros stream")
    rank = len(s.axes)
    axes = (_int_list(g, ins[3], "Pad axes") if _opt(ins, 3) is not None else list(range(rank)))
    axes = [_norm_axis(g, a, rank) for a in axes]
    if len(pads) != 2 * len(axes):
        raise WeightsError(f"{g.where()}: {len(pads)} pads for {len(axes)} axes")
    left = 0
    for a, before, after in zip(axes, pads[: len(axes)], pads[len(axes):]):
        if before == after == 0:
            continue
        if s.axes[a] != ("T",):
            raise g.mismatch(f"pads axis {a} of the stream {_describe_axes(s)}, which is not "
                             f"time; only zeros on the left of the time axis stream")
        if after != 0 or before < 0:
            raise g.fail(f"pads ({before}, {after}) axis {a} of the stream {_describe_axes(s)}: "
                         f"only zeros on the left of the time axis stream (padding on the right "
                         f"needs future samples)")
        left = int(before)
    return [s if not left else _Pending(s, "pad", left, node.name)]


def _h_conv(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Conv-11/22: X (N, C, T), W (M, C/group, k), B (M,); pads [begin, end]
    x, before = ins[0], 0
    if isinstance(x, _Pending):
        x, before = x.stream, x.amount
    if not isinstance(x, _Stream):
        raise g.fail(f"Conv of a {type(x).__name__}")
    W = _const(g, ins[1], "Conv W")
    B = None if _opt(ins, 2) is None else _const(g, ins[2], "Conv B")
    if W.ndim != 3:
        raise g.fail(f"Conv with a weight of shape {W.shape}: only 1-D convolutions over time "
                     f"stream (a 2-D conv runs over the features too)")
    _channels_first(g, x, "Conv")
    k = W.shape[2]
    group = int(at.get("group", 1))
    dil = [int(v) for v in at.get("dilations", [1])]
    strides = [int(v) for v in at.get("strides", [1])]
    if len(dil) != 1 or len(strides) != 1 or dil[0] < 1 or strides[0] < 1:
        raise WeightsError(f"{g.where()}: dilations {dil} / strides {strides} for a 1-D conv")
    if at.get("kernel_shape", [k]) != [k]:
        raise WeightsError(f"{g.where()}: kernel_shape {at['kernel_shape']} but W has k = {k}")
    d, L, stride = dil[0], (k - 1) * dil[0], strides[0]
    pads = _pads(g, at, L, stride, "Conv")
    left, right = before + pads[0], pads[1]
    if W.shape[1] * group != x.features:
        raise WeightsError(f"{g.where()}: tensor {node.input[1]!r} of shape {W.shape} with group "
                           f"{group} takes {W.shape[1] * group} channels, the stream has {x.features}")
    conv_common.ring(g.budget, k, d, x.features, g.where())
    chomp = right and right == left == L and not before and stride == 1
    # ONNX Conv weights are torch's: (M, C/group, k), already canonical; zeros
    # on the left beyond none delay the output (Conv1d's latency), and zeros on
    # the right only add outputs after the last sample, which a stream never reaches
    try:
        conv = Conv1d(W, B, dilation=d, groups=group, stride=stride,
                      padding=(left, 0 if chomp else right))
    except WeightsError as exc:
        raise g.fail(f"pads {pads}: {exc}") from None
    out = _append(x, conv, features=int(W.shape[0]),
                  steps=g.steps_after(x, left, 0 if chomp else right, L, stride))
    return [_Pending(out, "chomp", L, node.name) if chomp else out]


def _pads(g: _Graph, at: dict, L: int, stride: int, op: str) -> list[int]:
    """``[left, right]`` zeros of a 1-D Conv or pool from ``pads`` / ``auto_pad``
    (``L``: the samples its window reaches back)."""
    auto = at.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        if stride != 1:
            raise g.fail(f"auto_pad={auto} with strides {stride}: the padding depends on the "
                         f"sequence's length, which a stream does not know")
        # SAME_UPPER puts the odd zero at the end, SAME_LOWER at the start
        return [L // 2, L - L // 2] if auto == "SAME_UPPER" else [L - L // 2, L // 2]
    if auto not in ("NOTSET", "VALID"):
        raise WeightsError(f"{g.where()}: auto_pad {auto!r} is not an ONNX padding mode")
    pads = [0, 0] if auto == "VALID" else [int(p) for p in at.get("pads", [0, 0])]
    if len(pads) != 2 or min(pads) < 0:
        raise WeightsError(f"{g.where()}: pads {pads} for a 1-D {op}")
    return pads


def _h_pool(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # MaxPool-12/22, AveragePool-19/22 over time on (N, C, T): kernel_shape, strides (default 1),
    # pads, dilations, auto_pad, ceil_mode; AveragePool's count_include_pad defaults to 0
    op, x = node.op_type, ins[0]
    if not isinstance(x, _Stream):
        raise g.fail(f"{op} of a {type(x).__name__}")
    _channels_first(g, x, op)
    if len(node.output) > 1 and node.output[1]:
        raise g.fail("MaxPool's Indices output: a stream passes values only")
    kernel = [int(v) for v in at.get("kernel_shape", [])]
    strides = [int(v) for v in at.get("strides", [1] * max(len(kernel), 1))]
    dil = [int(v) for v in at.get("dilations", [1] * max(len(kernel), 1))]
    if len(kernel) != 1 or len(strides) != 1 or len(dil) != 1 or min(kernel + strides + dil) < 1:
        raise WeightsError(f"{g.where()}: kernel_shape {kernel} / strides {strides} / dilations "
                           f"{dil} for a pool over time (one axis)")
    if int(at.get("ceil_mode", 0)):
        raise g.fail("ceil_mode=1: only floor mode (the default) is supported")
    (k,), (stride,), (d,) = kernel, strides, dil
    left, right = _pads(g, at, (k - 1) * d, stride, op)  # the right zeros only shape the end
    try:
        if op == "MaxPool":
            layer = MaxPool1d(x.features, k, stride, left, d)
        else:
            if d != 1:
                raise WeightsError(f"dilations {d}: a dilated average pool is not supported")
            layer = AvgPool1d(x.features, k, stride, left, bool(int(at.get("count_include_pad", 0))))
    except WeightsError as exc:
        raise g.fail(str(exc)) from None
    return [_append(x, layer, steps=g.steps_after(x, left, right, (k - 1) * d, stride))]


def _h_chomp(g: _Graph, node: Any, pending: _Pending, ins: list) -> list:
    """Slice-13 right after a conv padded on both sides: it must drop exactly
    the last ``amount`` time steps."""
    s, p = pending.stream, pending.amount
    starts, ends = _int_list(g, ins[1], "Slice starts"), _int_list(g, ins[2], "Slice ends")
    rank = len(s.axes)
    axes = _int_list(g, ins[3], "Slice axes") if _opt(ins, 3) is not None else list(range(len(starts)))
    steps = _int_list(g, ins[4], "Slice steps") if _opt(ins, 4) is not None else [1] * len(starts)
    cuts = [(_norm_axis(g, a, rank), b, e, st) for a, b, e, st in zip(axes, starts, ends, steps)]
    if cuts != [(2, 0, -p, 1)]:
        raise g.fail(f"slices {cuts} after Conv {pending.node!r}, which pads {p} on both sides; "
                     f"only dropping the last {p} time steps (x[:, :, :-{p}]) keeps it causal")
    return [s]


def _h_pending(g: _Graph, node: Any, ins: list, at: dict) -> list:
    """A node taking an unfinished causal-conv idiom: its Conv or its chomp, or refused."""
    pending = next(v for v in ins if isinstance(v, _Pending))
    if pending.kind == "pad" and node.op_type == "Conv" and ins[0] is pending:
        return _h_conv(g, node, ins, at)
    if pending.kind == "chomp" and node.op_type == "Slice" and ins[0] is pending and "starts" not in at:
        return _h_chomp(g, node, pending, ins)
    if pending.kind == "pad":
        raise g.fail(f"takes the output of Pad {pending.node!r} ({pending.amount} zeros before "
                     f"the first sample), which must feed a Conv directly (the causal conv idiom)")
    raise g.fail(f"takes the output of Conv {pending.node!r}, which pads {pending.amount} on both "
                 f"sides and needs future samples; only the causal form streams: the conv "
                 f"followed at once by a Slice dropping its last {pending.amount} time steps")


def _h_batchnorm(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # BatchNormalization-15: X, scale, B, input_mean, input_var; channels on axis 1
    s = ins[0]
    if not isinstance(s, _Stream):
        raise g.fail(f"BatchNormalization of a {type(s).__name__}")
    if int(at.get("training_mode", 0)):
        raise g.fail("training_mode=1 normalises with each batch's statistics, which a stream "
                     "does not have")
    if g.feature_axis(s) != 1:
        raise g.fail(f"BatchNormalization normalises axis 1, but the features of the stream "
                     f"{_describe_axes(s)} are elsewhere")
    scale, bias, mean, var = (_const(g, v, f"BatchNormalization {n}") for v, n in
                              zip(ins[1:5], ("scale", "B", "input_mean", "input_var")))
    try:
        bn = BatchNorm(mean.reshape(-1), var.reshape(-1), scale.reshape(-1), bias.reshape(-1),
                       eps=float(at.get("epsilon", 1e-5)))
    except WeightsError as exc:
        raise WeightsError(f"{g.where()}: {exc}") from None
    if bn.input_size != s.features:
        raise WeightsError(f"{g.where()}: {bn.input_size} channels, the stream has {s.features}")
    if _last_dense(s) is not None:
        return [_affine(g, s, *bn.scale_shift())]  # folded into the Conv or Dense before it
    return [_append(s, bn)]


def _h_layernorm(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # LayerNormalization-17: X, Scale, B; normalises axes [axis, rank)
    s = ins[0]
    if not isinstance(s, _Stream):
        raise g.fail(f"LayerNormalization of a {type(s).__name__}")
    rank = len(s.axes)
    axis = _norm_axis(g, at.get("axis", -1), rank)
    if tuple(a for ax in s.axes[axis:] for a in g.core(ax)) != ("F",):
        raise g.fail(f"LayerNormalization over axes {axis}.. of the stream {_describe_axes(s)}; "
                     f"only the features of one sample can be normalised")
    weight, _ = _feature_vector(g, s, _const(g, ins[1], "LayerNormalization Scale"))
    bias = None
    if _opt(ins, 2) is not None:
        bias, _ = _feature_vector(g, s, _const(g, ins[2], "LayerNormalization B"))
    return [_append(s, LayerNorm(s.features, weight, bias, eps=float(at.get("epsilon", 1e-5))))]


def _h_prelu(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # PRelu-16: y = x if x >= 0 else slope * x, slope broadcast to X
    s = ins[0]
    if not isinstance(s, _Stream):
        raise g.fail(f"PRelu of a {type(s).__name__}")
    slope, _ = _feature_vector(g, s, _const(g, ins[1], "PRelu slope"))
    return [_append(s, conv_common.prelu(slope, s.features, g.where()))]


def _features_of_conv(weight: tuple, node: Any) -> int | None:
    """The channels a Conv reading the graph input takes (W is (M, C/group, k))."""
    if len(weight) != 3:
        return None
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    return int(weight[1]) * max(int(group), 1)


CONV_HANDLERS = {"Pad": _h_pad, "Conv": _h_conv, "BatchNormalization": _h_batchnorm,
                 "LayerNormalization": _h_layernorm, "PRelu": _h_prelu, "MaxPool": _h_pool,
                 "AveragePool": _h_pool}
