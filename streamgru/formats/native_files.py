"""The two containers of the native format, read as untrusted data.

``.safetensors``: an 8-byte little-endian header length N, N bytes of JSON
mapping tensor names to ``{"dtype", "shape", "data_offsets": [begin, end]}``
(offsets relative to the end of the header), then the raw little-endian
bytes. ``.npz``: a zip of ``.npy`` members, written by ``np.savez``.

Both readers return ``(description, names, get)``: the parsed streamgru
description (``None`` if the file has none), every tensor name the file
holds, and ``get(name)``, which materialises one tensor on demand. Every
size is checked in Python integers against the file before anything is
allocated, and every allocation is charged to the load's ``Budget`` first:
a header, a description, a decompressed member, a converted tensor. An npz
member is decompressed only when ``get`` asks for it, so a member that no
layer refers to costs nothing, and never beyond the size the zip's
directory claims for it.
"""

from __future__ import annotations

import ast
import io
import json
import math
import re
import struct
import zipfile
import zlib
from typing import Any, Callable

import numpy as np

from ..errors import WeightsError
from .guard import Budget

META_KEY = "__streamgru__"
MAX_DIMS = 64                  # numpy's own limit
MAX_HEADER = 100_000_000       # safetensors' own cap on its JSON header
# Python objects made from one byte of JSON, at most (``[{},{},...]`` makes
# a 64-byte dict per 3 bytes): charged before parsing
JSON_FACTOR = 32
CHUNK = 1 << 20

Getter = Callable[[str], np.ndarray]

ST_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "F16": np.dtype("<f2"),
             "BF16": np.dtype("<u2"), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
             "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"),
             "BOOL": np.dtype("?")}
# what the native writer stores; its only uint16 tensors are bfloat16 bit patterns
_ST_NAMES = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64", np.dtype("i1"): "I8",
             np.dtype("<f2"): "F16", np.dtype("<u2"): "BF16"}


def parse_json(data: bytes, budget: Budget, path: str, what: str) -> Any:
    """``data`` parsed as UTF-8 JSON, its Python objects charged first."""
    budget.take(JSON_FACTOR * len(data), f"parsing the {what}")
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8/JSON, or nesting deeper than Python's stack
        raise WeightsError(f"{path}: corrupt {what} ({type(exc).__name__}: {exc})") from None


def _shape(value: Any, path: str, name: str) -> tuple[int, ...]:
    """A tensor shape from a file: at most 64 non-negative whole numbers."""
    if not isinstance(value, (list, tuple)) or not all(
        type(s) is int and s >= 0 for s in value
    ):
        raise WeightsError(f"{path}: tensor {name}: shape {value!r} is not a list of "
                           f"non-negative integers")
    if len(value) > MAX_DIMS:
        raise WeightsError(f"{path}: tensor {name}: {len(value)} dimensions; at most "
                           f"{MAX_DIMS} are supported")
    return tuple(value)


def _check_size(shape: tuple[int, ...], itemsize: int, have: int, path: str, name: str,
                code: str) -> None:
    """The bytes ``shape`` needs (a Python int: no wrap-around) must be the
    ``have`` bytes the file gives the tensor."""
    need = math.prod(shape) * itemsize
    if need != have:
        raise WeightsError(f"{path}: tensor {name}: {have} bytes for shape {shape} of {code} "
                           f"(expected {need})")


# ----------------------------------------------------------------------------
# safetensors


