"""What the fx walks of ``forward`` share (``torch_trace``: chains; ``torch_graph``: graphs).

Tracing with ``torch.fx`` (supported modules are leaves), sorting the
traced nodes into what follows from the input and what is computed from
parameters and shapes, evaluating the latter (initial states), and naming
a node by the line of ``forward`` it comes from.
"""

from __future__ import annotations

import inspect
import operator
import os
import re
from typing import Any

from ..errors import WeightsError
from .torch_conv import is_temporal_conv
from .torch_qlive import recurrent_types

__all__ = ["FxWalk", "index_text"]

_SHAPE_METHODS = {"size", "dim"}
_SHAPE_ATTRS = {"shape", "device", "dtype", "ndim", "is_cuda"}
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)(?:\n    (?!File)(.*))?')

DOES = {  # what an unsupported operation does, in the words of forward
    "mul": "multiplies two values", "matmul": "multiplies matrices",
    "cat": "concatenates tensors", "stack": "stacks tensors", "sum": "sums over an axis",
    "mean": "averages over an axis", "view": "reshapes the tensor", "reshape": "reshapes the tensor",
    "permute": "reorders the axes", "transpose": "swaps two axes", "flatten": "flattens axes",
    "sub": "subtracts two values", "truediv": "divides two values", "add": "adds two values",
}


