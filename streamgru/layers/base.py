"""What every canonical layer shares: array validation, gate reordering,
and the ``Layer`` base class (config, arrays, dtype conversion, equality)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import WeightsError
from .activations import Activation, make_activation
from .quant import QuantizedWeight, weight_type


def _float_dtype(*arrays: np.ndarray | None) -> np.dtype:
    """float64 if any array is float64, else float32 (reduced-precision
    weights do not decide: the biases and the model do)."""
    for a in arrays:
        if a is not None and not isinstance(a, QuantizedWeight) and np.asarray(a).dtype == np.float64:
            return np.dtype(np.float64)
    return np.dtype(np.float32)


def _array(value: Any, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A read-only C-contiguous copy of ``value`` in ``dtype`` with exactly ``shape``."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # e.g. a ragged list
        raise WeightsError(f"tensor {name}: cannot be read as an array ({exc})") from None
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise WeightsError(f"tensor {name}: expected real numbers, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise WeightsError(
            f"tensor {name}: expected shape {shape}, got {tuple(arr.shape)}"
        )
    out = np.array(arr, dtype=dtype, order="C", copy=True)
    if not np.all(np.isfinite(out)):
        bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
        raise WeightsError(f"tensor {name}: {bad} non-finite value(s) (NaN or inf)")
    out.setflags(write=False)
    return out


def _weight(value: Any, name: str, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    """A weight matrix: a ``QuantizedWeight`` of exactly ``shape`` is kept as
    stored (its values are already read-only and checked), anything else
    becomes a float array as with ``_array``."""
    if isinstance(value, QuantizedWeight):
        if value.shape != shape:
            raise WeightsError(f"tensor {name}: expected shape {shape}, got {value.shape}")
        return value
    return _array(value, name, shape, dtype)


def _shape_of(value: Any, name: str, ndim: int) -> tuple[int, ...]:
    if isinstance(value, QuantizedWeight):
        if ndim != 2:
            raise WeightsError(f"tensor {name}: expected {ndim} dimensions, got a weight matrix")
        return value.shape
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise WeightsError(f"tensor {name}: cannot be read as an array ({exc})") from None
    if arr.ndim != ndim:
        raise WeightsError(
            f"tensor {name}: expected {ndim} dimensions, got shape {tuple(arr.shape)}"
        )
    if 0 in arr.shape:
        raise WeightsError(f"tensor {name}: empty shape {tuple(arr.shape)}")
    return tuple(int(s) for s in arr.shape)


def _gate_rows(name: str, shape: tuple[int, ...], gates: int) -> int:
    if shape[0] % gates:
        raise WeightsError(
            f"tensor {name}: first dimension {shape[0]} is not a multiple of {gates} "
            f"({gates} gates), shape {shape}"
        )
    return shape[0] // gates


def _clip(clip: Any) -> float | None:
    if clip is None:
        return None
    c = float(clip)
    if not (c > 0 and math.isfinite(c)):
        raise WeightsError(f"clip must be a positive finite number, got {clip!r}")
    return c


def _source(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Validate an importer's tensor under its source name (``W``, ``kernel``),
    before any reordering, so an error names the tensor the user passed."""
    if isinstance(value, QuantizedWeight):
        return _weight(value, name, shape, np.dtype(np.float32))
    return _array(value, name, shape, _float_dtype(value))


def _keras_kernels(kernel: Any, recurrent_kernel: Any, gates: int) -> tuple[int, np.ndarray, np.ndarray]:
    """H and the checked arrays of a Keras recurrent layer: ``kernel`` (I, gates*H)
    and ``recurrent_kernel`` (H, gates*H), both transposed against torch."""
    for value, name in ((kernel, "kernel"), (recurrent_kernel, "recurrent_kernel")):
        if isinstance(value, QuantizedWeight):
            # its scales are per row of the torch form, not per Keras column
            raise WeightsError(
                f"tensor {name}: reduced-precision weights are taken in the torch or ONNX "
                f"form (rows are outputs); build the layer from float Keras kernels and "
                f"quantize the model instead (model.quantize)"
            )
    H = _shape_of(recurrent_kernel, "recurrent_kernel", 2)[0]
    rk = _source(recurrent_kernel, "recurrent_kernel", (H, gates * H))
    k = _source(kernel, "kernel", (_shape_of(kernel, "kernel", 2)[0], gates * H))
    return H, k, rk