def safetensors_bytes(desc: dict, tensors: dict[str, np.ndarray]) -> bytes:
    header: dict[str, Any] = {"__metadata__": {"streamgru": json.dumps(desc)}}
    blobs = []
    offset = 0
    for name, arr in tensors.items():
        le = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        data = np.ascontiguousarray(le).tobytes()
        header[name] = {
            "dtype": _ST_NAMES[np.dtype(le.dtype)],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    hdr = json.dumps(header, separators=(",", ":")).encode()
    hdr += b" " * (-len(hdr) % 8)  # the spec allows space padding; keeps data 8-aligned
    return struct.pack("<Q", len(hdr)) + hdr + b"".join(blobs)


def read_safetensors(raw: bytes, path: str, budget: Budget) -> tuple[Any, list[str], Getter]:
    if len(raw) < 8:
        raise WeightsError(f"{path}: truncated safetensors file ({len(raw)} bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8 or n > MAX_HEADER:
        raise WeightsError(
            f"{path}: not a safetensors file, or truncated (header length {n}, file {len(raw)} bytes)"
        )
    header = parse_json(raw[8 : 8 + n], budget, path, "safetensors header")
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: corrupt safetensors header (not a JSON object)")
    data = memoryview(raw)[8 + n :]
    meta = header.pop("__metadata__", None)
    if meta is not None and not isinstance(meta, dict):
        raise WeightsError(f"{path}: safetensors __metadata__ is a {type(meta).__name__}, "
                           f"not a JSON object")
    budget.count(len(header), "safetensors header entries")
    entries = {}
    for name, info in header.items():
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
            raise WeightsError(f"{path}: tensor {name}: malformed header entry {info!r:.200}")
        code, offsets = info["dtype"], info["data_offsets"]
        if not isinstance(code, str) or code not in ST_DTYPES:
            raise WeightsError(f"{path}: tensor {name}: unsupported dtype {code!r:.50}")
        shape = _shape(info["shape"], path, name)
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(type(v) is int for v in offsets)):
            raise WeightsError(f"{path}: tensor {name}: data_offsets {offsets!r:.100} is not "
                               f"a pair of integers")
        begin, end = offsets
        if not 0 <= begin <= end <= len(data):
            raise WeightsError(
                f"{path}: tensor {name}: data offsets [{begin}, {end}] outside the "
                f"{len(data)} data bytes (truncated file?)"
            )
        _check_size(shape, ST_DTYPES[code].itemsize, end - begin, path, name, code)
        entries[name] = (code, shape, begin, end)

    def get(name: str) -> np.ndarray:
        code, shape, begin, end = entries[name]
        dt = ST_DTYPES[code]
        src = np.frombuffer(data[begin:end], dtype=dt)
        if code == "BF16":  # the high half of a float32
            budget.take(2 * (end - begin), f"tensor {name}")
            u32 = src.astype(np.uint32)
            u32 <<= 16
            return u32.view(np.float32).reshape(shape)
        budget.take(end - begin, f"tensor {name}")
        return src.astype(dt.newbyteorder("=")).reshape(shape)

    desc = None
    if meta is not None and "streamgru" in meta:
        text = meta["streamgru"]
        if not isinstance(text, str):
            raise WeightsError(f"{path}: corrupt streamgru description (a {type(text).__name__}, "
                               f"not a JSON string)")
        desc = parse_json(text.encode("utf-8", "surrogatepass"), budget, path,
                          "streamgru description")
    return desc, list(entries), get


# ----------------------------------------------------------------------------
# npz

_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # what np.savez[_compressed] writes
# what the zipfile module raises for a damaged archive (its own class, or
# the struct/zlib/io error underneath): all mean "not a readable zip"
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, struct.error, EOFError,
               OSError, ValueError, NotImplementedError, RuntimeError, OverflowError)
_EOCD = b"PK\x05\x06"


def npz_bytes(desc: dict, tensors: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    meta = np.frombuffer(json.dumps(desc).encode(), dtype=np.uint8)
    np.savez(buf, **{META_KEY: meta}, **tensors)
    return buf.getvalue()


def _directory_size(raw: bytes) -> int:
    """The central directory's size as the end record claims it (at most
    the file): zipfile makes a Python object for each of its entries."""
    at = raw.rfind(_EOCD, max(0, len(raw) - 22 - 0xFFFF))
    if at < 0 or at + 22 > len(raw):
        return 0  # zipfile will refuse the file itself
    (size,) = struct.unpack("<I", raw[at + 12 : at + 16])
    return min(size, len(raw)) if size != 0xFFFFFFFF else len(raw)  # zip64: the file bounds it


def _not_npz(path: str, exc: BaseException) -> WeightsError:
    return WeightsError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})")


