"""PyTorch ``.pt`` / ``.pth`` / ``.ckpt`` files, read without torch and without running code.

``torch.save`` (torch >= 1.6) writes a zip archive whose entries all sit
under one folder ``<name>/``:

    <name>/data.pkl          the pickled object (any pickle protocol, 0 to 5)
    <name>/data/<key>        one raw storage per key, in the byteorder below
    <name>/byteorder         "little" or "big" (absent in old files: little)
    <name>/.format_version, version, ...   bookkeeping, ignored here

In ``data.pkl`` every tensor is a call
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
requires_grad, backward_hooks[, metadata])`` whose ``storage`` is a
persistent id ``("storage", <torch.FloatStorage etc.>, key, location,
numel)``; parameters wrap that in ``torch._utils._rebuild_parameter``.
PyTorch Lightning's ``Trainer.save_checkpoint`` writes the same archive
(``.ckpt``) holding a dict with the state dict under ``"state_dict"``.
The state dict of a ``torch.ao`` dynamic-quantized model adds quantized
tensors (``_rebuild_qtensor``) and packed weights (``torch.ScriptObject``
state), read as data by ``torch_quant``: their int8 values and scales are kept.

``data.pkl`` is interpreted by ``torch_pickle`` (allow-listed, bounded by
the load's ``Budget``); tensors are materialised after unpickling, each
charged to the budget before its bytes are read or copied, so an error can
name the state-dict key.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import Any

import numpy as np

from ..errors import WeightsError
from ..model import Model
from . import guard
from .torch_globals import Storage, StorageType, Tensor, describe
from .torch_pickle import unpickle
from .torch_quant import expand, is_quantized_entry

__all__ = ["load", "read_pt"]

# pickle's first bytes in torch's legacy (pre-1.6) format: PROTO 2, then the
# LONG1 magic number 0x1950a86a20f9469cfc6c
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"

# largest data.pkl read: a state dict of ten thousand tensors pickles to a
# few MB; tensor data lives in the storages
_MAX_PICKLE = 64 << 20
# largest byteorder record (it holds "little" or "big")
_MAX_SMALL = 64

# how many elements a (stride-0, expanded) tensor may have per stored element
_MAX_REPEAT = 1024

# the keys a checkpoint dict keeps its state dict under, most usual first
# (Lightning: "state_dict")
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "network")


def _persistent_load(path: str, storages: dict[str, Storage]):
    def load(pid: Any) -> Storage:
        if not (type(pid) is tuple and len(pid) == 5 and pid[0] == "storage"):
            raise WeightsError(f"{path}: unexpected persistent id {describe(pid)} in data.pkl")
        _, type_, key, _location, numel = pid
        if not isinstance(type_, StorageType):
            raise WeightsError(f"{path}: storage {describe(key)} has an unknown type {describe(type_)}")
        if type(key) is not str or type(numel) is not int or numel < 0:
            raise WeightsError(f"{path}: malformed storage record {describe(pid)}")
        known = storages.get(key)
        if known is None:
            known = storages[key] = Storage(type_, key, numel)
        elif known.type is not type_ or known.numel != numel:
            raise WeightsError(f"{path}: storage {key} is declared twice with different types")
        return known

    return load


# ----------------------------------------------------------------------------
# archive


class _Archive:
    """An opened ``torch.save`` zip: its folder prefix, the storages read so
    far, and the budget every read and copy is charged to."""

    def __init__(self, raw: bytes, path: str, budget: guard.Budget) -> None:
        self.path = path
        self.budget = budget
        self.cache: dict[str, np.ndarray] = {}
        if raw.startswith(_LEGACY_MAGIC):
            raise WeightsError(
                f"{path}: PyTorch's legacy (pre-1.6, non-zip) format, which streamgru does not "
                f"read; re-save it with torch >= 1.6: "
                f"torch.save(torch.load(path, weights_only=True), 'new.pt')"
            )
        try:
            self.zip = zipfile.ZipFile(io.BytesIO(raw))
            names = self.zip.namelist()
        except Exception as exc:  # zipfile raises many types on a damaged directory
            raise WeightsError(f"{path}: not a torch.save archive, or truncated ({exc})") from None
        budget.count(len(names), "the archive's directory")
        prefix = names[0].split("/", 1)[0] + "/" if names and "/" in names[0] else ""
        if prefix + "constants.pkl" in names or any(n.startswith(prefix + "code/") for n in names):
            raise WeightsError(
                f"{path}: a TorchScript archive (torch.jit.save), whose code streamgru does not "
                f"run; save its weights instead: "
                f"torch.save(torch.jit.load(path).state_dict(), 'weights.pt')"
            )
        if prefix + "data.pkl" not in names:
            raise WeightsError(f"{path}: a zip archive without data.pkl; not written by torch.save")
        self.prefix = prefix
        self.names = set(names)

    def entry(self, name: str, size: int | None, what: str, limit: int = 0) -> bytes:
        """The bytes of member ``prefix + name``: exactly ``size`` of them, or
        (``size`` None) all of it if it declares at most ``limit``; charged
        to the budget before decompressing."""
        path = self.path
        try:
            info = self.zip.getinfo(self.prefix + name)
        except KeyError:
            raise WeightsError(f"{path}: {what} is missing from the archive ({self.prefix + name})") from None
        if size is not None and info.file_size < size:
            raise WeightsError(
                f"{path}: {what} holds {info.file_size} bytes, fewer than the {size} its "
                f"tensor needs (truncated or corrupt file)"
            )
        if size is None and info.file_size > limit:
            raise WeightsError(
                f"{path}: {what} declares {info.file_size:,} bytes, more than the {limit:,} "
                f"streamgru reads for it; the file is corrupt or hostile"
            )
        want = info.file_size if size is None else size
        self.budget.take(want, what)
        try:
            with self.zip.open(info) as f:
                data = f.read(want)
        except Exception as exc:  # bad CRC, header, compression, encryption flag, ...
            raise WeightsError(
                f"{path}: cannot read {what} ({type(exc).__name__}: {exc}); the file is corrupt"
            ) from None
        if len(data) != want:
            raise WeightsError(f"{path}: {what} is truncated ({len(data)} of {want} bytes)")
        return data

    def check_byteorder(self) -> None:
        if self.prefix + "byteorder" not in self.names:
            return  # torch before 1.12 wrote no record; those files are little-endian
        order = self.entry("byteorder", None, "the byteorder record", _MAX_SMALL).strip()
        if order == b"big":
            raise WeightsError(
                f"{self.path}: saved on a big-endian machine (byteorder record 'big'); streamgru "
                f"reads little-endian files: load and re-save it with torch on a little-endian machine"
            )
        if order != b"little":
            raise WeightsError(f"{self.path}: unknown byteorder record {describe(order)}")

    # -- tensors --------------------------------------------------------------
    def tensor(self, t: Tensor, name: str, quantized: bool = False) -> np.ndarray:
        """The numpy array of tensor ``name`` (bfloat16 and float16 become
        float32); ``quantized``: the integer values of a quantized tensor."""
        path = self.path
        st = t.storage
        if not isinstance(st, Storage):
            raise WeightsError(f"{path}: tensor {name}: its storage is not a storage record")
        if st.type.quantized != quantized:
            raise WeightsError(
                f"{path}: tensor {name}: storage {st.key} of type torch.{st.type.name} "
                + ("outside a quantized tensor" if st.type.quantized else
                   "cannot hold a quantized tensor's values")
            )
        layout = (t.offset, t.size, t.stride)
        ok = type(t.size) in (tuple, list) and type(t.stride) in (tuple, list)
        if ok:
            size, stride, offset = tuple(t.size), tuple(t.stride), t.offset
            # exact ints (not bool, not float) that numpy can index with
            ok = (len(size) == len(stride) <= 32 and all(
                type(v) is int and 0 <= v < 2**62 for v in (offset, *size, *stride)))
        if not ok:
            raise WeightsError(
                f"{path}: tensor {name}: malformed layout (offset {describe(layout[0])}, size "
                f"{describe(layout[1])}, stride {describe(layout[2])})"
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
        data = self.cache.get(st.key)
        if data is None:
            raw = self.entry(f"data/{st.key}", st.numel * st.type.dtype.itemsize,
                             f"storage {st.key} of tensor {name}")
            data = self.cache[st.key] = np.frombuffer(raw, dtype=st.type.dtype)
        # the copy (and bfloat16's uint32 temporary), before it is made
        out_item = 4 if st.type.bfloat16 or st.type.dtype == np.float16 else st.type.dtype.itemsize
        self.budget.take(count * (out_item + (4 if st.type.bfloat16 else 0)), f"tensor {name}")
        try:
            return _copy_view(data, offset, size, stride, count, st.type.bfloat16)
        except (ValueError, OverflowError, MemoryError) as exc:  # numpy refuses the layout
            raise WeightsError(f"{path}: tensor {name}: cannot build shape {size} ({exc})") from None

    def resolve(self, obj: Any, name: str = "", depth: int = 0) -> Any:
        """``obj`` with its ``Tensor`` stand-ins replaced by numpy arrays."""
        if depth > 100:
            raise WeightsError(f"{self.path}: nesting deeper than 100 levels at {name or 'top level'}")
        if isinstance(obj, Tensor):
            return self.tensor(obj, name or "(top level)")
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                label = k if type(k) is str and len(k) <= 200 else describe(k)
                out[k] = self.resolve(v, f"{name}.{label}" if name else label, depth + 1)
            return out
        if type(obj) in (list, tuple):
            return type(obj)(self.resolve(v, f"{name}[{i}]", depth + 1) for i, v in enumerate(obj))
        return obj


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


def _unpickle(path: str, budget: guard.Budget | None) -> tuple[Any, _Archive]:
    """The object in ``data.pkl`` with ``Tensor`` stand-ins, and the archive
    to read their storages from."""
    if budget is None:
        budget = guard.Budget(path, guard.check_regular(path).st_size)
    raw = guard.read_regular(path, budget)
    archive = _Archive(raw, path, budget)
    archive.check_byteorder()
    pkl = archive.entry("data.pkl", None, "data.pkl", _MAX_PICKLE)
    obj = unpickle(pkl, path, budget, _persistent_load(path, {}))
    return obj, archive


def read_pt(path: str, *, budget: guard.Budget | None = None) -> Any:
    """Read the object a ``.pt`` file holds, tensors as numpy arrays.

    Nothing is imported or run: globals outside the allow-list raise
    ``UnsafeWeightsError``; corrupt, hostile or over-budget files raise
    ``WeightsError`` naming the file. float16 and bfloat16 tensors become
    float32; other types keep theirs.
    """
    path = os.fspath(path)
    obj, archive = _unpickle(path, budget)
    return archive.resolve(obj)


def _find_state_dict(obj: Any, path: str) -> tuple[dict, str | None]:
    """The state dict in ``obj`` (``obj`` itself, or a checkpoint's entry
    under one of ``_CHECKPOINT_KEYS``) and the key it was under."""
    if not isinstance(obj, dict):
        raise WeightsError(
            f"{path}: holds a {type(obj).__name__}, not a state dict; save "
            f"torch.save(model.state_dict(), path)"
        )

    def is_state_dict(d: Any) -> bool:
        # str keys, some tensors; other plain values (a module's extra state)
        # are carried along, not a reason to refuse
        return (isinstance(d, dict) and any(isinstance(v, Tensor) or is_quantized_entry(v)
                                            for v in d.values())
                and all(isinstance(k, str) and (isinstance(v, Tensor) or _plain(v)
                                                or is_quantized_entry(v))
                        for k, v in d.items()))

    if is_state_dict(obj):
        return obj, None
    for key in _CHECKPOINT_KEYS:
        if is_state_dict(obj.get(key)):
            return obj[key], key
    shown = ", ".join(describe(k) for k in list(obj)[:8])
    raise WeightsError(
        f"{path}: no state dict found: expected a dict of tensors, or a checkpoint holding "
        f"one under {', '.join(repr(k) for k in _CHECKPOINT_KEYS)}; top-level keys: {shown}"
    )


def _plain(v: Any) -> bool:
    return v is None or type(v) in (bool, int, float, str)


def _checkpoint_info(obj: dict, key: str | None) -> dict:
    """The checkpoint's scalar entries (epoch, global_step, versions), for ``info``."""
    if key is None:
        return {}
    scalars = {k: v for k, v in obj.items() if isinstance(k, str) and _plain(v) and k != key}
    shown = dict(list(scalars.items())[:20])
    for k, v in shown.items():
        if isinstance(v, str) and len(v) > 200:
            shown[k] = v[:200] + "..."
    return {"checkpoint_key": key, **({"checkpoint": shown} if shown else {})}


