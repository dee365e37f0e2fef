"""What a ``torch.save`` pickle may name: streamgru's stand-ins for torch's
storages and tensor-rebuilding functions, and the allow-list mapping global
names to them (``find_class``). Nothing here imports or runs anything the
file names; every stand-in is streamgru's own code.
"""

from __future__ import annotations

import _compat_pickle
import collections
from typing import Any, Callable

import numpy as np

from ..errors import UnsafeWeightsError, WeightsError

__all__ = ["ALLOWED", "SCRIPT_CLASSES", "STORAGE_TYPES", "Bad", "Builder", "QTensor",
           "ScriptObject", "Storage", "StorageType", "Tensor", "TorchName", "describe",
           "find_class", "frozen_set"]


class StorageType:
    """Stand-in for ``torch.FloatStorage`` etc.: only says the element type."""

    __slots__ = ("name", "dtype", "bfloat16", "quantized")

    def __init__(self, name: str, dtype: str, bfloat16: bool = False) -> None:
        self.name = name
        self.dtype = np.dtype(dtype)
        self.bfloat16 = bfloat16
        # the integer storage of a quantized tensor (only valid inside _rebuild_qtensor)
        self.quantized = name.startswith("Q")


# torch storage class -> element type (little-endian; bfloat16 read as uint16)
STORAGE_TYPES = {
    name: StorageType(name, dt, name == "BFloat16Storage")
    for name, dt in {
        "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
        "BFloat16Storage": "<u2", "LongStorage": "<i8", "IntStorage": "<i4",
        "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
        "QInt8Storage": "i1", "QUInt8Storage": "u1", "QInt32Storage": "<i4",
    }.items()
}


class Storage:
    """A storage named in the pickle; read from the archive when a tensor needs it."""

    __slots__ = ("type", "key", "numel")

    def __init__(self, type_: StorageType, key: str, numel: int) -> None:
        self.type = type_
        self.key = key
        self.numel = numel


class Tensor:
    """A tensor described in the pickle; rebuilt with numpy by the archive reader."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any) -> None:
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


class QTensor:
    """A quantized tensor (``torch._utils._rebuild_qtensor``): its integer
    ``tensor`` and the quantizer record ``(qscheme, scale, zero_point)`` or
    ``(qscheme, scales, zero_points, axis)``, checked when it is read."""

    __slots__ = ("tensor", "qparams")

    def __init__(self, tensor: Tensor, qparams: Any) -> None:
        self.tensor = tensor
        self.qparams = qparams


class TorchName:
    """A torch constant named in the pickle (``torch.qint8``,
    ``torch.per_tensor_affine``): only its name is kept."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class ScriptObject:
    """A TorchScript class instance (``torch.ScriptObject``) pickled as
    ``NEWOBJ`` then ``BUILD`` with ``(state, qualified class name)``. torch
    would hand the state to the class's C++ ``__setstate__``; here the state
    is only kept as data, for the classes in ``SCRIPT_CLASSES``."""

    __slots__ = ("cls", "state")

    def __init__(self) -> None:
        self.cls: str | None = None
        self.state: Any = None


# the TorchScript classes whose pickled state is plain data that streamgru
# reads: torch.ao dynamic quantization's recurrent cell parameters and packed
# Linear weights (their state: tensors, numbers, strings and nested packs)
SCRIPT_CLASSES = ("__torch__.torch.classes.rnn.CellParamsBase",
                  "__torch__.torch.classes.quantized.LinearPackedParamsBase")


class Bad(Exception):
    """A refusal inside the interpreter; becomes a WeightsError naming file and offset."""


def describe(v: Any, level: int = 0) -> str:
    """A short, bounded description of a value from the file, for messages
    (``repr`` of a deep or huge object would recurse or print megabytes)."""
    if v is None or isinstance(v, (bool, float)):
        return repr(v)
    if isinstance(v, int):
        return repr(v) if abs(v) < 10**18 else f"<int of {v.bit_length()} bits>"
    if isinstance(v, (str, bytes)):
        return repr(v[:60]) + ("..." if len(v) > 60 else "")
    if type(v) in (tuple, list):
        if level >= 2 or len(v) > 8:
            return f"<{type(v).__name__} of {len(v)}>"
        inner = ", ".join(describe(x, level + 1) for x in v)
        return f"({inner}{',' if len(v) == 1 else ''})" if type(v) is tuple else f"[{inner}]"
    if isinstance(v, (dict, set, frozenset)):
        return f"<{type(v).__name__} of {len(v)}>"
    return f"<{type(v).__name__}>"


# ----------------------------------------------------------------------------
# what a pickle may call


