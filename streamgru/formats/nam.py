"""Neural Amp Modeler ``.nam`` files with the LSTM architecture (WaveNet: nam_wavenet.py).

A ``.nam`` file is JSON: ``version``, ``architecture``, ``config``
``{input_size, hidden_size, num_layers}``, a flat ``weights`` list, and
optional ``sample_rate`` and ``metadata``. NAM's ``LSTM._export_weights``
writes, per layer k (input size I = input_size for k = 0, else H):

- ``[W_ih | W_hh]``, (4H, I + H) row-major, gate rows i, f, g, o (torch's);
- ``b_ih + b_hh`` summed (4H);
- the initial hidden state h0 (H) and cell state c0 (H);

then the head ``nn.Linear(H, 1)``: its weight (H) and bias (1). NAM's plugin
starts from the file's h0 / c0 (the state its exporter reached after a burn-in
on silence), so they become the Model's initial state (per layer h then c).
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from ..errors import WeightsError
from ..layers import LSTM, Dense, Layer
from ..model import Model
from . import jsonfile, nam_wavenet
from .guard import Budget, check_regular
from .jsonfile import field, positive_int

OPTIONS = ("dtype",)
MAX_LAYERS = 256


def sniff(head: bytes) -> bool:
    """A JSON object with NAM's ``architecture`` and ``version`` keys."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text.startswith(b"{") and b'"architecture"' in head and b'"version"' in head


def weight_count(input_size: int, hidden_size: int, num_layers: int) -> int:
    """How many numbers NAM's LSTM export writes for this config."""
    H = hidden_size
    total = 0
    for k in range(num_layers):
        I = input_size if k == 0 else H
        total += 4 * H * (I + H) + 4 * H + 2 * H
    return total + H + 1


def load(path: str, dtype: Any = None, *, budget: Budget | None = None) -> Model:
    """Read a NAM ``.nam`` file holding an LSTM or a WaveNet model."""
    if budget is None:
        budget = Budget(path, check_regular(path).st_size)
    doc = jsonfile.read(path, budget, "NAM")
    if not isinstance(doc, dict):
        raise WeightsError(f"{path}: not a NAM file (expected a JSON object, got "
                           f"{jsonfile.kind(doc)})")
    version = field(doc, "version", path, (str,))
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise WeightsError(f"{path}: 'version' must look like '0.5.4', got {version!r}"[:200])
    arch = field(doc, "architecture", path, (str,))
    if arch == "WaveNet":
        return nam_wavenet.build(path, doc, version, dtype, budget)
    if arch != "LSTM":
        raise WeightsError(f"{path}: NAM architecture {arch!r} is not supported; streamgru "
                           f"reads NAM's LSTM and WaveNet models"[:300])
    where = f"{path}: config"
    config = field(doc, "config", path, (dict,))
    I = positive_int(config, "input_size", where, 1 << 16)
    H = positive_int(config, "hidden_size", where, 1 << 14)
    L = positive_int(config, "num_layers", where, MAX_LAYERS)
    need = weight_count(I, H, L)
    raw = field(doc, "weights", path, (list,))
    if len(raw) != need:
        raise WeightsError(
            f"{path}: tensor weights: {len(raw)} numbers, but an LSTM with input_size {I}, "
            f"hidden_size {H} and num_layers {L} has {need}"
        )
    w = jsonfile.array(raw, f"{path}: tensor weights", 1, budget)
    sample_rate = field(doc, "sample_rate", path, (int, float), default=None)
    if sample_rate is not None and not (np.isfinite(sample_rate) and sample_rate > 0):
        raise WeightsError(f"{path}: 'sample_rate' must be a positive number, got {sample_rate}")

    layers: list[Layer] = []
    state = []
    off = 0

    def take(n: int) -> np.ndarray:
        nonlocal off
        off += n
        return w[off - n : off]

    for k in range(L):
        n_in = I if k == 0 else H
        # NAM stores [W_ih | W_hh] side by side, gate rows i, f, g, o (torch's)
        wx = take(4 * H * (n_in + H)).reshape(4 * H, n_in + H)
        bias = take(4 * H)  # b_ih + b_hh, summed by the exporter
        h0, c0 = take(H), take(H)
        try:
            layers.append(LSTM.from_torch(wx[:, :n_in], wx[:, n_in:], bias, None))
        except WeightsError as exc:
            raise WeightsError(f"{path}: tensor weights, LSTM layer {k}: {exc}") from None
        state += [h0, c0]  # streamgru's state order: h then c, layer by layer
    head_w, head_b = take(H), take(1)
    layers.append(Dense(head_w.reshape(1, H), head_b))

    metadata: dict[str, Any] = {
        "format": "nam",
        "source": os.path.basename(path),
        "nam_version": version,
        "conventions": "NAM LSTM: [W_ih | W_hh] (4H, I+H) gate rows i, f, g, o, summed biases; "
                       "initial state h0, c0 from the file",
    }
    if sample_rate is not None:
        metadata["sample_rate"] = sample_rate
    if isinstance(doc.get("metadata"), dict):
        metadata["file_metadata"] = doc["metadata"]
    try:
        return Model(layers, dtype=np.float32 if dtype is None else dtype,
                     initial_state=np.concatenate(state), metadata=metadata)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
