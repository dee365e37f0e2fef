"""Already-quantized ONNX weights, kept as the file's own int8 values and
scales (``QuantizedWeight``), never re-quantized:

* ``DequantizeLinear`` (-10/13/19/21) of a constant int8/uint8 tensor
  (QDQ weights): folded like any constant (its float value follows the spec,
  ``y = (x - zero_point) * scale``), but remembered as ``_QConst`` so that a
  ``MatMul`` / ``Gemm`` weight or a ``GRU`` / ``LSTM`` / ``RNN`` ``W`` / ``R``
  made from it keeps ``x``, ``scale`` and ``zero_point``;
* ONNX Runtime's dynamic quantization of a ``MatMul`` (``quantize_dynamic``,
  QOperator form): ``DynamicQuantizeLinear`` of the stream, ``MatMulInteger``
  with the int8 weight, ``Cast`` to float, ``Mul`` by ``x_scale * w_scale``;
  it becomes a Dense with the weight ``(W - w_zero_point) * w_scale``;
* ``com.microsoft.DynamicQuantizeLSTM``: an LSTM whose ``W`` (dirs, input,
  4H) and ``R`` (dirs, H, 4H) are int8/uint8 (transposed against ONNX's
  LSTM) with ``W_scale`` / ``R_scale`` and zero points per tensor or per
  4H column.

Those runtimes also quantize the *activations* per call (from their range at
run time); streamgru keeps them in float, so its output is the float model on
the file's dequantized weights: the import is exact, the difference from the
runtime's output is that run-time rounding of the activations.

A quantized weight that does not map exactly (values minus zero point beyond
int8, a scale per input column, a scale that is not positive and finite) is
refused with a WeightsError naming the node and tensor.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import WeightsError
from ...layers import Dense
from ...layers.quant import QuantizedWeight
from ..qweights import affine_int8
from .chain import _append
from .values import _Const, _Graph, _Stream, _describe_axes, _materialize


@dataclass(frozen=True)
class _QConst(_Const):
    """A ``DequantizeLinear`` of constants: ``value`` is its float result,
    ``x`` / ``scale`` / ``zero`` / ``axis`` its inputs."""

    x: Any = None
    scale: Any = None
    zero: Any = None
    axis: int = 1


@dataclass(frozen=True)
class _DynQ:
    """An output of ``DynamicQuantizeLinear`` of the stream: ``part`` is
    "values", "scale" or "zero"; a scale may carry a constant ``factor``
    (``x_scale * w_scale``)."""

    stream: _Stream
    part: str
    factor: Any = None
    factor_name: str = ""


@dataclass(frozen=True)
class _IntProduct:
    """``MatMulInteger`` of the dynamically quantized stream with a constant
    int8 weight: a Dense waiting for its scale."""

    stream: _Stream
    values: np.ndarray  # (out, in) int8, zero point already subtracted
    features: int


@dataclass(frozen=True)
class _StaticQ:
    """``QuantizeLinear`` of the stream with constant scale and zero point
    (a statically quantized activation), waiting for its DequantizeLinear."""

    stream: _Stream
    scale: Any
    zero: Any


def is_quant_value(v: Any) -> bool:
    return isinstance(v, (_DynQ, _IntProduct, _StaticQ))


def h_quantize_linear(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # QuantizeLinear-21 of the stream: y = saturate(round(x / y_scale) + y_zero_point)
    s = ins[0]
    if not isinstance(s, _Stream):
        raise g.fail(f"QuantizeLinear of a {type(s).__name__}")
    if g.static_activations != "float":
        raise g.fail(
            "QuantizeLinear of the data: statically quantized activations (ONNX Runtime's "
            "quantize_static), which streamgru computes in float; to keep the int8 weights "
            "and run the activations in float (not rounded to 8 bits, not clipped to the "
            "calibrated range), load with sg.load(path, static_activations='float'), or "
            "quantize dynamically (quantize_dynamic)"
        )
    scale = _materialize(g, ins[1])
    zero = None if len(ins) < 3 or ins[2] is None else _materialize(g, ins[2])
    if scale is None:
        raise g.fail("QuantizeLinear of the data with a scale of unknown values")
    return [_StaticQ(s, scale, zero)]


def h_dequantize_stream(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # DequantizeLinear-21 right after QuantizeLinear of the stream, same scale and zero point:
    # dropped with static_activations="float" (the activation stays in float)
    q = ins[0]
    scale = _materialize(g, ins[1]) if len(ins) > 1 and ins[1] is not None else None
    zero = None if len(ins) < 3 or ins[2] is None else _materialize(g, ins[2])
    if not isinstance(q, _StaticQ) or scale is None or not np.array_equal(scale, q.scale) \
            or not np.array_equal(0 if zero is None else zero, 0 if q.zero is None else q.zero):
        raise g.fail("DequantizeLinear of the data with another scale or zero point than its "
                     "QuantizeLinear")
    g.dropped_qdq += 1
    return [q.stream]


def weight(g: _Graph, v: Any, name: str, rows_axis: int, transpose: bool) -> QuantizedWeight | None:
    """The int8 ``QuantizedWeight`` (out, in) a ``_QConst`` weight stands
    for, or None for a float constant. ``rows_axis`` is the axis of the
    matrix (leading axes of 1 dropped) holding the output rows; ``transpose``:
    the matrix is (in, out)."""
    if not isinstance(v, _QConst):
        return None
    x = np.asarray(v.x)
    dropped = 0
    while x.ndim > 2 and x.shape[0] == 1:  # a leading num_directions axis of 1
        x, dropped = x[0], dropped + 1
    what = f"{g.where()}: tensor {name} (DequantizeLinear of {x.dtype} values)"
    if x.ndim != 2:
        raise WeightsError(f"{what}: shape {x.shape}, expected a matrix")
    scale, zero = np.asarray(v.scale), np.asarray(0 if v.zero is None else v.zero)
    if scale.size > 1 and v.axis % (x.ndim + dropped) - dropped != rows_axis:
        raise WeightsError(
            f"{what}: its {scale.size} scales run along axis {v.axis}, not the output rows; "
            f"streamgru stores one scale per output row"
        )
    return affine_int8(x.T if transpose else x, scale, zero, what, g.budget)


def check_dequantize(g: _Graph, node: Any, ins: list, at: dict) -> None:
    """Before a ``DequantizeLinear`` of constants is folded: its scale (and
    zero point) must be one value, or one per entry along ``axis`` of x."""
    x = ins[0].value
    for k, what in ((1, "x_scale"), (2, "x_zero_point")):
        v = ins[k].value if len(ins) > k and ins[k] is not None else None
        if v is None or v.size == 1 or int(at.get("block_size", 0)):
            continue
        axis = int(at.get("axis", 1))
        n = x.shape[axis % x.ndim] if x.ndim and -x.ndim <= axis < x.ndim else None
        if v.ndim != 1 or v.size != n:
            raise WeightsError(
                f"{g.where()}: tensor {node.input[0]!r}: {what} {node.input[k]!r} has shape "
                f"{v.shape}; expected 1 value or {n} (axis {axis} of shape {x.shape}), got {v.size}"
            )


def tag_dequantized(outs: list, ins: list, at: dict) -> list:
    """A folded ``DequantizeLinear`` (-10/13/19/21: ``y = (x - x_zero_point)
    * x_scale``, per tensor or along ``axis``) of int8/uint8 values, as a
    ``_QConst`` remembering them; other types (and blocked scales) stay the
    float constants they fold to."""
    x = ins[0].value
    if x.dtype not in (np.int8, np.uint8) or int(at.get("block_size", 0)):
        return outs
    zero = None if len(ins) < 3 or ins[2] is None else ins[2].value
    return [_QConst(outs[0].value, x=x, scale=ins[1].value, zero=zero, axis=int(at.get("axis", 1)))]


def h_dynamic_quantize_linear(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # DynamicQuantizeLinear-11: y, y_scale, y_zero_point from the input's range at run time
    s = ins[0]
    if not isinstance(s, _Stream):
        raise g.fail(f"DynamicQuantizeLinear of a {type(s).__name__}")
    return [_DynQ(s, "values"), _DynQ(s, "scale"), _DynQ(s, "zero")]


def h_matmul_integer(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # MatMulInteger-10: (A - a_zero_point) @ (B - b_zero_point), int32
    a, b = ins[0], ins[1]
    a_zero = ins[2] if len(ins) > 2 else None
    b_zero = ins[3] if len(ins) > 3 else None
    if not (isinstance(a, _DynQ) and a.part == "values"):
        raise g.fail("MatMulInteger of something other than DynamicQuantizeLinear of the stream")
    if a_zero is not None and not (isinstance(a_zero, _DynQ) and a_zero.part == "zero"
                                   and a_zero.stream is a.stream):
        raise g.fail("MatMulInteger's a_zero_point is not the stream's dynamic zero point")
    s = a.stream
    w = _materialize(g, b)
    if w is None or w.ndim != 2 or w.dtype not in (np.int8, np.uint8):
        raise g.fail("MatMulInteger B must be a constant int8/uint8 matrix")
    if g.feature_axis(s) != len(s.axes) - 1 or w.shape[0] != s.features:
        raise WeightsError(f"{g.where()}: tensor {node.input[1]!r}: shape {w.shape} does not "
                           f"take the {s.features} features of a stream {_describe_axes(s)}")
    zero = 0 if b_zero is None else _materialize(g, b_zero)
    if zero is None:
        raise g.fail("MatMulInteger b_zero_point must be a constant")
    # a placeholder scale of 1: the real one comes with the Mul after the Cast
    q = affine_int8(w.T, np.float32(1.0), np.asarray(zero).reshape(-1),
                    f"{g.where()}: tensor {node.input[1]!r}", g.budget)
    return [_IntProduct(s, q.values, int(w.shape[1]))]


def h_cast(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Cast-19 of the integer product to float (the runtime's int32 accumulator)
    if not isinstance(ins[0], _IntProduct) or at.get("to") != 1:
        raise g.fail("casts a dynamically quantized product to something other than float")
    return [ins[0]]


def h_mul(g: _Graph, node: Any, ins: list, at: dict) -> list:
    # Mul-14 in the dynamic pattern: x_scale * w_scale, then product * that scale
    a, b = ins[0], ins[1]
    dyn = next((v for v in (a, b) if isinstance(v, _DynQ)), None)
    prod = next((v for v in (a, b) if isinstance(v, _IntProduct)), None)
    other = b if (a is dyn or a is prod) else a
    if prod is not None and isinstance(other, _DynQ) and other.part == "scale" \
            and other.stream is prod.stream and other.factor is not None:
        q = affine_int8(prod.values, np.asarray(other.factor).reshape(-1), 0,
                        f"{g.where()}: tensor {other.factor_name!r} (the weight's scale)", g.budget)
        return [_append(prod.stream, Dense(q), features=prod.features)]
    if dyn is not None and dyn.part == "scale" and dyn.factor is None and prod is None:
        factor = _materialize(g, other)
        if factor is None:
            raise g.fail("Mul of the stream's dynamic scale by a tensor of unknown values")
        name = node.input[1] if a is dyn else node.input[0]
        return [dataclasses.replace(dyn, factor=factor, factor_name=name)]
    raise g.fail("Mul in a dynamic quantization pattern that is not "
                 "MatMulInteger(...) * (x_scale * w_scale)")


def dynamic_lstm_weights(g: _Graph, ins: list, names: list) -> tuple[QuantizedWeight, QuantizedWeight]:
    """``DynamicQuantizeLSTM``'s W (dirs, input, 4H) and R (dirs, H, 4H), int8
    or uint8, with W_scale / W_zero_point / R_scale / R_zero_point (inputs 8
    to 11: per direction, or per direction and 4H column), as ONNX-layout
    (4H, input) / (4H, H) ``QuantizedWeight`` s, gates still i, o, f, c."""
    out = []
    for k, name in ((1, "W"), (2, "R")):
        what = f"{g.where()}: tensor {names[k]!r} ({name})"
        arrs = [None if k2 >= len(ins) or ins[k2] is None else _materialize(g, ins[k2])
                for k2 in (k, 8 + 2 * (k - 1), 9 + 2 * (k - 1))]
        x, scale, zero = arrs
        if x is None or scale is None:
            raise g.fail(f"DynamicQuantizeLSTM {name} and {name}_scale must be constants")
        if x.ndim != 3 or x.shape[0] != 1:
            raise WeightsError(f"{what}: expected shape (1, rows, 4*hidden) (one direction), "
                               f"got {x.shape}")
        out.append(affine_int8(x[0].T, np.asarray(scale).reshape(-1),
                               0 if zero is None else np.asarray(zero).reshape(-1), what, g.budget))
    return out[0], out[1]


# ops that take the dynamic pattern's intermediate values (not the stream itself)
PATTERN_HANDLERS = {"MatMulInteger": h_matmul_integer, "Cast": h_cast, "Mul": h_mul,
                    "DequantizeLinear": h_dequantize_stream}


def h_pattern(g: _Graph, node: Any, ins: list, at: dict) -> list:
    """A node with an input from ``DynamicQuantizeLinear`` of the stream."""
    handler = PATTERN_HANDLERS.get(node.op_type)
    if handler is None:
        raise g.fail(
            f"{node.op_type} of a quantized activation; streamgru reads ONNX Runtime's "
            f"dynamic quantization pattern DynamicQuantizeLinear -> MatMulInteger -> Cast -> "
            f"Mul(x_scale * w_scale), and QuantizeLinear -> DequantizeLinear pairs on the data"
        )
    return handler(g, node, ins, at)
