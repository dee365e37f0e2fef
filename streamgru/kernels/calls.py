"""Layer kernels as C functions, called by the entry points through a table.

Every layer kernel (one per kind code, weight type included, and per form:
``seq``, T steps of one stream, or ``rows``, one step of B streams; see
kinds.py) is compiled once per float dtype, inlined into a C function of
the 14 int64 arguments of the layer call form (arrays as data addresses),
and cached on disk on its own. The entry points (network.py, fastcall.py)
call them (``direct.call_layer``) through ``TABLE[dtype]``, a process-wide
int64 array of their addresses indexed by ``2 * code + form``, whose
address every plan's ``meta[H_FNS]`` holds.

Why not ordinary calls: numba links a callee's code into every function
that calls it and optimises and emits it again there, so each of the five
entry points per dtype (and the builtin fast step) used to re-compile every
kernel it could reach, most of a first run's compile time. Called through
the table, a kernel compiles once, an entry point compiles only its own
code, and no entry point depends on which kinds a model has. An indirect
call per layer per tile costs a few nanoseconds.

``prepare(meta, dtype, rows)`` compiles (or loads) the kernels of a plan's
layers and writes their addresses before a stream runs it; an entry point
refuses (status -1) a plan whose layers' table entries are not filled, so
a missing kernel is never jumped to.
"""

from __future__ import annotations

import re
import threading
import types as types_

import numpy as np
from numba import njit, types
from numba.core import config as numba_config

from . import activations, graph, kinds
from .cfuncs import CachedCFunc
from .config import FAST_FLAGS, JIT_OPTIONS, variant
from .layout import (
    FN_APPLY, FN_CODES, FN_ROWS, FN_SEQ, H_FNS, H_GRAPH, H_NLAYERS, HEADER, M_KIND, ROW,
)
from .pointers import array_at

# the arrays a kernel sees are views of unknown length (kernels index them
# without bounds checks and never ask their size)
_ANY = 1 << 40

_I64 = types.int64
_SIGNATURE = types.void(*[_I64] * 14)

TABLE = {np.dtype(np.float32): np.zeros(2 * FN_CODES, np.int64),
         np.dtype(np.float64): np.zeros(2 * FN_CODES, np.int64)}
# (dtype, kernel, its arguments) -> CachedCFunc, kept alive: the table holds their addresses
_funcs: dict = {}
_lock = threading.Lock()


def table_address(dtype) -> int:
    """The address of ``TABLE[dtype]`` (what ``meta[H_FNS]`` holds)."""
    return TABLE[np.dtype(dtype)].ctypes.data


