"""Numba kernels. Private: the public API is in streamgru/__init__.py."""

from .warm import warmup

__all__ = ["warmup"]
