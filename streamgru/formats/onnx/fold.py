"""Constant folding: a node whose inputs are all known is evaluated with
onnx's own reference implementation of the op (``onnx.reference``), so it
follows the spec exactly."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import WeightsError
from .ops import _SUPPORTED
from .values import _MAX_FOLD_ELEMENTS, _Const, _Graph


def _fold(g: _Graph, node: Any, ins: list, at: dict) -> list:
    """Evaluate a node whose inputs are all constants with onnx's reference
    implementation of the op."""
    op = node.op_type
    if op in ("ConstantOfShape", "Expand", "Tile", "Range"):
        _check_fold_size(g, node, ins)
    try:
        from onnx.reference import ReferenceEvaluator

        feeds = {name: v.value for name, v in zip(node.input, ins) if v is not None and name}
        result = ReferenceEvaluator(node, opsets={"": g.opset}).run(None, feeds)
    except Exception as exc:
        raise g.fail(
            f"cannot fold this op on constants ({type(exc).__name__}: {exc}); "
            f"ops that touch the stream: {_SUPPORTED}"
        ) from None
    return [_Const(np.asarray(r)) for r in result]


def _check_fold_size(g: _Graph, node: Any, ins: list) -> None:
    op = node.op_type
    if op in ("ConstantOfShape", "Expand"):
        shape = np.asarray(ins[0 if op == "ConstantOfShape" else 1].value).reshape(-1)
        n = int(np.prod(np.maximum(shape, 1), dtype=np.float64))
    elif op == "Tile":
        n = ins[0].value.size * int(np.prod(np.maximum(np.asarray(ins[1].value), 1), dtype=np.float64))
    else:
        start, limit, delta = (float(np.asarray(v.value)) for v in ins[:3])
        n = int(abs((limit - start) / delta)) if delta else 0
    if n > _MAX_FOLD_ELEMENTS:
        raise WeightsError(f"{g.where()}: would build a constant of {n} elements; refused")
