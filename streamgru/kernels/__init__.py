"""Numba kernels. Private: the public API is in streamgru/__init__.py."""


def warmup(dtypes=("float32", "float64")) -> dict:
    """Compile, or load from the disk cache, every kernel entry point for each
    dtype; returns seconds per dtype. See ``network.warmup``."""
    from .network import warmup as _warmup

    return _warmup(dtypes)
