"""Convolutions, pooling and normalisation in a live torch module (used by torch_module's fx trace).

Supported, in a traced ``forward`` (or an ``nn.Sequential``):

- ``nn.Conv1d`` (zero padding, any dilation, groups and stride) with any
  padding of the time axis: ``padding=p`` / ``"same"`` / ``"valid"``,
  and/or an ``nn.ConstantPad1d((l, r), 0)`` / ``nn.ZeroPad1d`` /
  ``F.pad(x, (l, r))`` right before it. The causal forms (``(k-1)*dilation``
  zeros on the left: the pad before an unpadded conv, or ``padding=p``
  followed by the "chomp" ``x[:, :, :-p]``) stream with no delay; any
  other is streamed with a fixed delay of (k-1)*dilation minus the left
  padding (``Model.latency``). Padding on the right and the chomp only shape
  the end of the offline sequence, which a stream never reaches;
- ``nn.MaxPool1d`` and ``nn.AvgPool1d`` over time (a stride > 1 makes the
  model downsample: ``Model.stride``);
- ``nn.BatchNorm1d`` (eval: running statistics), folded into the Conv1d
  right before it when that conv has no activation yet, else its own layer;
- ``nn.LayerNorm(C)`` over the features, ``nn.PReLU`` (shared or per channel);
- ``x.transpose(1, 2)`` / ``x.permute(0, 2, 1)`` (and ``torch.transpose``,
  ``torch.permute``) between channels-first (N, C, T) convolutions and
  batch-first (N, T, C) recurrent and Linear layers; an activation right
  after a Conv1d becomes the conv's activation.

The layout of the value is followed through ``forward``: a conv, pool,
BatchNorm1d or per-channel PReLU needs (N, C, T); recurrent layers, Linear,
LayerNorm and softmax need (N, T, C). Either way a stream's sample is the
vector of features at one time step. Refused with the operation, where it
is in ``forward`` and why: a conv or pool over the feature axis, more left
padding than the kernel spans (outputs before the first sample), padding
that is not zeros, a pool returning indices, a BatchNorm without running
statistics, normalisation over the time axis.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from ..errors import WeightsError
from ..layers import AvgPool1d, BatchNorm, Conv1d, LayerNorm, MaxPool1d, PReLU
from .torch_wnorm import as_array as _array

CF, TF = "channels-first (N, C, T)", "batch-first (N, T, C)"


def conv_modules(torch: Any) -> tuple:
    nn = torch.nn
    return (nn.Conv1d, nn.BatchNorm1d, nn.LayerNorm, nn.PReLU, nn.ConstantPad1d, nn.ZeroPad1d,
            nn.MaxPool1d, nn.AvgPool1d)


def uses_conv(torch: Any, module: Any) -> bool:
    """Whether ``module`` (a Sequential or a torch.nn module) holds a module
    this file converts: then it goes through the traced path."""
    kinds = conv_modules(torch)
    return type(module).__module__.startswith("torch.nn") and any(
        isinstance(m, kinds) for m in module.modules())


def traceable(torch: Any, module: Any) -> Any:
    """``module`` as something torch.fx traces into call_module nodes."""
    return module if isinstance(module, torch.nn.Sequential) else torch.nn.Sequential(module)




def _swap_dims(node: Any) -> bool | None:
    """True if ``node`` swaps the last two axes of a 3-D value, None if it is
    no transpose or permute at all (False: one of another kind)."""
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    if node.op not in ("call_method", "call_function") or name not in ("transpose", "permute"):
        return None
    rest = list(node.args[1:]) + list(node.kwargs.values())
    if name == "transpose":
        return len(rest) == 2 and {int(a) % 3 for a in rest if isinstance(a, int)} == {1, 2}
    dims = tuple(rest[0]) if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else tuple(rest)
    return all(isinstance(a, int) for a in dims) and tuple(a % 3 for a in dims) == (0, 2, 1)


def _chained(node: Any, current: Any, what: str) -> None:
    if node.all_input_nodes != [current] or node.args[0] is not current:
        raise WeightsError(
            f"{what}: not a step of a simple chain (it must take only the previous layer's "
            f"output); streamgru runs a stack of layers"
        )


def _chomp(node: Any) -> int | None:
    """p if ``node`` is ``x[:, :, :-p]`` (or ``x[..., :-p]``), else None."""
    if node.op != "call_function" or node.target is not operator.getitem:
        return None
    idx = node.args[1]
    if not isinstance(idx, tuple) or not idx:
        return None
    *lead, last = idx
    full = slice(None, None, None)
    if not (lead == [full, full] or lead == [Ellipsis]) or not isinstance(last, slice):
        return None
    if last.start is None and last.step is None and isinstance(last.stop, int) and last.stop < 0:
        return -last.stop
    return None


class Tracer:
    """Follows the layout and the causal padding idioms through a traced
    ``forward`` and converts the modules of this file into ``chain``."""

    def __init__(self, torch: Any, module: Any, chain: Any) -> None:
        self.torch, self.root, self.chain = torch, module, chain
        self.layout: str | None = None  # of the current value; None until an op needs one
        self.flips = 0  # transposes seen while the layout was still unknown
        self.pad = None  # ((left, right), where): a pad waiting for its conv
        self.where = ""  # the node being handled, as messages name it

    def _need(self, layout: str, what: str, why: str) -> None:
        if self.layout is None:
            self.layout = layout
            if (layout == CF) == (self.flips % 2 == 0):
                self.chain.names.append(f"(input {CF}: a sample is x[:, :, t])")
        if self.layout != layout:
            raise WeightsError(
                f"{what}: {why} needs a {layout} tensor, but the value here is {self.layout}; "
                f"streamgru streams along time, so transpose(1, 2) first"
            )

    def handle(self, node: Any, current: Any, what: str) -> bool:
        """Convert ``node`` if it is one of this file's operations (return
        True: it continues the chain); check the layout of the others (False)."""
        self.where = what  # for the messages of _pad_of
        if self.pad is not None and not self._is_module(node, self.torch.nn.Conv1d):
            raise WeightsError(
                f"{self.pad[1]}: a pad of {self.pad[0]} must feed a Conv1d directly (it becomes "
                f"the conv's padding); here it feeds {what}"
            )
        swap = _swap_dims(node)
        chomp = _chomp(node)
        mod = self.root.get_submodule(node.target) if node.op == "call_module" else None
        mine = swap is not None or chomp is not None or self._pad_of(node) is not None or (
            mod is not None and isinstance(mod, conv_modules(self.torch)))
        if not mine:
            return self._check_other(node, mod, what, current)
        _chained(node, current, what)
        if swap is not None:
            if not swap:
                raise WeightsError(f"{what}: only the swap of time and channels (transpose(1, 2), "
                                   f"permute(0, 2, 1)) keeps one sample per time step")
            if self.layout is None:
                self.flips += 1
            else:
                self.layout = TF if self.layout == CF else CF
        elif chomp is not None:
            # drops the last rows of the offline sequence: a stream never gets there
            self._need(CF, what, f"slicing {chomp} samples off the end of the time axis")
        elif mod is None or not isinstance(mod, self.torch.nn.Conv1d):
            if mod is None or isinstance(mod, (self.torch.nn.ConstantPad1d, self.torch.nn.ZeroPad1d)):
                self._need(CF, what, "padding the time axis")
                self.pad = (self._pad_of(node), what)
            elif isinstance(mod, (self.torch.nn.MaxPool1d, self.torch.nn.AvgPool1d)):
                self._pool(node.target, mod, what)
            else:
                self._norm(node.target, mod, what)
        else:
            self._conv(node.target, mod, what)
        return True

    def finish(self, what: str) -> None:
        """At ``forward``'s return: nothing may be left waiting."""
        if self.pad is not None:
            raise WeightsError(f"{what}: forward ends with a pad of the time axis ({self.pad[1]}) "
                               f"that feeds no Conv1d")

    # ------------------------------------------------------------------
    def _is_module(self, node: Any, kind: Any) -> bool:
        return node.op == "call_module" and isinstance(self.root.get_submodule(node.target), kind)

    def _pad_of(self, node: Any) -> tuple[int, int] | None:
        return pad_of(self.torch, self.root, node, self.where)

    def _check_other(self, node: Any, mod: Any, what: str, current: Any) -> bool:
        """Layout checks for the operations torch_module converts; True
        when ``node`` is an activation folded into the Conv1d before it."""
        nn = self.torch.nn
        if mod is not None and isinstance(mod, (nn.GRU, nn.LSTM, nn.RNN, nn.Linear)):
            self._need(TF, what, f"{type(mod).__name__}")
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
        if ("softmax" in str(name) or (mod is not None and isinstance(mod, (nn.Softmax, nn.LogSoftmax)))):
            self._need(TF, what, "softmax over the features")
        act = self._activation(node, mod, what)
        last = self.chain.layers[-1] if self.chain.layers else None
        if act is not None and isinstance(last, Conv1d) and last.activation.name == "identity":
            _chained(node, current, what)
            self.chain.layers[-1] = conv_like(last, activation=act)
            self.chain.names.append(f"{node.name}: {act}")
            return True
        return False

    def _activation(self, node: Any, mod: Any, what: str) -> Any:
        from . import torch_module as tm

        if mod is not None:
            act = tm._activation_module(self.torch, node.target, mod)
        elif node.op == "call_function" and node.target in tm.function_table(self.torch):
            kind = tm.function_table(self.torch)[node.target]
            act = None if kind == tm._SKIP else tm.function_activation(what, kind, node)
        elif node.op == "call_method" and node.target in tm.METHODS:
            kind = tm.METHODS[node.target]
            act = None if kind == tm._SKIP else tm.function_activation(what, kind, node)
        else:
            act = None
        return None if act == tm._SKIP else act

    def _conv(self, name: str, mod: Any, what: str) -> None:
        self._need(CF, what, "Conv1d (it convolves over the last axis, which must be time: a "
                   "conv over the feature axis does not stream)")
        before = self.pad[0] if self.pad is not None else (0, 0)
        self.pad = None
        self.chain.add(*conv_layer(self.torch, name, mod, what, before))

    def _pool(self, name: str, mod: Any, what: str) -> None:
        kind = type(mod).__name__
        self._need(CF, what, f"{kind} (it pools over the last axis, which must be time)")
        if not self.chain.layers:
            raise WeightsError(f"{what}: {kind} before the first layer is not supported (its "
                               f"channel count comes from the layer before it)")
        self.chain.add(*pool_layer(self.torch, name, mod, what, self.chain.layers[-1].output_size))

    def _norm(self, name: str, mod: Any, what: str) -> None:
        nn = self.torch.nn
        if isinstance(mod, nn.BatchNorm1d):
            self._need(CF, what, "BatchNorm1d (it normalises dim 1, which must be channels)")
            bn = batchnorm(mod, what)
            last = self.chain.layers[-1] if self.chain.layers else None
            if isinstance(last, Conv1d) and last.activation.name == "identity":
                self.chain.layers[-1] = fold(last, bn)
                self.chain.names.append(f"{name}: BatchNorm1d (folded into the conv)")
            else:
                self.chain.add(f"{name}: BatchNorm1d", [bn])
        elif isinstance(mod, nn.LayerNorm):
            self._need(TF, what, "LayerNorm (it normalises the last axis, which must be features)")
            self.chain.add(f"{name}: LayerNorm", [layernorm(mod, what)])
        else:  # PReLU
            if mod.weight.numel() > 1:
                self._need(CF, what, "PReLU with a slope per channel (dim 1)")
            if not self.chain.layers:
                raise WeightsError(f"{what}: PReLU before the first layer is not supported")
            self.chain.add(f"{name}: PReLU", [PReLU(_array(mod.weight),
                                                    size=self.chain.layers[-1].output_size)])