class FxWalk:
    """A traced ``forward``: its graph, node kinds and messages."""

    def __init__(self, torch: Any, module: Any, leaves: tuple) -> None:
        self.torch = torch
        self.module = module
        self.leaves = leaves
        self.name = type(module).__name__

    # -- messages -------------------------------------------------------------
    def where(self, node: Any) -> str:
        """``"Net.forward, line 12 (net.py): return self.fc(y[:, -1])"``."""
        text = getattr(node, "stack_trace", None) or node.meta.get("stack_trace") or ""
        torch_dir = os.path.dirname(self.torch.__file__)
        for m in _FRAME.finditer(text):  # the first frame outside torch is forward's line
            file, line, func, code = m.groups()
            if not file.startswith(torch_dir):
                code = f": {code.strip()}" if code else ""
                return f"{self.name}.{func}, line {line} ({os.path.basename(file)}){code}"
        return f"{self.name}.forward"

    def fail(self, node: Any, what: str, change: str) -> WeightsError:
        return WeightsError(f"{self.where(node)}: {what}; {change}")

    # -- the graph --------------------------------------------------------------
    def graph(self) -> Any:
        fx = self.torch.fx
        leaves = self.leaves

        class Tracer(fx.Tracer):
            def is_leaf_module(self, m: Any, qualname: str) -> bool:
                return (isinstance(m, leaves) or is_temporal_conv(m)
                        or super().is_leaf_module(m, qualname))

        tracer = Tracer()
        tracer.record_stack_traces = True
        try:
            graph = tracer.trace(self.module, concrete_args=self.defaults())
        except Exception as exc:
            raise WeightsError(
                f"cannot trace {self.name}.forward with torch.fx ({type(exc).__name__}: {exc}); "
                f"write forward as a plain chain of supported modules (no branches on tensor "
                f"values), or use nn.Sequential"
            ) from None
        # fx checks each default it specialised with assert nodes (``eq``, then
        # ``_assert``): dead code for a stream, and they would read as data
        for n in reversed(list(graph.nodes)):
            if n.op == "call_function" and not n.users and (
                    getattr(n.target, "__name__", "") in ("_assert", "_assert_is_none")
                    or n.target is operator.eq):
                graph.erase_node(n)
        return graph

    def defaults(self) -> dict:
        """``forward``'s arguments after the input that have a default, at
        that default: what a call with the input alone runs (so a ``forward``
        that branches on a flag such as ``inference=False`` traces)."""
        try:
            params = list(inspect.signature(self.module.forward).parameters.values())
        except (TypeError, ValueError):
            return {}
        return {p.name: p.default for p in params[1:]
                if p.default is not p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def classify(self, graph: Any) -> tuple[Any, dict]:
        """The input placeholder, and node -> "data" (follows from the input),
        "shape" (the input's size, device or dtype), "const" (parameters,
        buffers and what is computed from them and shapes) or "arg"."""
        kind: dict = {}
        inp = None
        for n in graph.nodes:
            if n.op == "placeholder":
                if inp is None:
                    inp, kind[n] = n, "data"
                    continue
                if n.users:
                    raise self.fail(n, f"forward uses its extra argument {n.target!r}",
                                    "streamgru feeds only the input sequence; keep a state in "
                                    "the module (nn.Parameter or buffer) instead")
                kind[n] = "arg"
                continue
            ins = {kind[i] for i in n.all_input_nodes}
            if n.op == "call_method" and n.target in ("to", "type_as") and n.args:
                # state.to(x) / .type_as(x) take only x's dtype and device
                first = n.args[0]
                ins = {kind[first]} if first in kind else set()
            if (n.op == "call_method" and n.target in _SHAPE_METHODS) or (
                    n.op == "call_function" and n.target is getattr and n.args[1] in _SHAPE_ATTRS):
                kind[n] = "shape"
            elif "data" in ins or n.op == "output":
                kind[n] = "data"
            elif ins == {"shape"} and n.op == "call_function" and n.target in (
                    operator.getitem, operator.mul, operator.add, operator.sub, operator.floordiv):
                kind[n] = "shape"
            else:
                kind[n] = "const"
        if inp is None:
            raise WeightsError(f"{self.name}.forward takes no input")
        return inp, kind

    def const_value(self, arg: Any, inp: Any, dummy: Any) -> Any:
        """Evaluate a state argument (nodes of kind const/shape) for one
        sequence: the input is ``dummy``."""
        fx = self.torch.fx
        values: dict = {inp: dummy}

        def ev(a: Any) -> Any:
            return fx.node.map_arg(a, lambda n: values[n])

        needed = []

        def collect(a: Any) -> None:
            def visit(n: Any) -> Any:
                if n not in values and n not in needed:
                    for i in n.all_input_nodes:
                        visit(i)
                    needed.append(n)
                return n
            fx.node.map_arg(a, visit)

        collect(arg)
        for n in needed:
            if n.op == "get_attr":
                obj = self.module
                for part in n.target.split("."):
                    obj = getattr(obj, part)
                values[n] = obj
            elif n.op == "call_function":
                values[n] = n.target(*ev(n.args), **ev(n.kwargs))
            elif n.op == "call_method":
                self_obj, *rest = ev(n.args)
                values[n] = getattr(self_obj, n.target)(*rest, **ev(n.kwargs))
            elif n.op == "call_module":
                values[n] = self.module.get_submodule(n.target)(*ev(n.args), **ev(n.kwargs))
            else:
                raise self.fail(n, "the initial state depends on an argument of forward",
                                "compute it from parameters or buffers only")
        return ev(arg)

    def refuse_state_from_input(self, graph: Any, kind: dict) -> None:
        """A recurrent layer's initial state computed from the input's values:
        said before the walk's own steps fail on it."""
        for node in graph.nodes:
            if node.op == "call_module" and isinstance(
                    self.module.get_submodule(node.target), recurrent_types(self.torch)):
                state = node.args[1] if len(node.args) > 1 else node.kwargs.get("hx")
                found: list = []
                self.torch.fx.node.map_arg(state, found.append)
                if any(kind.get(s) == "data" for s in found):
                    raise self.fail(node, "the initial state passed to the recurrent layer is "
                                    "computed from the input's values", "a stream starts from one "
                                    "fixed state: pass one built from parameters or buffers, or none")


def index_text(idx: Any) -> str:
    def one(i: Any) -> str:
        if i is Ellipsis:
            return "..."
        if isinstance(i, slice):
            text = f"{'' if i.start is None else i.start}:{'' if i.stop is None else i.stop}"
            return text + ("" if i.step is None else f":{i.step}")
        return str(i)

    return ", ".join(one(i) for i in (idx if isinstance(idx, tuple) else (idx,)))
