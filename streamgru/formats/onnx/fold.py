"""Constant folding: a node whose inputs are all known is evaluated with
onnx's own reference implementation of the op (``onnx.reference``), so it
follows the spec exactly.

Before anything is evaluated, the size of what the op will build is worked
out from its inputs' shapes and values (``_output_elements``) and charged to
the load's budget: ``RandomNormal`` of 20000 x 20000 or the outer product of
two long vectors is refused before a byte of it exists. An op whose output
size cannot be bounded that way is not folded."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...errors import WeightsError
from .ops import _SUPPORTED
from .values import _Const, _Graph, _broadcast, _int_values

# work units charged for one evaluation (~0.3 ms to build an evaluator, well
# under what the budget allows per node of the file), and for each node of a
# Loop body on every trip (~0.3 ms each: a never-ending Loop on a small file
# stops within a second or so)
FOLD_COST = 256
LOOP_NODE_COST = 2048

# output element count = that of the first input
_SAME = frozenset("""
    Abs Acos Acosh Asin Asinh Atan Atanh Ceil Cos Cosh Erf Exp Floor IsInf IsNaN Log Neg Not
    Reciprocal Relu Round Sigmoid Sign Sin Sinh Softplus Softsign Sqrt Tan Tanh Cast CastLike
    Identity Elu Selu LeakyRelu HardSigmoid HardSwish Mish Celu Gelu Softmax LogSoftmax Hardmax
    ThresholdedRelu Shrink Dropout BitwiseNot Transpose Reshape Flatten Squeeze Unsqueeze CumSum
    Trilu ReverseSequence LpNormalization MeanVarianceNormalization EyeLike RandomNormalLike
    RandomUniformLike Bernoulli Clip Det QuantizeLinear DequantizeLinear DynamicQuantizeLinear
""".split())
# multidirectional broadcasting of every input
_BROADCAST = frozenset("""
    Add Sub Mul Div Pow Mod And Or Xor Equal Greater GreaterOrEqual Less LessOrEqual Max Min Mean
    Sum Where BitShift BitwiseAnd BitwiseOr BitwiseXor PRelu
""".split())
# no output larger than all inputs together
_SMALLER = frozenset("""
    Shape Size Slice Split Concat ReduceSum ReduceMean ReduceMax ReduceMin ReduceProd ReduceL1
    ReduceL2 ReduceLogSum ReduceLogSumExp ReduceSumSquare ArgMax ArgMin Compress TopK Unique
    GatherElements
