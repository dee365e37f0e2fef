"""Attributes of the ``streamgru`` package that load on first use.

Stream and StreamBatch bring in numba and the kernels (about 0.2 s before
the first kernel even loads), so they are imported on first use: loading,
inspecting and converting models stays light (``streamgru info``). The hook
is a module subclass rather than a module-level ``__getattr__``, so
``help(streamgru)`` shows only the public API.
"""

from __future__ import annotations

import types

LAZY = ("Stream", "StreamBatch")


class LazyModule(types.ModuleType):
    """The class of the ``streamgru`` module object."""

    def __getattr__(self, name: str):
        if name in LAZY:
            from . import stream

            value = getattr(stream, name)
            setattr(self, name, value)
            return value
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")

    def __dir__(self) -> list:
        return sorted(set(vars(self)) | set(self.__all__))
