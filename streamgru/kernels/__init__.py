"""Numba kernels. Private: the public API is in streamgru/__init__.py."""

from . import cache as _cache

# before any kernel is loaded: drop cached code built from other sources
_cache.check()


def warmup(dtypes=("float32", "float64")) -> dict:
    """Compile, or load from the disk cache, every kernel entry point for each
    dtype, and ``Stream.step``'s fast path; returns seconds per dtype. See
    ``network.warmup``."""
    import time

    from . import fastcall
    from .network import warmup as _warmup

    took = _warmup(dtypes)
    for name in list(took):
        t0 = time.perf_counter()
        fastcall.prepare(name)
        took[name] += time.perf_counter() - t0
    return took
