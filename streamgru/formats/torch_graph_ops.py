"""The torch functions and methods of a branching ``forward``, as graph nodes.

``Ops.op`` maps one traced call onto ``streamgru.graph`` (see
``torch_graph`` for the list): sums, products, scaling, indexing (channel
slices, the chomp, the last time step), ``chunk`` / ``split``,
``stack(...).sum(0)``, layout swaps, pads and activations; the gate
``tanh(a) * sigmoid(b)`` over two halves of one tensor becomes ``gate()``.
"""

from __future__ import annotations

import itertools
import operator
from typing import Any

from ..errors import WeightsError
from . import torch_conv as tc
from .torch_fx import DOES, index_text

__all__ = ["Const", "Ops", "Value"]

_FULL = slice(None, None, None)


class Value:
    """A tensor of ``forward``: its graph node and layout; ``last`` once the
    last time step was taken; ``solo`` while the layer making it has no
    other use (an activation or BatchNorm may fold into it); ``act`` the
    (activation, operand) that made it, ``part`` the (node, start, stop) it
    is a channel slice of (both for finding gates)."""

    __slots__ = ("act", "last", "layout", "node", "part", "solo")

    def __init__(self, node: Any, layout: str, solo: bool = True, last: bool = False,
                 act: Any = None, part: Any = None) -> None:
        self.node, self.layout, self.solo, self.last = node, layout, solo, last
        self.act, self.part = act, part


class Const:
    """A tensor computed from parameters or buffers, met as an operand."""

    def __init__(self, node: Any) -> None:
        self.node = node


def _number(a: Any) -> bool:
    return isinstance(a, (int, float)) and not isinstance(a, bool)


