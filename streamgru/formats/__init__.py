"""Reading and writing weight files; each format in its own module.

Loaders convert a file's conventions into canonical layers (layers.py) and
know nothing of the kernels.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import WeightsError
from ..model import Model

LOADERS = {
    ".npz": ("native", "load"),
    ".safetensors": ("native", "load"),
    ".pt": ("torch", "load"),
    ".pth": ("torch", "load"),
    ".onnx": ("onnx", "load"),
}


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def load(path: str | os.PathLike, **options: Any) -> Model:
    """Load a model from a weight file, choosing the reader by suffix.

    Parameters
    ----------
    path : str or path-like
        ``.onnx`` (ONNX graph), ``.pt``/``.pth`` (a ``torch.save``\\ d state
        dict or checkpoint, read without torch and without running code),
        ``.safetensors`` or ``.npz`` (streamgru's native format).
    **options
        Passed to the reader, e.g. ``dtype=np.float64``; see each reader.

    Raises
    ------
    WeightsError
        The file is missing, unreadable, corrupt or unsupported; the message
        names the file.
    """
    path = os.fspath(path)
    suffix = _suffix(path)
    if suffix not in LOADERS:
        raise WeightsError(
            f"{path}: unknown file type {suffix or '(no suffix)'!r}; supported: "
            f"{', '.join(LOADERS)}"
        )
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such file")
    module_name, func = LOADERS[suffix]
    module = __import__(f"{__name__}.{module_name}", fromlist=[func])
    return getattr(module, func)(path, **options)


def save(model: Model, path: str | os.PathLike) -> None:
    """Save ``model`` in the native format, ``.npz`` or ``.safetensors`` by suffix.

    The file loads back bit-exact (same layers, flags, dtype and initial
    state). It is written to a temporary file first and renamed into place,
    so a failed save leaves any existing file untouched.
    """
    from . import native

    native.save(model, os.fspath(path))


def from_torch(module: Any, **options: Any) -> Model:
    """Build a Model from a live ``torch.nn.Module`` (torch is imported lazily).

    See ``streamgru.formats.torch_module`` for what is supported.
    """
    from .torch_module import from_module

    return from_module(module, **options)
