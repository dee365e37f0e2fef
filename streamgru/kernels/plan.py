"""Pack canonical layers into the flat plan the kernels run on (see layout.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import WeightsError
from ..layers.quant import QuantizedWeight
from . import calls, conv, dense, elementwise, fuse, graph, gru, lstm, norm, pool, rnn, simd
from .layout import (
    WQ_CODES, WQ_FLOAT, WQ_SHIFT,
    H_FNS, H_GAIN, H_INPUT, H_NLAYERS, H_OUTPUT, H_RATE, H_SC_GH, H_SC_GX, H_SC_SEQA, H_SC_SEQB,
    H_SC_TMP, H_SCRATCH, H_SKIP, H_STATE, H_STRIDE, H_TILE, HEADER, M_HID, M_IN, M_KIND, M_OUT, M_STATE,
    P_SIZE, ROW, TILE, GRAPH_TILE,
)

# layer kind name -> module with pack(layer, packer)
PACKERS = {"gru": gru, "lstm": lstm, "rnn": rnn, "dense": dense,
           "conv1d": conv, "batchnorm": norm, "layernorm": norm, "prelu": norm,
           "maxpool1d": pool, "avgpool1d": pool, "elementwise": elementwise}


class Packer:
    """Collects arrays into one flat float buffer of ``dtype``, handing out
    their offsets."""

    def __init__(self, dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.parts: list[np.ndarray] = []
        self.size = 0

    def add(self, arr: np.ndarray) -> int:
        flat = np.ascontiguousarray(arr).reshape(-1)
        off = self.size
        self.parts.append(flat)
        self.size += flat.size
        return off

    def _align(self) -> None:
        """Pad to a vector boundary, so no load splits a cache line."""
        L = simd.lanes(self.dtype)
        if self.size % L:
            self.add(np.zeros(L - self.size % L))

    def panels(self, wt: np.ndarray) -> int:
        """Add ``wt`` (W^T, inputs x outputs) packed for ``simd.gemv``, at an
        offset on a vector boundary."""
        self._align()
        return self.add(simd.pack_panels(wt, self.dtype))

    def matrix(self, weight, cols: int | None = None) -> int:
        """Add a layer's weight matrix (out, in), float or ``QuantizedWeight``,
        as W^T panels of ``cols`` (default: out) columns, zero-padded, for
        ``simd``'s products of its weight type; return its offset.
        Reduced types are stored as raw bytes (``simd.pack_stored``); int8
        scales (padded with zeros to the panel's columns) come just before."""
        out, inputs = weight.shape
        cols = out if cols is None else cols
        if not isinstance(weight, QuantizedWeight):
            wt = np.zeros((inputs, cols))
            wt[:, :out] = np.asarray(weight, np.float64).T
            return self.panels(wt)
        ncp = self.padded(cols)
        vt = np.zeros((inputs, ncp), weight.values.dtype)
        vt[:, :out] = weight.values.T
        self._align()
        if weight.kind == "int8":
            scale = np.zeros(ncp)
            scale[:out] = weight.scale
            self.add(scale)  # a whole number of vectors: the panel stays aligned
        return self.add(simd.pack_stored(vt, self.dtype))

    @staticmethod
    def weight_type(layer) -> int:
        """The stored weight type code (layout.WQ_*) of ``layer``'s matrices."""
        first = getattr(layer, layer._weight_names[0])
        return WQ_CODES[first.kind] if isinstance(first, QuantizedWeight) else WQ_FLOAT

    def kind(self, code: int, layer) -> int:
        """``layer``'s kind code: ``code`` with its weight type (layout.py)."""
        return code | self.weight_type(layer) << WQ_SHIFT

    def padded(self, n: int) -> int:
        """Width of a row of ``n`` outputs of a panel product (a multiple of
        the vector length: the products write whole vectors)."""
        return simd.padded(n, self.dtype)

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


def _aligned(n: int, dtype) -> np.ndarray:
    """A zeroed array of ``n`` elements whose data starts on a 64-byte boundary
    (panel offsets are vector-aligned relative to it)."""
    dt = np.dtype(dtype)
    raw = np.zeros(n + simd.VECTOR_BYTES // dt.itemsize, dt)
    skip = (-raw.ctypes.data % simd.VECTOR_BYTES) // dt.itemsize
    return raw[skip : skip + n]


def _widened(layer, dtype):
    """``layer``, or if its weight matrices are stored in different types (a
    float W_ih beside an int8 W_hh), the layer with them dequantized exactly
    (the same values in the model's float dtype): a kernel reads one type."""
    arrays = layer.arrays()
    kinds = {a.kind if isinstance(a, QuantizedWeight) else "float"
             for n, a in arrays.items() if n in layer._weight_names}
    if len(kinds) < 2:
        return layer
    return type(layer).from_config(layer.config(), {
        k: a.dequantize(dtype) if isinstance(a, QuantizedWeight) else a for k, a in arrays.items()})


def build_plan(layers, dtype, input_skip=None, output_gain=1.0, edges=None,
               input_size=None) -> Plan:
    """Pack ``layers`` (canonical, already in ``dtype``) into a Plan, with the
    model's input skip offset (or None) and output gain (see skip.py); for a
    graph model, ``edges`` (Model.graph) and its input size (graph.py)."""
    packer = Packer(dtype)
    rows = []
    state = 0
    for layer in layers:
        layer = _widened(layer, dtype)
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

    gain = -1 if output_gain == 1.0 else packer.add(np.array([output_gain]))

    meta = np.zeros(HEADER + ROW * len(rows), np.int64)
    meta[H_SKIP] = -1 if input_skip is None else input_skip
    meta[H_GAIN] = gain
    gates = max([r["gates"] for r in rows] + [1])
    tmp = max([r["tmp"] for r in rows] + [1])
    width = max(l.output_size for l in layers)
    meta[H_NLAYERS] = len(rows)
    meta[H_INPUT] = layers[0].input_size if edges is None else input_size
    meta[H_OUTPUT] = layers[-1].output_size
    meta[H_STATE] = state
    # a graph's many small layers run longer tiles: each call's fixed cost is shared
    tile = TILE if edges is None else GRAPH_TILE
    meta[H_TILE] = tile
    meta[H_SC_GX] = 0
    meta[H_SC_GH] = tile * gates
    # a tile of rows of recurrent pre-activations: batches run TILE streams at once
    meta[H_SC_TMP] = meta[H_SC_GH] + tile * gates
    meta[H_SC_SEQA] = meta[H_SC_TMP] + 2 * tmp
    meta[H_SC_SEQB] = meta[H_SC_SEQA] + tile * width
    meta[H_SCRATCH] = meta[H_SC_SEQB] + tile * width
    # a layer that changes the row count reports into one more scratch slot (rate.py)
    meta[H_RATE] = -1
    if any(row.get("rate") for row in rows):
        meta[H_RATE] = meta[H_SCRATCH]
        meta[H_SCRATCH] += 1
    meta[H_STRIDE] = math.prod(getattr(layer, "stride", 1) for layer in layers)
    # where the entry points find the layer kernels (filled per plan by calls.prepare)
    meta[H_FNS] = calls.table_address(dtype)
    for i, row in enumerate(rows):
        base = HEADER + ROW * i
        meta[base + M_KIND] = row.pop("kind")
        row.pop("gates")
        row.pop("tmp")
        row.pop("rate", None)
        for field, value in row.items():
            meta[base + field] = value

    if edges is not None:
        if meta[H_RATE] >= 0:
            # the graph runner moves whole tiles between branches: a branch
            # that delays or drops rows would no longer line up with the others
            raise WeightsError("a graph model cannot hold a layer with a latency or a stride "
                               "(a 'same'/'valid'-padded or strided Conv1d, a pool); "
                               "use them in a chain model")
        meta = graph.attach(meta, layers, edges, input_size)
    w = _aligned(packer.size, dtype)
    if packer.parts:
        np.concatenate([p.astype(dtype) for p in packer.parts], out=w)
    if edges is not None:
        meta = fuse.blocks(meta, w, edges)
    meta.setflags(write=True)
    return Plan(
        w=w,
        meta=meta,
        state_size=state,
        scratch_size=int(meta[H_SCRATCH]),
        input_size=int(meta[H_INPUT]),
        output_size=layers[-1].output_size,
    )