# ----------------------------------------------------------------------------
# the layers, shared with the graph walk (torch_graph)


def pad_of(torch: Any, root: Any, node: Any, what: str) -> tuple[int, int] | None:
    """(left, right) for a constant zero pad of the last axis, None if
    ``node`` is no pad; WeightsError for any other pad."""
    nn, F = torch.nn, torch.nn.functional
    if node.op == "call_module":
        mod = root.get_submodule(node.target)
        if not isinstance(mod, (nn.ConstantPad1d, nn.ZeroPad1d)):
            return None
        (left, right), value = mod.padding, getattr(mod, "value", 0.0)
    elif node.op == "call_function" and node.target in (F.pad, getattr(torch, "pad", None)):
        pads = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
        mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
        value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value", None)
        if not isinstance(pads, (tuple, list)) or len(pads) != 2 or mode != "constant":
            raise WeightsError(f"{what}: F.pad({pads!r}, mode={mode!r}): only a constant pad "
                               f"of the time axis, (left, right), streams")
        left, right, value = pads[0], pads[1], 0.0 if value is None else value
    else:
        return None
    if value != 0 or left < 0 or right < 0:
        raise WeightsError(
            f"{what}: pad ({left}, {right}) with value {value}: only zeros added to the "
            f"time axis stream (the stream's ring starts at zeros)"
        )
    return int(left), int(right)


