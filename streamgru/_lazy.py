"""Attributes of the ``streamgru`` package that load on first use.

Stream and StreamBatch bring in numba and the kernels (about 0.2 s before
the first kernel even loads), so they are imported on first use: loading,
inspecting and converting models stays light (``streamgru info``). The
hooks live here, not in ``__init__``, so ``help(streamgru)`` shows only the
public API.
"""

from __future__ import annotations

import sys

LAZY = ("Stream", "StreamBatch")


def module_getattr(name: str):
    if name in LAZY:
        from . import stream

        value = getattr(stream, name)
        setattr(sys.modules["streamgru"], name, value)
        return value
    raise AttributeError(f"module 'streamgru' has no attribute {name!r}")


def module_dir() -> list:
    pkg = sys.modules["streamgru"]
    return sorted(set(vars(pkg)) | set(pkg.__all__))
