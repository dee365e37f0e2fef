"""A CPython builtin for ``Stream.step`` that skips numba's dispatcher.

Calling a numba dispatcher costs about 70 ns per array argument (type
lookup, then an NRT meminfo malloc/free to unbox it) before the kernel
runs: most of a small model's step. Here the step kernel is compiled as a C
function with CPython's ``METH_FASTCALL`` signature and wrapped by
``PyCFunction_NewEx`` into a builtin function object, so ``f(x, out)`` goes
from the interpreter straight to compiled code. The function reads the two
numpy arrays' fields itself (numpy's ``PyArrayObject`` layout, which is part
of numpy's ABI) and takes the fast path only when both are exactly what the
kernel needs: ``numpy.ndarray`` (not a subclass), 1-D, C-contiguous,
aligned, the stream's dtype (its canonical descriptor object), ``out``
writeable and not sharing memory with ``x``. It then runs ``network.step``
and returns ``out`` (a new reference). In every other case, including a status other than success
from the kernel (a size mismatch, NaN/inf in x: the state is then
unchanged), it declines: it returns its own table (never one of the
arguments), having changed nothing, and the caller takes the checked
Python path, which converts or raises the project's errors.

For a large model the step releases the GIL while the kernel runs (through
``PyEval_SaveThread``/``PyEval_RestoreThread``, whose addresses the table
holds), so threads stepping different streams run on different cores as
they did through numba's ``nogil`` dispatcher; for a small one the pair
would cost more than it frees.

``builtin(buf, dtype, release_gil)`` returns such a function bound to one
stream buffer, or ``None`` where the fast path is unavailable: the JIT
disabled, an interpreter whose object header or numpy whose array layout
differs from what the code reads (checked at first use against a real
array), or a free-threaded or debug Python build.
"""

from __future__ import annotations

import ctypes
import sys
import sysconfig
import threading

import llvmlite.ir as ir
import numpy as np
from numba import njit, types
from numba.core import config
from numba.extending import intrinsic

from .cfuncs import CachedCFunc
from .config import JIT_OPTIONS, variant
from .network import step_body
from .pointers import address, array_at

_inline = njit(inline="always", **JIT_OPTIONS)

# words (int64) of a PyArrayObject: PyObject_HEAD, then numpy's fields
_REFCNT, _TYPE, _DATA, _NDIM, _DIMS, _STRIDES, _BASE, _DESCR, _FLAGS = range(9)
_C_CONTIGUOUS, _ALIGNED, _WRITEABLE = 0x1, 0x100, 0x400
_X_FLAGS = _C_CONTIGUOUS | _ALIGNED
_OUT_FLAGS = _C_CONTIGUOUS | _ALIGNED | _WRITEABLE
# the table a builtin's ``self`` holds (an int64 array)
T_NDARRAY, T_DESCR, T_BUF, T_NBUF, T_SAVE_THREAD, T_RESTORE_THREAD = range(6)
T_SIZE = 6
# weights from which a step releases the GIL: about 1 µs of work or more,
# against some 0.05 µs for releasing and taking it back
RELEASE_GIL_BYTES = 128 * 1024
_METH_FASTCALL = 0x80

# (PyObject *self, PyObject *const *args, Py_ssize_t nargs) -> PyObject *,
# with pointers as int64: the same registers on every 64-bit ABI numba targets
_SIGNATURE = types.int64(types.int64, types.CPointer(types.int64), types.intp)


@intrinsic
def _save_thread(typingctx, fn):
    """Call ``PyThreadState *fn(void)`` (PyEval_SaveThread) at address ``fn``."""
    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        f = builder.inttoptr(args[0], ir.FunctionType(i64, []).as_pointer())
        return builder.call(f, [])

    return types.int64(types.int64), codegen


@intrinsic
def _restore_thread(typingctx, fn, tstate):
    """Call ``void fn(PyThreadState *)`` (PyEval_RestoreThread) at address ``fn``."""
    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        f = builder.inttoptr(args[0], ir.FunctionType(ir.VoidType(), [i64]).as_pointer())
        builder.call(f, [args[1]])
        return context.get_dummy_value()

    return types.none(types.int64, types.int64), codegen


@_inline
def _fast_step(self, args, nargs, el):
    """Body of the builtin (see the module docstring); ``el`` is the dtype."""
    table = array_at(array_at(self, _DATA + 1, np.int64)[_DATA], T_SIZE, np.int64)
    if nargs != 2:
        return _decline(self)
    x_obj, out_obj = args[0], args[1]
    # the type word first: only an ndarray is read any further
    if (array_at(x_obj, _TYPE + 1, np.int64)[_TYPE] != table[T_NDARRAY]
            or array_at(out_obj, _TYPE + 1, np.int64)[_TYPE] != table[T_NDARRAY]):
        return _decline(self)
    xa = array_at(x_obj, _FLAGS + 1, np.int64)
    oa = array_at(out_obj, _FLAGS + 1, np.int64)
    if (xa[_DESCR] != table[T_DESCR] or oa[_DESCR] != table[T_DESCR]
            or (xa[_NDIM] & 0xFFFFFFFF) != 1 or (oa[_NDIM] & 0xFFFFFFFF) != 1
            or (xa[_FLAGS] & _X_FLAGS) != _X_FLAGS or (oa[_FLAGS] & _OUT_FLAGS) != _OUT_FLAGS):
        return _decline(self)
    x = array_at(xa[_DATA], array_at(xa[_DIMS], 1, np.int64)[0], el)
    out = array_at(oa[_DATA], array_at(oa[_DIMS], 1, np.int64)[0], el)
    # out sharing a byte with x (out=x, overlapping views): the kernel would
    # read what it has already written; the checked path refuses it
    if (xa[_DATA] < oa[_DATA] + out.size * out.itemsize
            and oa[_DATA] < xa[_DATA] + x.size * x.itemsize):
        return _decline(self)
    buf = array_at(table[T_BUF], table[T_NBUF], el)
    # one call of step_body (each inlined copy costs compile time)
    release = table[T_SAVE_THREAD] != 0
    tstate = _save_thread(table[T_SAVE_THREAD]) if release else 0
    status = step_body(x, out, buf)
    if release:
        _restore_thread(table[T_RESTORE_THREAD], tstate)
    # reference counts only with the GIL held
    if status != 0:
        return _decline(self)
    oa[_REFCNT] += 1  # the returned reference
    return out_obj


