"""streamgru's native format: ``.npz`` or ``.safetensors``.

Both hold one tensor per layer array, named ``layers.{i}.{name}``, plus
``initial_state``, and a JSON description of the model (format version,
dtype, each layer's kind and config). In ``.npz`` the JSON is stored as a
uint8 array ``__streamgru__`` (loading never unpickles); in ``.safetensors``
it is the header's ``__metadata__["streamgru"]`` string.

Safetensors layout (no ``safetensors`` package needed): an 8-byte
little-endian header length N, N bytes of JSON mapping tensor names to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the
end of the header), then the raw little-endian bytes.
"""

from __future__ import annotations

import io
import json
import os
import struct
import secrets
from typing import Any

import numpy as np

from ..errors import WeightsError
from ..layers import LAYER_TYPES
from ..model import Model

FORMAT = "streamgru"
VERSION = 1
# version 2 adds the model's input_skip and output_gain; a file is written as
# version 1 when it has neither, so older readers keep reading it, and as 2
# when it has one, so an older reader refuses it instead of dropping them
VERSION_SKIP_GAIN = 2
READS = (VERSION, VERSION_SKIP_GAIN)
META_KEY = "__streamgru__"

_ST_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "F16": np.dtype("<f2"),
              "BF16": None, "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
              "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"),
              "BOOL": np.dtype("?")}
_ST_NAMES = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64"}


# ----------------------------------------------------------------------------
# model <-> (description, tensors)


def _describe(model: Model) -> tuple[dict, dict[str, np.ndarray]]:
    tensors: dict[str, np.ndarray] = {}
    layers = []
    for i, layer in enumerate(model.layers):
        names = []
        for name, arr in layer.arrays().items():
            tensors[f"layers.{i}.{name}"] = np.ascontiguousarray(arr)
            names.append(name)
        layers.append({"kind": layer.kind, "config": layer.config(), "arrays": names})
    tensors["initial_state"] = np.ascontiguousarray(model.initial_state)
    desc = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": model.dtype.name,
        "layers": layers,
        "metadata": _jsonable(model.metadata),
    }
    if model.input_skip is not None or model.output_gain != 1.0:
        # a Python float's repr round-trips exactly through JSON: bit-exact
        desc.update(version=VERSION_SKIP_GAIN, input_skip=model.input_skip,
                    output_gain=model.output_gain)
    return desc, tensors


def _jsonable(meta: dict) -> dict:
    out = {}
    for k, v in meta.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            v = str(v)
        out[str(k)] = v
    return out


def _build(desc: Any, tensors: dict[str, np.ndarray], path: str) -> Model:
    if not isinstance(desc, dict) or desc.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a streamgru file (no streamgru description)")
    if desc.get("version") not in READS:
        raise WeightsError(
            f"{path}: streamgru format version {desc.get('version')!r}; this streamgru reads "
            f"{' and '.join(map(str, READS))}"
        )
    try:
        layer_descs = list(desc["layers"])
        dtype = np.dtype(desc["dtype"])
    except Exception as exc:
        raise WeightsError(f"{path}: malformed streamgru description ({exc})") from None
    layers = []
    for i, ld in enumerate(layer_descs):
        try:
            kind, config, names = ld["kind"], ld["config"], list(ld["arrays"])
        except Exception:
            raise WeightsError(f"{path}: layer {i}: malformed description {ld!r}") from None
        cls = LAYER_TYPES.get(kind)
        if cls is None:
            raise WeightsError(f"{path}: layer {i}: unknown kind {kind!r}")
        arrays = {}
        for name in names:
            key = f"layers.{i}.{name}"
            if key not in tensors:
                raise WeightsError(f"{path}: tensor {key} is missing")
            arrays[name] = tensors[key]
        try:
            layers.append(cls.from_config(config, arrays))
        except WeightsError as exc:
            raise WeightsError(f"{path}: layer {i} ({kind}): {exc}") from None
        except Exception as exc:
            raise WeightsError(f"{path}: layer {i} ({kind}): malformed ({exc})") from None
    init = tensors.get("initial_state")
    try:
        return Model(layers, dtype=dtype, initial_state=init, metadata=desc.get("metadata") or {},
                     input_skip=desc.get("input_skip"), output_gain=desc.get("output_gain", 1.0))
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None


# ----------------------------------------------------------------------------
# files


def _open_temp(folder: str) -> tuple[int, str]:
    """Create a new temporary file in ``folder``: like mkstemp, but with the
    mode open() would give (0o666 less the umask), so a saved model is as
    readable as any other file the user writes."""
    for _ in range(100):
        tmp = os.path.join(folder, f".streamgru-{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name in {folder}")


def _write_atomic(path: str, data: bytes) -> None:
    fd, tmp = _open_temp(os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(model: Model, path: str) -> None:
    """Write ``model`` to ``path`` (``.npz`` or ``.safetensors``)."""
    if not isinstance(model, Model):
        raise WeightsError(f"save: expected a streamgru Model, got {type(model).__name__}")
    suffix = os.path.splitext(path)[1].lower()
    desc, tensors = _describe(model)
    if suffix == ".npz":
        data = _npz_bytes(desc, tensors)
    elif suffix == ".safetensors":
        data = _safetensors_bytes(desc, tensors)
    else:
        raise WeightsError(
            f"{path}: save writes the native format; use a .npz or .safetensors suffix"
        )
    _write_atomic(path, data)


OPTIONS = ("dtype", "rnn_nonlinearity", "activations", "order")


def sniff(head: bytes) -> bool:
    """A zip (``.npz``) holding the description member, or a safetensors
    header (8-byte little-endian length, then JSON)."""
    if head.startswith(b"PK"):
        return META_KEY.encode() in head
    return len(head) > 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 27)


