"""PyTorch dynamic quantization (``torch.ao.quantization.quantize_dynamic``)
in a saved state dict: the quantized modules' entries become the plain keys
of ``nn.GRU`` / ``nn.LSTM`` / ``nn.Linear``, their weights
``QuantizedWeight`` s holding the file's own int8 values and scales (or
float16 values), never re-quantized.

What ``torch.save(qmodel.state_dict())`` writes for each module (read as data
from the allow-listed pickle; no TorchScript class is instantiated):

- ``DynamicQuantizedGRU`` / ``LSTM``: ``{prefix}_all_weight_values.{k}.param``,
  a ``torch.ScriptObject`` of class ``rnn.CellParamsBase`` whose state is
  ``(kind, tensors, doubles, longs, packed)``. ``kind`` is
  ``"quantized_dynamic"`` (int8: ``tensors`` = [b_ih, b_hh], ``longs`` =
  [reduce_range]) or ``"quantized_fp16"``; ``packed`` = [w_ih, w_hh], each a
  ``quantized.LinearPackedParamsBase`` with state ``(weight, bias)``, the
  weight a quantized tensor (int8) or a float tensor of float16 values.
  Entry k is layer k (torch's gate order r, z, n / i, f, g, o, as nn.GRU).
- ``DynamicQuantizedLinear``: ``{prefix}_packed_params._packed_params`` =
  ``(weight, bias)`` as above, ``{prefix}_packed_params.dtype`` (torch.qint8 or
  torch.float16), and ``{prefix}scale`` / ``{prefix}zero_point`` (1.0 and 0:
  the output of a dynamic Linear is float).

A quantized tensor is ``_rebuild_qtensor(storage, offset, size, stride,
(qscheme, scale, zero_point) | (qscheme, scales, zero_points, axis))``;
per-tensor and per-channel affine along the output rows (axis 0) are read.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..errors import WeightsError
from ..layers.quant import QuantizedWeight
from .qweights import affine_int8, exact_float16
from .torch_globals import QTensor, ScriptObject, Tensor, TorchName, describe

__all__ = ["expand", "is_quantized_entry"]

_CELL = "__torch__.torch.classes.rnn.CellParamsBase"
_PACKED = "__torch__.torch.classes.quantized.LinearPackedParamsBase"
# {prefix}_all_weight_values.{layer}.param
_CELL_KEY = re.compile(r"((?:.*\.)?)_all_weight_values\.(\d{1,6})\.param")
_LINEAR_KEY = "_packed_params._packed_params"


def is_quantized_entry(v: Any) -> bool:
    """A state-dict value that only a quantized module holds."""
    return isinstance(v, (QTensor, ScriptObject, TorchName)) or (
        type(v) is tuple and any(isinstance(x, (QTensor, Tensor)) for x in v))


class _Reader:
    def __init__(self, archive: Any, path: str) -> None:
        self.archive = archive
        self.path = path

    def fail(self, key: str, what: str) -> WeightsError:
        return WeightsError(f"{self.path}: tensor {key}: {what}")

    def array(self, t: Any, key: str) -> np.ndarray:
        if not isinstance(t, Tensor):
            raise self.fail(key, f"expected a tensor, got {describe(t)}")
        return self.archive.tensor(t, key)

    def qweight(self, q: QTensor, key: str) -> QuantizedWeight:
        """A quantized (out, in) weight as an int8 ``QuantizedWeight``."""
        st = q.tensor.storage
        kind = getattr(getattr(st, "type", None), "name", None)
        if kind not in ("QInt8Storage", "QUInt8Storage"):
            raise self.fail(key, f"a quantized tensor of storage {describe(kind)}; streamgru "
                                 f"reads qint8 and quint8 weights")
        values = self.archive.tensor(q.tensor, key, quantized=True)
        p = q.qparams
        if type(p) not in (tuple, list) or not p or not isinstance(p[0], TorchName):
            raise self.fail(key, f"malformed quantizer record {describe(p)}")
        scheme = p[0].name
        if scheme == "per_tensor_affine" and len(p) == 3:
            scale, zero = p[1], p[2]
            if type(scale) is not float or type(zero) is not int:
                raise self.fail(key, f"per-tensor scale and zero point must be a float and an "
                                     f"int, got {describe(scale)} and {describe(zero)}")
        elif scheme == "per_channel_affine" and len(p) == 4:
            scale, zero, axis = p[1], p[2], p[3]
            if axis != 0 or type(axis) is not int:
                raise self.fail(key, f"per-channel quantization along axis {describe(axis)}; "
                                     f"streamgru reads one scale per output row (axis 0)")
            scale = self.numbers(scale, f"{key} (its scales)")
            zero = self.numbers(zero, f"{key} (its zero points)")
        else:
            raise self.fail(key, f"quantization scheme torch.{scheme} with {len(p)} fields is "
                                 f"not read (per_tensor_affine and per_channel_affine are)")
        return affine_int8(values, scale, zero, f"{self.path}: tensor {key}", self.archive.budget)

    def numbers(self, v: Any, key: str) -> np.ndarray:
        if isinstance(v, Tensor):
            return self.archive.tensor(v, key)
        if type(v) is list and all(type(x) in (int, float) for x in v):
            return np.asarray(v)
        raise self.fail(key, f"expected a tensor or a list of numbers, got {describe(v)}")

    def weight(self, w: Any, key: str, int8: bool) -> QuantizedWeight:
        if int8:
            if not isinstance(w, QTensor):
                raise self.fail(key, f"expected a qint8 quantized weight, got {describe(w)}")
            return self.qweight(w, key)
        if not isinstance(w, Tensor):
            raise self.fail(key, f"expected a float16-valued float weight, got {describe(w)}")
        return exact_float16(self.archive.tensor(w, key), f"{self.path}: tensor {key}",
                             self.archive.budget)

    def bias(self, b: Any, key: str) -> np.ndarray | None:
        return None if b is None else self.array(b, key)

    def packed(self, p: Any, key: str, int8: bool) -> tuple[QuantizedWeight, np.ndarray | None]:
        """A ``LinearPackedParamsBase``'s (weight, bias)."""
        if not (isinstance(p, ScriptObject) and p.cls == _PACKED):
            raise self.fail(key, f"expected packed Linear parameters, got {describe(p)}")
        return self.pair(p.state, key, int8)

    def pair(self, state: Any, key: str, int8: bool) -> tuple[QuantizedWeight, np.ndarray | None]:
        if type(state) is not tuple or len(state) != 2:
            raise self.fail(key, f"packed parameters {describe(state)} are not (weight, bias)")
        return self.weight(state[0], key, int8), self.bias(state[1], f"{key} (bias)")

    def cell(self, key: str, obj: Any, prefix: str, k: int) -> dict[str, Any]:
        """One recurrent layer's plain keys from a ``CellParamsBase``."""
        if not (isinstance(obj, ScriptObject) and obj.cls == _CELL):
            raise self.fail(key, f"expected quantized recurrent cell parameters, got {describe(obj)}")
        st = obj.state
        if type(st) is not tuple or len(st) != 5 or not all(type(x) is list for x in st[1:]):
            raise self.fail(key, f"malformed cell parameters {describe(st)}")
        kind, tensors, _doubles, _longs, packed = st
        if kind not in ("quantized_dynamic", "quantized_fp16"):
            raise self.fail(key, f"cell parameters of kind {describe(kind)}; streamgru reads "
                                 f"torch.ao dynamic quantization ('quantized_dynamic' int8, "
                                 f"'quantized_fp16')")
        if len(packed) != 2:
            raise self.fail(key, f"expected 2 packed weights (ih, hh), got {len(packed)}")
        int8 = kind == "quantized_dynamic"
        out: dict[str, Any] = {}
        for j, part in enumerate(("ih", "hh")):
            name = f"{prefix}weight_{part}_l{k}"
            w, b = self.packed(packed[j], f"{key} ({name})", int8)
            out[name] = w
            if b is not None:
                out[f"{prefix}bias_{part}_l{k}"] = b
        if tensors:  # the cell's own copy of the biases must be the packed ones
            if len(tensors) != 2:
                raise self.fail(key, f"expected 2 bias tensors (ih, hh), got {len(tensors)}")
            for j, part in enumerate(("ih", "hh")):
                got = self.array(tensors[j], f"{key} (bias_{part})")
                packed_bias = out.get(f"{prefix}bias_{part}_l{k}")
                if packed_bias is None or not np.array_equal(got, packed_bias):
                    raise self.fail(key, f"the cell's bias_{part} differs from its packed "
                                         f"weight's bias; the file is inconsistent")
        return out

    def linear(self, found: dict, key: str, prefix: str) -> dict[str, Any]:
        """A ``DynamicQuantizedLinear``'s ``weight`` and ``bias``."""
        dtype = found.get(prefix + "_packed_params.dtype")
        if not isinstance(dtype, TorchName) or dtype.name not in ("qint8", "float16"):
            raise self.fail(prefix + "_packed_params.dtype",
                            f"expected torch.qint8 or torch.float16, got {describe(dtype)}")
        for name, neutral in (("scale", 1.0), ("zero_point", 0)):
            v = found.get(prefix + name)
            arr = None if v is None else self.array(v, prefix + name)
            if arr is not None and (arr.size != 1 or float(arr.reshape(-1)[0]) != neutral):
                raise self.fail(prefix + name, f"{float(arr.reshape(-1)[0]) if arr.size else arr}: "
                                f"a statically quantized Linear (quantized output), which "
                                f"streamgru does not run; use dynamic quantization")
        w, b = self.pair(found[key], key, dtype.name == "qint8")
        out: dict[str, Any] = {prefix + "weight": w}
        if b is not None:
            out[prefix + "bias"] = b
        return out


