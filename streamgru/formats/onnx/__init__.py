"""ONNX import: a whole recurrent model from an ``.onnx`` file, as a streaming Model.

ONNX Runtime runs a graph over a whole sequence and forgets everything
between calls; this module turns the same file into canonical layers
(layers.py) that a Stream advances one sample at a time.

How a graph is read
-------------------
Every tensor of the graph becomes one of a few kinds of value:

* a constant (initializers, ``Constant`` nodes and everything computed from
  them only; such nodes are folded with onnx's own reference implementation
  of the op at the graph's opset, ``onnx.reference``, so they follow the spec
  exactly, after the size of what they build is charged to the budget);
* a shape vector, some of whose entries are the unknown time or batch size
  (``Shape`` of the data and the arithmetic exporters do on it);
* a fill, a tensor of partly unknown shape whose values are known (what
  ``ConstantOfShape`` / ``Expand`` build, typically an all-zero initial state);
* *the stream*: the per-sample data flowing from the graph input through
  RNN nodes, Dense-like ops and element-wise ops. For it the importer tracks
  which axis is time, batch, features or a singleton (the direction axis),
  and the chain of layers that produced it.

Ops are handled by a flat table (``HANDLERS``) from op type to one function
per op, each citing the spec. An absent optional input and an empty-named one
are treated the same. An op that cannot be streamed does not stop the import
at once: its outputs become "unstreamable" values, and the import fails,
naming the op type, the node and the supported ops, only if the chosen output
depends on one (so the ``h_n`` / ``c_n`` outputs exporters add do no harm).

Package layout: ``tensors`` (the protobuf, local functions, initializers,
external data), ``graph`` (the walk), ``ops`` (the op table, with ``axes``,
``shapes``, ``recurrent``, ``conv``, ``quant`` (quantized weights), ``chain``, the
stream's layer chain, and ``branches``, streams that join again), ``fold``
(constant folding) and ``control`` (``If``, ``Loop``); ``values`` holds the
kinds of value above.

Mapping
-------
* The graph input's axes are (time, batch, features) or (batch, time,
  features), tried in that order; time and batch may be symbolic. A symbolic
  (named) feature axis, as ``dynamic_axes`` on every axis writes it, takes its
  size from the first node that fixes it: the first recurrent node's ``W``,
  or a ``MatMul`` / ``Gemm`` weight, reading the input.
* ``GRU``, ``LSTM``, ``RNN`` (every attribute: ``hidden_size``,
  ``activations`` with ``activation_alpha`` / ``activation_beta``, ``clip``,
  ``linear_before_reset``, ``input_forget``, ``layout`` 0 and 1; inputs W, R,
  B, P) become ``GRU.from_onnx`` / ``LSTM.from_onnx`` / ``RNN.from_onnx``.
  ``linear_before_reset`` is always taken from the file (the dynamo exporter
  has been known to write it wrongly; the file is what ONNX Runtime runs).
  ``direction="reverse"`` or ``"bidirectional"`` is refused: it needs the
  future of the sequence, which a stream does not have.
* ``sequence_lens`` is ignored: a stream has no sequence length.
* Already-quantized weights keep the file's int8 values and scales
  (``QuantizedWeight``, see ``quant``): ``DequantizeLinear`` of int8/uint8
  constants feeding a MatMul/Gemm weight or a GRU/LSTM/RNN ``W``/``R`` (QDQ),
  ONNX Runtime's ``quantize_dynamic`` output (``DynamicQuantizeLinear`` ->
  ``MatMulInteger`` -> ``Cast`` -> ``Mul``, and ``com.microsoft``'s
  ``DynamicQuantizeLSTM``). The runtimes' rounding of the activations is not
  reproduced (streamgru computes them in float); ``QuantizeLinear`` ->
  ``DequantizeLinear`` on the data (static activation quantization) needs
  ``static_activations="float"``.
* ``initial_h`` / ``initial_c`` given as constants become the model's initial
  state (what ``reset()`` returns to); the all-zero states exporters build
  from ``Shape``/``Gather``/``ConstantOfShape``/``Expand``/``Tile`` are zeros. A state
  fed from a second graph input (a model exported as ``f(x, h) -> (y, h')``)
  starts at zeros; the Stream carries the state itself.
* ``Gemm``, ``MatMul`` (+ ``Add``) become ``Dense``; ``Add``/``Sub``/``Mul``/
  ``Div``/``Neg`` by constants fold into the preceding Dense (or become a Dense
  with a diagonal weight); ``Relu``, ``Tanh``, ``Sigmoid``, ``LeakyRelu``,
  ``Elu``, ``Gelu``, ``HardSigmoid``, ``Softmax``/``LogSoftmax`` on the feature
  axis attach to the preceding Dense (or become an identity-weight Dense);
  GELU in the form exporters write below opset 20,
  ``x * 0.5 * (1 + erf(x / sqrt(2)))``, is recognised as ``gelu``.
  ``Gather``/``Slice`` on the feature axis become a selection Dense.
* ``Conv`` over time (1-D, NCW; dilations, group, bias) in its causal forms,
  a left zero ``Pad`` before it, ``BatchNormalization`` (folded into the
  Conv or Dense before it), ``LayerNormalization`` over the features and
  ``PRelu``: see ``conv``. A graph with such ops may take channels-first
  input (batch, features, time): a stream's sample is then x[:, :, t].
* ``Transpose``, ``Squeeze``, ``Unsqueeze``, ``Reshape``, ``Flatten``,
  ``Slice``, ``Gather`` of the direction and batch axes only move axes.
  Taking the last time step (``y[-1]``, ``y[:, -1]``, the ``Y_h`` output, or
  one layer of ``h_n``, the ``Y_h`` of each layer concatenated) makes a
  many-to-one model; streamed, step ``t`` gives the model's output
  for the sequence ending at ``t`` (``metadata["many_to_one"]``).
* Branches: ``Add`` / ``Sub`` / ``Mul`` of two streams from the same input
  (residual and skip sums, ``tanh(a) * sigmoid(b)``, ``x * x``), with
  ``Concat`` and ``Split`` over the features and ``ReduceSum`` /
  ``ReduceMean`` over the axis streams were stacked along (``torch.stack(branches).sum(0)``:
  ``Unsqueeze`` + ``Concat`` + ``ReduceSum``), make a graph model
  (``branches``); every branch must be causal and run at one rate, as in
  any graph.
* ``If`` on a constant condition is folded to the branch it takes (that
  branch may carry the stream); ``Loop`` on constants is run and folded.
* The streamed output is the graph's first output (or ``output=name``).

Refused (``WeightsError`` naming the node): reverse or bidirectional
recurrent nodes; a recurrence unrolled into per-step ops (the dynamo exporter
does this for ``torch.nn.RNN``; export it with ``dynamo=False``); ops that mix
time steps or samples (reductions, attention, pooling, a conv over the
features, "same" padding, strides); the stream divided by the stream, or
concatenated over time; branches of different shapes joined; LSTM's
``Y_c`` as the output; ``If`` on a condition that is not a constant.

Safety: the file is parsed as a protobuf and never executed; external-data
tensors must be regular files inside the model's folder; every tensor's byte
size must match its shape and fit the file backing it. Everything the file
makes the load build or do is charged to the load's ``guard.Budget`` first:
the nodes of inlined local functions, initializers, external data, folded
constants, the square Dense an activation needs when no Dense precedes it, and
the trips of a ``Loop`` (in work). A malformed or hostile file raises
``WeightsError`` naming the file, the node (name and op type) or tensor, and
for a budget the limit; ``sg.load(path, max_bytes=...)`` raises the byte
limit for a genuinely large model.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ...errors import WeightsError
from ...layers import Dense, Layer
from ...layers.quant import QuantizedWeight
from ...model import Model
from ..guard import Budget, check_regular
from ...graph import flatten
from .branches import has_joins, to_graph
from .graph import _guesses, _shape_of_input, _walk
from .tensors import _read, _tensor
from .values import _ErfOf, _Graph, _Mismatch, _Pending, _Poison, _Stream

__all__ = ["load", "sniff", "OPTIONS"]

OPTIONS = ("dtype", "output", "input", "static_activations")
_CHANNELS_FIRST_OPS = frozenset({"Conv", "Pad", "BatchNormalization", "PRelu"})


def sniff(head: bytes) -> bool:
    """A ModelProto starts with field 1 (ir_version, varint: tag 0x08) and
    usually names its producer (field 2) early."""
    return head[:1] == b"\x08" and (b"pytorch" in head or b"onnx" in head or b"\x12" in head[:16])


def load(path: str, dtype: Any = np.float32, output: str | None = None,
         input: str | None = None, static_activations: str = "refuse", *,
         budget: Budget | None = None) -> Model:
    """Load an ONNX model as a streaming ``Model``.

    Parameters
    ----------
    path : str
        The ``.onnx`` file. External-data tensors are read from its folder.
    dtype : float32 (default, also for None) or float64
        The float type the model computes in.
    output : str, optional
        Name of the graph output to stream (default: the first output).
    input : str, optional
        Name of the graph input carrying the data (default: the first input
        that is not an initializer); other inputs (e.g. a state ``h0``) start
        at zeros.
    static_activations : ``"refuse"`` (default) or ``"float"``
        What to do with statically quantized activations (a
        ``QuantizeLinear`` -> ``DequantizeLinear`` pair on the data, as
        ONNX Runtime's ``quantize_static`` writes): streamgru computes
        activations in float, so such a model is refused unless
        ``"float"`` says to drop the pairs (the activations are then not
        rounded to 8 bits nor clipped to their calibrated range; the int8
        weights are kept).
    budget : guard.Budget, optional
        What the load may allocate and how much work it may do (``sg.load``
        passes one; by default one is made from the file's size).

    Returns
    -------
    Model
        ``metadata`` holds ``format="onnx"``, ``source``, ``input``,
        ``output``, ``opset``, ``producer``, ``many_to_one`` and
        ``state_inputs`` (graph inputs replaced by the stream's own state).

    Raises
    ------
    WeightsError
        Malformed file, unsafe external data, missing or mis-sized tensors,
        an op or pattern that cannot be streamed (naming op type, node and the
        supported ops), a reverse / bidirectional recurrent node, or anything
        beyond the budget (naming the node or tensor and the limit).

    Notes
    -----
    ``sequence_lens`` inputs are ignored: a stream has no sequence length.
    """
    path = os.fspath(path)
    if static_activations not in ("refuse", "float"):
        raise WeightsError(f"static_activations must be 'refuse' or 'float', got {static_activations!r}")
    if budget is None:
        budget = Budget(path, check_regular(path).st_size)
    model = _read(path, budget)
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise WeightsError(f"{path}: no default-domain opset import")
    if graph.sparse_initializer:
        raise WeightsError(f"{path}: sparse initializers are not supported")
    tensors: dict[str, np.ndarray] = {}
    for t in graph.initializer:
        tensors[t.name] = _tensor(t, path, budget)
    real_inputs = [vi for vi in graph.input if vi.name not in tensors]
    if input is not None:
        chosen = [vi for vi in real_inputs if vi.name == input]
        if not chosen:
            names = [v.name for v in real_inputs]
            raise WeightsError(f"{path}: no graph input named {input!r}; inputs: {names}")
        data_input = chosen[0]
    elif real_inputs:
        data_input = real_inputs[0]
    else:
        raise WeightsError(f"{path}: the graph has no input")
    shape = _shape_of_input(data_input)
    if shape is None:
        raise WeightsError(f"{path}: graph input {data_input.name!r} has no shape")
    others = [vi for vi in real_inputs if vi is not data_input]
    out_names = [o.name for o in graph.output]
    out_name = out_names[0] if output is None else output
    if out_name not in out_names:
        raise WeightsError(f"{path}: no graph output named {out_name!r}; outputs: {out_names}")

    errors: list[_Mismatch] = []
    used, work = budget.used, budget.work
    # channels-first input (batch, features, time) is tried for graphs with
    # convolution-like ops, when axis 1 has a fixed size to be the features
    cf = len(shape) == 3 and shape[1] is not None and any(
        n.op_type in _CHANNELS_FIRST_OPS for n in graph.node)
    unsized: list[_Mismatch] = []
    for roles in _guesses(len(shape), cf):
        budget.used, budget.work = used, work  # each guess walks the graph afresh
        try:
            env, g = _walk(model, path, tensors, data_input, others, roles, opset, budget,
                           static_activations)
        except _Mismatch as exc:  # no fixed feature size under this guess
            unsized.append(exc)
            continue
        v = env.get(out_name)
        if isinstance(v, _Pending):
            raise WeightsError(f"{path}: output {out_name!r} comes from node {v.node!r} inside a "
                               f"causal conv idiom (a Pad without its Conv, or a Conv padded on "
                               f"both sides without the Slice that drops its last outputs)")
        if isinstance(v, _Poison):
            if isinstance(v.error, _Mismatch):
                errors.append(v.error)
                continue
            raise WeightsError(str(v.error))
        if isinstance(v, _ErfOf):
            raise WeightsError(
                f"{path}: output {out_name!r} comes from Erf node {v.node!r}; Erf is only "
                f"supported in GELU's form x * 0.5 * (1 + erf(x / sqrt(2)))"
            )
        if not isinstance(v, _Stream):
            raise WeightsError(
                f"{path}: output {out_name!r} does not depend on input {data_input.name!r}"
            )
        g.feature_axis(v)
        if not v.layers:
            raise WeightsError(f"{path}: output {out_name!r} is the input itself; no layers to run")
        return _build(path, model, v, g, data_input.name, out_name, opset, dtype,
                      static_activations)
    if errors or unsized:
        raise WeightsError(str((errors or unsized)[0]))
    raise WeightsError(f"{path}: input {data_input.name!r} of rank {len(shape)} cannot be streamed")


def _is_identity(layer: Layer) -> bool:
    """A Dense that changes nothing (left behind when folded constants cancel);
    checked without building an identity matrix to compare with."""
    if not (isinstance(layer, Dense) and layer.activation.name == "identity"
            and not isinstance(layer.weight, QuantizedWeight)
            and layer.input_size == layer.output_size and not np.any(layer.bias)):
        return False
    w = layer.weight
    return bool(np.all(np.diagonal(w) == 1) and np.count_nonzero(w) == layer.input_size)


def _build(path: str, model: Any, v: _Stream, g: _Graph, in_name: str, out_name: str,
           opset: int, dtype: Any, static_activations: str) -> Model:
    if has_joins(v.layers):  # branches that join again: a graph model
        out, inits = to_graph(v.layers, g.input_features, _is_identity, g.budget)
        if out.layer is None:
            raise WeightsError(f"{path}: output {out_name!r} is the input itself; no layers to run")
        layers = flatten(out)[1]
        chain = [(layer, inits.get(id(layer))) for layer in layers]
    else:
        chain = [(layer, init) for layer, init in v.layers if not _is_identity(layer)] or list(v.layers[:1])
        out = [layer for layer, _ in chain]
    parts, has_init = [], False
    for layer, init in chain:
        if layer.state_size:
            has_init |= init is not None
            parts.append(np.zeros(layer.state_size) if init is None else init)
    initial = np.concatenate(parts) if has_init else None
    meta = {
        "format": "onnx",
        "source": path,
        "input": in_name,
        "output": out_name,
        "opset": opset,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "many_to_one": bool(v.last),
        "state_inputs": sorted(g.state_sources),
    }
    if g.dropped_qdq:
        meta["static_activations"] = (f"float: {g.dropped_qdq} QuantizeLinear -> DequantizeLinear "
                                      f"pair(s) on the data dropped")
    try:
        return Model(out, dtype=np.float32 if dtype is None else dtype,
                     initial_state=initial, metadata=meta)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