""".split())


def _fold(g: _Graph, node: Any, ins: list, at: dict) -> list:
    """Evaluate a node whose inputs are all constants with onnx's reference
    implementation of the op, after charging its output to the budget."""
    elements = _output_elements(g, node, [None if v is None else v.value for v in ins], at)
    g.budget.take(8 * elements, f"{g.label()}: folding a constant of "
                                f"{elements:,} elements")
    g.budget.count(FOLD_COST + _products(node, ins) // 1024, f"{g.label()}: constant folding")
    try:
        # (the node is kept with its evaluator so that its id is not reused)
        held, evaluator = g.evaluators.get(id(node), (None, None))
        if held is not node:
            evaluator = _evaluator(node, g.opset)
            g.evaluators[id(node)] = (node, evaluator)
        feeds = {name: v.value for name, v in zip(node.input, ins) if v is not None and name}
        result = evaluator.run(None, feeds)
    except Exception as exc:
        raise g.fail(
            f"cannot fold this op on constants ({type(exc).__name__}: {exc}); "
            f"ops that touch the stream: {_SUPPORTED}"
        ) from None
    return [_Const(np.asarray(r)) for r in result]


def _products(node: Any, ins: list) -> int:
    """Multiply-adds of a MatMul / Gemm (work: two 4000 x 4000 constants cost
    64 G of them, though neither is large)."""
    if node.op_type not in ("MatMul", "Gemm") or len(ins) < 2 or ins[0] is None:
        return 0
    a = np.shape(ins[0].value)
    k = a[-1] if a else 1
    if node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute):
        k = a[0] if a else 1
    return math.prod(np.shape(ins[0].value)) * math.prod(np.shape(ins[1].value)) // max(k, 1)


def _evaluator(node: Any, opset: int) -> Any:
    """A reference evaluator for one node at the graph's opset. Wrapped in a
    model: ``ReferenceEvaluator(node, opsets=...)`` picks the newest version
    of the op whatever the opset (Unsqueeze-13 for an opset-12 node)."""
    from onnx import ValueInfoProto, helper
    from onnx.reference import ReferenceEvaluator

    graph = helper.make_graph([node], "fold", [ValueInfoProto(name=n) for n in node.input if n],
                              [ValueInfoProto(name=n) for n in node.output if n])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return ReferenceEvaluator(model)


def _shape_values(g: _Graph, v: Any, what: str) -> list[int]:
    dims = _int_values(g, v, what)
    if any(d < 0 for d in dims):
        raise WeightsError(f"{g.where()}: {what} {dims} has a negative entry")
    return dims


def _output_elements(g: _Graph, node: Any, vals: list, at: dict) -> int:
    """The most elements any output of ``node`` can have, from its inputs'
    shapes and values (Python ints: huge sizes cannot overflow)."""
    op = node.op_type
    present = [v for v in vals if v is not None]
    sizes = [int(np.size(v)) for v in present]
    if op in _SAME:
        return sizes[0] if sizes else 0
    if op in _BROADCAST:
        return math.prod(_broadcast(g, [np.shape(v) for v in present]))
    if op == "Split" and int(at.get("num_outputs", 0)) > len(node.output):
        raise WeightsError(f"{g.where()}: num_outputs={at['num_outputs']} for "
                           f"{len(node.output)} outputs")
    if op in _SMALLER:
        return max(sum(sizes), 1)
    if op == "NonZero":
        return sizes[0] * max(np.ndim(present[0]), 1)
    if op == "Gather":
        data, idx = np.asarray(vals[0]), np.asarray(vals[1])
        axis = int(at.get("axis", 0)) % max(data.ndim, 1)
        return data.size // max(data.shape[axis], 1) * idx.size if data.ndim else 0
    if op == "GatherND":
        data, idx = np.asarray(vals[0]), np.asarray(vals[1])
        return math.prod(idx.shape[:-1]) * data.size
    if op == "MatMul":  # numpy matmul: 1-D operands gain an axis that is then dropped
        a, b = np.shape(vals[0]), np.shape(vals[1])
        a, b = ((1,) + a if len(a) == 1 else a), (b + (1,) if len(b) == 1 else b)
        if len(a) < 2 or len(b) < 2:
            raise WeightsError(f"{g.where()}: MatMul of scalars")
        return math.prod(_broadcast(g, [a[:-2], b[:-2]])) * a[-2] * b[-1]
    if op == "Gemm":  # (M, K) @ (K, N) + C
        a, b = np.shape(vals[0]), np.shape(vals[1])
        if len(a) != 2 or len(b) != 2:
            raise WeightsError(f"{g.where()}: Gemm of operands of shapes {a} and {b}")
        return a[1 if at.get("transA", 0) else 0] * b[0 if at.get("transB", 0) else 1]
    if op == "ConstantOfShape":
        return math.prod(_shape_values(g, vals[0], "ConstantOfShape shape"))
    if op == "Expand":
        shape = _shape_values(g, vals[1], "Expand shape")
        # (onnx's reference Expand multiplies by np.ones(shape) first)
        return max(math.prod(_broadcast(g, [np.shape(vals[0]), shape])), math.prod(shape))
    if op == "Tile":
        reps = _shape_values(g, vals[1], "Tile repeats")
        return sizes[0] * math.prod(reps)
    if op in ("RandomNormal", "RandomUniform"):
        shape = [int(d) for d in at.get("shape", [])]
        if any(d < 0 for d in shape):
            raise WeightsError(f"{g.where()}: shape {shape} has a negative entry")
        return math.prod(shape)
    if op == "OneHot":
        depth = _int_values(g, vals[1], "OneHot depth")
        return sizes[0] * max(abs(depth[0]) if depth else 0, 1)
    if op == "Pad":
        pads = _int_values(g, vals[1], "Pad pads") if len(vals) > 1 and vals[1] is not None else []
        shape = list(np.shape(vals[0]))
        extra = [max(p, 0) for p in pads]
        return math.prod(d + sum(extra[i::len(shape)]) for i, d in enumerate(shape)) if shape else 1
    if op == "Range":
        return _range_length(g, vals)
    raise g.fail(
        f"{op} is not folded: its output size cannot be bounded before it runs; "
        f"ops that touch the stream: {_SUPPORTED}"
    )


def _range_length(g: _Graph, vals: list) -> int:
    """Range-11: max(ceil((limit - start) / delta), 0) elements."""
    try:
        start, limit, delta = (np.asarray(v).reshape(()).item() for v in vals[:3])
    except (ValueError, AttributeError):
        raise WeightsError(f"{g.where()}: Range start, limit and delta must be scalars") from None
    if all(isinstance(x, int) for x in (start, limit, delta)):
        if delta == 0:
            raise WeightsError(f"{g.where()}: Range with delta 0")
        return max(-((start - limit) // delta), 0)
    start, limit, delta = float(start), float(limit), float(delta)
    with np.errstate(all="ignore"):
        q = (limit - start) / delta if delta else math.inf
    if not math.isfinite(q):
        raise WeightsError(
            f"{g.where()}: Range from {start} to {limit} by {delta} has no finite length; refused"
        )
    return max(math.ceil(q), 0)