OPTIONS = ("dtype", "rnn_nonlinearity", "activations", "order")


def sniff(head: bytes) -> bool:
    """A ``torch.save`` zip (a member ``<name>/data.pkl``) or the legacy format."""
    return head.startswith(_LEGACY_MAGIC) or (head.startswith(b"PK") and b"data.pkl" in head)


def load(path: str, dtype: Any = np.float32, *, budget: guard.Budget | None = None,
         **options: Any) -> Model:
    """Load a ``torch.save``\\ d state dict or checkpoint as a Model, without torch.

    Parameters
    ----------
    path : str
        A ``.pt`` / ``.pth`` / ``.ckpt`` file written by ``torch.save``
        (torch >= 1.6, any pickle protocol) or Lightning's
        ``Trainer.save_checkpoint``, holding a state dict or a checkpoint
        dict with one under ``state_dict``, ``model_state_dict``, ``model``,
        ``net``, ``module`` or ``network``.
    dtype : float32 (default) or float64
    budget : guard.Budget, optional
        What the load may allocate and how much work it may do (default:
        from the file's size).
    **options
        ``rnn_nonlinearity``, ``activations``, ``order``: see
        ``streamgru.formats.state_dict.model_from_state_dict``.

    Raises
    ------
    UnsafeWeightsError
        The pickle names a global outside the allow-list (nothing is run).
    WeightsError
        Corrupt, truncated, hostile, over-budget, legacy or big-endian
        files, and state dicts that do not map to layers; the message names
        the file and the tensor.
    """
    from .state_dict import model_from_state_dict

    path = os.fspath(path)
    obj, archive = _unpickle(path, budget)
    # read only the state dict's storages, not e.g. a checkpoint's optimizer state
    found, key = _find_state_dict(obj, path)
    # torch.ao dynamic-quantized modules become plain keys holding QuantizedWeight
    tensors = expand(found, archive, path)
    model = model_from_state_dict(tensors, path, dtype=dtype, **options)
    model.metadata.update(_checkpoint_info(obj, key))
    return model
