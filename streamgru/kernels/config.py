"""Numba options for every kernel, in one place.

``cache=True`` keeps compiled kernels on disk beside the sources, so only the
first process after an install (or an edit of a kernel file) compiles.
``nogil=True`` lets threads run streams in parallel. ``error_model="numpy"``
drops the per-division zero check (a branch that stops vectorisation).

``jit`` uses strict IEEE math. ``jit_fast`` adds only the fastmath flags that
keep NaN/inf semantics: ``contract`` (fuse a*b+c into one FMA, one rounding
instead of two) and ``reassoc`` (reorder sums so reductions vectorise). It
never adds ``nnan``/``ninf``, which would let LLVM delete the finiteness
checks the kernels rely on; the input checks themselves use ``jit``. The
tests bound the resulting differences against the float64 reference.
"""

import os

from numba import njit

JIT_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}
FAST_FLAGS = {"contract", "reassoc"}

jit = njit(**JIT_OPTIONS)
jit_fast = njit(fastmath=FAST_FLAGS, **JIT_OPTIONS)

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