@_inline
def _decline(self):
    """Return the builtin's own table (never an argument, never immortal):
    the caller's sign to take the checked path."""
    array_at(self, 1, np.int64)[_REFCNT] += 1
    return self


def _builtin_body(dtype):
    """The builtin's Python body for ``dtype`` (a constant of the closure:
    part of its disk cache key)."""
    el = np.float32 if np.dtype(dtype) == np.float32 else np.float64

    def fast_step(self, args, nargs):
        return _fast_step(self, args, nargs, el)

    # its own symbol name per variant (config.variant): a C function's
    # address is looked up by that name
    return variant(fast_step, dtype=el.__name__)


def _make(dtype):
    """The builtin's C function for ``dtype``, loaded from the disk cache or
    compiled. ``step_body`` is inlined; the layer kernels are called
    through the plan's table (calls.py), so one function serves every model."""
    return CachedCFunc(_builtin_body(dtype), _SIGNATURE).ready()


_usable: bool | None = None


def _layout_ok() -> bool:
    """Whether this interpreter and numpy lay objects out as ``fast_step``
    reads them: checked on real arrays through ctypes."""
    if sysconfig.get_config_var("Py_GIL_DISABLED") or hasattr(sys, "gettotalrefcount"):
        return False
    if sys.maxsize != 2**63 - 1:
        return False
    for arr in (np.zeros(3, np.float32), np.zeros((2, 5), np.float64)[:, ::2]):
        words = (ctypes.c_int64 * (_FLAGS + 1)).from_address(id(arr))
        ndim = words[_NDIM] & 0xFFFFFFFF
        dims = (ctypes.c_int64 * arr.ndim).from_address(words[_DIMS] & (2**64 - 1))
        if not (words[_TYPE] == id(type(arr)) and words[_DATA] == address(arr)
                and ndim == arr.ndim and tuple(dims) == arr.shape
                and words[_DESCR] == id(arr.dtype)
                and (words[_FLAGS] & _C_CONTIGUOUS) == (_C_CONTIGUOUS if arr.flags.c_contiguous else 0)
                and (words[_FLAGS] & _WRITEABLE) == _WRITEABLE):
            return False
        arr.flags.writeable = False
        if words[_FLAGS] & _WRITEABLE:
            return False
    return True


# a private prototype of PyCFunction_NewEx (ctypes.pythonapi's own
# attribute is shared with every other user of it), typed once
_new_builtin = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.py_object,
                                 ctypes.py_object)(("PyCFunction_NewEx", ctypes.pythonapi))


class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p),
                ("ml_flags", ctypes.c_int), ("ml_doc", ctypes.c_char_p)]


_defs: dict = {}
_lock = threading.Lock()


def _method(dtype):
    """The method definition of the fast step for ``dtype``, made (compiled
    or loaded) once; None where the fast path is unavailable."""
    global _usable
    if config.DISABLE_JIT:
        return None
    dt = np.dtype(dtype)
    if dt in _defs:
        return _defs[dt][1]
    with _lock:  # threads making their first stream at once compile it once
        if _usable is None:
            _usable = _layout_ok()
        if not _usable:
            return None
        if dt not in _defs:
            fn = _make(dt)
            # both must outlive every builtin made from them
            _defs[dt] = (fn, _MethodDef(b"fast_step", fn.address, _METH_FASTCALL, None))
        return _defs[dt][1]


def prepare(dtype) -> bool:
    """Compile, or load from the disk cache, the fast step for ``dtype``
    (part of ``streamgru warmup``); False where the fast path is unavailable."""
    return _method(dtype) is not None


def builtin(buf: np.ndarray, dtype, release_gil: bool = False):
    """A builtin ``f(x, out)`` running one step on the stream buffer ``buf``
    (see ``network.stream_buffer``): returns ``out`` on success, something
    else if the arguments need the checked path; or ``None`` instead of a
    function where the fast path is unavailable (see the module docstring).
    With ``release_gil`` the kernel runs without the GIL.

    The function keeps a reference to its table but not to ``buf``: the
    caller must keep ``buf`` (and the plan it points to) alive as long as
    the function.
    """
    mdef = _method(dtype)
    if mdef is None:
        return None
    dt = np.dtype(np.dtype(dtype).char)  # the canonical descriptor numpy gives new arrays
    table = np.zeros(T_SIZE, np.int64)
    table[T_NDARRAY] = id(np.ndarray)
    table[T_DESCR] = id(dt)
    table[T_BUF] = address(buf)
    table[T_NBUF] = buf.size
    if release_gil:
        api = ctypes.pythonapi
        table[T_SAVE_THREAD] = ctypes.cast(api.PyEval_SaveThread, ctypes.c_void_p).value
        table[T_RESTORE_THREAD] = ctypes.cast(api.PyEval_RestoreThread, ctypes.c_void_p).value
    return _new_builtin(ctypes.addressof(mdef), table, __name__)
