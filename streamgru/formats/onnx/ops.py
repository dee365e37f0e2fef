"""The op table: one handler per ONNX op type (``HANDLERS``), each citing the
spec. This module holds the element-wise, Dense-like and activation ops;
axis moves are in ``axes``, shape building in ``shapes``, recurrent nodes in
``recurrent``.

Handlers: f(g, node, inputs, attrs) -> list of output values. Inputs that are
all constants never reach a handler (they are folded), except for Constant."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from ...errors import WeightsError
from ...layers import Dense
from .axes import (_h_flatten, _h_gather, _h_shape, _h_slice, _h_squeeze, _h_transpose,
                   _h_unsqueeze)
from .chain import _activate, _affine, _append, _feature_vector, _root
from . import quant
from .branches import h_reduce, h_split, join
from .conv import CONV_HANDLERS
from .recurrent import _h_recurrent
from .shapes import _h_concat, _h_constant_of_shape, _h_expand, _h_reshape, _h_tile
from .values import (_Const, _Dims, _ErfOf, _Fill, _Graph, _Poison, _Stream, _describe_axes,
                     _broadcast, _dims, _int_values, _materialize, _norm_axis,
                     _opt)

Handler = Callable[[_Graph, Any, list, dict], list]



def _h_constant(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Constant-1/9/11/12/13/19/21: exactly one of value, value_float(s), value_int(s)
    if "value" in at:
        return [_Const(at["value"])]
    for key, dt in (("value_float", np.float32), ("value_floats", np.float32),
                    ("value_int", np.int64), ("value_ints", np.int64)):
        if key in at:
            return [_Const(np.array(at[key], dtype=dt))]
    raise g.fail(f"Constant with attributes {sorted(at)} is not supported")


def _h_identity(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Identity, Dropout (inference: output = input; the mask output is unused),
    # Cast/CastLike between float types (the Model picks its own dtype)
    if node.op_type == "Cast" and isinstance(ins[0], _Stream):
        to = at.get("to")
        if to not in (1, 10, 11, 16):  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
            raise g.fail(f"casts the stream to a non-float type ({to})")
    outs = [ins[0]]
    if node.op_type == "Dropout":
        outs.append(_Poison(g.fail("the Dropout mask is not a stream")))
    return outs


_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}


def _h_binary(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Add/Sub/Mul/Div-14: element-wise with multidirectional broadcasting
    a, b = ins[0], ins[1]
    op = node.op_type
    if isinstance(a, _ErfOf) or isinstance(b, _ErfOf):
        return [_gelu_part(g, op, a, b)]
    if isinstance(a, _Stream) and isinstance(b, _Stream):
        return [join(g, op, a, b)]  # two branches (branches.py)
    if isinstance(a, _Stream) or isinstance(b, _Stream):
        s, c, stream_first = (a, b, True) if isinstance(a, _Stream) else (b, a, False)
        arr = _materialize(g, c)
        if arr is None:
            raise g.fail(f"{op} of the stream with a tensor of unknown values")
        vec, axes = _feature_vector(g, s, arr)
        one, zero = np.ones_like(vec), np.zeros_like(vec)
        if op == "Add":
            out = _affine(g, s, one, vec)
        elif op == "Mul":
            out = _affine(g, s, vec, zero)
        elif op == "Sub":
            out = _affine(g, s, one, -vec) if stream_first else _affine(g, s, -one, vec)
        else:
            if not stream_first:
                raise g.fail("divides a constant by the stream (not an affine map)")
            if np.any(vec == 0):
                raise WeightsError(f"{g.where()}: divides the stream by zero")
            out = _affine(g, s, 1.0 / vec, zero)
        return [dataclasses.replace(out, axes=axes)]
    if isinstance(a, (_Dims, _Const)) and isinstance(b, (_Dims, _Const)):
        return [_dims_arith(g, op, a, b)]
    if isinstance(a, (_Fill, _Const)) and isinstance(b, (_Fill, _Const)):
        fa = a if isinstance(a, _Fill) else None
        fb = b if isinstance(b, _Fill) else None
        if (fa and fa.source) or (fb and fb.source):
            raise g.fail(f"{op} on a state fed from a graph input")
        ba = a.base if fa else a.value
        bb = b.base if fb else b.value
        sa = fa.shape if fa else tuple(ba.shape)
        sb = fb.shape if fb else tuple(bb.shape)
        rank = max(len(sa), len(sb))
        sa, sb = (1,) * (rank - len(sa)) + tuple(sa), (1,) * (rank - len(sb)) + tuple(sb)
        shape = tuple(x if y == 1 else y for x, y in zip(sa, sb))
        g.budget.take(8 * math.prod(_broadcast(g, [ba.shape, bb.shape])),
                      f"{g.label()}: {op} of two known tensors")
        with np.errstate(all="ignore"):
            base = _BINARY[op](ba.reshape((1,) * (rank - ba.ndim) + ba.shape),
                               bb.reshape((1,) * (rank - bb.ndim) + bb.shape))
        return [_Fill(np.asarray(base), shape)]
    raise g.fail(f"{op} of a {type(a).__name__} and a {type(b).__name__}")


def _h_erf(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Erf-13: only inside GELU's erf form x * 0.5 * (1 + erf(x / sqrt(2)))
    s = ins[0]
    if not isinstance(s, _Stream):
        raise g.fail(f"Erf of a {type(s).__name__}")
    return [_ErfOf(s, 0.0, node.name)]


def _gelu_part(g: _Graph, op: str, a: Any, b: Any) -> Any:
    """One step of GELU's erf form: ``erf(e) + 1``, then ``m * (1 + erf(e))``
    with ``m`` proportional to ``x = sqrt(2) e``, which is ``2c * gelu(x)``."""
    erf, other = (a, b) if isinstance(a, _ErfOf) else (b, a)
    if op == "Add" and not isinstance(other, (_Stream, _ErfOf)):
        value = _materialize(g, other)
        if value is not None and value.size >= 1 and np.all(value == value.reshape(-1)[0]):
            return _ErfOf(erf.stream, erf.offset + float(value.reshape(-1)[0]), erf.node)
    if op == "Mul" and isinstance(other, _Stream) and erf.offset == 1.0:
        e, m = erf.stream, other
        base_e, ke, se = _root(e)
        base_m, km, sm = _root(m)
        if base_e is base_m and e.axes == m.axes and np.all(ke != 0):
            c = km / (math.sqrt(2.0) * ke)  # m = c * sqrt(2) * e = c * x
            if np.allclose(c, c[0], rtol=1e-6, atol=0) and np.allclose(
                    sm, c * math.sqrt(2.0) * se, rtol=1e-6, atol=1e-12):
                # the exporter's sqrt(2) is a float32 constant: c is exact to float32
                c0 = float(np.float32(c[0]))
                n = e.features
                x = m if c0 == 1.0 else _affine(g, m, np.full(n, 1.0 / c0), np.zeros(n))
                return _affine(g, _activate(g, x, "gelu"), np.full(n, 2.0 * c0), np.zeros(n))
    raise g.fail(
        f"Erf (node {erf.node!r}) is only supported in GELU's form x * 0.5 * (1 + erf(x / sqrt(2)))"
    )


_MAX_FACTORS = 8  # unknown sizes in one symbolic product (time * batch is 2)


def _dims_arith(g: _Graph, op: str, a: Any, b: Any) -> Any:
    """Arithmetic on shape vectors: known entries computed, unknown ones stay
    unknown (a product of two unknown sizes is kept as ``"N*T"``)."""
    def entries(v: Any) -> tuple[list, bool]:
        if isinstance(v, _Dims):
            return list(v.values), v.scalar
        return _int_values(g, v.value, f"{op} on a shape"), np.ndim(v.value) == 0
    va, sa = entries(a)
    vb, sb = entries(b)
    n = max(len(va), len(vb))
    if len(va) == 1:
        va = va * n
    if len(vb) == 1:
        vb = vb * n
    if len(va) != len(vb):
        raise WeightsError(f"{g.where()}: shapes {len(va)} and {len(vb)} do not broadcast")
    out = []
    for x, y in zip(va, vb):
        if isinstance(x, int) and isinstance(y, int):  # Python ints: no wrap-around
            out.append(x + y if op == "Add" else x - y if op == "Sub" else x * y if op == "Mul"
                       else x // y if y else "?")
        elif op == "Mul" and (x == 1 or y == 1):
            out.append(y if x == 1 else x)
        elif op == "Mul" and isinstance(x, str) and isinstance(y, str) and "?" not in (x, y):
            factors = x.split("*") + y.split("*")
            # a product squared at every node would double its name each time
            out.append("*".join(sorted(factors)) if len(factors) <= _MAX_FACTORS else "?")
        elif op in ("Div",) and y == 1:
            out.append(x)
        elif op in ("Add", "Sub") and y == 0:
            out.append(x)
        else:
            out.append("?")
    return _dims(out, scalar=sa and sb)


def _h_neg(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Neg-13: y = -x
    s = ins[0]
    if not isinstance(s, _Stream):
        raise g.fail(f"Neg of a {type(s).__name__}")
    return [_affine(g, s, -np.ones(s.features), np.zeros(s.features))]


def _h_matmul(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # MatMul-13: numpy matmul; stream @ W with W (F, O) is Dense(W.T)
    a, b = ins[0], ins[1]
    if not isinstance(a, _Stream):
        raise g.fail("MatMul with the stream on the right (a constant times the stream)")
    w = _materialize(g, b)
    if w is None:
        raise g.fail("MatMul of the stream with a tensor of unknown values")
    qw = quant.weight(g, b, repr(node.input[1]), rows_axis=1, transpose=True)
    w = np.asarray(w)
    while w.ndim > 2 and w.shape[0] == 1:
        w = w[0]
    if w.ndim != 2:
        raise g.fail(f"MatMul with a weight of shape {w.shape} (expected 2-D)")
    fi = g.feature_axis(a)
    if fi != len(a.axes) - 1:
        raise g.fail(f"MatMul over an axis that is not the features: stream axes {_describe_axes(a)}")
    if w.shape[0] != a.features:
        raise WeightsError(
            f"{g.where()}: tensor {node.input[1]!r}: shape {w.shape} does not take {a.features} features"
        )
    return [_append(a, Dense(w.T if qw is None else qw), features=int(w.shape[1]))]


def _h_gemm(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Gemm-13: Y = alpha * A' @ B' + beta * C, A' = A.T if transA, B' = B.T if transB
    a, b, c = ins[0], ins[1], _opt(ins, 2)
    if not isinstance(a, _Stream):
        raise g.fail("Gemm with the stream as B")
    if len(a.axes) != 2:
        raise g.fail(f"Gemm of a stream with axes {_describe_axes(a)} (expected 2-D)")
    axes = a.axes[::-1] if at.get("transA", 0) else a.axes
    s = dataclasses.replace(a, axes=axes)
    if g.feature_axis(s) != 1:
        raise g.fail(f"Gemm contracts an axis that is not the features: {_describe_axes(s)}")
    w = _materialize(g, b)
    if w is None or w.ndim != 2:
        raise g.fail("Gemm B must be a constant matrix")
    qw = quant.weight(g, b, repr(node.input[1]), rows_axis=0 if at.get("transB", 0) else 1,
                      transpose=not at.get("transB", 0))
    w = w.T if at.get("transB", 0) else w
    if w.shape[0] != s.features:
        raise WeightsError(
            f"{g.where()}: tensor {node.input[1]!r}: shape {w.shape} does not take "
            f"{s.features} features"
        )
    alpha, beta = float(at.get("alpha", 1.0)), float(at.get("beta", 1.0))
    out_size = int(w.shape[1])
    bias = None
    if c is not None:
        carr = _materialize(g, c)
        if carr is None:
            raise g.fail("Gemm C must be a constant")
        tmp = dataclasses.replace(s, features=out_size)
        bias, _ = _feature_vector(g, tmp, carr)
        bias = beta * bias
    if qw is not None and alpha == 1.0:
        dense = Dense(qw, bias)  # the file's int8 weight as stored
    else:
        dense = Dense(alpha * np.asarray(w, np.float64).T, bias)
    return [_append(s, dense, features=out_size)]


def _activation_of(g: _Graph, node: Any, at: dict) -> Any:
    op = node.op_type
    if op == "LeakyRelu":
        return ("leaky_relu", float(at.get("alpha", 0.01)))
    if op == "Elu":
        return ("elu", float(at.get("alpha", 1.0)))
    if op == "HardSigmoid":
        return ("hard_sigmoid", float(at.get("alpha", 0.2)), float(at.get("beta", 0.5)))
    if op == "Gelu":
        if at.get("approximate", "none") != "none":
            raise g.fail(f"Gelu approximate={at.get('approximate')!r} is not supported (only 'none')")
        return "gelu"
    return {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid",
            "Softmax": "softmax", "LogSoftmax": "log_softmax"}[op]


def _h_activation(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Relu/Tanh/Sigmoid-13, LeakyRelu-16, Elu-6, HardSigmoid-6, Gelu-20: element-wise;
    # Softmax/LogSoftmax-13: over ``axis`` (before 13: over the flattened axes from ``axis``)
    s = ins[0]
    if not isinstance(s, _Stream):
        raise g.fail(f"{node.op_type} of a {type(s).__name__}")
    act = _activation_of(g, node, at)
    if node.op_type in ("Softmax", "LogSoftmax"):
        rank = len(s.axes)
        fi = g.feature_axis(s)
        if g.opset >= 13:
            ok = _norm_axis(g, at.get("axis", -1), rank) == fi
        else:
            axis = _norm_axis(g, at.get("axis", 1), rank)
            ok = fi is not None and fi >= axis and all(
                not g.core(ax) for i, ax in enumerate(s.axes[axis:], axis) if i != fi)
        if not ok:
            raise g.fail(f"{node.op_type} over an axis other than the features {_describe_axes(s)}")
    return [_activate(g, s, act)]


HANDLERS: dict[str, Handler] = {
    "Constant": _h_constant,
    "Identity": _h_identity,
    "Dropout": _h_identity,
    "Cast": _h_identity,
    "CastLike": _h_identity,
    "Shape": _h_shape,
    "Gather": _h_gather,
    "Unsqueeze": _h_unsqueeze,
    "Squeeze": _h_squeeze,
    "Concat": _h_concat,
    "Slice": _h_slice,
    "Split": h_split,
    "ReduceSum": h_reduce,
    "ReduceMean": h_reduce,
    "Transpose": _h_transpose,
    "Reshape": _h_reshape,
    "Flatten": _h_flatten,
    "Expand": _h_expand,
    "Tile": _h_tile,
    "ConstantOfShape": _h_constant_of_shape,
    "Add": _h_binary,
    "Sub": _h_binary,
    "Mul": _h_binary,
    "Div": _h_binary,
    "Neg": _h_neg,
    "MatMul": _h_matmul,
    "Gemm": _h_gemm,
    "Relu": _h_activation,
    "Tanh": _h_activation,
    "Sigmoid": _h_activation,
    "LeakyRelu": _h_activation,
    "Elu": _h_activation,
    "Gelu": _h_activation,
    "Erf": _h_erf,
    "HardSigmoid": _h_activation,
    "Softmax": _h_activation,
    "LogSoftmax": _h_activation,
    "GRU": _h_recurrent,
    "LSTM": _h_recurrent,
    "RNN": _h_recurrent,
    **CONV_HANDLERS,
    "DynamicQuantizeLSTM": _h_recurrent,  # com.microsoft
    "DynamicQuantizeLinear": quant.h_dynamic_quantize_linear,
    "MatMulInteger": quant.h_matmul_integer,
    "QuantizeLinear": quant.h_quantize_linear,
}

_SUPPORTED = ", ".join(sorted(HANDLERS))
_RECURRENT = ("GRU", "LSTM", "RNN")
