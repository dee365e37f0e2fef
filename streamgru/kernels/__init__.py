"""Numba kernels. Private: the public API is in streamgru/__init__.py."""

from . import cache as _cache

# before any kernel is loaded: drop cached code built from other sources
_cache.check()


def warmup(dtypes=("float32", "float64")) -> dict:
    """Compile, or load from the disk cache, every kernel entry point for each
    dtype; returns seconds per dtype. See ``network.warmup``."""
    from .network import warmup as _warmup

    return _warmup(dtypes)