def _check_stacked(r: _Reader, key: str, out: dict, prefix: str, k: int) -> None:
    """Layer k must take the previous layer's H outputs. The entries of a
    bidirectional module alternate forward and reverse (its state dict has no
    ``_reverse`` names to tell), so a mismatch here most likely means one."""
    below = out.get(f"{prefix}weight_hh_l{k - 1}")
    if k == 0 or below is None:
        return
    takes, gives = out[f"{prefix}weight_ih_l{k}"].shape[1], below.shape[1]
    if takes != gives:
        raise r.fail(key, f"takes {takes} inputs but layer {k - 1} gives {gives}; a "
                          f"bidirectional quantized module (entries alternate forward and "
                          f"reverse) needs the future and cannot run one sample at a time")


def expand(found: dict, archive: Any, path: str) -> dict[str, Any]:
    """The state dict ``found`` (values as unpickled) with tensors read and
    quantized modules turned into plain keys (``weight_ih_l0``, ``weight``)
    whose weights are ``QuantizedWeight``. Key order is kept."""
    r = _Reader(archive, path)
    linear_prefixes = {k[: -len(_LINEAR_KEY)] for k in found if k.endswith(_LINEAR_KEY)}
    skip = {p + s for p in linear_prefixes
            for s in ("_packed_params.dtype", "scale", "zero_point")}
    out: dict[str, Any] = {}
    for key, v in found.items():
        if key in skip:
            continue
        if key.endswith(_LINEAR_KEY):
            out.update(r.linear(found, key, key[: -len(_LINEAR_KEY)]))
        elif isinstance(v, ScriptObject) and _CELL_KEY.fullmatch(key):
            m = _CELL_KEY.fullmatch(key)
            prefix, k = m.group(1) or "", int(m.group(2))
            out.update(r.cell(key, v, prefix, k))
            _check_stacked(r, key, out, prefix, k)
        elif isinstance(v, Tensor):
            out[key] = archive.tensor(v, key)
        elif is_quantized_entry(v):
            raise r.fail(key, f"a quantized value ({describe(v)}) outside torch.ao's dynamic "
                              f"GRU, LSTM and Linear modules, which streamgru does not read")
        else:
            out[key] = v
    return out
