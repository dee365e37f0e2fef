"""Walking the graph: every node's inputs are looked up, then it is folded
(all inputs constant) or handed to its handler in the op table."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import WeightsError
from ..guard import Budget
from . import quant
from .control import _control_flow
from .fold import _fold
from .ops import _RECURRENT, _SUPPORTED, HANDLERS
from .tensors import _attrs
from .conv import _features_of_conv, _h_pending
from .values import _Const, _Fill, _Graph, _Mismatch, _Pending, _Poison, _Stream, _Unstreamable

# ops of other domains that are read: ONNX Runtime's quantized LSTM
_CONTRIB = {("com.microsoft", "DynamicQuantizeLSTM")}


def _shape_of_input(vi: Any) -> list | None:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]


def _guesses(rank: int, channels_first: bool = False) -> list[tuple[str, ...]]:
    """Roles of the data input's axes to try, most common first; a graph
    with convolutions may also take channels-first input (batch, features, time)."""
    if rank == 3:
        return [("T", "N", "F"), ("N", "T", "F")] + ([("N", "F", "T")] if channels_first else [])
    if rank == 2:
        return [("T", "F")]
    if rank == 1:
        return [("F",)]
    return [("T", "N", "F")[: rank - 1] + ("F",)] if rank > 0 else []


def _walk(model: Any, path: str, tensors: dict, data_input: Any, others: list,
          roles: tuple, opset: int, budget: Budget,
          static_activations: str = "refuse") -> tuple[dict, _Graph]:
    shape = _shape_of_input(data_input)
    sizes: dict[str, Any] = {"T": "T", "N": "N"}
    features = None
    for role, dim in zip(roles, shape):
        if role == "F":
            features = dim
        else:
            sizes[role] = dim if dim is not None else role
    if not features:
        # a symbolic feature axis (dynamic_axes on every axis): the first node
        # that consumes the input with a weight fixes its size
        features = _features_from_consumers(model, tensors, data_input.name)
    if not features:
        # (a mismatch: another guess of the axes may put the features on a fixed axis)
        raise _Mismatch(
            f"{path}: graph input {data_input.name!r} has no fixed feature size (last axis), and "
            f"no recurrent node's W, MatMul/Gemm or Conv weight reading it fixes one"
        )
    g = _Graph(path, opset, sizes, budget)
    g.static_activations = static_activations
    env: dict[str, Any] = dict((k, _Const(v)) for k, v in tensors.items())
    g.input_features = int(features)
    env[data_input.name] = _Stream(tuple((r,) for r in roles), int(features))
    for vi in others:
        dims = _shape_of_input(vi) or []
        env[vi.name] = _Fill(np.zeros((1,) * len(dims), np.float32),
                             tuple(d if d is not None else "?" for d in dims), source=vi.name)
    _run(g, model.graph.node, env)
    g.node = None
    return env, g


# nodes through which the graph input keeps its feature axis (as far as a
# search for the weight that fixes its size needs to look)
_KEEPS_FEATURES = frozenset("""
    Identity Cast CastLike Dropout Transpose Unsqueeze Squeeze Reshape Flatten Add Sub Mul Div Neg
    Pad Relu Tanh Sigmoid LeakyRelu Elu Gelu HardSigmoid
