"""What every canonical layer shares: array validation, gate reordering,
and the ``Layer`` base class (config, arrays, dtype conversion, equality)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import WeightsError
from .activations import Activation, make_activation


def _float_dtype(*arrays: np.ndarray | None) -> np.dtype:
    """float64 if any array is float64, else float32."""
    for a in arrays:
        if a is not None and np.asarray(a).dtype == np.float64:
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


def _shape_of(value: Any, name: str, ndim: int) -> tuple[int, ...]:
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
    return _array(value, name, shape, _float_dtype(value))


def _keras_kernels(kernel: Any, recurrent_kernel: Any, gates: int) -> tuple[int, np.ndarray, np.ndarray]:
    """H and the checked arrays of a Keras recurrent layer: ``kernel`` (I, gates*H)
    and ``recurrent_kernel`` (H, gates*H), both transposed against torch."""
    H = _shape_of(recurrent_kernel, "recurrent_kernel", 2)[0]
    rk = _source(recurrent_kernel, "recurrent_kernel", (H, gates * H))
    k = _source(kernel, "kernel", (_shape_of(kernel, "kernel", 2)[0], gates * H))
    return H, k, rk


def _drop_direction(value: Any, name: str, ndim: int) -> np.ndarray:
    """ONNX arrays may keep their leading num_directions axis of 1."""
    if value is None:
        return None
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
    """Reorder the gate blocks of the leading axis of ``arr``."""
    blocks = np.split(np.asarray(arr), gates, axis=0)
    return np.concatenate([blocks[i] for i in order], axis=0)


class Layer:
    """Common behaviour of the canonical layers."""

    kind: str = ""
    _array_names: tuple[str, ...] = ()

    input_size: int
    output_size: int
    state_size: int

    @property
    def dtype(self) -> np.dtype:
        return getattr(self, self._array_names[0]).dtype

    def arrays(self) -> dict[str, np.ndarray]:
        """The layer's tensors by canonical name (absent optional ones left out)."""
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
        return type(self).from_config(
            self.config(), {k: v.astype(dtype) for k, v in self.arrays().items()}
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        a, b = self.arrays(), other.arrays()
        return (
            self.config() == other.config()
            and a.keys() == b.keys()
            and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({cfg}, dtype={self.dtype})"


def _act_config(act: Activation) -> list:
    return [act.name, act.alpha, act.beta]


def _act_from_config(value: Any) -> Activation:
    return make_activation(value)
