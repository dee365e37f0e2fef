"""PyTorch ``.pt`` / ``.pth`` files, read without torch and without running code.

``torch.save`` (torch >= 1.6) writes a zip archive whose entries all sit
under one folder ``<name>/``:

    <name>/data.pkl          the pickled object (protocol 2)
    <name>/data/<key>        one raw storage per key, in the byteorder below
    <name>/byteorder         "little" or "big" (absent in old files: little)
    <name>/.format_version, version, ...   bookkeeping, ignored here

In ``data.pkl`` every tensor is a call
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
requires_grad, backward_hooks[, metadata])`` whose ``storage`` is a
persistent id ``("storage", <torch.FloatStorage etc.>, key, location,
numel)``; parameters wrap that in ``torch._utils._rebuild_parameter``.

The unpickler below never imports anything: ``find_class`` answers from an
allow-list with streamgru's own stand-ins (tensors are rebuilt with numpy),
and any other global raises ``UnsafeWeightsError`` naming it. Tensors are
materialised after unpickling, so an error can name the state-dict key.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import os
import pickle
import zipfile
from typing import Any

import numpy as np

from ..errors import UnsafeWeightsError, WeightsError
from ..model import Model

__all__ = ["load", "read_pt"]

# pickle's first bytes in torch's legacy (pre-1.6) format: PROTO 2, then the
# LONG1 magic number 0x1950a86a20f9469cfc6c
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"

# largest data.pkl / byteorder record read (tensor data lives in storages);
# guards against a compressed entry that inflates without end
_MAX_RECORD = 1 << 30

# how many elements a (stride-0, expanded) tensor may have per stored element
_MAX_REPEAT = 1024

# the key a checkpoint dict keeps its state dict under
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` etc.: only says the element type."""

    __slots__ = ("name", "dtype", "bfloat16")

    def __init__(self, name: str, dtype: str, bfloat16: bool = False) -> None:
        self.name = name
        self.dtype = np.dtype(dtype)
        self.bfloat16 = bfloat16

    def __setstate__(self, state: Any) -> None:
        raise WeightsError(f"unexpected pickle state for torch.{self.name}")


# torch storage class -> element type (little-endian; bfloat16 read as uint16)
_STORAGE_TYPES = {
    name: _StorageType(name, dt, name == "BFloat16Storage")
    for name, dt in {
        "FloatStorage": "<f4",
        "DoubleStorage": "<f8",
        "HalfStorage": "<f2",
        "BFloat16Storage": "<u2",
        "LongStorage": "<i8",
        "IntStorage": "<i4",
        "ShortStorage": "<i2",
        "CharStorage": "i1",
        "ByteStorage": "u1",
        "BoolStorage": "?",
    }.items()
}


class _Storage:
    """A storage named in the pickle; read from the archive when a tensor needs it."""

    __slots__ = ("type", "key", "numel")

    def __init__(self, type_: _StorageType, key: str, numel: int) -> None:
        self.type = type_
        self.key = key
        self.numel = numel

    def __setstate__(self, state: Any) -> None:
        raise WeightsError(f"unexpected pickle state for storage {self.key}")


class _Tensor:
    """A tensor described in the pickle; rebuilt with numpy by ``_materialise``."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any) -> None:
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride

    def __setstate__(self, state: Any) -> None:
        raise WeightsError("unexpected pickle state for a tensor")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    # requires_grad, hooks and metadata do not change the values
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    # a Parameter holds the same values as its tensor
    return data


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """Protocol 2 pickles ``bytes`` as ``_codecs.encode(str, "latin1")``;
    allow that and nothing else of the codec machinery."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise WeightsError(f"_codecs.encode is only allowed to build bytes, got encoding {encoding!r}")
    return text.encode(encoding)


class _Function:
    """A stand-in function. Pickle's BUILD opcode would set attributes (such
    as ``__defaults__``) on a plain function for every later load; this
    wrapper refuses any state."""

    __slots__ = ("func",)

    def __init__(self, func: Any) -> None:
        self.func = func

    def __call__(self, *args: Any) -> Any:
        return self.func(*args)

    def __setstate__(self, state: Any) -> None:
        raise WeightsError(f"unexpected pickle state for {self.func.__name__}")


# (module, name) -> streamgru's stand-in. Nothing here runs code from the file;
# the builtin types listed cannot be modified (BUILD on them fails).
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _Function(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_tensor"): _Function(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Function(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Function(_rebuild_parameter),
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _Function(_codecs_encode),
}
_ALLOWED.update({("torch", name): st for name, st in _STORAGE_TYPES.items()})

