"""Reading the file safely: the protobuf (parsed, never run), local
functions inlined, initializers and attribute tensors checked against their
shapes, external data read only from inside the model's folder."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ...errors import WeightsError


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise WeightsError(
            'reading .onnx files needs the onnx package: pip install "streamgru[onnx]"'
        ) from None
    return onnx


def _read(path: str) -> Any:
    onnx = _import_onnx()
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        model = onnx.load_model_from_string(raw)  # parses only; external data is read below
    except Exception as exc:
        raise WeightsError(f"{path}: not a valid ONNX file ({type(exc).__name__}: {exc})") from None
    if not model.HasField("graph") or not model.graph.output:
        raise WeightsError(f"{path}: not an ONNX model (no graph with outputs)")
    if model.functions:
        try:
            from onnx import inliner

            model = inliner.inline_local_functions(model)
        except Exception as exc:
            raise WeightsError(f"{path}: cannot inline the model's local functions ({exc})") from None
    return model


def _tensor(t: Any, path: str, where: str = "") -> np.ndarray:
    """A TensorProto as a numpy array, checking its size against its shape and
    reading external data only from inside the model's folder."""
    onnx = _import_onnx()
    from onnx import numpy_helper

    name = t.name or "(unnamed)"
    label = f"{path}: tensor {name!r}{where}"
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims):
        raise WeightsError(f"{label}: negative dimension in shape {dims}")
    if t.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        raise WeightsError(f"{label}: not a numeric tensor (data type {t.data_type})")
    try:
        np_dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type))
    except Exception:
        raise WeightsError(f"{label}: unsupported data type {t.data_type}") from None
    count = math.prod(dims)
    if t.data_location == onnx.TensorProto.EXTERNAL:
        t = _external(t, path, label, count * np_dtype.itemsize)
    if t.HasField("raw_data"):
        if len(t.raw_data) != count * np_dtype.itemsize:
            raise WeightsError(
                f"{label}: {len(t.raw_data)} bytes of data for shape {dims} of {np_dtype} "
                f"({count * np_dtype.itemsize} bytes expected)"
            )
    else:
        try:
            field = onnx.helper.tensor_dtype_to_field(t.data_type)
        except Exception:
            raise WeightsError(f"{label}: unsupported data type {t.data_type}") from None
        n = len(getattr(t, field))
        expected = count * (2 if np_dtype.kind == "c" else 1)
        if n != expected:
            raise WeightsError(f"{label}: {n} values for shape {dims} ({expected} expected)")
    try:
        arr = numpy_helper.to_array(t)
    except Exception as exc:
        raise WeightsError(f"{label}: cannot be read ({exc})") from None
    return np.array(arr)


def _external(t: Any, path: str, label: str, nbytes: int) -> Any:
    """A copy of ``t`` with its external data read into ``raw_data``."""
    info = {e.key: e.value for e in t.external_data}
    location = info.get("location", "")
    if not location:
        raise WeightsError(f"{label}: external data without a location")
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    try:
        target = os.path.realpath(os.path.join(folder, location))
        inside = not os.path.isabs(location) and os.path.commonpath([folder, target]) == folder
    except ValueError:  # a NUL byte, or another drive
        inside = False
    if not inside:
        raise WeightsError(
            f"{label}: external data {location!r} lies outside the model's folder {folder}; refused"
        )
    try:
        offset = int(info.get("offset", 0))
        length = int(info.get("length", nbytes))
    except ValueError:
        raise WeightsError(f"{label}: bad external data offset/length") from None
    if offset < 0 or length != nbytes:
        raise WeightsError(
            f"{label}: external data length {length} does not match its shape ({nbytes} bytes)"
        )
    try:
        with open(target, "rb") as f:
            f.seek(offset)
            data = f.read(length)
    except OSError as exc:
        raise WeightsError(
            f"{label}: cannot read external data {location!r} ({exc.strerror or exc})"
        ) from None
    if len(data) != length:
        raise WeightsError(
            f"{label}: external data {location!r} is truncated ({len(data)} of {length} bytes)"
        )
    out = type(t)()
    out.CopyFrom(t)
    del out.external_data[:]
    out.data_location = 0  # DEFAULT
    out.raw_data = data
    return out


def _attrs(node: Any, path: str) -> dict:
    onnx = _import_onnx()
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = _tensor(a.t, path, f" (attribute {a.name} of node {node.name!r})")
            continue
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS,
                      onnx.AttributeProto.SPARSE_TENSOR, onnx.AttributeProto.TENSORS):
            out[a.name] = None  # subgraphs: the op is refused as unsupported
            continue
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list):
            v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out
