"""Pack canonical layers into the flat plan the kernels run on (see layout.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import dense, gru, lstm, rnn
from .layout import (
    H_INPUT, H_NLAYERS, H_OUTPUT, H_SC_GH, H_SC_GX, H_SC_SEQA, H_SC_SEQB, H_SC_TMP,
    H_SCRATCH, H_STATE, H_TILE, HEADER, M_HID, M_IN, M_KIND, M_OUT, M_STATE,
    P_SIZE, ROW, TILE,
)

# layer kind name -> module with pack(layer, packer)
PACKERS = {"gru": gru, "lstm": lstm, "rnn": rnn, "dense": dense}


class Packer:
    """Collects arrays into one flat float buffer, handing out their offsets."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.size = 0

    def add(self, arr: np.ndarray) -> int:
        flat = np.ascontiguousarray(arr).reshape(-1)
        off = self.size
        self.parts.append(flat)
        self.size += flat.size
        return off

    def params(self, values: dict[int, float]) -> int:
        block = np.zeros(P_SIZE)
        for k, v in values.items():
            block[k] = v
        return self.add(block)


@dataclass(frozen=True)
class Plan:
    """Packed weights (``w``), layout (``meta``) and buffer sizes of a model."""

    w: np.ndarray
    meta: np.ndarray
    state_size: int
    scratch_size: int
    input_size: int
    output_size: int


def build_plan(layers, dtype) -> Plan:
    """Pack ``layers`` (canonical, already in ``dtype``) into a Plan."""
    packer = Packer()
    rows = []
    state = 0
    for layer in layers:
        module = PACKERS.get(layer.kind)
        if module is None:
            raise NotImplementedError(f"no kernel for layer kind {layer.kind!r}")
        row = module.pack(layer, packer)
        row[M_IN] = layer.input_size
        row[M_OUT] = layer.output_size
        row[M_HID] = getattr(layer, "hidden_size", layer.output_size)
        row[M_STATE] = state
        state += layer.state_size
        rows.append(row)

    meta = np.zeros(HEADER + ROW * len(rows), np.int64)
    gates = max([r["gates"] for r in rows] + [1])
    tmp = max([r["tmp"] for r in rows] + [1])
    width = max(l.output_size for l in layers)
    meta[H_NLAYERS] = len(rows)
    meta[H_INPUT] = layers[0].input_size
    meta[H_OUTPUT] = layers[-1].output_size
    meta[H_STATE] = state
    meta[H_TILE] = TILE
    meta[H_SC_GX] = 0
    meta[H_SC_GH] = TILE * gates
    # a tile of rows of recurrent pre-activations: batches run TILE streams at once
    meta[H_SC_TMP] = meta[H_SC_GH] + TILE * gates
    meta[H_SC_SEQA] = meta[H_SC_TMP] + 2 * tmp
    meta[H_SC_SEQB] = meta[H_SC_SEQA] + TILE * width
    meta[H_SCRATCH] = meta[H_SC_SEQB] + TILE * width
    for i, row in enumerate(rows):
        base = HEADER + ROW * i
        meta[base + M_KIND] = row.pop("kind")
        row.pop("gates")
        row.pop("tmp")
        for field, value in row.items():
            meta[base + field] = value

    w = np.concatenate([p.astype(dtype) for p in packer.parts]) if packer.parts else np.zeros(0, dtype)
    meta.setflags(write=True)
    return Plan(
        w=np.ascontiguousarray(w, dtype=dtype),
        meta=meta,
        state_size=state,
        scratch_size=int(meta[H_SCRATCH]),
        input_size=layers[0].input_size,
        output_size=layers[-1].output_size,
    )
