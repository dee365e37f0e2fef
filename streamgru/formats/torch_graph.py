"""A traced ``forward`` that branches, as a streamgru graph model (``streamgru.graph``).

Used when ``forward`` is no chain (``torch_trace`` tries the chain first):
residual TCN blocks, sums of branches, gated activations. Each traced node
becomes a graph node; what follows ``x`` (``forward``'s first argument):

- modules: ``nn.Conv1d`` (causal: ``(k-1)*d`` zeros on the left, by
  ``F.pad(x, (L, 0))`` / ``nn.ConstantPad1d`` / ``nn.ZeroPad1d`` before an
  unpadded conv, or ``padding=L`` and the chomp ``y[:, :, :-L]``; stride 1;
  ``weight_norm`` of either API folded in), ``nn.Linear``, ``nn.GRU`` /
  ``LSTM`` / ``RNN`` (``batch_first=True``, no initial state; the sequence
  output ``y``), ``nn.BatchNorm1d`` (folded into the conv before it when it
  is that conv's only use), ``nn.LayerNorm``, ``nn.PReLU``, ``nn.GLU``,
  activation modules, ``Dropout`` / ``Identity``; pytorch-tcn's
  ``TemporalConv1d``, which pads inside its own forward (torch_conv);
- ``x.transpose(1, 2)`` / ``x.permute(0, 2, 1)`` between channels-first
  (N, C, T) convolutions and batch-first (N, T, C) recurrent and Linear
  layers; the layout of every value is followed, and each op checks it;
- ``a + b``, ``torch.add(a, b)``, ``a - b``, ``sum([a, b, ...])``,
  ``torch.stack([a, b]).sum(0)`` (or ``.mean(0)``), ``torch.cat`` over the
  channels, ``a * b``, ``a * 0.5``,
  ``a / 2``, ``-a``;
- activations (functions, methods, modules): folded into the conv or
  Linear before them when they are its only use, else element-wise;
  ``torch.tanh(a) * torch.sigmoid(b)`` over the two halves of one tensor
  (``torch.chunk(z, 2, dim=1)``, ``z.split(C, 1)``, ``z[:, :C]`` and
  ``z[:, C:]``) is one ``gate()``;
- channel slices ``z[:, a:b]`` (``z[..., a:b]`` batch-first), ``chunk`` and
  ``split`` over the channels; the chomp (dropping the end of the time
  axis, which a stream never reaches); the last step ``y[:, :, -1]`` /
  ``y[:, -1]`` (many-to-one: step t gives the answer for the sequence
  ending at t), after which only per-sample ops may follow.

Anything else raises ``WeightsError`` naming the line of ``forward``, what
it does and what to write instead.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from ..errors import WeightsError
from ..graph import Input, Node
from ..layers import Conv1d, Dense
from ..layers.activations import ELEMENTWISE_ACTIVATIONS
from ..layers.elementwise import Elementwise
from . import torch_conv as tc
from .torch_fx import FxWalk
from .torch_graph_ops import Const, Ops, Value
from .torch_qlive import quantized_types, recurrent_types

__all__ = ["GraphWalk"]

CF, TF, ONE = tc.CF, tc.TF, "one time step (N, C)"


class _Pad:
    """A zero pad of the time axis, waiting for the Conv1d it feeds."""

    def __init__(self, value: Value, pads: tuple[int, int], where: str) -> None:
        self.value, self.pads, self.where = value, pads, where


class GraphWalk(FxWalk, Ops):
    """Maps each data node of a traced ``forward`` onto a graph node."""

    branches = False  # whether some value of forward feeds two operations
    input_layout = TF

    def run(self) -> Value:
        """The value ``forward`` returns (its ``node`` is the graph's output)."""
        graph = self.graph()
        inp, kind = self.classify(graph)
        self.branches = any(
            sum(kind[u] == "data" for u in n.users) > 1 and not all(
                u.target is operator.getitem for u in n.users)
            for n in graph.nodes if kind[n] == "data")
        self.refuse_state_from_input(graph, kind)
        size, layout = self.input_of(graph, inp, kind)
        self.input_layout = layout
        vals: dict = {inp: Value(Input(size), layout, solo=len(inp.users) == 1)}
        for node in graph.nodes:
            if kind[node] != "data" or node is inp:
                continue
            where = self.where(node)
            if node.op == "output":
                out = vals.get(node.args[0]) if isinstance(node.args[0], self.torch.fx.Node) else None
                if not isinstance(out, Value) or out.node.layer is None:
                    raise self.fail(node, "forward returns something other than one tensor "
                                    "computed by its layers", "return one tensor")
                return out
            args = self.torch.fx.node.map_arg(
                (node.args, node.kwargs), lambda n: vals[n] if kind[n] == "data" else Const(n))
            for a in _flat(args):
                if isinstance(a, _Pad) and not self._is(node, self.torch.nn.Conv1d):
                    raise WeightsError(f"{a.where}: a pad of {a.pads} must feed a Conv1d directly "
                                       f"(it becomes the conv's padding); here it feeds {where}")
            try:
                value = self.op(node, args[0], args[1], where)
            except WeightsError as exc:
                text = str(exc)
                raise (exc if text.startswith(where.split(":")[0]) else
                       WeightsError(f"{where}: {text}")) from None
            if isinstance(value, Value):
                value.solo = value.solo and len(node.users) == 1
            vals[node] = value
        raise WeightsError(f"{self.name}.forward returns nothing")  # fx always has an output

    # -- the input ------------------------------------------------------------
    def input_of(self, graph: Any, inp: Any, kind: dict) -> tuple[int, str]:
        """The input's channel count and layout, from the first layer that
        reads it (through swaps, pads and element-wise steps)."""
        flips = {inp: 0}
        for n in graph.nodes:
            src = [i for i in n.all_input_nodes if i in flips]
            if kind[n] != "data" or n is inp or not src:
                continue
            parity = flips[src[0]]
            if n.op == "call_module":
                found = self._reads(self.module.get_submodule(n.target))
                if found is not None:
                    size, layout = found
                    return size, layout if parity == 0 else (TF if layout == CF else CF)
                try:
                    act = self._activation(n, self.module.get_submodule(n.target), "")
                except WeightsError:  # the walk says why, at its line
                    act = None
                if act is not None:
                    flips[n] = parity  # an activation module, Dropout or Identity
            elif tc._swap_dims(n):
                flips[n] = parity ^ 1
            elif n.op != "call_function" or n.target is not operator.getitem or tc._chomp(n):
                flips[n] = parity  # a pad, an element-wise step or the chomp
        raise WeightsError(f"{self.name}.forward: cannot tell how many channels its input has; "
                           f"the input must reach a Conv1d, Linear, GRU, LSTM, RNN, BatchNorm1d "
                           f"or LayerNorm through swaps, pads and element-wise steps only")

    def _reads(self, mod: Any) -> tuple[int, str] | None:
        nn = self.torch.nn
        if isinstance(mod, nn.Conv1d):
            return mod.in_channels, CF
        if isinstance(mod, nn.BatchNorm1d):
            return mod.num_features, CF
        if isinstance(mod, nn.PReLU) and mod.num_parameters > 1:
            return mod.num_parameters, CF
        if isinstance(mod, nn.LayerNorm) and len(mod.normalized_shape) == 1:
            return mod.normalized_shape[0], TF
        if isinstance(mod, recurrent_types(self.torch)):
            return mod.input_size, TF
        if hasattr(mod, "in_features"):  # Linear, quantized Linear
            return mod.in_features, TF
        return None

    # -- modules ----------------------------------------------------------------
    def _is(self, node: Any, kind: Any) -> bool:
        return node.op == "call_module" and isinstance(self.module.get_submodule(node.target), kind)

    def module_op(self, node: Any, mod: Any, v: Any, where: str) -> Any:
        from .torch_module import _Chain

        nn, name = self.torch.nn, node.target
        if isinstance(mod, nn.Conv1d):
            return self.conv(name, mod, v, where)
        v = self.value(v)
        act = self._activation(node, mod, where)
        if act is not None:
            return v if act == "skip" else self.activate(v, act, where)
        if isinstance(mod, (nn.GRUCell, nn.LSTMCell, nn.RNNCell)):
            raise WeightsError(f"module {name} ({type(mod).__name__}): a cell inside a larger module "
                               f"is called with a fresh state each time; use nn.{type(mod).__name__[:-4]}")
        layout = self.layout_of(v)
        if isinstance(mod, (nn.Linear,) + recurrent_types(self.torch) + quantized_types(self.torch)):
            rec = isinstance(mod, recurrent_types(self.torch))
            self.need(v, TF if rec else (TF, ONE), where, type(mod).__name__)
            if rec and not getattr(mod, "batch_first", False):
                raise WeightsError(f"{type(mod).__name__} with batch_first=False; in a graph write "
                                   f"batch_first=True and transpose(1, 2) from (N, C, T)")
            chain = _Chain()
            chain.module(self.torch, name, mod)
            node_ = v.node
            for layer in chain.layers:
                node_ = layer(node_)
            out = Value(node_, layout, solo=True, last=v.last)
            return ("rnn", out) if rec else out
        if isinstance(mod, nn.BatchNorm1d):
            self.need(v, CF, where, "BatchNorm1d (it normalises dim 1, which must be channels)")
            bn = tc.batchnorm(mod, where)
            layer = v.node.layer
            if v.solo and isinstance(layer, Conv1d) and layer.activation.name == "identity":
                return Value(tc.fold(layer, bn)(v.node.inputs[0]), CF, solo=True)
            return Value(bn(v.node), CF, solo=True)
        if isinstance(mod, nn.LayerNorm):
            self.need(v, (TF, ONE), where, "LayerNorm (it normalises the last axis: features)")
            return Value(tc.layernorm(mod, where)(v.node), layout, solo=True, last=v.last)
        if isinstance(mod, nn.PReLU):
            if mod.weight.numel() > 1:
                self.need(v, (CF, ONE), where, "PReLU with a slope per channel (dim 1)")
            from ..layers import PReLU

            layer = PReLU(tc._array(mod.weight), size=v.node.size)
            return Value(layer(v.node), layout, solo=True, last=v.last)
        if isinstance(mod, (nn.MaxPool1d, nn.AvgPool1d)):
            self.need(v, CF, where, f"{type(mod).__name__} (it pools over the last axis: time)")
            _, (layer,) = tc.pool_layer(self.torch, name, mod, where, v.node.size)
            self.one_rate(layer, where)
            return Value(layer(v.node), CF, solo=True)
        if isinstance(mod, (nn.ConstantPad1d, nn.ZeroPad1d)):
            return self.pad(node, v, where)
        if isinstance(mod, nn.GLU):
            return self.glu(v, mod.dim, where)
        raise WeightsError(
            f"module {name} ({type(mod).__module__}.{type(mod).__name__}) is not supported in a "
            f"graph; streamgru converts Conv1d, Linear, GRU, LSTM, RNN, BatchNorm1d, LayerNorm, "
            f"PReLU, GLU, MaxPool1d, AvgPool1d, pads, activations, Dropout and Identity")

    def conv(self, name: str, mod: Any, v: Any, where: str) -> Value:
        before = (0, 0)
        if isinstance(v, _Pad):
            before, v = v.pads, v.value
        self.need(v, CF, where, "Conv1d (it convolves over the last axis, which must be time: "
                  "a conv over the feature axis does not stream)")
        _, (layer,) = tc.conv_layer(self.torch, name, mod, where, before)
        if layer.latency:
            L = (layer.kernel_size - 1) * layer.dilation
            raise WeightsError(
                f"Conv1d {name} is not causal (it needs {layer.latency} future samples); every "
                f"branch of a graph is causal: pad (k-1)*dilation = {L} zeros on the left only, "
                f"F.pad(x, ({L}, 0)) before an unpadded conv, or padding={L} and the chomp "
                f"y[:, :, :-{L}]" + (" (pytorch-tcn: causal=True)" if tc.is_temporal_conv(mod) else ""))
        self.one_rate(layer, where)
        return Value(layer(v.node), CF, solo=True)

    def one_rate(self, layer: Any, where: str) -> None:
        if getattr(layer, "stride", 1) != 1:
            raise WeightsError(f"stride {layer.stride} downsamples; the branches of a graph "
                               f"run at one rate: use stride=1 (or an nn.Sequential chain)")

    def pad(self, node: Any, v: Any, where: str) -> _Pad:
        self.need(v, CF, where, "padding the time axis")
        return _Pad(v, tc.pad_of(self.torch, self.module, node, where), where)

    # -- activations --------------------------------------------------------------
    def _activation(self, node: Any, mod: Any, where: str) -> Any:
        """The activation ``node`` applies, "skip" for one that leaves values
        unchanged, None for no activation."""
        from . import torch_module as tm

        if mod is not None:
            return tm._activation_module(self.torch, node.target, mod)
        table = tm.function_table(self.torch) if node.op == "call_function" else (
            tm.METHODS if node.op == "call_method" else {})
        kind = table.get(node.target)
        if kind is None:
            return None
        return kind if kind == tm._SKIP else tm.function_activation(where, kind, node)

    def activate(self, v: Any, act: Any, where: str) -> Value:
        """``act(v)``: folded into the conv or Linear making ``v`` when it is
        that layer's only use, else an element-wise node."""
        self.need(v, (CF, TF, ONE), where, "an activation")
        layer = v.node.layer
        if v.solo and isinstance(layer, (Conv1d, Dense)) and layer.activation.name == "identity":
            again = (tc.conv_like(layer, activation=act) if isinstance(layer, Conv1d)
                     else Dense(layer.weight, layer.bias, act))
            return Value(again(v.node.inputs[0]), v.layout, solo=True, last=v.last)
        if (v.solo and isinstance(layer, Elementwise) and layer.op in ("add", "mul")
                and layer.activation.name == "identity" and act.name in ELEMENTWISE_ACTIVATIONS):
            # relu(out + res): the sum's own activation
            again = Elementwise(layer.op, layer.input_size, activation=act)
            return Value(Node(again, v.node.inputs, v.node.size), v.layout, solo=True, last=v.last)
        if act.name in ELEMENTWISE_ACTIVATIONS:
            return Value(v.node.act(act), v.layout, solo=True, last=v.last, act=(act, v))
        if v.layout == CF:
            raise WeightsError(f"{act.name} over dim=-1 of a {CF} tensor runs over time; "
                               f"transpose(1, 2) first")
        n = v.node.size
        return Value(Dense(np.eye(n), np.zeros(n), act)(v.node), v.layout, solo=True, last=v.last)

    # -- layouts --------------------------------------------------------------------
    def layout_of(self, v: Any) -> str:
        if not isinstance(v, Value):
            raise WeightsError("takes a value that is not one tensor of the signal")
        return ONE if v.last else v.layout

    def need(self, v: Any, layouts: Any, where: str, what: str) -> None:
        layouts = (layouts,) if isinstance(layouts, str) else layouts
        have = self.layout_of(v)
        if have not in layouts:
            fix = ("it runs after the last time step was taken: take the last step at the end"
                   if have == ONE else "streamgru streams along time, so transpose(1, 2) first")
            raise WeightsError(f"{what} needs a {' or '.join(layouts)} tensor, but the value here "
                               f"is {have}; {fix}")


def _flat(args: Any) -> list:
    out: list = []

    def visit(a: Any) -> None:
        if isinstance(a, (tuple, list)):
            for b in a:
                visit(b)
        elif isinstance(a, dict):
            for b in a.values():
                visit(b)
        else:
            out.append(a)

    visit(args)
    return out