class Ops:
    """Mixed into ``torch_graph.GraphWalk`` (which gives ``torch``,
    ``module``, ``module_op``, ``activate``, ``need``, ``pad``)."""

    def op(self, node: Any, args: tuple, kwargs: dict, where: str) -> Any:
        torch = self.torch
        if node.op == "call_module":
            # None and False keyword arguments are the defaults of the modules read
            # here (hx=None; pytorch-tcn's inference=False, in_buffer=None)
            if len(args) != 1 or any(v is not None and v is not False for v in kwargs.values()):
                raise WeightsError("calls a module with more than the signal (an initial state?); "
                                   "in a graph every layer takes one input and recurrent layers "
                                   "start from zeros")
            return self.module_op(node, self.module.get_submodule(node.target), args[0], where)
        target = node.target
        name = target if node.op == "call_method" else getattr(target, "__name__", str(target))
        if target is operator.getitem:
            return self.index(args[0], args[1])
        swap = tc._swap_dims(node)
        if swap is not None:
            return self.swap(args[0], swap)
        if tc.pad_of(torch, self.module, node, where) is not None:
            return self.pad(node, self.value(args[0]), where)
        act = self._activation(node, None, where)
        if act is not None:
            return self.value(args[0]) if act == "skip" else self.activate(self.value(args[0]), act, where)
        def arg(i: int, key: str, default: Any = None) -> Any:
            return args[i] if len(args) > i else kwargs.get(key, default)

        if target in (operator.add, operator.iadd, torch.add) or name in ("add", "add_"):
            alpha = arg(2, "alpha", 1)
            other = arg(1, "other")
            return self.add(args[0], other if alpha == 1 else self.mul(other, alpha))
        if target in (operator.sub, operator.isub, torch.sub) or name in ("sub", "sub_"):
            return self.add(args[0], self.mul(arg(1, "other"), -arg(2, "alpha", 1)))
        if target in (operator.mul, operator.imul, torch.mul) or name in ("mul", "mul_"):
            return self.mul(args[0], arg(1, "other"))
        if target in (operator.truediv, operator.itruediv, torch.div) or name in ("div", "div_"):
            if not _number(args[1]) or args[1] == 0 or kwargs.get("rounding_mode") is not None:
                raise WeightsError("divides by something other than a non-zero Python number; "
                                   "only scaling by a constant streams element-wise")
            return self.mul(args[0], 1.0 / args[1])
        if target in (operator.neg, torch.neg) or name == "neg":
            return self.mul(args[0], -1.0)
        if target in (torch.cat, torch.concat, torch.concatenate):
            return self.concat(arg(0, "tensors"), arg(1, "dim", 0))
        if target is torch.stack:
            items = arg(0, "tensors")
            return ("stack", [self.value(a) for a in items], arg(1, "dim", 0))
        if target in (torch.sum, torch.mean) or name in ("sum", "mean"):
            return self.reduce(args[0], arg(1, "dim"), arg(2, "keepdim", False), name)
        if target is torch.nn.functional.glu:
            return self.glu(args[0], arg(1, "dim", -1), where)
        if target in (torch.chunk, torch.split) or name in ("chunk", "split"):
            sizes = arg(1, "chunks" if name == "chunk" else (
                "split_size_or_sections" if "split_size_or_sections" in kwargs else "split_size"))
            return self.parts(self.value(args[0]), name, sizes, arg(2, "dim", 0))
        raise WeightsError(f"{DOES.get(name, f'calls {name}')}; in a graph streamgru converts "
                           f"layers, +, -, *, scaling by a number, channel slices, chunk/split, "
                           f"cat over the channels, stack(...).sum(0), transpose(1, 2) and "
                           f"activations; this operation "
                           f"is not supported")

    # -- operands ----------------------------------------------------------------
    def value(self, a: Any) -> Value:
        """``a`` as one tensor of the signal, or why it is not one."""
        if isinstance(a, Value):
            return a
        if isinstance(a, tuple) and a and a[0] == "rnn":
            raise WeightsError("uses a recurrent layer's (output, state) pair as it is; unpack "
                               "it: y, _ = self.gru(x)")
        if isinstance(a, tuple) and a and a[0] == "final":
            raise WeightsError("uses the final state h_n of a recurrent layer; in a graph take "
                               "the last step of its output sequence: y[:, -1]")
        if isinstance(a, tuple) and a and a[0] == "stack":
            raise WeightsError("uses a stack of tensors other than by summing it over the stacked "
                               "axis; write torch.stack([a, b]).sum(0) or a + b")
        if isinstance(a, Const):
            raise WeightsError("combines the signal with a tensor computed from parameters or "
                               "buffers; use a layer (a 1x1 Conv1d or Linear) or a Python number")
        raise WeightsError(f"takes {type(a).__name__} {a!r} where a tensor of the signal goes")

    def same(self, a: Value, b: Value) -> None:
        la, lb = self.layout_of(a), self.layout_of(b)
        if la != lb:
            raise WeightsError(f"combines a {la} tensor with a {lb} one; transpose(1, 2) one of "
                               f"them (or take the last step of both)")

    # -- element-wise ----------------------------------------------------------------
    def add(self, a: Any, b: Any) -> Value:
        if _number(a) and a == 0:  # sum([...]) starts from 0
            return self.value(b)
        if _number(b) and b == 0:
            return self.value(a)
        if _number(a) or _number(b):
            raise WeightsError(f"adds the constant {a if _number(a) else b}; streamgru adds "
                               f"constants only as a layer's bias")
        a, b = self.value(a), self.value(b)
        self.same(a, b)
        return Value(a.node + b.node, a.layout, last=a.last)

    def mul(self, a: Any, b: Any) -> Value:
        if _number(a):
            a, b = b, a
        if _number(b):
            a = self.value(a)
            return Value(a.node * float(b), a.layout, last=a.last)
        a, b = self.value(a), self.value(b)
        self.same(a, b)
        gate = _gate(a, b)
        return Value(a.node * b.node if gate is None else gate, a.layout, last=a.last)

    def concat(self, items: Any, dim: Any) -> Value:
        """``torch.cat(items, dim)`` over the channels: one ``concat`` node."""
        vals = [self.value(a) for a in items]
        if not vals:
            raise WeightsError("concatenates no tensors")
        for v in vals[1:]:
            self.same(vals[0], v)
        if not self.is_channel_dim(vals[0], dim):
            raise WeightsError(f"concatenates over dim={dim!r}, which is not the channel axis "
                               f"({self.channel_axis(vals[0])}) of this "
                               f"{self.layout_of(vals[0])} tensor; only channels of one sample join")
        out = vals[0].node.concat(*[v.node for v in vals[1:]])
        return Value(out, vals[0].layout, solo=True, last=vals[0].last)

    def reduce(self, s: Any, dim: Any, keepdim: Any, name: str) -> Value:
        if not (isinstance(s, tuple) and s and s[0] == "stack"):
            raise WeightsError(f"{DOES[name]}; streamgru sums stacked branches only "
                               f"(torch.stack([a, b]).sum(0))")
        _, items, at = s
        ndim = (2 if items[0].last else 3) + 1
        if keepdim or not isinstance(dim, int) or dim % ndim != at % ndim:
            raise WeightsError(f"{name} over dim={dim!r} of torch.stack(..., dim={at}); "
                               f"only the stacked axis, without keepdim, sums branches")
        total = items[0]
        for v in items[1:]:
            total = self.add(total, v)
        return self.mul(total, 1.0 / len(items)) if name == "mean" else total

    # -- indexing -------------------------------------------------------------------
    def channel_axis(self, v: Value) -> int:
        return 1 if (v.last or v.layout == tc.CF) else 2

    def is_channel_dim(self, v: Value, dim: Any) -> bool:
        """Whether ``dim`` (or its negative form) is ``v``'s channel axis:
        (N, C) after the last step, else (N, C, T) or (N, T, C)."""
        axis = self.channel_axis(v)
        return dim in (axis, axis - (2 if v.last else 3))

    def glu(self, v: Any, dim: Any, where: str) -> Value:
        """``nn.GLU(dim)`` / ``F.glu``: ``a * sigmoid(b)`` over the halves of the channels."""
        v = self.value(v)
        if not self.is_channel_dim(v, dim):
            raise WeightsError(f"GLU over dim={dim!r}, which is not the channel axis "
                               f"({self.channel_axis(v)}) of this {self.layout_of(v)} tensor; "
                               f"only halves of the channels gate")
        if v.node.size % 2:
            raise WeightsError(f"GLU of {v.node.size} channels, an odd number; it halves them")
        return Value(v.node.gate("identity", "sigmoid"), v.layout, solo=True, last=v.last)

    def index(self, v: Any, idx: Any) -> Any:
        if isinstance(v, tuple) and v and v[0] == "rnn":
            return v[1] if idx == 0 else ("final",)
        if isinstance(v, tuple) and v and v[0] == "parts":
            return v[1][idx]
        v = self.value(v)
        ndim = 2 if v.last else 3
        idx = idx if isinstance(idx, tuple) else (idx,)
        text = index_text(idx)
        if idx.count(Ellipsis) == 1:
            i = idx.index(Ellipsis)
            idx = idx[:i] + (_FULL,) * (ndim - len(idx) + 1) + idx[i + 1:]
        if len(idx) > ndim or any(i is None or i is Ellipsis for i in idx):
            raise WeightsError(f"indexes a {ndim}-D tensor with [{text}]; a stream keeps the "
                               f"(batch, channels, time) axes")
        idx = idx + (_FULL,) * (ndim - len(idx))
        if idx[0] != _FULL:
            raise WeightsError(f"indexes the batch axis with [{text}]; keep it whole")
        chan = idx[self.channel_axis(v)]
        time = None if v.last else idx[3 - self.channel_axis(v)]
        out = v
        if time is not None and time != _FULL:
            if type(time) is int and time == -1:
                out = Value(v.node, v.layout, v.solo, True, v.act, v.part)
            elif not (isinstance(time, slice) and time.start in (None, 0) and time.step in (None, 1)
                      and type(time.stop) is int and time.stop < 0):
                last = "y[:, :, -1]" if v.layout == tc.CF else "y[:, -1]"
                raise WeightsError(f"indexes the time axis with [{text}]; a stream gives every "
                                   f"step: drop the end (the chomp y[:, :, :-p]) or take the "
                                   f"last step ({last})")
        if chan != _FULL:
            if not (isinstance(chan, slice) and chan.step in (None, 1)):
                raise WeightsError(f"indexes the channels with [{text}]; take a slice [a:b] of them")
            out = self.slice(out, *chan.indices(v.node.size)[:2])
        return out

    def slice(self, v: Value, start: int, stop: int) -> Value:
        if (start, stop) == (0, v.node.size):
            return v
        return Value(v.node[start:stop], v.layout, last=v.last, part=(v.node, start, stop))

    def parts(self, v: Value, name: str, sizes: Any, dim: Any) -> tuple:
        ndim = 2 if v.last else 3
        if not isinstance(dim, int) or dim % ndim != self.channel_axis(v):
            raise WeightsError(f"{name} over dim={dim!r}; streamgru splits the channels "
                               f"(dim={self.channel_axis(v)} here), not time")
        C = v.node.size
        if name == "chunk":
            if not isinstance(sizes, int) or sizes < 1:
                raise WeightsError(f"chunk({sizes!r}): expected a positive number of chunks")
            sizes = -(-C // sizes)
        if isinstance(sizes, int):
            if sizes < 1:
                raise WeightsError(f"split({sizes!r}): expected a positive size")
            sizes = [min(sizes, C - s) for s in range(0, C, sizes)]
        if not all(isinstance(s, int) and s > 0 for s in sizes) or sum(sizes) != C:
            raise WeightsError(f"split({sizes!r}) of {C} channels: the sizes must add up to {C}")
        bounds = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        return ("parts", [self.slice(v, a, b) for a, b in itertools.pairwise(bounds)])

    def swap(self, v: Any, ok: bool) -> Value:
        v = self.value(v)
        if not ok or v.last:
            raise WeightsError("only the swap of time and channels of a 3-D tensor (transpose(1, "
                               "2), permute(0, 2, 1)) keeps one sample per time step")
        layout = tc.TF if v.layout == tc.CF else tc.CF
        return Value(v.node, layout, v.solo, False, v.act, v.part)


def _gate(a: Value, b: Value) -> Any:
    """``f(z[:C]) * g(z[C:])`` of one 2C-channel node ``z``: ``z.gate(f, g)``."""
    for p, q in ((a, b), (b, a)):
        if p.act is None or q.act is None:
            continue
        (f, P), (g, Q) = p.act, q.act
        if P.part is None or Q.part is None or P.part[0] is not Q.part[0]:
            continue
        z, s1, e1 = P.part
        _, s2, e2 = Q.part
        C = e1 - s1
        if s1 == 0 and s2 == e1 and e2 - s2 == C and z.size == 2 * C:
            return z.gate(f, g)
    return None
