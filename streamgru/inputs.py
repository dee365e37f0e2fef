"""Checks of what a stream is given: inputs converted (or refused) and
``out`` arrays checked before any state is touched, so bad input raises
``InputError`` and changes nothing."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .errors import InputError

_ndarray = np.ndarray


def _as_input(value: Any, shape: tuple, dtype: np.dtype, what: str, expected: str) -> np.ndarray:
    """``value`` as a writable C-contiguous array of ``dtype`` and ``shape``
    (converting other real dtypes), or InputError saying what was expected.
    A masked array is refused (converting it would drop the mask, and with
    it the caller's idea of which values count); other ndarray subclasses
    are read as plain arrays."""
    if isinstance(value, _ndarray):
        if _masked(value):
            raise InputError(
                f"{what}: expected {expected} as a plain array, got a numpy masked array; "
                f"fill it first (x.filled(value)): its mask would be ignored"
            )
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except Exception:
            raise InputError(f"{what}: expected {expected}, got {type(value).__name__}") from None
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{what}: expected {expected} of real numbers, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise InputError(f"{what}: expected {expected}, got shape {arr.shape}")
    # a float64 value beyond float32's range becomes inf here and is then
    # refused as non-finite, so numpy's overflow warning would only be noise
    with np.errstate(over="ignore"):
        return np.array(arr, dtype=dtype, order="C", copy=True)


def _shape(value: Any, what: str, expected: str) -> tuple:
    """The shape of an array or nested sequence, or InputError for a ragged one."""
    if isinstance(value, _ndarray):
        return value.shape
    try:
        return np.shape(value)
    except Exception:  # numpy refuses ragged nested lists
        raise InputError(
            f"{what}: expected {expected}, got a {type(value).__name__} that is not a "
            f"rectangular array"
        ) from None


def _check_out(out: Any, shape: tuple, dtype: np.dtype, what: str) -> None:
    if not (
        type(out) is _ndarray
        and out.dtype == dtype
        and out.shape == shape
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        got = (
            f"shape {out.shape}, dtype {out.dtype}, C-contiguous={out.flags.c_contiguous}, "
            f"writeable={out.flags.writeable}"
            if isinstance(out, _ndarray)
            else type(out).__name__
        )
        if isinstance(out, _ndarray) and type(out) is not _ndarray:
            got = f"a {type(out).__name__} (an ndarray subclass), {got}"
        raise InputError(
            f"{what}: out must be a writeable C-contiguous {np.dtype(dtype).name} array of "
            f"shape {shape} (exactly numpy.ndarray); got {got}"
        )


def _nonfinite(arr: np.ndarray) -> str:
    """Where the first NaN or inf in ``arr`` is, as text."""
    idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
    return f"{arr[idx]} at index {idx if len(idx) > 1 else idx[0]}"


def _masked(value: np.ndarray) -> bool:
    # numpy.ma is imported only by code that makes masked arrays
    ma = sys.modules.get("numpy.ma")
    return ma is not None and isinstance(value, ma.MaskedArray)


def _overlaps(a: Any, b: np.ndarray) -> bool:
    """Whether input ``a`` shares memory with ``out`` ``b``: the kernels
    write ``out`` while still reading the input, so a shared byte would
    change what they read. Two arrays that each own their data cannot
    overlap: the exact check runs only when one of them is a view."""
    if a is b:
        return True
    if type(a) is not _ndarray and not isinstance(a, _ndarray):
        return False
    if a.base is None and b.base is None:
        return False
    try:
        return bool(np.shares_memory(a, b, max_work=10_000))
    except np.exceptions.TooHardError:  # too many strides to tell: assume they do
        return True


def _refuse_overlap(a: Any, out: np.ndarray, what: str, name: str) -> None:
    if _overlaps(a, out):
        raise InputError(
            f"{what}: out shares memory with {name}; expected a separate output array (the "
            f"output is written while {name} is still being read). Nothing was changed."
        )


def _new_state(value: Any, shape: tuple, dtype: np.dtype, noun: str, contains: str,
               unchanged: str) -> np.ndarray:
    """``value`` checked as a replacement state (shape, real, finite) for
    ``set_state``; InputError otherwise, before anything is written."""
    st = _as_input(value, shape, dtype, "set_state", f"{noun} of shape {shape}")
    if not np.all(np.isfinite(st)):
        raise InputError(
            f"set_state: {contains} {_nonfinite(st)}; expected finite values. {unchanged}"
        )
    return st
