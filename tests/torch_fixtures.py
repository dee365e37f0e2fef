"""Helpers that build PyTorch models and write ``.pt`` files at test time.

Nothing binary is committed: real files are written by ``torch.save`` into
pytest's tmp_path, and crafted (malicious or corrupt) archives are assembled
here byte by byte in the layout ``torch.save`` uses.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from dataclasses import dataclass

import numpy as np
import torch

I, H, P, O = 5, 12, 7, 3  # input, hidden, LSTM projection and head sizes
T = 300


@dataclass(frozen=True)
class Case:
    """One recurrent configuration of the parity matrix."""

    kind: str  # "GRU", "LSTM" or "RNN"
    num_layers: int
    bias: bool
    proj: bool = False  # LSTM proj_size=P
    relu: bool = False  # RNN nonlinearity="relu"
    head: bool = False  # a Linear head after the recurrent layers
    batch_first: bool = False

    @property
    def id(self) -> str:
        parts = [self.kind, f"L{self.num_layers}", "bias" if self.bias else "nobias"]
        if self.proj:
            parts.append("proj")
        if self.relu:
            parts.append("relu")
        if self.head:
            parts.append("head")
        return "-".join(parts)


def cases() -> list[Case]:
    """GRU/LSTM/RNN x num_layers 1-3 x bias x (proj_size | relu) x head."""
    out = []
    for kind, extra in (("GRU", [{}]), ("LSTM", [{}, {"proj": True}]),
                        ("RNN", [{}, {"relu": True}])):
        for num_layers in (1, 2, 3):
            for bias in (True, False):
                for ex in extra:
                    for head in (False, True):
                        bf = (num_layers + bias + head) % 2 == 0  # both layouts covered
                        out.append(Case(kind, num_layers, bias, head=head, batch_first=bf, **ex))
    return out


class Net(torch.nn.Module):
    """A recurrent module with an optional Linear head, as users write them."""

    def __init__(self, case: Case) -> None:
        super().__init__()
        kw = {"num_layers": case.num_layers, "bias": case.bias, "batch_first": case.batch_first}
        if case.kind == "GRU":
            self.rnn = torch.nn.GRU(I, H, **kw)
        elif case.kind == "LSTM":
            self.rnn = torch.nn.LSTM(I, H, proj_size=P if case.proj else 0, **kw)
        else:
            self.rnn = torch.nn.RNN(I, H, nonlinearity="relu" if case.relu else "tanh", **kw)
        self.batch_first = case.batch_first
        out = P if case.proj else H
        self.head = torch.nn.Linear(out, O) if case.head else None

    def forward(self, x):
        y, _ = self.rnn(x)
        if self.head is not None:
            y = self.head(y)
        return y


def build(case: Case, seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net(case).eval()


def inputs(seed: int = 0, steps: int = T, size: int = I) -> np.ndarray:
    """A real-valued multichannel signal: sines of several periods plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[:, None]
    periods = rng.uniform(8, 80, size)
    phases = rng.uniform(0, 2 * np.pi, size)
    x = np.sin(2 * np.pi * t / periods + phases) + 0.3 * rng.standard_normal((steps, size))
    return x.astype(np.float32)


def torch_outputs(net: Net, x: np.ndarray) -> np.ndarray:
    """The module's output for one sequence x (T, I), as (T, out)."""
    with torch.no_grad():
        xt = torch.from_numpy(x)
        xt = xt.unsqueeze(0) if net.batch_first else xt.unsqueeze(1)
        y = net(xt)
        y = y[0] if net.batch_first else y[:, 0]
    return y.numpy()


# ----------------------------------------------------------------------------
# crafted archives


def write_archive(path, pkl: bytes, storages: dict[str, bytes] | None = None,
                  byteorder: bytes | None = b"little", prefix: str = "archive") -> None:
    """A zip laid out like torch.save's: prefix/data.pkl, prefix/data/<key>, byteorder."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", pkl)
        if byteorder is not None:
            z.writestr(f"{prefix}/byteorder", byteorder)
        for key, data in (storages or {}).items():
            z.writestr(f"{prefix}/data/{key}", data)
        z.writestr(f"{prefix}/version", b"3\n")


class _Global:
    """Pickles as a bare reference to ``module.name`` (never resolved here)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


class _Call:
    """Pickles as ``module.name(*args)``: what a malicious file does."""

    def __init__(self, module: str, name: str, *args) -> None:
        self.fn = _Global(module, name)
        self.args = args


class _Storage:
    def __init__(self, type_name: str, key: str, numel: int) -> None:
        self.type_name, self.key, self.numel = type_name, key, numel


class _Pickler(pickle._Pickler):
    """Writes our stand-ins as GLOBAL / REDUCE / persistent ids by hand, so a
    test can write any global without importing it."""

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", _Global("torch", obj.type_name), obj.key, "cpu", obj.numel)
        return None

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _Global):
            self.write(b"c" + f"{obj.module}\n{obj.name}\n".encode())
            return
        if isinstance(obj, _Call):
            self.save(obj.fn)
            self.save(tuple(obj.args))
            self.write(pickle.REDUCE)
            return
        super().save(obj, save_persistent_id)


def dumps(obj) -> bytes:
    """Protocol 2 pickle of ``obj`` that may contain _Global/_Call/_Storage."""
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def tensor(storage: _Storage, offset: int, size: tuple, stride: tuple) -> _Call:
    """The call torch.save writes for a tensor."""
    return _Call("torch._utils", "_rebuild_tensor_v2", storage, offset, size, stride, False,
                 _Call("collections", "OrderedDict"))


def float_storage(values, key: str = "0") -> tuple[_Storage, dict[str, bytes]]:
    data = np.asarray(values, dtype="<f4").tobytes()
    return _Storage("FloatStorage", key, len(data) // 4), {key: data}


def write_safetensors(path, tensors: dict) -> None:
    """A .safetensors file as ``safetensors.torch.save_file`` writes it (no
    streamgru description): 8-byte header length, JSON header, raw data."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        data = t.detach().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hdr = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)) + hdr + b"".join(blobs))


def legacy_bytes(obj) -> bytes:
    """``obj`` in torch's legacy (non-zip) format, as torch writes it."""
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


__all__ = [
    "Case", "Net", "build", "cases", "inputs", "torch_outputs", "write_archive", "dumps",
    "tensor", "float_storage", "legacy_bytes", "write_safetensors", "_Call", "_Global", "_Storage",
    "I", "H", "P", "O", "T",
]
