"""Walking the graph: every node's inputs are looked up, then it is folded
(all inputs constant) or handed to its handler in the op table."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import WeightsError
from .fold import _fold
from .ops import _RECURRENT, _SUPPORTED, HANDLERS
from .tensors import _attrs
from .values import _Const, _Fill, _Graph, _Poison, _Stream, _Unstreamable


def _shape_of_input(vi: Any) -> list | None:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]


def _guesses(rank: int) -> list[tuple[str, ...]]:
    """Roles of the data input's axes to try, most common first."""
    if rank == 3:
        return [("T", "N", "F"), ("N", "T", "F")]
    if rank == 2:
        return [("T", "F")]
    if rank == 1:
        return [("F",)]
    return [("T", "N", "F")[: rank - 1] + ("F",)] if rank > 0 else []


def _walk(model: Any, path: str, tensors: dict, data_input: Any, others: list,
          roles: tuple, opset: int) -> tuple[dict, _Graph]:
    shape = _shape_of_input(data_input)
    sizes: dict[str, Any] = {"T": "T", "N": "N"}
    features = None
    for role, dim in zip(roles, shape):
        if role == "F":
            features = dim
        else:
            sizes[role] = dim if dim is not None else role
    if not features:
        raise WeightsError(
            f"{path}: graph input {data_input.name!r} has no fixed feature size (last axis)"
        )
    g = _Graph(path, opset, sizes)
    env: dict[str, Any] = dict((k, _Const(v)) for k, v in tensors.items())
    env[data_input.name] = _Stream(tuple((r,) for r in roles), int(features))
    for vi in others:
        dims = _shape_of_input(vi) or []
        env[vi.name] = _Fill(np.zeros((1,) * len(dims), np.float32),
                             tuple(d if d is not None else "?" for d in dims), source=vi.name)
    for k, node in enumerate(model.graph.node):
        g.node, g.index = node, k
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
        at = _attrs(node, path)
        # sequence_lens (input 4 of GRU/LSTM/RNN) is ignored, whatever it is computed from
        used = [v for k, v in enumerate(ins) if not (k == 4 and node.op_type in _RECURRENT)]
        poison = next((v for v in used if isinstance(v, _Poison)), None)
        try:
            if poison is not None:
                outs = [poison] * len(node.output)
            elif node.domain not in ("", "ai.onnx"):
                raise g.fail(f"op from domain {node.domain!r} is not supported; supported: {_SUPPORTED}")
            elif node.op_type != "Constant" and all(v is None or isinstance(v, _Const) for v in ins) \
                    and node.op_type not in _RECURRENT:
                outs = _fold(g, node, ins, at)
            elif node.op_type in HANDLERS:
                outs = HANDLERS[node.op_type](g, node, ins, at)
            else:
                raise g.fail(f"op {node.op_type!r} cannot be streamed; supported: {_SUPPORTED}")
        except _Unstreamable as exc:
            outs = [_Poison(exc)] * len(node.output)
        except WeightsError:
            raise
        except (IndexError, KeyError, TypeError, ValueError, AttributeError) as exc:
            # a node with too few inputs, wrong attribute types and the like
            raise WeightsError(
                f"{g.where()}: malformed node ({type(exc).__name__}: {exc})"
            ) from None
        for name, v in zip(node.output, list(outs) + [None] * len(node.output)):
            if name:
                env[name] = v if v is not None else _Poison(g.fail(f"output {name!r} is not produced"))
    g.node = None
    return env, g