""".split())


def _features_from_consumers(model: Any, tensors: dict, name: str) -> int | None:
    """The input size of the first recurrent node (W is (dirs, gates*H,
    input)), MatMul (B is (input, out)) or Gemm reached from graph input
    ``name`` through ops that keep its features; None if there is none.
    Loading then checks the size against every node as usual."""
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    flowing = {name}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output:  # (a malformed one has none)
            for a in node.attribute:
                if a.name == "value" and a.HasField("t"):
                    shapes[node.output[0]] = tuple(a.t.dims)
        if not node.input or node.input[0] not in flowing:
            continue
        weight = shapes.get(node.input[1]) if len(node.input) > 1 else None
        if weight is not None and len(weight) >= 2:
            if node.op_type in _RECURRENT:
                return int(weight[-1])
            if node.op_type == "MatMul":
                return int(weight[-2])
            if node.op_type == "Conv":
                return _features_of_conv(weight, node)
            if node.op_type == "Gemm" and len(weight) == 2:
                trans_b = any(a.name == "transB" and a.i for a in node.attribute)
                return int(weight[1] if trans_b else weight[0])
        if node.op_type in _KEEPS_FEATURES:
            flowing.update(node.output)
    return None


def _run(g: _Graph, nodes: Any, env: Any) -> None:
    """Give every node of ``nodes`` its value(s) in ``env``, in order. Every
    WeightsError leaving a node names the file and the node."""
    for k, node in enumerate(nodes):
        g.node, g.index = node, k
        try:
            outs = _node(g, node, env)
        except _Unstreamable as exc:
            outs = [_Poison(exc)] * len(node.output)
        except WeightsError as exc:
            g.node, g.index = node, k  # (a subgraph moved them)
            raise _named(g, exc) from None
        except (IndexError, KeyError, TypeError, ValueError, AttributeError, OverflowError,
                ZeroDivisionError, MemoryError, RecursionError) as exc:
            # a node with too few inputs, wrong attribute types, absurd values
            g.node, g.index = node, k
            raise WeightsError(
                f"{g.where()}: malformed node ({type(exc).__name__}: {exc})"
            ) from None
        for name, v in zip(node.output, list(outs) + [None] * len(node.output)):
            if name:
                env[name] = v if v is not None else _Poison(g.fail(f"output {name!r} is not produced"))


def _named(g: _Graph, exc: WeightsError) -> WeightsError:
    """``exc`` with the file and the node in front if its message lacks them
    (layers.py and the budget know neither)."""
    msg = str(exc)
    if g.label() in msg:
        return exc
    return WeightsError(f"{g.where()}: {msg.removeprefix(g.path + ': ')}")


def _node(g: _Graph, node: Any, env: Any) -> list:
    """The output values of one node."""
    ins = []
    for name in node.input:
        if not name:
            ins.append(None)  # an empty name is an absent optional input
        elif name in env:
            ins.append(env[name])
        else:
            raise WeightsError(
                f"{g.where()}: input tensor {name!r} is not defined (missing initializer, "
                f"or not produced by an earlier node)"
            )
    # sequence_lens (input 4 of GRU/LSTM/RNN) is ignored, whatever it is computed from
    used = [v for k, v in enumerate(ins) if not (k == 4 and node.op_type in _RECURRENT)]
    poison = next((v for v in used if isinstance(v, _Poison)), None)
    if poison is not None:
        return [poison] * len(node.output)
    if node.domain not in ("", "ai.onnx") and (node.domain, node.op_type) not in _CONTRIB:
        raise g.fail(f"op from domain {node.domain!r} is not supported; supported: {_SUPPORTED}")
    g.budget.count(1, f"{g.label()}: walking the graph")
    if node.op_type in ("If", "Loop"):
        return _control_flow(g, node, ins, env, _run)
    at = _attrs(node, g.path, g.budget)
    if any(isinstance(v, _Pending) for v in used):
        return _h_pending(g, node, ins, at)
    if node.op_type != "Constant" and all(v is None or isinstance(v, _Const) for v in ins) \
            and node.op_type not in _RECURRENT:
        if node.op_type == "DequantizeLinear":
            quant.check_dequantize(g, node, ins, at)
        outs = _fold(g, node, ins, at)
        if node.op_type == "DequantizeLinear":  # QDQ weights: keep the int8 values and scales
            return quant.tag_dequantized(outs, ins, at)
        return outs
    if any(quant.is_quant_value(v) for v in ins):
        return quant.h_pattern(g, node, ins, at)
    if node.op_type in HANDLERS:
        return HANDLERS[node.op_type](g, node, ins, at)
    raise g.fail(f"op {node.op_type!r} cannot be streamed; supported: {_SUPPORTED}")
