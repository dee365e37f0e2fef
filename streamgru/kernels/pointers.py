"""Raw-memory views of arrays for the kernels: no reference counting.

numba gives every array an NRT meminfo (its reference count) and a parent
(the numpy object it came from). Unboxing an array argument at the Python
boundary costs a meminfo malloc/free, and passing it to a non-inlined jitted
function costs an atomic incref/decref pair. Both are pure overhead for
arrays whose lifetime the caller already guarantees:

``borrowed(a)``
    ``a`` with a NULL meminfo and parent: the same data, shape and strides,
    but passing it on costs no reference counting.
``address(a)``
    the address of ``a``'s data, as an int (in Python and in kernels).
``array_at(address, n, dtype)``
    a 1-D C-contiguous array of ``n`` elements of ``dtype`` (float32,
    float64 or int64) at ``address``, with a NULL meminfo: the way a kernel
    gets back a long-lived array (a plan's ``w`` and ``meta``) from an
    address stored in a buffer, instead of taking it as an argument.

None of these keeps the memory alive: the views are only valid while the caller holds
the array the memory belongs to, and must never be returned to Python or
stored. With ``NUMBA_DISABLE_JIT=1`` both are plain numpy equivalents.
"""

import ctypes

import numpy as np
from numba import types
from numba.core import cgutils, config
from numba.extending import intrinsic, overload

__all__ = ["address", "array_at", "borrowed"]

# the element types array_at can rebuild, by numpy dtype
ARRAY_AT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64))


def address(arr: np.ndarray) -> int:
    """The address of ``arr``'s first element (what ``array_at`` takes), as
    an int; usable in Python and in kernels."""
    return arr.__array_interface__["data"][0]


@intrinsic
def _data_address(typingctx, arr):
    """``arr``'s data pointer as an int64."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, signature, args):
        a = context.make_array(arr)(context, builder, value=args[0])
        return builder.ptrtoint(a.data, context.get_value_type(types.int64))

    return types.int64(arr), codegen


@overload(address, inline="always")
def _address_jit(arr):
    if isinstance(arr, types.Array):
        return lambda arr: _data_address(arr)
    return None


def _element_type(ty):
    """The numba scalar type a ``dtype`` argument of ``array_at`` names (a
    ``np.float32``-like class or an ``arr.dtype``), or None if not allowed."""
    if isinstance(ty, types.NumberClass):
        ty = ty.instance_type
    elif isinstance(ty, types.DType):
        ty = ty.dtype
    else:
        return None
    return ty if ty in (types.float32, types.float64, types.int64) else None


@intrinsic
def _borrowed(typingctx, arr):
    """``arr`` with a NULL meminfo and parent, for passing to jitted helpers
    without reference counting. Only valid while ``arr`` itself is alive in
    the caller; never return it to Python or keep it beyond the call."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, signature, args):
        src = context.make_array(arr)(context, builder, value=args[0])
        dst = context.make_array(arr)(context, builder)
        context.populate_array(dst, data=src.data, shape=src.shape, strides=src.strides,
                               itemsize=src.itemsize, meminfo=None)  # parent: NULL too
        return dst._getvalue()

    return arr(arr), codegen


@intrinsic
def _array_at(typingctx, addr, n, dtype):
    """A 1-D C-contiguous array of ``n`` elements of ``dtype`` (float32,
    float64 or int64: a ``np.float32``-like class or an ``arr.dtype``) at the
    integer ``addr``, with a NULL meminfo. Only valid while the array owning
    that memory is alive; the caller guarantees it (nothing here can)."""
    el = _element_type(dtype)
    if el is None or not isinstance(addr, types.Integer) or not isinstance(n, types.Integer):
        return None
    ret = types.Array(el, 1, "C")

    def codegen(context, builder, signature, args):
        a, size = args[0], args[1]
        intp = context.get_value_type(types.intp)
        data = builder.inttoptr(context.cast(builder, a, signature.args[0], types.intp),
                                context.get_data_type(el).as_pointer())
        itemsize = context.get_abi_sizeof(context.get_data_type(el))
        out = context.make_array(ret)(context, builder)
        context.populate_array(
            out, data=data, shape=cgutils.pack_array(builder, [context.cast(
                builder, size, signature.args[1], types.intp)], intp),
            strides=cgutils.pack_array(builder, [intp(itemsize)], intp),
            itemsize=intp(itemsize), meminfo=None)
        return out._getvalue()

    return ret(addr, n, dtype), codegen


def _py_borrowed(arr):
    """Pure-Python ``borrowed``: the array itself (numpy has no refcount to skip)."""
    return arr


def _py_array_at(addr, n, dtype):
    """Pure-Python ``array_at``: a numpy array over the memory, owning nothing."""
    dt = np.dtype(dtype)
    if dt not in ARRAY_AT_DTYPES:
        raise TypeError(f"array_at: dtype must be float32, float64 or int64, got {dt}")
    n = int(n)
    if n == 0:
        return np.empty(0, dt)
    raw = (ctypes.c_char * (n * dt.itemsize)).from_address(int(addr))
    return np.frombuffer(raw, dt, n)


if config.DISABLE_JIT:
    borrowed = _py_borrowed
    array_at = _py_array_at
else:
    borrowed = _borrowed
    array_at = _array_at