def read_npz(raw: bytes, path: str, budget: Budget) -> tuple[Any, list[str], Getter]:
    if raw[:6] == b"\x93NUMPY":
        raise WeightsError(f"{path}: not a readable .npz file (a single .npy array, not an archive)")
    # a ZipInfo per directory entry (46+ bytes each): about 12 bytes per byte
    budget.take(12 * _directory_size(raw), "the zip directory")
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        infos = archive.infolist()
    except _ZIP_ERRORS as exc:
        raise _not_npz(path, exc) from None
    budget.count(len(infos), "zip members")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if info.filename.endswith(".npy"):
            name = info.filename[:-4]
            if name in members:
                raise WeightsError(f"{path}: tensor {name}: stored twice in the archive")
            members[name] = info

    def get(name: str) -> np.ndarray:
        return _npy(_member(archive, members[name], path, name, budget), path, name)

    if META_KEY not in members:
        raise WeightsError(f"{path}: not a streamgru file (no {META_KEY} entry)")
    meta = get(META_KEY)
    if meta.dtype != np.uint8 or meta.ndim != 1:
        raise WeightsError(f"{path}: corrupt streamgru description (a {meta.dtype} array of "
                           f"shape {meta.shape}, not bytes)")
    desc = parse_json(meta.tobytes(), budget, path, "streamgru description")
    return desc, [n for n in members if n != META_KEY], get


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, name: str,
            budget: Budget) -> bytearray:
    """One member's bytes, decompressed in chunks up to the size the
    directory claims (the budget is charged that claim first)."""
    if info.compress_type not in _COMPRESSIONS:
        raise WeightsError(f"{path}: tensor {name}: zip compression method "
                           f"{info.compress_type} (np.savez writes stored or deflated members)")
    if info.flag_bits & 0x1:
        raise WeightsError(f"{path}: tensor {name}: the zip member is encrypted")
    size = info.file_size
    budget.take(size, f"tensor {name} (a zip member)")
    buf = bytearray(size)
    got = 0
    try:
        with archive.open(info) as f:
            while got < size:
                chunk = f.read(min(CHUNK, size - got))
                if not chunk:
                    break
                buf[got : got + len(chunk)] = chunk
                got += len(chunk)
    except _ZIP_ERRORS as exc:
        raise WeightsError(f"{path}: tensor {name}: unreadable zip member "
                           f"({type(exc).__name__}: {exc})") from None
    if got != size:
        raise WeightsError(f"{path}: tensor {name}: the zip member holds {got} bytes, its "
                           f"directory entry claims {size}")
    return buf


_NPY_MAGIC = b"\x93NUMPY"
_NPY_MAX_HEADER = 10_000  # numpy's own default cap
_DESCR = re.compile(r"[<>|=]?[fiub][0-9]{1,2}")  # a plain number type, e.g. '<f4', '|u1'


def _npy_header(buf: bytearray, path: str, name: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, data offset)`` of a ``.npy`` member.
    The header is a Python dict literal: read with ``ast.literal_eval``
    (literals only, never code), then checked key by key."""
    def bad(why: str) -> WeightsError:
        return WeightsError(f"{path}: tensor {name}: corrupt .npy header ({why})")

    if bytes(buf[:6]) != _NPY_MAGIC or len(buf) < 10:
        raise bad("no .npy magic")
    major = buf[6]
    if major not in (1, 2):
        raise bad(f"format version {major}.{buf[7]}; np.save writes 1.0 or 2.0")
    size = 2 if major == 1 else 4
    hlen = int.from_bytes(buf[8 : 8 + size], "little")
    start = 8 + size
    if hlen > _NPY_MAX_HEADER or start + hlen > len(buf):
        raise bad(f"header length {hlen}")
    try:
        header = ast.literal_eval(bytes(buf[start : start + hlen]).decode("latin1"))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise bad(f"{type(exc).__name__}: {exc}") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise bad(f"{header!r:.200}")
    descr, fortran = header["descr"], header["fortran_order"]
    if not isinstance(descr, str) or not _DESCR.fullmatch(descr):
        if descr == "|O" or (isinstance(descr, str) and "O" in descr):
            raise WeightsError(f"{path}: tensor {name}: an object array, which only pickle can "
                               f"read; refused")
        raise WeightsError(f"{path}: tensor {name}: dtype {descr!r:.100} is not a number type")
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError):
        raise WeightsError(f"{path}: tensor {name}: dtype {descr!r} is not a number type") from None
    if not isinstance(fortran, bool):
        raise bad(f"fortran_order {fortran!r:.50}")
    shape = header["shape"]
    if not isinstance(shape, tuple):
        raise bad(f"shape {shape!r:.100}")
    return _shape(shape, path, name), fortran, dtype, start + hlen


def _npy(buf: bytearray, path: str, name: str) -> np.ndarray:
    """An array viewing the ``.npy`` bytes ``buf``, its header checked
    against the data first."""
    shape, fortran, dtype, offset = _npy_header(buf, path, name)
    _check_size(shape, dtype.itemsize, len(buf) - offset, path, name, str(dtype))
    arr = np.frombuffer(buf, dtype=dtype, offset=offset)
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
