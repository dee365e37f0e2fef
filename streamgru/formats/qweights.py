"""Already-quantized weights from a file, kept exactly: the affine integer
form frameworks store (``W = (q - zero_point) * scale``, per tensor or per
output row) becomes a ``QuantizedWeight`` without re-quantizing.

Shared by the PyTorch readers (``torch.ao`` dynamic quantization, in a
state dict or a live module) and the ONNX reader (``DequantizeLinear``,
``MatMulInteger``, ``DynamicQuantizeLSTM``).

The stored form is symmetric int8 with one float32 scale per output row, so:

- int8 values with zero point 0 map as they are;
- int8 or uint8 values with a zero point z map exactly when every ``q - z``
  fits int8 (uint8 with z = 128, the usual asymmetric form, always does):
  the values are shifted, the scale is unchanged;
- a per-tensor scale becomes the same scale on every row;
- anything else (``q - z`` outside int8, a scale per input column, a
  non-positive, NaN or infinite scale, a count that does not match the rows)
  is refused with a WeightsError naming the tensor: streamgru never
  re-quantizes an already-quantized file behind its user's back.

Scales are kept as float32: the frameworks' int8 kernels compute with float32
scales (a torch per-tensor scale is pickled as a Python float that holds a
float32 value; ONNX scales are float32 tensors). A scale that is not exactly
a float32 value is refused rather than rounded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import WeightsError
from ..layers.quant import QuantizedWeight

__all__ = ["affine_int8", "exact_float16"]


def _per_row(value: Any, rows: int, what: str, name: str) -> np.ndarray:
    """``value`` (a scalar, or one entry per output row) as a (rows,) array."""
    arr = np.asarray(value)
    if arr.size == 1:
        return np.broadcast_to(arr.reshape(()), (rows,))
    if arr.size != rows:
        raise WeightsError(
            f"{what}: expected 1 {name} (per tensor) or {rows} (one per output row), got "
            f"{arr.size} (shape {arr.shape})"
        )
    return arr.reshape(rows)


def affine_int8(values: Any, scale: Any, zero_point: Any = 0, what: str = "weight",
                budget: Any = None) -> QuantizedWeight:
    """An (out, in) matrix of int8/uint8 ``values`` with ``scale`` and
    ``zero_point`` (each a scalar or one per output row), as a
    ``QuantizedWeight("int8", values - zero_point, scale)``, exactly.

    ``what`` names the file and tensor for messages; ``budget`` (a
    ``guard.Budget``) is charged for the copies before they are made.

    Examples
    --------
    >>> import numpy as np
    >>> q = affine_int8(np.array([[128, 255], [0, 130]], np.uint8), np.float32(0.5), 128)
    >>> q.values
    array([[   0,  127],
           [-128,    2]], dtype=int8)
    >>> q.dequantize().tolist()
    [[0.0, 63.5], [-64.0, 1.0]]
    """
    q = np.asarray(values)
    if q.dtype not in (np.int8, np.uint8):
        raise WeightsError(f"{what}: quantized values must be int8 or uint8, got {q.dtype}")
    if q.ndim != 2 or 0 in q.shape:
        raise WeightsError(f"{what}: expected a non-empty (out, in) matrix, got shape {q.shape}")
    rows = q.shape[0]
    if budget is not None:  # the int16 shift, the int8 result and the stored copy
        budget.take(4 * q.size + 16 * rows, what)
    s = np.asarray(scale)
    if s.dtype.kind != "f":
        raise WeightsError(f"{what}: scale must be floating point, got {s.dtype}")
    s = _per_row(s, rows, what, "scale").astype(np.float64)
    if not np.all(np.isfinite(s) & (s > 0)):
        bad = float(s[~(np.isfinite(s) & (s > 0))][0])
        raise WeightsError(f"{what}: scale {bad!r} is not positive and finite")
    s32 = s.astype(np.float32)
    if not np.array_equal(s32.astype(np.float64), s):
        raise WeightsError(
            f"{what}: a scale ({float(s[s32.astype(np.float64) != s][0])!r}) is not a float32 value; "
            f"streamgru keeps float32 scales and does not round a file's scales"
        )
    z = np.asarray(zero_point)
    if z.dtype.kind not in "iu":
        if z.dtype.kind == "f" and np.all(np.isfinite(z)) and np.all(z == np.rint(z)):
            z = z.astype(np.int64)
        else:
            raise WeightsError(f"{what}: zero point must be an integer, got {z.dtype} {z.reshape(-1)[:1]}")
    z = _per_row(z, rows, what, "zero point").astype(np.int64)
    lo, hi = (-128, 127) if q.dtype == np.int8 else (0, 255)
    if np.any((z < lo) | (z > hi)):
        raise WeightsError(f"{what}: zero point {int(z[(z < lo) | (z > hi)][0])} is outside "
                           f"the {q.dtype} range [{lo}, {hi}]")
    shifted = q.astype(np.int16) - z.astype(np.int16)[:, None]
    if np.any((shifted < -128) | (shifted > 127)):
        r = int(np.nonzero(np.any((shifted < -128) | (shifted > 127), axis=1))[0][0])
        raise WeightsError(
            f"{what}: with zero point {int(z[r])}, row {r}'s values minus the zero point span "
            f"[{int(shifted[r].min())}, {int(shifted[r].max())}], beyond int8; streamgru stores "
            f"symmetric int8 and will not re-quantize: save int8 weights (torch.qint8; ONNX "
            f"Runtime quantize_dynamic(..., weight_type=QuantType.QInt8)), or load the float "
            f"model and call model.quantize('int8')"
        )
    return QuantizedWeight("int8", shifted.astype(np.int8), s32)


def exact_float16(values: Any, what: str = "weight", budget: Any = None) -> QuantizedWeight:
    """float weights that are float16 values (PyTorch's float16 dynamic
    quantization unpacks to float32) as a float16 ``QuantizedWeight``;
    a value float16 cannot hold exactly is refused, not rounded."""
    w = np.asarray(values)
    if w.dtype.kind != "f" or w.ndim != 2:
        raise WeightsError(f"{what}: expected a float (out, in) matrix, got {w.dtype} {w.shape}")
    if budget is not None:  # the float16 copy, its widened twin and the stored copy
        budget.take((4 + w.itemsize) * w.size, what)
    if not np.all(np.isfinite(w)):
        raise WeightsError(f"{what}: non-finite value(s) (NaN or inf)")
    with np.errstate(over="ignore"):
        h = w.astype(np.float16)
    if not np.array_equal(h.astype(w.dtype), w):
        raise WeightsError(f"{what}: the values are not float16 values; refusing to round them")
    return QuantizedWeight("float16", h)
