"""Numba options for every kernel, in one place.

``jit`` and ``jit_fast`` keep compiled kernels on disk in streamgru's own
cache folder (``cache.py``: verified, never inside the package, usable
read-only), so only the first process after an install (or an edit of a
kernel file) compiles; numba's ``cache=True`` is not used, since it would
write beside the sources. ``nogil=True`` lets threads run streams in
parallel. ``error_model="numpy"`` drops the per-division zero check (a
branch that stops vectorisation).

``jit`` uses strict IEEE math. ``jit_fast`` adds only the fastmath flags that
keep NaN/inf semantics: ``contract`` (fuse a*b+c into one FMA, one rounding
instead of two) and ``reassoc`` (reorder sums so reductions vectorise). It
never adds ``nnan``/``ninf``, which would let LLVM delete the finiteness
checks the kernels rely on; the input checks themselves use ``jit``. The
tests bound the resulting differences against the float64 reference.
"""

import contextlib
import gc
import os

from numba import njit

from .cache import attach

JIT_OPTIONS = {"nogil": True, "error_model": "numpy"}
FAST_FLAGS = {"contract", "reassoc"}


def variant(fn, **constants):
    """``fn``, a closure made once per value of its ``constants``, named
    after them (``seq`` -> ``seq_q1``). numba names a compiled function
    after its qualified name, its argument types and a per-process counter,
    and needs that name to be unique ("else the wrong function can be chosen
    at link time", its lowering says): two variants of one closure compiled
    in different processes (one of them loaded from the disk cache) could
    otherwise get the same symbol name."""
    tag = "_".join(f"{k}{v}" for k, v in constants.items())
    fn.__name__ = f"{fn.__name__}_{tag}"
    fn.__qualname__ = f"{fn.__qualname__}_{tag}"
    return fn


def jit(fn):
    """``njit`` with JIT_OPTIONS and streamgru's disk cache."""
    return attach(njit(**JIT_OPTIONS)(fn))


def jit_fast(fn):
    """``jit`` plus the fastmath flags FAST_FLAGS."""
    return attach(njit(fastmath=FAST_FLAGS, **JIT_OPTIONS)(fn))


@contextlib.contextmanager
def compiling():
    """Python's cyclic garbage collector paused while a kernel compiles:
    numba's compiler makes millions of short-lived objects (copies of its
    IR among them), and the collector's passes over them cost about a
    tenth of a first compile. Restored afterwards (left off if it was)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def locked(dispatcher, sig):
    """A new dispatcher of ``dispatcher``'s function and options, compiled
    (or loaded from the cache) for ``sig`` only and then closed: a call
    with any other argument types raises TypeError, and nothing ever
    reopens it (so threads can share it from the first call on)."""
    options = {k: v for k, v in dispatcher.targetoptions.items() if k != "nopython"}
    d = attach(njit(**options)(dispatcher.py_func))
    with compiling():
        d.compile(sig)
    d.disable_compile()
    return d

# StreamBatch splits a call across this many threads (each running a nogil
# kernel on its own range of streams with its own scratch) once the call has
# at least PARALLEL_MIN_WORK weight reads (about 100 us) to share; set
# THREADS = 1 to stay on the calling thread.
def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


THREADS = _available_cpus()
PARALLEL_MIN_WORK = 2_000_000