def is_temporal_conv(mod: Any) -> bool:
    """Whether ``mod`` is pytorch-tcn's ``TemporalConv1d`` (or its
    ``weight_norm`` subclass) running that class's own ``forward``; read
    without importing pytorch-tcn. fx must not trace into it: its forward
    pads through ``super().forward``, which would not read as a Conv1d."""
    cls = next((c for c in type(mod).__mro__ if c.__name__ == "TemporalConv1d"
                and c.__module__.startswith("pytorch_tcn")), None)
    return cls is not None and type(mod).forward is cls.forward


def _temporal_pad(torch: Any, mod: Any, what: str) -> tuple[int, int] | None:
    """The (left, right) zeros pytorch-tcn's ``TemporalConv1d`` pads inside
    its ``forward`` (its ``padder``; ``padding`` is always 0), or None for
    any other module. Its ``weight_norm`` form is a subclass of it."""
    if not is_temporal_conv(mod):
        return None
    padder = getattr(mod, "padder", None)
    pad = getattr(padder, "pad", None)
    if not isinstance(pad, torch.nn.ConstantPad1d) or pad.value != 0:
        raise WeightsError(f"{what}: pytorch-tcn TemporalConv1d with padding_mode="
                           f"{type(pad).__name__}; only zero padding is the stream's starting state")
    if mod.padding not in (0, (0,)):
        raise WeightsError(f"{what}: pytorch-tcn TemporalConv1d with padding={mod.padding!r} "
                           f"besides its own; only padding=0 is what pytorch-tcn runs")
    return int(padder.left_padding), int(padder.right_padding)