# torch globals that are harmless but describe tensors streamgru does not read
_UNSUPPORTED = {
    "_rebuild_tensor_v3": "a tensor with a separate dtype (e.g. float8)",
    "_rebuild_qtensor": "a quantized tensor",
    "_rebuild_sparse_tensor": "a sparse tensor",
    "_rebuild_sparse_csr_tensor": "a sparse tensor",
    "_rebuild_nested_tensor": "a nested tensor",
    "_rebuild_wrapper_subclass": "a tensor subclass",
    "_rebuild_meta_tensor_no_storage": "a meta tensor (no data)",
    "_rebuild_device_tensor_from_numpy": "a device tensor",
    "_rebuild_device_tensor_from_cpu_tensor": "a device tensor",
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl`` resolving globals only from the allow-list."""

    def __init__(self, data: bytes, path: str) -> None:
        super().__init__(io.BytesIO(data))
        self.path = path
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        # protocol 2 pickles written by Python 3 carry Python 2 names
        # ("__builtin__", "commands.call" for subprocess.call): translate them
        # with the standard table so messages name the real global
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        if module == "torch._utils" and name in _UNSUPPORTED:
            raise WeightsError(
                f"{self.path}: holds {_UNSUPPORTED[name]} ({module}.{name}), which "
                f"streamgru does not read; save plain float tensors"
            )
        hint = ""
        if name[:1].isupper():  # a class: most likely a whole pickled module
            hint = (
                "; if this is a whole pickled model (torch.save(model, path)), re-save "
                "only its weights: torch.save(model.state_dict(), path)"
            )
        raise UnsafeWeightsError(
            f"{self.path}: the pickle asks for the global {module}.{name}, which is not "
            f"on streamgru's allow-list (tensors, storages, OrderedDict, plain "
            f"containers); it was neither imported nor run{hint}"
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise WeightsError(f"{self.path}: unexpected persistent id {pid!r} in data.pkl")
        _, type_, key, _location, numel = pid
        if not isinstance(type_, _StorageType):
            raise WeightsError(f"{self.path}: storage {key!r} has an unknown type {type_!r}")
        if not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise WeightsError(f"{self.path}: malformed storage record {pid!r}")
        known = self.storages.get(key)
        if known is None:
            known = self.storages[key] = _Storage(type_, key, numel)
        elif known.type is not type_ or known.numel != numel:
            raise WeightsError(f"{self.path}: storage {key} is declared twice with different types")
        return known


# ----------------------------------------------------------------------------
# archive


def _open_archive(raw: bytes, path: str) -> tuple[zipfile.ZipFile, str]:
    """The zip archive and its folder prefix (``"<name>/"``)."""
    if raw.startswith(_LEGACY_MAGIC):
        raise WeightsError(
            f"{path}: PyTorch's legacy (pre-1.6, non-zip) format, which streamgru does not "
            f"read; re-save it with torch >= 1.6: "
            f"torch.save(torch.load(path, weights_only=True), 'new.pt')"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        names = archive.namelist()
    except Exception as exc:  # zipfile raises many types on a damaged directory
        raise WeightsError(
            f"{path}: not a torch.save archive, or truncated ({exc})"
        ) from None
    prefix = names[0].split("/", 1)[0] + "/" if names and "/" in names[0] else ""
    if prefix + "constants.pkl" in names or any(n.startswith(prefix + "code/") for n in names):
        raise WeightsError(
            f"{path}: a TorchScript archive (torch.jit.save), whose code streamgru does not "
            f"run; save its weights instead: "
            f"torch.save(torch.jit.load(path).state_dict(), 'weights.pt')"
        )
    if prefix + "data.pkl" not in names:
        raise WeightsError(f"{path}: a zip archive without data.pkl; not written by torch.save")
    return archive, prefix


def _read_entry(archive: zipfile.ZipFile, name: str, size: int | None, path: str, what: str) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise WeightsError(f"{path}: {what} is missing from the archive ({name})") from None
    if size is not None and info.file_size < size:
        raise WeightsError(
            f"{path}: {what} holds {info.file_size} bytes, fewer than the {size} its "
            f"tensor needs (truncated or corrupt file)"
        )
    if size is None and info.file_size > _MAX_RECORD:
        raise WeightsError(
            f"{path}: {what} declares {info.file_size} bytes, more than a torch.save "
            f"record holds; the file is corrupt"
        )
    try:
        with archive.open(info) as f:
            data = f.read(info.file_size if size is None else size)
    except Exception as exc:  # bad CRC, header, compression, encryption flag, ...
        raise WeightsError(
            f"{path}: cannot read {what} ({type(exc).__name__}: {exc}); the file is corrupt"
        ) from None
    if size is not None and len(data) != size:
        raise WeightsError(f"{path}: {what} is truncated ({len(data)} of {size} bytes)")
    return data


def _check_byteorder(archive: zipfile.ZipFile, prefix: str, path: str) -> None:
    name = prefix + "byteorder"
    if name not in archive.namelist():
        return  # torch before 1.12 wrote no record; those files are little-endian
    order = _read_entry(archive, name, None, path, "the byteorder record").strip()
    if order == b"big":
        raise WeightsError(
            f"{path}: saved on a big-endian machine (byteorder record 'big'); streamgru reads "
            f"little-endian files: load and re-save it with torch on a little-endian machine"
        )
    if order != b"little":
        raise WeightsError(f"{path}: unknown byteorder record {order[:20]!r}")


# ----------------------------------------------------------------------------
# tensors


def _materialise(t: _Tensor, name: str, archive: zipfile.ZipFile, prefix: str,
                 cache: dict[str, np.ndarray], path: str) -> np.ndarray:
    """The numpy array of tensor ``name`` (bfloat16 and float16 become float32)."""
    st = t.storage
    if not isinstance(st, _Storage):
        raise WeightsError(f"{path}: tensor {name}: its storage is not a storage record")
    try:
        offset = int(t.offset)
        size = tuple(int(s) for s in t.size)
        stride = tuple(int(s) for s in t.stride)
        # exact ints (not bool, not float) that numpy can index with
        ok = all(type(v) is int and abs(v) < 2**62 for v in (t.offset, *t.size, *t.stride))
    except (TypeError, ValueError):
        ok = False
    if (not ok or len(size) != len(stride) or len(size) > 32 or offset < 0
            or min(size + stride, default=0) < 0):
        raise WeightsError(
            f"{path}: tensor {name}: malformed layout (offset {t.offset!r}, size {t.size!r}, "
            f"stride {t.stride!r})"
        )
    count = 1
    for s in size:
        count *= s
    # the last element the tensor touches must lie inside its storage
    last = offset + sum((s - 1) * d for s, d in zip(size, stride)) if count else -1
    if last >= st.numel:
        raise WeightsError(
            f"{path}: tensor {name} reaches element {last} of storage {st.key}, which holds "
            f"only {st.numel}"
        )
    if count > _MAX_REPEAT * max(st.numel, 1):
        # stride-0 views may repeat elements, but a crafted file could ask for
        # terabytes from a one-element storage
        raise WeightsError(
            f"{path}: tensor {name} has {count} elements over a storage of {st.numel}; "
            f"refused (more than {_MAX_REPEAT} repeats of each stored value)"
        )
    data = cache.get(st.key)
    if data is None:
        item = st.type.dtype.itemsize
        raw = _read_entry(archive, f"{prefix}data/{st.key}", st.numel * item, path,
                          f"storage {st.key} of tensor {name}")
        data = cache[st.key] = np.frombuffer(raw, dtype=st.type.dtype)
    try:
        return _copy_view(data, offset, size, stride, count, st.type.bfloat16)
    except (ValueError, OverflowError, MemoryError) as exc:  # numpy refuses the layout
        raise WeightsError(f"{path}: tensor {name}: cannot build shape {size} ({exc})") from None


def _copy_view(data: np.ndarray, offset: int, size: tuple, stride: tuple, count: int,
               bfloat16: bool) -> np.ndarray:
    """A native-order copy of the strided view; float16 and bfloat16 -> float32."""
    item = data.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        data[offset:] if count else data[:0],
        shape=size,
        # a stride along a length-0 or length-1 axis is never used: 0 keeps it
        # from overflowing; other strides are bounded by the storage read above
        strides=tuple(d * item if n > 1 and count else 0 for n, d in zip(size, stride)),
        writeable=False,
    )
    if bfloat16:
        # bfloat16 is the top half of a float32
        return (view.astype(np.uint32) << 16).view(np.float32)
    if view.dtype == np.float16:
        return view.astype(np.float32)
    return view.astype(view.dtype.newbyteorder("="), copy=True)


def _resolve(obj: Any, name: str, ctx: tuple, depth: int = 0) -> Any:
    """Replace the ``_Tensor`` stand-ins in ``obj`` by numpy arrays."""
    if depth > 100:
        raise WeightsError(f"{ctx[-1]}: nesting deeper than 100 levels at {name or 'top level'}")
    if isinstance(obj, _Tensor):
        return _materialise(obj, name or "(top level)", *ctx)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out[k] = _resolve(v, f"{name}.{k}" if name else str(k), ctx, depth + 1)
        return out
    if type(obj) in (list, tuple):
        return type(obj)(_resolve(v, f"{name}[{i}]", ctx, depth + 1) for i, v in enumerate(obj))
    return obj


def _unpickle(path: str) -> tuple[Any, tuple]:
    """The object in ``data.pkl`` with ``_Tensor`` stand-ins, and the context
    ``_materialise`` needs to read their storages."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    archive, prefix = _open_archive(raw, path)
    _check_byteorder(archive, prefix, path)
    pkl = _read_entry(archive, prefix + "data.pkl", None, path, "data.pkl")
    unpickler = _SafeUnpickler(pkl, path)
    try:
        obj = unpickler.load()
    except WeightsError:
        raise
    except RecursionError:
        raise WeightsError(f"{path}: data.pkl nests too deeply") from None
    except Exception as exc:  # any failure inside a corrupt pickle is a corrupt file
        raise WeightsError(
            f"{path}: data.pkl is corrupt ({type(exc).__name__}: {exc})"
        ) from None
    return obj, (archive, prefix, {}, path)


def read_pt(path: str) -> Any:
    """Read the object a ``.pt`` file holds, tensors as numpy arrays.

    Nothing is imported or run: globals outside the allow-list raise
    ``UnsafeWeightsError``; corrupt files raise ``WeightsError`` naming the file.
    float16 and bfloat16 tensors become float32; other types keep theirs.
    """
    obj, ctx = _unpickle(path)
    return _resolve(obj, "", ctx)


def _find_state_dict(obj: Any, path: str) -> dict[str, _Tensor]:
    """The state dict in ``obj``: ``obj`` itself, or a checkpoint's entry
    ``state_dict`` / ``model_state_dict`` / ``model``."""
    if not isinstance(obj, dict):
        raise WeightsError(
            f"{path}: holds a {type(obj).__name__}, not a state dict; save "
            f"torch.save(model.state_dict(), path)"
        )

    def is_state_dict(d: Any) -> bool:
        return isinstance(d, dict) and bool(d) and all(
            isinstance(k, str) and isinstance(v, _Tensor) for k, v in d.items()
        )

    if is_state_dict(obj):
        return obj
    for key in _CHECKPOINT_KEYS:
        if is_state_dict(obj.get(key)):
            return obj[key]
    shown = ", ".join(repr(k) for k in list(obj)[:8])
    raise WeightsError(
        f"{path}: no state dict found: expected a dict of tensors, or a checkpoint holding "
        f"one under {', '.join(repr(k) for k in _CHECKPOINT_KEYS)}; top-level keys: {shown}"
    )


OPTIONS = ("dtype", "rnn_nonlinearity", "activations", "order")


def sniff(head: bytes) -> bool:
    """A ``torch.save`` zip (a member ``<name>/data.pkl``) or the legacy format."""
    return head.startswith(_LEGACY_MAGIC) or (head.startswith(b"PK") and b"data.pkl" in head)


def load(path: str, dtype: Any = np.float32, *, budget: Any = None, **options: Any) -> Model:
    """Load a ``torch.save``\\ d state dict (or checkpoint) as a Model, without torch.

    Parameters
    ----------
    path : str
        A ``.pt`` / ``.pth`` file written by ``torch.save`` (torch >= 1.6),
        holding a state dict or a checkpoint dict with one under
        ``state_dict``, ``model_state_dict`` or ``model``.
    dtype : float32 (default) or float64
    **options
        ``rnn_nonlinearity``, ``activations``, ``order``: see
        ``streamgru.formats.state_dict.model_from_state_dict``.

    Raises
    ------
    UnsafeWeightsError
        The pickle names a global outside the allow-list (nothing is run).
    WeightsError
        Corrupt, truncated, legacy or big-endian files, and state dicts that
        do not map to layers; the message names the file and the tensor.
    """
    from .state_dict import model_from_state_dict

    path = os.fspath(path)
    obj, ctx = _unpickle(path)
    # read only the state dict's storages, not e.g. a checkpoint's optimizer state
    found = _find_state_dict(obj, path)
    tensors = {key: _materialise(t, key, *ctx) for key, t in found.items()}
    return model_from_state_dict(tensors, path, dtype=dtype, **options)