def load(path: str, dtype: Any = None, *, budget: Any = None, **state_dict_options: Any) -> Model:
    """Read a native ``.npz`` or ``.safetensors`` file.

    A ``.safetensors`` file without a streamgru description (e.g. written by
    ``safetensors.torch.save_file``) is read as a PyTorch state dict;
    ``state_dict_options`` (``rnn_nonlinearity``, ``activations``, ``order``)
    are for that case only. ``dtype`` converts the model after loading.
    """
    suffix = os.path.splitext(path)[1].lower()
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if suffix == ".npz":
        desc, tensors = _read_npz(raw, path)
    else:
        desc, tensors = _read_safetensors(raw, path)
        if desc is None:
            from .state_dict import model_from_state_dict

            return model_from_state_dict(
                tensors, path, dtype=dtype or np.float32, **state_dict_options
            )
    if state_dict_options:
        raise WeightsError(
            f"{path}: a streamgru file records its layers; the option(s) "
            f"{', '.join(sorted(state_dict_options))} only apply to PyTorch state dicts"
        )
    model = _build(desc, tensors, path)
    return model if dtype is None else model.astype(dtype)


def _npz_bytes(desc: dict, tensors: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    meta = np.frombuffer(json.dumps(desc).encode(), dtype=np.uint8)
    np.savez(buf, **{META_KEY: meta}, **tensors)
    return buf.getvalue()


def _read_npz(raw: bytes, path: str) -> tuple[Any, dict[str, np.ndarray]]:
    try:
        archive = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as exc:  # foreign bytes fail in many ways; all mean "unreadable"
        raise WeightsError(f"{path}: not a readable .npz file ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise WeightsError(f"{path}: not a readable .npz file (a single .npy array, not an archive)")
    try:
        with archive as z:
            names = list(z.files)
            if META_KEY not in names:
                raise WeightsError(f"{path}: not a streamgru file (no {META_KEY} entry)")
            tensors = {}
            for name in names:
                try:
                    tensors[name] = z[name]
                except Exception as exc:  # e.g. object arrays, which need pickle: refused
                    raise WeightsError(f"{path}: tensor {name}: {exc}") from None
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable .npz file ({exc})") from None
    meta = tensors.pop(META_KEY)
    try:
        desc = json.loads(meta.astype(np.uint8).tobytes().decode())
    except Exception as exc:
        raise WeightsError(f"{path}: corrupt streamgru description ({exc})") from None
    return desc, tensors


def _safetensors_bytes(desc: dict, tensors: dict[str, np.ndarray]) -> bytes:
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


def _read_safetensors(raw: bytes, path: str) -> tuple[Any, dict[str, np.ndarray]]:
    if len(raw) < 8:
        raise WeightsError(f"{path}: truncated safetensors file ({len(raw)} bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8 or n > 100_000_000:
        raise WeightsError(
            f"{path}: not a safetensors file, or truncated (header length {n}, file {len(raw)} bytes)"
        )
    try:
        header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    except Exception as exc:
        raise WeightsError(f"{path}: corrupt safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path}: corrupt safetensors header (not a JSON object)")
    data = memoryview(raw)[8 + n :]
    meta = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, info in header.items():
        try:
            code = info["dtype"]
            shape = tuple(int(s) for s in info["shape"])
            begin, end = (int(v) for v in info["data_offsets"])
        except Exception:
            raise WeightsError(f"{path}: tensor {name}: malformed header entry {info!r}") from None
        if code not in _ST_DTYPES:
            raise WeightsError(f"{path}: tensor {name}: unsupported dtype {code!r}")
        if any(s < 0 for s in shape) or not 0 <= begin <= end <= len(data):
            raise WeightsError(
                f"{path}: tensor {name}: data offsets [{begin}, {end}] outside the "
                f"{len(data)} data bytes (truncated file?)"
            )
        count = int(np.prod(shape, dtype=np.int64))
        if code == "BF16":
            if end - begin != 2 * count:
                raise WeightsError(
                    f"{path}: tensor {name}: {end - begin} bytes for shape {shape} of BF16"
                )
            u16 = np.frombuffer(data[begin:end], dtype="<u2").astype(np.uint32)
            arr = (u16 << 16).view(np.float32).reshape(shape)
        else:
            dt = _ST_DTYPES[code]
            if end - begin != count * dt.itemsize:
                raise WeightsError(
                    f"{path}: tensor {name}: {end - begin} bytes for shape {shape} of {code} "
                    f"(expected {count * dt.itemsize})"
                )
            arr = np.frombuffer(data[begin:end], dtype=dt).reshape(shape)
            arr = arr.astype(dt.newbyteorder("="))
        tensors[name] = arr
    desc = None
    if isinstance(meta, dict) and "streamgru" in meta:
        try:
            desc = json.loads(meta["streamgru"])
        except Exception as exc:
            raise WeightsError(f"{path}: corrupt streamgru description ({exc})") from None
    return desc, tensors