def conv_layer(torch: Any, name: str, mod: Any, what: str,
               before: tuple[int, int] = (0, 0)) -> tuple[str, list]:
    """(description, [Conv1d]) for ``mod`` after a pad of ``before`` zeros."""
    from .torch_wnorm import weight

    tcn_pad = _temporal_pad(torch, mod, what)
    if tcn_pad is not None:
        before = (before[0] + tcn_pad[0], before[1] + tcn_pad[1])
    elif type(mod).forward is not torch.nn.Conv1d.forward:
        # a subclass may pad or mix inside its forward: its weights alone mislead
        raise WeightsError(
            f"module {name} ({type(mod).__name__}) subclasses Conv1d with its own forward, "
            f"which streamgru does not run (it may pad or mix inside it); use nn.Conv1d "
            f"and write the padding in the enclosing forward")
    (k,), (d,), (stride,) = mod.kernel_size, mod.dilation, mod.stride
    if mod.padding_mode != "zeros":
        raise WeightsError(f"{what}: padding_mode={mod.padding_mode!r}; only zero padding "
                           f"is the stream's starting state")
    L = (k - 1) * d
    pad = mod.padding
    if isinstance(pad, str):  # torch puts the odd zero of "same" on the right
        left, right = (L // 2, L - L // 2) if pad == "same" else (0, 0)
    else:
        left = right = pad[0]
    try:
        layer = Conv1d(weight(torch, mod, name), None if mod.bias is None else _array(mod.bias),
                       dilation=d, groups=mod.groups, stride=stride,
                       padding=(before[0] + left, before[1] + right))
    except WeightsError as exc:
        raise WeightsError(f"{what}: {exc}") from None
    how = "causal" if not layer.latency else f"delay {layer.latency}"
    extra = f", stride={stride}" if stride != 1 else ""
    return f"{name}: Conv1d(k={k}, dilation={d}, groups={mod.groups}{extra}; {how})", [layer]


def pool_layer(torch: Any, name: str, mod: Any, what: str, C: int) -> tuple[str, list]:
    """(description, [MaxPool1d | AvgPool1d]) over ``C`` channels."""
    kind = type(mod).__name__
    if getattr(mod, "return_indices", False):
        raise WeightsError(f"{what}: return_indices=True; a stream passes values only")
    one = lambda v: v[0] if isinstance(v, (tuple, list)) else v  # noqa: E731
    k, pad = one(mod.kernel_size), one(mod.padding)
    stride = one(mod.stride) if mod.stride is not None else k
    try:
        if isinstance(mod, torch.nn.MaxPool1d):
            layer = MaxPool1d(C, k, stride, pad, one(mod.dilation))
        else:
            layer = AvgPool1d(C, k, stride, pad, mod.count_include_pad)
    except WeightsError as exc:
        raise WeightsError(f"{what}: {exc}") from None
    return f"{name}: {kind}(k={k}, stride={stride}, padding={pad})", [layer]


def batchnorm(mod: Any, what: str) -> BatchNorm:
    """An eval-mode ``nn.BatchNorm1d`` (its running statistics)."""
    if mod.running_mean is None or mod.running_var is None:
        raise WeightsError(f"{what}: track_running_stats=False normalises with the "
                           f"statistics of each batch, which a stream does not have")
    w = None if mod.weight is None else _array(mod.weight)
    b = None if mod.bias is None else _array(mod.bias)
    return BatchNorm(_array(mod.running_mean), _array(mod.running_var), w, b, eps=mod.eps)


def layernorm(mod: Any, what: str) -> LayerNorm:
    """An ``nn.LayerNorm`` over the features of one sample."""
    if len(mod.normalized_shape) != 1:
        raise WeightsError(f"{what}: normalized_shape {tuple(mod.normalized_shape)}; only "
                           f"the feature axis of one sample can be normalised")
    w = None if mod.weight is None else _array(mod.weight)
    b = None if getattr(mod, "bias", None) is None else _array(mod.bias)
    return LayerNorm(mod.normalized_shape[0], w, b, eps=mod.eps)


def conv_like(conv: Conv1d, weight: Any = None, bias: Any = None, activation: Any = None) -> Conv1d:
    return Conv1d(conv.weight if weight is None else weight, conv.bias if bias is None else bias,
                  dilation=conv.dilation, groups=conv.groups,
                  activation=conv.activation if activation is None else activation,
                  padding=conv.padding, stride=conv.stride)


def fold(conv: Conv1d, bn: BatchNorm) -> Conv1d:
    """conv then batchnorm as one conv: W' = W * scale[o], b' = b * scale + shift."""
    scale, shift = bn.scale_shift()
    w = np.asarray(conv.weight, np.float64) * scale[:, None, None]
    return conv_like(conv, w, np.asarray(conv.bias, np.float64) * scale + shift)
