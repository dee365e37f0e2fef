"""Weight matrices stored in reduced precision: int8 (symmetric, one scale per
output row), float16 and bfloat16.

A ``QuantizedWeight`` stands where a layer's weight matrix (out, in) would
be. Its value is exactly ``dequantize()``: the kernels read the stored type
and widen it, so the only difference from the float model is the stored
rounding. Inputs, state and outputs stay in the model's float dtype.

    int8      values int8 (out, in), scale float32 (out,):  W = scale[:, None] * values
    float16   values float16 (out, in):                      W = values
    bfloat16  values uint16 (out, in), the top 16 bits of float32 (numpy has no
              bfloat16 type):                                W = float32(values << 16)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import WeightsError

WEIGHT_TYPES = ("int8", "float16", "bfloat16")

# the numpy dtype each weight type's values are stored in
_STORED = {"int8": np.dtype(np.int8), "float16": np.dtype(np.float16), "bfloat16": np.dtype(np.uint16)}


class _BFloat16Type:
    """What ``weights_dtype`` reports for bfloat16 weights: numpy has no
    bfloat16 dtype, and the uint16 the bit patterns are stored in would be
    a lie (``weights_dtype == np.uint16`` must not hold). It behaves like a
    dtype where it can: ``.name`` is ``"bfloat16"``, ``.itemsize`` 2, and it
    equals the strings ``"bfloat16"`` and ``"bf16"`` (and any object whose
    ``.name`` is ``"bfloat16"``, such as ml_dtypes' dtype)."""

    name = "bfloat16"
    itemsize = 2
    kind = "V"
    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return other.lower() in ("bfloat16", "bf16")
        return getattr(other, "name", None) == "bfloat16"

    def __hash__(self) -> int:
        return hash("bfloat16")

    def __repr__(self) -> str:
        return "bfloat16"

    __str__ = __repr__


BFLOAT16 = _BFloat16Type()


def weights_dtype_of(kind: str):
    """What ``weights_dtype`` reports for weights stored as ``kind``."""
    return BFLOAT16 if kind == "bfloat16" else _STORED[kind]


def weight_type(name: Any) -> str:
    """The canonical weight type name for ``name`` (``"int8"``, ``np.int8``,
    ``"fp16"``, ``np.float16``, ``"bf16"``, ...), or WeightsError."""
    aliases = {"int8": "int8", "qint8": "int8", "i8": "int8",
               "float16": "float16", "fp16": "float16", "half": "float16", "f16": "float16",
               "bfloat16": "bfloat16", "bf16": "bfloat16"}
    key = name if isinstance(name, str) else None
    if key is None:
        try:
            key = np.dtype(name).name
        except TypeError:
            key = None
    if key is None or key.lower() not in aliases:
        raise WeightsError(
            f"weight type must be one of {', '.join(WEIGHT_TYPES)}, got {name!r}"
        )
    return aliases[key.lower()]


def _bf16_bits(w32: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, rounding to nearest even."""
    bits = np.ascontiguousarray(w32, np.float32).view(np.uint32).astype(np.uint64)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    return (rounded >> 16).astype(np.uint16)


def _bf16_values(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, np.uint32) << 16).view(np.float32)


class QuantizedWeight:
    """A weight matrix (out, in) in a reduced-precision type.

    Build one with ``QuantizedWeight.quantize(w, "int8")`` from float
    weights, or directly from stored values (an importer keeping a file's own
    int8 values and scales: ``QuantizedWeight("int8", values, scale)``).

    Examples
    --------
    >>> import numpy as np
    >>> q = QuantizedWeight.quantize(np.array([[0.5, -1.0], [0.25, 0.125]]), "int8")
    >>> q.values
    array([[  64, -127],
           [ 127,   64]], dtype=int8)
    >>> round(float(q.dequantize()[0, 1]), 6)   # 127 * float32(1/127)
    -1.0
    """

    __slots__ = ("kind", "values", "scale")

    def __init__(self, kind: str, values: Any, scale: Any = None) -> None:
        kind = weight_type(kind)
        arr = np.asarray(values)
        if arr.ndim != 2 or 0 in arr.shape:
            raise WeightsError(f"{kind} weights: expected a non-empty (out, in) matrix, got shape {arr.shape}")
        if arr.dtype != _STORED[kind]:
            raise WeightsError(f"{kind} weights: expected values of dtype {_STORED[kind]}, got {arr.dtype}")
        arr = np.array(arr, order="C", copy=True)
        if kind == "float16" and not np.all(np.isfinite(arr)):
            raise WeightsError("float16 weights: non-finite value(s) (NaN or inf)")
        if kind == "bfloat16" and not np.all(np.isfinite(_bf16_values(arr))):
            raise WeightsError("bfloat16 weights: non-finite value(s) (NaN or inf)")
        arr.setflags(write=False)
        if kind == "int8":
            if scale is None:
                raise WeightsError("int8 weights need a scale per output row")
            s = np.array(np.asarray(scale, np.float64).reshape(-1), np.float32)
            if s.shape != (arr.shape[0],):
                raise WeightsError(
                    f"int8 weights: expected {arr.shape[0]} scales (one per output row), got {s.size}"
                )
            if not np.all(np.isfinite(s) & (s > 0)):
                raise WeightsError("int8 weights: scales must be positive and finite")
            s.setflags(write=False)
        elif scale is not None:
            raise WeightsError(f"{kind} weights take no scale")
        else:
            s = None
        self.kind = kind
        self.values = arr
        self.scale = s

    @classmethod
    def quantize(cls, w: Any, kind: Any) -> "QuantizedWeight":
        """``w`` (out, in), float, stored as ``kind``: int8 symmetric with
        scale = max |row| / 127 (rounded to float32), float16 and bfloat16
        by rounding to nearest even. A value beyond float16's range raises
        WeightsError."""
        kind = weight_type(kind)
        w = np.asarray(w, np.float64)
        if w.ndim != 2:
            raise WeightsError(f"expected a weight matrix (out, in), got shape {w.shape}")
        if kind == "int8":
            peak = np.max(np.abs(w), axis=1)
            scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
            q = np.clip(np.rint(w / scale.astype(np.float64)[:, None]), -127, 127)
            return cls(kind, q.astype(np.int8), scale)
        if kind == "float16":
            if np.max(np.abs(w), initial=0.0) > float(np.finfo(np.float16).max):
                raise WeightsError("a weight is beyond float16's range (65504); use bfloat16 or int8")
            return cls(kind, w.astype(np.float16))
        return cls(kind, _bf16_bits(w.astype(np.float32)))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.values.shape)

    @property
    def dtype(self) -> np.dtype:
        """The stored dtype (uint16 for bfloat16's bit patterns)."""
        return self.values.dtype

    @property
    def weights_dtype(self):
        """``np.dtype(np.int8)``, ``np.dtype(np.float16)``, or ``BFLOAT16``."""
        return weights_dtype_of(self.kind)

    @property
    def size(self) -> int:
        """Number of weights (scales not counted)."""
        return self.values.size

    @property
    def nbytes(self) -> int:
        return self.values.nbytes + (0 if self.scale is None else self.scale.nbytes)

    def dequantize(self, dtype: Any = np.float64) -> np.ndarray:
        """The matrix this stands for, exactly, as ``dtype``."""
        if self.kind == "int8":
            w = self.values.astype(np.float64) * self.scale.astype(np.float64)[:, None]
        elif self.kind == "float16":
            w = self.values.astype(np.float64)
        else:
            w = _bf16_values(self.values).astype(np.float64)
        return w.astype(dtype)

    def rows(self, start: int, stop: int) -> "QuantizedWeight":
        """Output rows ``start:stop`` (a gate block), with their scales."""
        return QuantizedWeight(
            self.kind, self.values[start:stop], None if self.scale is None else self.scale[start:stop]
        )

    @classmethod
    def concat(cls, parts: "list[QuantizedWeight]") -> "QuantizedWeight":
        """Row blocks of one kind stacked in order (gate blocks reordered),
        each row keeping its scale."""
        kinds = {p.kind for p in parts}
        if len(kinds) != 1:
            raise WeightsError(f"cannot stack weights of different types {sorted(kinds)}")
        scale = None if parts[0].scale is None else np.concatenate([p.scale for p in parts])
        return cls(parts[0].kind, np.concatenate([p.values for p in parts]), scale)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantizedWeight):
            return NotImplemented
        return (self.kind == other.kind and np.array_equal(self.values, other.values)
                and (self.scale is None) == (other.scale is None)
                and (self.scale is None or np.array_equal(self.scale, other.scale)))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"QuantizedWeight({self.kind!r}, shape={self.shape})"
