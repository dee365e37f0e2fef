"""A custom module's ``forward``, traced with ``torch.fx``, as a chain of layers
(or, when it is no chain, as a graph: ``torch_graph``).

Recognised in ``forward`` (``x`` is its first argument):

- a chain: each step takes the previous step's output (modules that are, or
  subclass, a supported module are leaves: fx does not enter them);
- ``y, h = self.gru(x)`` / ``y, (h, c) = self.lstm(x)``: ``y`` continues
  the chain; final states may go unused;
- many-to-one: ``y[:, -1]`` (batch_first), ``y[-1]``, ``h_n[-1]`` (or
  ``h_n[k]``: layer k), ``h_n.squeeze(0)`` (one layer). Streamed, step t
  gives the module's answer for the sequence ending at t
  (``metadata["many_to_one"] = True``);
- a learned or constant initial state: ``self.gru(x, h0)`` /
  ``self.lstm(x, (h0, c0))`` where the state is computed from parameters,
  buffers and the input's shape only (``self.h0.expand(-1, x.size(0),
  -1)``, ``torch.zeros(L, x.size(0), H)``): it becomes the model's initial
  state (evaluated for one sequence);
- a residual skip as the last step: ``out + x`` or ``out + x[..., a:b]``
  (``Model(input_skip=a)``).

Anything else raises ``WeightsError`` saying which line of ``forward`` does
what, and what to write instead.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from ..errors import WeightsError
from . import torch_conv
from .torch_fx import DOES as _DOES
from .torch_fx import FxWalk
from .torch_fx import index_text as _index_text
from .torch_qlive import quantized_types, recurrent_types

__all__ = ["trace"]

_ADD = (operator.add, operator.iadd)


def _is_lstm(torch: Any, mod: Any) -> bool:
    return isinstance(mod, (torch.nn.LSTM,) + quantized_types(torch)[1:2])


class _Step:
    """What a traced node stands for."""

    __slots__ = ("kind", "info", "part")

    def __init__(self, kind: str, info: Any = None, part: str = "") -> None:
        self.kind = kind   # "seq", "rnn", "final", "skip", "last"
        self.info = info   # the recurrent call, or the (start, stop) of an input slice
        self.part = part   # of a final state: "hc", "h" or "c"


class _Tracer(FxWalk):
    def __init__(self, torch: Any, module: Any, chain: Any, leaves: tuple) -> None:
        super().__init__(torch, module, leaves)
        self.chain = chain

    # -- recurrent modules --------------------------------------------------------
    def initial(self, node: Any, mod: Any, inp: Any, kind: dict) -> list | None:
        """The per-layer initial states a recurrent call passes, or None."""
        torch = self.torch
        state = node.args[1] if len(node.args) > 1 else node.kwargs.get("hx")
        if state is None:
            return None
        p = next(mod.parameters(), None)  # (quantized modules have none: float32 on the CPU)
        dummy = torch.zeros((1, 1, mod.input_size), dtype=torch.float32 if p is None else p.dtype,
                            device="cpu" if p is None else p.device)
        with torch.no_grad():
            value = self.const_value(state, inp, dummy)
        lstm = _is_lstm(torch, mod)
        parts = tuple(value) if lstm and isinstance(value, (tuple, list)) else (value,)
        if len(parts) != (2 if lstm else 1):
            raise self.fail(node, "the LSTM's initial state is not a pair (h0, c0)",
                            "pass self.lstm(x, (h0, c0))")
        out = []
        for t, size in zip(parts, (getattr(mod, "proj_size", 0) or mod.hidden_size, mod.hidden_size)):
            t = t.detach().to("cpu").double()
            if t.dim() == 3 and t.shape[1] == 1:
                t = t[:, 0]
            if tuple(t.shape) != (mod.num_layers, size):
                raise self.fail(node, f"the initial state has shape {tuple(t.shape)} for one "
                                f"sequence", f"give (num_layers, 1, {size}) = "
                                f"({mod.num_layers}, 1, {size}), expanded over the batch if you like")
            out.append(t.numpy())
        # per layer k: h (GRU, RNN) or h then c (LSTM), as the Model's state is laid out
        return [np.concatenate([p[k] for p in out]) for k in range(mod.num_layers)]

    def time_index(self, node: Any, step: _Step, idx: Any) -> bool:
        """Is ``idx`` the last step along the time axis of ``step``'s sequence?"""
        idx = idx if isinstance(idx, tuple) else (idx,)
        axis = 1 if step.info["batch_first"] else 0
        full = slice(None)
        if len(idx) > 3 or any(i != full for i in idx[axis + 1:]) or len(idx) <= axis:
            return False
        return all(i == full for i in idx[:axis]) and idx[axis] == -1

    def last_layer(self, node: Any, idx: Any, layers: int) -> int | None:
        idx = idx[0] if isinstance(idx, tuple) and len(idx) >= 1 and all(
            i == slice(None) for i in idx[1:]) else idx
        if type(idx) is int and -layers <= idx < layers:
            return idx % layers
        return None

    # -- the walk ---------------------------------------------------------------
    def run(self) -> dict:
        """Fill the chain; returns {"many_to_one": bool, "input_skip": int | None}."""
        torch = self.torch
        graph = self.graph()
        inp, kind = self.classify(graph)
        self.refuse_state_from_input(graph, kind)
        steps: dict = {inp: _Step("seq", {"batch_first": None})}
        current, last, skip = inp, False, None
        # Conv1d, norms, pads and layout swaps (formats/torch_conv.py), if the module has any
        convs = torch_conv.Tracer(torch, self.module, self.chain) if any(
            isinstance(m, torch_conv.conv_modules(torch)) for m in self.module.modules()) else None
        for node in graph.nodes:
            if kind[node] != "data" or node is inp:
                continue
            if skip is not None and node.op != "output":
                # (before the conv steps: an activation would fold into the conv before the skip)
                raise self.fail(node, "an operation follows the residual skip",
                                "the skip (output plus a slice of the input) must be the last step")
            if node.op == "output" and convs is not None:
                convs.finish(self.where(node))
            if (convs is not None and node.op != "output"
                    and not any(steps.get(i) is not None and steps[i].kind in ("rnn", "final")
                                for i in node.all_input_nodes)
                    and convs.handle(node, current, self.where(node))):
                steps[node] = steps.get(current) or _Step("seq", {"batch_first": None})
                current = node
                continue
            if node.op == "output":
                if node.args[0] is not current:
                    raise self.fail(node, "forward returns something other than the output of "
                                    "its last layer", "return the output of its last layer as one "
                                    "tensor (not a tuple with the state)")
                continue
            srcs = [steps.get(i) for i in node.all_input_nodes]
            if node.op == "call_function" and node.target is operator.getitem:
                src, idx = node.args[0], node.args[1]
                st = steps.get(src)
                if st is not None and st.kind == "rnn":
                    if idx == 0:
                        steps[node] = _Step("seq", st.info)
                        current = node
                    else:
                        steps[node] = _Step("final", st.info, "hc" if st.info["lstm"] else "h")
                    continue
                if st is not None and st.kind == "final" and st.part == "hc":
                    steps[node] = _Step("final", st.info, "h" if idx == 0 else "c")
                    continue
                if st is not None and st.kind == "final" and st.part == "c":
                    raise self.fail(node, "uses the LSTM's final cell state c_n",
                                    "streamgru streams the hidden state: use h_n[-1] or y[:, -1]")
                if st is not None and st.kind == "final":
                    current, last = self.take_final(node, st, self.last_layer(node, idx, st.info["layers"])), True
                    steps[node] = _Step("last", st.info)
                    continue
                if src is inp and node is not current:
                    steps[node] = _Step("skip", self.input_slice(node, idx))
                    continue
                if src is current and st is not None and st.kind == "seq" and not last and st.info["batch_first"] is not None:
                    if not self.time_index(node, st, idx):
                        raise self.fail(node, f"indexes the output sequence with [{_index_text(idx)}]",
                                        "streamgru takes the last time step only: "
                                        + ("y[:, -1]" if st.info["batch_first"] else "y[-1]"))
                    current, last = node, True
                    steps[node] = _Step("last", st.info)
                    continue
            if node.op == "call_method" and node.target == "squeeze" and srcs and srcs[0] is not None \
                    and srcs[0].kind == "final" and srcs[0].part == "h":
                st = srcs[0]
                if st.info["layers"] != 1 or tuple(node.args[1:]) not in ((0,), ()) and node.kwargs != {"dim": 0}:
                    raise self.fail(node, "squeezes the final hidden state of a stacked layer",
                                    "take the last layer with h_n[-1]")
                current, last = self.take_final(node, st, 0), True
                steps[node] = _Step("last", st.info)
                continue
            if node.op in ("call_function", "call_method") and (
                    node.target in _ADD or node.target in ("add", "add_") or node.target is torch.add):
                skip = self.residual(node, current, inp, steps, last)
                current = node
                continue
            for i in node.all_input_nodes:
                st = steps.get(i)
                if st is not None and st.kind == "final":
                    raise self.fail(node, "uses the final hidden state of a recurrent layer "
                                    "as it is" if st.part != "c" else "uses the LSTM's final cell state c_n",
                                    "streamgru streams its output sequence: use y, y[:, -1], "
                                    "h_n[-1] or h_n.squeeze(0)")
            current = self.chain_step(node, current, steps, last, inp, kind)
        return {"many_to_one": last, "input_skip": skip}

    def take_final(self, node: Any, st: _Step, layer: int | None) -> Any:
        if layer is None:
            raise self.fail(node, "indexes the final hidden state h_n other than by layer",
                            "take one layer, h_n[-1] (the last) or h_n[k]")
        info = st.info
        if self.chain.layers_after(info["start"] + info["layers"]):
            raise self.fail(node, "uses a recurrent layer's final state after later layers ran on "
                            "its output", "take the final state right after the recurrent layer")
        self.chain.truncate(info["start"] + layer + 1)  # the layers above it are unused
        return node

    def input_slice(self, node: Any, idx: Any) -> tuple[int, int | None]:
        idx = idx if isinstance(idx, tuple) else (idx,)
        *lead, feat = idx
        ok = isinstance(feat, slice) and feat.step in (None, 1) and all(
            i is Ellipsis or i == slice(None) for i in lead) and (Ellipsis in lead or len(idx) == 3)
        start = feat.start or 0 if ok else 0
        if not ok or type(start) is not int or start < 0 or not (feat.stop is None or type(feat.stop) is int):
            raise self.fail(node, f"indexes the input with [{_index_text(idx)}]",
                            "streamgru adds a slice of the input's features to the output: "
                            "x[..., a:b]")
        return start, feat.stop

    def residual(self, node: Any, current: Any, inp: Any, steps: dict, last: bool) -> int:
        args = list(node.args[:2])
        if len(node.args) != 2 or node.kwargs or current not in args:
            raise self.fail(node, "adds values that are not the output of the last layer and "
                            "the input", "streamgru's residual skip is output + x[..., a:b]")
        other = args[1] if args[0] is current else args[0]
        st = steps.get(other) if other is not inp else _Step("skip", (0, None))
        if st is None or st.kind != "skip":
            raise self.fail(node, "adds two values computed from the input",
                            "streamgru's residual skip is output + x[..., a:b] as the last step")
        if last:
            raise self.fail(node, "adds the input to a many-to-one output",
                            "a residual skip is supported on the output sequence")
        start, stop = st.info
        width = self.chain.layers[-1].output_size if self.chain.layers else None
        size = self.chain.layers[0].input_size if self.chain.layers else None
        end = size if stop is None else (stop if stop >= 0 else size + stop)
        if width is None or end - start != width:
            raise self.fail(node, f"adds input values [{start}:{end}] ({end - start}) to "
                            f"{width} outputs", "the slice must be as wide as the output")
        return start

    def chain_step(self, node: Any, current: Any, steps: dict, last: bool, inp: Any, kind: dict) -> Any:
        torch, chain = self.torch, self.chain
        from .torch_module import METHODS, function_activation, function_table

        functions = function_table(torch)
        target = getattr(node.target, "__name__", node.target)
        supported = (
            node.op == "call_module"
            or (node.op == "call_function" and node.target in functions)
            or (node.op == "call_method" and node.target in METHODS)
        )
        if not supported:
            raise self.fail(node, _DOES.get(str(target), f"calls {target}"),
                            "streamgru converts chains of GRU, LSTM, RNN, Linear and activations, "
                            "the last time step, and a residual skip; this operation is not supported")
        extra = [a for a in list(node.args[1:]) + list(node.kwargs.values())
                 if isinstance(a, torch.fx.Node)]
        if not node.args or node.args[0] is not current or (node.op == "call_module" and any(
                a is not None for a in node.args[2:])):
            raise self.fail(node, "does not take the previous layer's output",
                            "write forward as a chain: each step takes the previous step's output")
        mod = self.module.get_submodule(node.target) if node.op == "call_module" else None
        recurrent = mod is not None and isinstance(mod, recurrent_types(torch))
        if extra and not recurrent:
            raise self.fail(node, "takes more than the previous layer's output",
                            "each step must take only the previous step's output")
        try:
            if recurrent:
                if last:
                    raise self.fail(node, "runs a recurrent layer after the last time step was "
                                    "taken", "a stream has one time axis: take the last step at the end")
                start = len(chain.layers)
                chain.module(torch, node.target, mod, self.initial(node, mod, inp, kind))
                steps[node] = _Step("rnn", {"batch_first": mod.batch_first, "layers": mod.num_layers,
                                            "lstm": _is_lstm(torch, mod), "start": start})
                return None  # only getitem(node, 0) continues the chain
            if mod is not None:
                chain.module(torch, node.target, mod)
            else:
                kind_ = functions[node.target] if node.op == "call_function" else METHODS[node.target]
                if kind_ != "skip":
                    chain.activation(node.name, function_activation(self.where(node), kind_, node))
        except WeightsError as exc:
            where = self.where(node)
            raise (exc if str(exc).startswith(where.split(":")[0]) else
                   WeightsError(f"{where}: {exc}")) from None
        steps[node] = steps.get(current) or _Step("seq", {"batch_first": None})
        return node


def trace(torch: Any, module: Any, chain: Any, leaves: tuple) -> dict:
    """Follow ``module.forward`` into ``chain``; returns what the Model
    needs beyond the layers: ``many_to_one`` and ``input_skip``. A forward
    that is no chain becomes a graph (``torch_graph``): then ``graph`` is
    the Value it returns and ``chain`` is not used."""
    try:
        return _Tracer(torch, module, chain, leaves).run()
    except WeightsError as chain_error:
        from .torch_graph import GraphWalk

        walk = GraphWalk(torch, module, leaves + torch_conv.conv_modules(torch))
        try:
            out = walk.run()
        except WeightsError as graph_error:
            # a forward that branches is told what the graph walk found; a chain, the chain's
            raise (graph_error if walk.branches else chain_error) from None
        return {"graph": out, "many_to_one": out.last, "input_skip": None,
                "input_layout": walk.input_layout}