def _drop_direction(value: Any, name: str, ndim: int) -> np.ndarray:
    """ONNX arrays may keep their leading num_directions axis of 1."""
    if value is None or isinstance(value, QuantizedWeight):
        return value
    arr = np.asarray(value)
    if arr.ndim == ndim + 1:
        if arr.shape[0] != 1:
            raise WeightsError(
                f"tensor {name}: num_directions is {arr.shape[0]}; only one direction can "
                f"stream (a reverse or bidirectional layer needs the future)"
            )
        arr = arr[0]
    return arr


def _reorder(arr: np.ndarray, order: Sequence[int], gates: int) -> np.ndarray:
    """Reorder the gate blocks of the leading axis of ``arr`` (a
    ``QuantizedWeight``'s rows move with their scales)."""
    if isinstance(arr, QuantizedWeight):
        n = arr.shape[0] // gates
        return QuantizedWeight.concat([arr.rows(i * n, (i + 1) * n) for i in order])
    blocks = np.split(np.asarray(arr), gates, axis=0)
    return np.concatenate([blocks[i] for i in order], axis=0)


class Layer:
    """Common behaviour of the canonical layers."""

    kind: str = ""
    _array_names: tuple[str, ...] = ()
    # the weight matrices that may be stored in reduced precision
    # (``QuantizedWeight``); every other array stays in the float dtype
    _weight_names: tuple[str, ...] = ()

    input_size: int
    output_size: int
    state_size: int

    @property
    def dtype(self) -> np.dtype:
        """The float dtype the layer computes in (that of its float arrays)."""
        for a in self.arrays().values():
            if not isinstance(a, QuantizedWeight):
                return a.dtype
        raise AssertionError("every layer has a float array")  # pragma: no cover

    @property
    def weights_dtype(self) -> Any:
        """The type its weight matrices are stored in: ``self.dtype``, or the
        reduced-precision type of its ``QuantizedWeight`` matrices."""
        for n in self._weight_names:
            a = getattr(self, n)
            if isinstance(a, QuantizedWeight):
                return a.weights_dtype
        return self.dtype

    def quantize(self, kind: Any) -> "Layer":
        """The same layer with its weight matrices stored as ``kind`` (see
        ``QuantizedWeight.quantize``); biases and other arrays unchanged. A
        layer without such matrices (Conv1d, norms) is returned as is;
        matrices already stored as ``kind`` are kept bit for bit; another
        reduced type is refused (rounding twice would compound errors)."""
        kind = weight_type(kind)
        if not self._weight_names:
            return self
        arrays = self.arrays()
        for n in self._weight_names:
            a = arrays[n]
            if isinstance(a, QuantizedWeight):
                if a.kind != kind:
                    raise WeightsError(
                        f"{type(self).__name__} {n}: already stored as {a.kind}; quantize the "
                        f"float model to get {kind} weights"
                    )
            else:
                arrays[n] = QuantizedWeight.quantize(a, kind)
        return type(self).from_config(self.config(), arrays)

    def arrays(self) -> dict[str, Any]:
        """The layer's tensors by canonical name (absent optional ones left
        out); a weight matrix may be a ``QuantizedWeight``."""
        return {
            n: getattr(self, n) for n in self._array_names if getattr(self, n) is not None
        }

    def __call__(self, node: Any) -> Any:
        """``layer(node)``: this layer applied to a graph node (``sg.Input``
        or another layer's output), giving the node of its output; see
        ``sg.Model`` for graph models."""
        from ..graph import call

        return call(self, node)

    def config(self) -> dict[str, Any]:
        """The layer's non-array settings, JSON-serialisable."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "Layer":
        """Rebuild a layer from ``config()`` and ``arrays()`` (used by the native format)."""
        raise NotImplementedError

    def astype(self, dtype: Any) -> "Layer":
        """The same layer with its arrays in another float dtype."""
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise WeightsError(f"dtype must be float32 or float64, got {dtype}")
        if dtype == self.dtype:
            return self
        # reduced-precision weights stay exactly as stored
        return type(self).from_config(self.config(), {
            k: v if isinstance(v, QuantizedWeight) else v.astype(dtype)
            for k, v in self.arrays().items()
        })

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        a, b = self.arrays(), other.arrays()
        return (
            self.config() == other.config()
            and a.keys() == b.keys()
            and all(_same(a[k], b[k]) for k in a)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({cfg}, dtype={self.dtype})"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, QuantizedWeight) or isinstance(b, QuantizedWeight):
        return isinstance(a, QuantizedWeight) and isinstance(b, QuantizedWeight) and a == b
    return a.dtype == b.dtype and np.array_equal(a, b)


def _act_config(act: Activation) -> list:
    return [act.name, act.alpha, act.beta]


def _act_from_config(value: Any) -> Activation:
    return make_activation(value)