# The C functions' bodies, one per argument list a kernel takes (kinds.py):
# the arrays rebuilt from their addresses, then KERNEL, the layer's kernel
# inlined, on EL, the float type. ``_body`` gives each variant its own
# globals for the two names (numba resolves globals when it compiles; the
# disk cache tells variants apart by their names, config.variant).
# ruff: noqa: F821 (KERNEL and EL)
def _recurrent(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
    KERNEL(array_at(src, _ANY, EL), s0, ss, array_at(dst, _ANY, EL), d0, ds, n,
           array_at(w, _ANY, EL), array_at(meta, _ANY, np.int64), r, array_at(st, _ANY, EL),
           sb, array_at(sc, _ANY, EL))


def _rows(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
    KERNEL(array_at(src, _ANY, EL), s0, ss, array_at(dst, _ANY, EL), d0, ds, n,
           array_at(w, _ANY, EL), array_at(meta, _ANY, np.int64), r, array_at(st, _ANY, EL),
           sb, sst, array_at(sc, _ANY, EL))


def _plain(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
    KERNEL(array_at(src, _ANY, EL), s0, ss, array_at(dst, _ANY, EL), d0, ds, n,
           array_at(w, _ANY, EL), array_at(meta, _ANY, np.int64), r)


def _with_scratch(src, s0, ss, dst, d0, ds, n, w, meta, r, st, sb, sst, sc):
    KERNEL(array_at(src, _ANY, EL), s0, ss, array_at(dst, _ANY, EL), d0, ds, n,
           array_at(w, _ANY, EL), array_at(meta, _ANY, np.int64), r, array_at(sc, _ANY, EL))


def _activation(buf, lo, hi, code, alpha, beta):
    APPLY(array_at(buf, _ANY, EL), lo, hi, code, alpha, beta)


_TEMPLATES = {kinds.SEQ_FORM: _recurrent, kinds.ROWS_FORM: _rows, kinds.PLAIN: _plain,
              kinds.WITH_SCRATCH: _with_scratch}


def _with_globals(template, el, **names):
    """``template`` with its own globals for EL and ``names`` (numba resolves
    globals when it compiles; the disk cache tells variants apart by their
    names, config.variant)."""
    fn = types_.FunctionType(template.__code__, {**template.__globals__, "EL": el, **names},
                             template.__name__)
    fn.__qualname__ = template.__qualname__
    return fn


def _inlined(dispatcher):
    """``dispatcher``'s function, to be inlined into a C function's body
    (compiled there once, not again as a function of its own that the C
    function would link)."""
    return njit(inline="always", fastmath=FAST_FLAGS, **JIT_OPTIONS)(dispatcher.py_func)


def _float(dt):
    """The numpy float type of ``dt``."""
    return np.float32 if dt == np.float32 else np.float64


def _body(kernel, names, el):
    """The C function's Python body for ``kernel`` (taking the arguments
    ``names``) and the numpy float type ``el``: the template for those
    arguments with the kernel inlined into it."""
    fn = _with_globals(_TEMPLATES[names], el, KERNEL=_inlined(kernel))
    # named after the kernel: one name (and disk cache file) per variant in every process
    name = re.sub(r"\W", "_", f"{kernel.py_func.__module__.rsplit('.', 1)[-1]}_"
                               f"{kernel.py_func.__qualname__}")
    return variant(fn, kernel=name, dtype=el.__name__)


def _activation_body(el):
    """The C function's Python body of ``activations.apply`` for ``el``."""
    return variant(_with_globals(_activation, el, APPLY=_inlined(activations.apply)),
                   dtype=el.__name__)


def _fill(dt, slot: int, key, body, signature) -> int:
    """The address in table slot ``slot`` of ``dt``: on first use the C
    function ``_funcs[key]``, made (loaded from the disk cache, else
    compiled) from ``body()`` for ``signature`` and shared by every slot
    with the same key."""
    if numba_config.DISABLE_JIT:  # nothing to compile: the entry points are Python then
        return 0
    if not TABLE[dt][slot]:
        with _lock:  # threads making their first stream at once compile it once
            fn = _funcs.get(key)
            if fn is None:
                fn = _funcs[key] = CachedCFunc(body(), signature, fastmath=True).ready()
            TABLE[dt][slot] = fn.address
    return int(TABLE[dt][slot])


def address(dtype, code: int, form: int) -> int:
    """The address of the C function of kind ``code`` and ``form`` for
    ``dtype``, compiled or loaded from the disk cache on first use, and
    written into the table. Kinds and forms that run the same kernel on the
    same arguments (the norms, the pools, a stateless kind's rows and seq)
    share one function."""
    dt = np.dtype(dtype)
    kernel, names = kinds.kernel_of(code, form)
    return _fill(dt, 2 * code + form, (dt, kernel, names),
                 lambda: _body(kernel, names, _float(dt)), _SIGNATURE)


def activation_address(dtype) -> int:
    """The address of ``activations.apply``'s C function for ``dtype`` (the
    table's FN_APPLY slot, which every kernel calls through: direct.activation),
    compiled or loaded on first use."""
    dt = np.dtype(dtype)
    f = types.float32 if dt == np.float32 else types.float64
    return _fill(dt, FN_APPLY, (dt, "apply"), lambda: _activation_body(_float(dt)),
                 types.void(_I64, _I64, _I64, _I64, f, f))


def _prepare_kinds(dtype, codes, rows: bool) -> None:
    """The activations' and kinds ``codes``' C functions: seq, and with
    ``rows`` the rows kernel where a kind has one."""
    activation_address(dtype)
    for code in codes:
        address(dtype, code, FN_SEQ)
        if rows and kinds.has_rows(code):
            address(dtype, code, FN_ROWS)


def prepare(meta: np.ndarray, dtype, rows: bool = False) -> None:
    """Fill the table for every layer of the plan ``meta``: its seq kernel,
    and with ``rows`` (a StreamBatch) its rows kernel where it has one; and
    point ``meta`` at this process's table (a plan unpickled from another
    process holds that process's address)."""
    meta[H_FNS] = table_address(dtype)
    codes = {int(meta[HEADER + ROW * l + M_KIND]) for l in range(int(meta[H_NLAYERS]))}
    if meta[H_GRAPH]:
        codes |= graph.function_codes(meta)  # a fused run's kernel (fuse.py)
    _prepare_kinds(dtype, sorted(codes), rows)


def prepare_all(dtype) -> None:
    """Fill the table with every float layer kind's kernels (``warmup``)."""
    _prepare_kinds(dtype, kinds.FLOAT_KINDS, rows=True)
