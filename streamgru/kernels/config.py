"""Numba options for every kernel, in one place.

``cache=True`` keeps compiled kernels on disk beside the sources, so only the
first process after an install (or an edit of a kernel file) compiles.
``nogil=True`` lets threads run streams in parallel. ``fastmath`` is not
used: it changes NaN/inf semantics, and the kernels test inputs for finiteness.
"""

from numba import njit

JIT_OPTIONS = {"cache": True, "nogil": True}

jit = njit(**JIT_OPTIONS)