def _rebuild_tensor_v2(u, storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    # requires_grad, hooks and metadata do not change the values
    return Tensor(storage, storage_offset, size, stride)


def _rebuild_tensor(u, storage, storage_offset, size, stride):
    return Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(u, data, requires_grad=False, backward_hooks=None, state=None):
    # a Parameter holds the same values as its tensor
    return data


def _rebuild_qtensor(u, storage, storage_offset, size, stride, quantizer_params,
                     requires_grad=False, backward_hooks=None):
    # the quantizer record is data (a qscheme name, numbers, tensors), read later
    return QTensor(Tensor(storage, storage_offset, size, stride), quantizer_params)


def _script_object(u):
    return ScriptObject()


def _codecs_encode(u, text, encoding="utf-8"):
    """Protocol 2 pickles ``bytes`` as ``_codecs.encode(str, "latin1")``;
    allow that and nothing else of the codec machinery."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise Bad(f"_codecs.encode may only build bytes, got encoding {describe(encoding)}")
    return text.encode(encoding)


def _empty_bytes(u):
    # protocols 0-2 write b"" as a call to bytes() with no arguments
    return b""


def _ordered_dict(u, items=()):
    d = collections.OrderedDict()
    for pair in u.iterate(items, "OrderedDict"):
        if type(pair) not in (tuple, list) or len(pair) != 2:
            raise Bad(f"OrderedDict item {describe(pair)} is not a (key, value) pair")
        u.insert(d, pair[0], pair[1])
    return d


def _set(u, items=()):
    s: set = set()
    for v in u.iterate(items, "set"):
        u.add(s, v)
    return s


def frozen_set(u, items=()):
    return frozenset(_set(u, items))


class Builder:
    """An allow-listed callable: streamgru's own function, never the file's."""

    __slots__ = ("name", "fn")

    def __init__(self, name: str, fn: Callable) -> None:
        self.name = name
        self.fn = fn


# (module, name) -> streamgru's stand-in. Nothing here runs code from the file.
ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): Builder("collections.OrderedDict", _ordered_dict),
    ("torch._utils", "_rebuild_tensor_v2"): Builder("_rebuild_tensor_v2", _rebuild_tensor_v2),
    ("torch._utils", "_rebuild_tensor"): Builder("_rebuild_tensor", _rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): Builder("_rebuild_parameter", _rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): Builder("_rebuild_parameter_with_state",
                                                               _rebuild_parameter),
    ("torch._utils", "_rebuild_qtensor"): Builder("_rebuild_qtensor", _rebuild_qtensor),
    ("torch", "ScriptObject"): Builder("torch.ScriptObject", _script_object),
    ("builtins", "set"): Builder("set", _set),
    ("builtins", "frozenset"): Builder("frozenset", frozen_set),
    ("_codecs", "encode"): Builder("_codecs.encode", _codecs_encode),
    ("builtins", "bytes"): Builder("bytes", _empty_bytes),
}
ALLOWED.update({("torch", name): st for name, st in STORAGE_TYPES.items()})
# dtypes and quantization schemes a quantized state dict names
ALLOWED.update({("torch", name): TorchName(name) for name in (
    "qint8", "quint8", "qint32", "float16", "float32", "float64", "bfloat16",
    "per_tensor_affine", "per_channel_affine", "per_channel_affine_float_qparams",
    "per_tensor_symmetric", "per_channel_symmetric")})

# torch globals that are harmless but describe tensors streamgru does not read
UNSUPPORTED = {
    "_rebuild_tensor_v3": "a tensor with a separate dtype (e.g. float8)",
    "_rebuild_sparse_tensor": "a sparse tensor",
    "_rebuild_sparse_csr_tensor": "a sparse tensor",
    "_rebuild_nested_tensor": "a nested tensor",
    "_rebuild_wrapper_subclass": "a tensor subclass",
    "_rebuild_meta_tensor_no_storage": "a meta tensor (no data)",
    "_rebuild_device_tensor_from_numpy": "a device tensor",
    "_rebuild_device_tensor_from_cpu_tensor": "a device tensor",
}

def find_class(path: str, module: str, name: str) -> Any:
    """The stand-in for global ``module.name``, or UnsafeWeightsError."""
    # protocol 2 pickles written by Python 3 carry Python 2 names
    # ("__builtin__", "commands.call" for subprocess.call): translate them
    # with the standard table so messages name the real global
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    found = ALLOWED.get((module, name))
    if found is not None:
        return found
    if module == "torch._utils" and name in UNSUPPORTED:
        raise WeightsError(
            f"{path}: holds {UNSUPPORTED[name]} ({module}.{name}), which streamgru does not "
            f"read; save plain float tensors"
        )
    hint = ""
    if name[:1].isupper():  # a class: most likely a whole pickled module
        hint = ("; if this is a whole pickled model (torch.save(model, path)), re-save only "
                "its weights: torch.save(model.state_dict(), path)")
    raise UnsafeWeightsError(
        f"{path}: the pickle asks for the global {describe(module)[1:-1]}.{describe(name)[1:-1]}, "
        f"which is not on streamgru's allow-list (tensors, storages, OrderedDict, plain "
        f"containers); it was neither imported nor run{hint}"
    )


