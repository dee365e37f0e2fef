"""Reading the file safely: the protobuf (parsed, never run), local
functions inlined, initializers and attribute tensors checked against their
shapes, external data read only from inside the model's folder."""

from __future__ import annotations

import math
import os
import stat
from typing import Any

import numpy as np

from ...errors import WeightsError
from ..guard import Budget, check_regular, read_regular


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise WeightsError(
            'reading .onnx files needs the onnx package: pip install "streamgru[onnx]"'
        ) from None
    return onnx


def _read(path: str, budget: Budget) -> Any:
    onnx = _import_onnx()
    raw = read_regular(path, budget)
    # the parsed protobuf holds about as much again as the file
    budget.take(len(raw), "parsing the protobuf")
    try:
        model = onnx.load_model_from_string(raw)  # parses only; external data is read below
    except Exception as exc:
        raise WeightsError(f"{path}: not a valid ONNX file ({type(exc).__name__}: {exc})") from None
    if not model.HasField("graph") or not model.graph.output:
        raise WeightsError(f"{path}: not an ONNX model (no graph with outputs)")
    if model.functions:
        _check_inlined_size(model, path, budget)
        try:
            from onnx import inliner

            model = inliner.inline_local_functions(model)
        except Exception as exc:
            raise WeightsError(f"{path}: cannot inline the model's local functions ({exc})") from None
    return model


def _function_key(domain: str, name: str, overload: str = "") -> tuple:
    return (domain or "", name, overload or "")


def _check_inlined_size(model: Any, path: str, budget: Budget) -> None:
    """Count the nodes the graph will have once its local functions are
    inlined, before onnx's inliner builds them: a function calling another
    twice at each of 40 levels is 2**40 nodes from a file of a few KB."""
    funcs = {_function_key(f.domain, f.name, getattr(f, "overload", "")): f for f in model.functions}
    sizes: dict[tuple, tuple[int, int]] = {}  # function -> (nodes, bytes) once inlined

    def expand(nodes: Any, active: tuple) -> tuple[int, int]:
        count = size = 0
        for n in nodes:
            budget.count(1, f"node {n.name!r} ({n.op_type}) of the local functions")
            key = _function_key(n.domain, n.op_type, getattr(n, "overload", ""))
            if key in funcs:
                c, b = function(key, active)
            else:
                c, b = 1, n.ByteSize()
            for a in n.attribute:  # nodes of subgraphs (If, Loop) are inlined too
                for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    sc, sb = expand(sub.node, active)
                    c, b = c + sc, b + sb
            count, size = count + c, size + b
        return count, size

    def function(key: tuple, active: tuple) -> tuple[int, int]:
        if key in active:
            chain = " -> ".join(k[1] for k in active + (key,))
            raise WeightsError(f"{path}: local function {key[1]!r} calls itself ({chain}); refused")
        if key not in sizes:
            sizes[key] = expand(funcs[key].node, active + (key,))
        return sizes[key]

    total = 0
    for n in model.graph.node:
        count, size = expand([n], ())
        total += count
        what = (f"node {n.name!r} ({n.op_type}), {count:,} nodes once its local functions are "
                f"inlined,")
        if count > 1:
            budget.count(count, what)
            # the inlined nodes are protobuf objects, a few times their serialized size
            budget.take(4 * size, what)


def _tensor(t: Any, path: str, budget: Budget, where: str = "") -> np.ndarray:
    """A TensorProto as a numpy array, checking its size against its shape and
    the budget before anything is allocated, and reading external data only
    from regular files inside the model's folder."""
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
    count = math.prod(dims)  # a Python int: no overflow, however large the dims
    nbytes = count * np_dtype.itemsize
    if t.data_location == onnx.TensorProto.EXTERNAL:
        t = _external(t, path, label, nbytes, budget)
    if t.HasField("raw_data"):
        if len(t.raw_data) != nbytes:
            raise WeightsError(
                f"{label}: {len(t.raw_data)} bytes of data for shape {dims} of {np_dtype} "
                f"({nbytes} bytes expected)"
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
    budget.take(nbytes, f"tensor {name!r}{where}")
    try:
        arr = numpy_helper.to_array(t)
    except Exception as exc:
        raise WeightsError(f"{label}: cannot be read ({exc})") from None
    return np.array(arr)


def _external(t: Any, path: str, label: str, nbytes: int, budget: Budget) -> Any:
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
    # a FIFO or device named as external data would block open() or never end
    size = check_regular(target, f"{label}: external data {location!r}").st_size
    if offset + length > size:
        raise WeightsError(
            f"{label}: external data {location!r} is truncated ({max(0, size - offset)} of "
            f"{length} bytes from offset {offset})"
        )
    budget.take(length, f"external data of tensor {t.name!r}")
    try:
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # swapped after the check
                raise WeightsError(f"{label}: external data {location!r} is not a regular file")
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


def _attrs(node: Any, path: str, budget: Budget) -> dict:
    onnx = _import_onnx()
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = _tensor(a.t, path, budget, f" (attribute {a.name} of node {node.name!r})")
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
